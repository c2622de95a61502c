//! Guest time on the [`Platform`]: the virtual clock the CPU's instruction count drives, the
//! timers' deadlines (chipset, SMI pin, legacy devices, LAPIC) and their firing, the CPU
//! slice the machine runs and when a newly armed timer must cut it short, the poll
//! fast-forward on PM timer reads ([`crate::poll`]) and the extra time SMM entry and RSM take.

use super::platform::Platform;
use crate::chipset::Chipset;
use crate::clock::{Clock, Ticks};
use crate::events::MachineEvent;

impl<C: Chipset> Platform<C> {
    /// Guest time now.
    pub fn now(&self) -> Ticks {
        self.clock.now()
    }

    /// The virtual clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Records the CPU's retired-instruction count and fires the timers that are due.
    pub fn set_now(&mut self, icount: u64) {
        self.clock.set_icount(icount);
        self.advance_timers();
    }

    /// Moves guest time to `t` while the CPU is halted, firing the timers due by then.
    pub fn skip_to(&mut self, t: Ticks) {
        self.clock.skip_to(t);
        self.advance_timers();
    }

    /// The machine starts a CPU slice that ends at `end`: a timer armed for earlier during
    /// the slice makes the board ask the CPU to stop.
    pub fn begin_slice(&mut self, end: Ticks) {
        self.slice_end = Some(end);
        self.resync = false;
        // The host may have changed any device since the last slice.
        self.deadline = None;
    }

    /// The next time any timer expires.
    pub fn next_deadline(&self) -> Option<Ticks> {
        [self.chipset.next_deadline(), self.smi_pin.deadline(), self.smi_load.deadline(), self.legacy.next_deadline(), self.lapic.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next time a timer raises an SMI.
    pub fn next_wake(&self) -> Option<Ticks> {
        [self.chipset.next_wake(), self.smi_pin.deadline(), self.smi_load.deadline()].into_iter().flatten().min()
    }

    /// The next time a timer can interrupt a CPU halted with interrupts enabled (also the
    /// SMI timers).
    pub fn next_interrupt_wake(&self) -> Option<Ticks> {
        [self.next_wake(), self.legacy.next_interrupt(), self.lapic.next_deadline()].into_iter().flatten().min()
    }

    /// Fires the timers due by now (chipset, SMI pin, legacy devices, LAPIC), telling the
    /// chipset the halted time first.
    pub(super) fn advance_timers(&mut self) {
        self.chipset.set_idle(self.clock.idle());
        let now = self.clock.now();
        if self.next_deadline().is_some_and(|d| d <= now) {
            self.chipset.advance(now, &mut self.smi);
            self.smi_pin.raise_due(now, &mut self.smi);
            self.smi_load.raise_due(now, &mut self.smi);
            self.legacy.advance(now);
            self.lapic.advance(now);
        }
        self.after_device_call();
    }

    /// Moves raised SMIs into the event queue and notices timers armed inside the slice.
    pub(super) fn after_device_call(&mut self) {
        self.chipset.drain_events(&mut self.events);
        if self.smi.has_raised() {
            for (cause, t) in self.smi.drain_raised() {
                self.events.push(MachineEvent::SmiRaised { cause, icount: t.0 });
            }
        }
        let deadline = self.next_deadline();
        self.deadline = Some(deadline);
        if let (Some(d), Some(end)) = (deadline, self.slice_end) {
            self.resync |= d < end;
        }
    }

    /// A read of the PM timer port outside SMM: when the guest is polling, moves guest time
    /// forward (never past the next timer deadline) before the timer is read.
    pub(super) fn poll_timer(&mut self) {
        let skip = self.poll.timer_read(self.clock.icount());
        if skip == 0 {
            return;
        }
        let now = self.clock.now().0;
        let mut to = now.saturating_add(skip);
        if let Some(d) = self.next_deadline() {
            to = to.min(d.0.max(now));
        }
        if to > now {
            self.skip_to(Ticks(to));
            self.poll.add_skipped(to - now);
            // The CPU's slice was sized in instructions for the time before the skip.
            if self.slice_end.is_some_and(|e| Ticks(to) >= e) {
                self.resync = true;
            }
        }
    }

    /// Lets `ticks` of guest time pass without instructions (the CPU is busy saving or
    /// restoring its state), firing every timer at its own time on the way.
    pub(super) fn pass_time(&mut self, ticks: u64) {
        let target = self.clock.now().0.saturating_add(ticks);
        while self.clock.now().0 < target {
            let now = self.clock.now().0;
            let to = self.next_deadline().map_or(target, |d| d.0.max(now + 1)).min(target);
            self.skip_to(Ticks(to));
        }
        if self.slice_end.is_some_and(|e| Ticks(target) >= e) {
            self.resync = true;
        }
    }

    /// Guest time SMM entry and RSM take beyond their one instruction, in ticks (a CPU saves
    /// and restores hundreds of bytes of state, and real platforms rendezvous every core):
    /// `smmlab run --smm-entry-ns/--rsm-ns`. Zero by default: time is instructions only.
    pub fn set_smm_costs(&mut self, entry: u64, exit: u64) {
        self.smm_costs = (entry, exit);
    }
}
