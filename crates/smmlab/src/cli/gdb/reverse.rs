//! `reverse-stepi` and `reverse-continue`: the machine goes back by restoring a snapshot
//! ([`machine::Machine::snapshot`]) and running forward again, deterministically, to the
//! instruction boundary before (or to the last stop before now). The snapshot is taken when
//! gdb connects and again whenever gdb changes the machine by hand (memory, registers,
//! `monitor smi`), since a replay would not redo that: reverse execution goes back at most to
//! that point. Each step back replays from the snapshot, so it costs as much as running the
//! distance again (a reverse-continue twice).

use super::target::GdbTarget;
use gdbstub::common::Signal;
use gdbstub::stub::SingleThreadStopReason;
use gdbstub::target::ext::base::reverse_exec::{ReplayLogPosition, ReverseCont, ReverseStep};
use gdbstub::target::ext::breakpoints::WatchKind;
use machine::ExitReason;

/// What gdb is told at the start of the history.
const BEGIN: SingleThreadStopReason<u64> = SingleThreadStopReason::ReplayLog { tid: None, pos: ReplayLogPosition::Begin };

/// Where reverse execution can go back to.
pub struct History {
    snapshot: machine::host::Snapshot,
    icount: u64,
    timeline: trace::Timeline,
}

impl GdbTarget<'_> {
    /// Takes the snapshot reverse stepping replays from: the machine as it is now.
    pub fn mark_history(&mut self) {
        let snapshot = self.m.snapshot();
        self.history = Some(History { snapshot, icount: self.m.icount(), timeline: self.timeline.clone() });
    }

    /// Goes back to the previous instruction boundary: the stop reason for gdb.
    pub fn step_back(&mut self) -> SingleThreadStopReason<u64> {
        let Some(first) = self.history.as_ref().map(|h| h.icount) else { return BEGIN };
        let (now, smis) = (self.m.icount(), self.m.cpu_view().smi_count);
        // At an SMI's entry the boundary before is the same instruction count, outside SMM
        // (a run to a count stops before an SMI pending there).
        let from_entry = self.at_smm_entry;
        let target = if from_entry { now } else { now.saturating_sub(1) };
        if target < first || (target == now && !from_entry) {
            eprintln!("smmlab: gdb: reverse-stepi: this is as far back as the snapshot goes (instruction {first})");
            return BEGIN;
        }
        if !self.rewind() {
            return BEGIN;
        }
        // From an SMI's entry: before it. Otherwise the SMI count stays, so that when the
        // instruction stepped back over was the first of an SMI taken at this boundary, the
        // replay stops at its entry, as a forward step did.
        self.replay_to(target, if from_entry { smis - 1 } else { smis });
        SingleThreadStopReason::DoneStep
    }

    /// `reverse-continue`: replays from the snapshot to now with every stop armed
    /// (breakpoints, watchpoints, break-on-smi, break-on-rsm), then again to the last stop
    /// before now; with none, to the snapshot.
    pub fn continue_back(&mut self) -> SingleThreadStopReason<u64> {
        if self.history.is_none() {
            return BEGIN;
        }
        let now = self.m.icount();
        if !self.rewind() {
            return BEGIN;
        }
        // (instruction count, SMI count, why) of the last stop before now.
        let mut last: Option<(u64, u64, SingleThreadStopReason<u64>)> = None;
        while self.m.icount() < now {
            let v0 = self.m.cpu_view();
            self.m.set_stop_on_smm_entry(self.break_on_smi);
            self.m.set_stop_after_rsm(self.break_on_rsm);
            self.m.take_watch_hits();
            let s = self.m.run(now - self.m.icount());
            self.m.set_stop_on_smm_entry(false);
            self.m.set_stop_after_rsm(false);
            for e in self.m.drain_events() {
                self.timeline.feed(&e);
            }
            let (v, here, hit) = (self.m.cpu_view(), self.m.icount(), self.m.take_watch_hits().first().copied());
            let stop = match s.exit {
                ExitReason::Breakpoint if self.hw_breakpoints.contains(&v.rip) => Some(SingleThreadStopReason::HwBreak(())),
                ExitReason::Breakpoint => Some(SingleThreadStopReason::SwBreak(())),
                ExitReason::Paused | ExitReason::InstructionLimit if hit.is_some() => Some(SingleThreadStopReason::Watch { tid: (), kind: WatchKind::Write, addr: hit.map_or(0, |h| h.addr) }),
                ExitReason::Paused if v.in_smm && v.smi_count > v0.smi_count => Some(SingleThreadStopReason::Signal(Signal::SIGTRAP)),
                ExitReason::Paused if !v.in_smm && (v0.in_smm || v.smi_count > v0.smi_count) => Some(SingleThreadStopReason::Signal(Signal::SIGTRAP)),
                ExitReason::Paused | ExitReason::InstructionLimit => None,
                other => {
                    // Cannot happen in a deterministic replay of what already ran.
                    eprintln!("smmlab: gdb: reverse-continue: the replay ended ({}) at instruction {here}", other.name());
                    break;
                }
            };
            if let Some(why) = stop.filter(|_| here < now) {
                last = Some((here, v.smi_count, why));
            }
        }
        if !self.rewind() {
            return BEGIN;
        }
        let Some((at, smis, why)) = last else {
            eprintln!("smmlab: gdb: reverse-continue: no stop before this one since the snapshot (instruction {}); back there", self.m.icount());
            self.at_smm_entry = false;
            return BEGIN;
        };
        self.replay_to(at, smis);
        why
    }

    /// Back to the snapshot (RAM, devices, CPU, the timeline); false if it is gone.
    fn rewind(&mut self) -> bool {
        let Some(h) = &self.history else { return false };
        if self.m.restore(&h.snapshot).is_none() {
            eprintln!("smmlab: gdb: reverse execution: the snapshot is gone");
            return false;
        }
        self.timeline = h.timeline.clone();
        // The snapshot's CPU holds the breakpoints of its time.
        self.restore_breakpoints();
        true
    }

    /// Runs forward to instruction count `target` stopping for nothing else, then, if fewer
    /// than `smis` SMIs have been taken, into the SMI pending at that boundary, stopping at
    /// its entry (a run to a count stops before an SMI taken at the count).
    fn replay_to(&mut self, target: u64, smis: u64) {
        self.m.set_breakpoints(&[]);
        loop {
            let left = target.saturating_sub(self.m.icount());
            if left == 0 {
                break;
            }
            let s = self.m.run(left);
            for e in self.m.drain_events() {
                self.timeline.feed(&e);
            }
            if !matches!(s.exit, ExitReason::InstructionLimit | ExitReason::Paused) {
                eprintln!("smmlab: gdb: reverse execution: the replay ended ({}) at instruction {}", s.exit.name(), self.m.icount());
                break;
            }
        }
        self.at_smm_entry = false;
        if self.m.cpu_view().smi_count < smis {
            self.m.set_stop_on_smm_entry(true);
            self.m.run(1);
            self.m.set_stop_on_smm_entry(false);
            for e in self.m.drain_events() {
                self.timeline.feed(&e);
            }
            self.at_smm_entry = self.m.cpu_view().smi_count == smis;
        }
        self.m.take_watch_hits();
        self.restore_breakpoints();
    }
}

impl ReverseStep<()> for GdbTarget<'_> {
    fn reverse_step(&mut self, _tid: ()) -> Result<(), Self::Error> {
        self.resume = super::target::Resume::StepBack;
        Ok(())
    }
}

impl ReverseCont<()> for GdbTarget<'_> {
    fn reverse_cont(&mut self) -> Result<(), Self::Error> {
        self.resume = super::target::Resume::ContinueBack;
        Ok(())
    }
}
