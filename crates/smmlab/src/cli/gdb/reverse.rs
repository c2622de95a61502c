//! `reverse-stepi`: the machine goes back one instruction by restoring a snapshot
//! ([`machine::Machine::snapshot`]) and running forward again, deterministically, to the
//! instruction boundary before. The snapshot is taken when gdb connects and again whenever gdb
//! changes the machine by hand (memory, registers, `monitor smi`), since a replay would not
//! redo that: reverse stepping goes back at most to that point. Each step back replays from
//! the snapshot, so it costs as much as running the distance again.

use super::target::GdbTarget;
use gdbstub::stub::SingleThreadStopReason;
use gdbstub::target::ext::base::reverse_exec::{ReplayLogPosition, ReverseStep};
use machine::ExitReason;

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
        let begin = SingleThreadStopReason::ReplayLog { tid: None, pos: ReplayLogPosition::Begin };
        let Some(h) = &self.history else { return begin };
        let (now, smis) = (self.m.icount(), self.m.cpu_view().smi_count);
        // At an SMI's entry the boundary before is the same instruction count, outside SMM
        // (a run to a count stops before an SMI pending there).
        let from_entry = self.at_smm_entry;
        let target = if from_entry { now } else { now.saturating_sub(1) };
        if target < h.icount || (target == now && !from_entry) {
            eprintln!("smmlab: gdb: reverse-stepi: this is as far back as the snapshot goes (instruction {})", h.icount);
            return begin;
        }
        if self.m.restore(&h.snapshot).is_none() {
            eprintln!("smmlab: gdb: reverse-stepi: the snapshot is gone");
            return begin;
        }
        self.timeline = h.timeline.clone();
        // The replay stops for nothing but the count.
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
                // Cannot happen in a deterministic replay of what already ran.
                eprintln!("smmlab: gdb: reverse-stepi: the replay ended ({}) at instruction {}", s.exit.name(), self.m.icount());
                break;
            }
        }
        // A run to a count stops before an SMI taken at that boundary; the instruction stepped
        // back over was that SMI's first: stop at its entry, as a forward step did.
        let entry = !from_entry && self.m.cpu_view().smi_count < smis;
        if entry {
            self.m.set_stop_on_smm_entry(true);
            self.m.run(1);
            self.m.set_stop_on_smm_entry(false);
            for e in self.m.drain_events() {
                self.timeline.feed(&e);
            }
        }
        self.m.take_watch_hits();
        self.restore_breakpoints();
        self.at_smm_entry = entry && self.m.cpu_view().in_smm;
        SingleThreadStopReason::DoneStep
    }
}

impl ReverseStep<()> for GdbTarget<'_> {
    fn reverse_step(&mut self, _tid: ()) -> Result<(), Self::Error> {
        self.resume = super::target::Resume::StepBack;
        Ok(())
    }
}
