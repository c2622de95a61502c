//! What happened in the machine, in the past tense, for observers (trace, audit, tests), and
//! the counters the run summary prints. Devices and the board push events; the [`crate::Machine`]
//! owner drains them. Observers never change machine state.

use crate::smi::SmiCause;
use crate::smram::SmramConfig;
use std::collections::BTreeMap;

/// One machine event. `icount` is the guest time in ticks (instructions plus idle time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MachineEvent {
    /// A source asserted SMI#.
    SmiRaised { cause: SmiCause, icount: u64 },
    /// The CPU entered SMM; `cause` is the SMI it acknowledged (None if it entered SMM without
    /// acknowledging one).
    SmmEntered { cause: Option<SmiCause>, smbase: u32, cs: u16, rip: u64, mode: &'static str, icount: u64 },
    /// RSM returned to the interrupted program.
    RsmCompleted { smbase: u32, rip: u64, mode: &'static str, smm_instructions: u64, icount: u64 },
    /// RSM found an invalid saved state and shut the CPU down.
    RsmFailed { reason: String, icount: u64 },
    /// A chipset register write changed the SMRAM decoding.
    SmramConfigChanged { old: SmramConfig, new: SmramConfig, icount: u64 },
    /// D_LCK was set: SMRAM control is frozen until reset.
    SmramLocked { icount: u64 },
    /// The PAM registers (BIOS shadowing) changed.
    PamChanged { pam: [u8; 7], icount: u64 },
}

/// Counters for the run summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SmmStats {
    /// SMIs raised by sources (several may merge into one SMM entry).
    pub smis_raised: u64,
    /// SMM entries.
    pub smm_entries: u64,
    /// SMM entries by the source of the SMI taken ("apm", "periodic", ..., "unknown").
    pub smis_by_source: BTreeMap<&'static str, u64>,
    /// Instructions retired in SMM (including each RSM).
    pub smm_instructions: u64,
    /// Guest time spent in SMM, in ticks.
    pub smm_ticks: u64,
}

/// The event queue and the counters.
#[derive(Clone, Debug)]
pub struct Events {
    queue: Vec<MachineEvent>,
    /// Whether events are queued (counters are always kept).
    pub recording: bool,
    pub stats: SmmStats,
    smm_entered_at: Option<u64>,
}

impl Default for Events {
    fn default() -> Self {
        Events { queue: Vec::new(), recording: true, stats: SmmStats::default(), smm_entered_at: None }
    }
}

impl Events {
    /// Records `e` and updates the counters.
    pub fn push(&mut self, e: MachineEvent) {
        match &e {
            MachineEvent::SmiRaised { .. } => self.stats.smis_raised += 1,
            MachineEvent::SmmEntered { cause, icount, .. } => {
                self.stats.smm_entries += 1;
                *self.stats.smis_by_source.entry(cause.map_or("unknown", |c| c.source())).or_default() += 1;
                self.smm_entered_at = Some(*icount);
            }
            MachineEvent::RsmCompleted { smm_instructions, icount, .. } => {
                self.stats.smm_instructions += smm_instructions;
                if let Some(t) = self.smm_entered_at.take() {
                    self.stats.smm_ticks += icount.saturating_sub(t);
                }
            }
            MachineEvent::RsmFailed { icount, .. } => {
                if let Some(t) = self.smm_entered_at.take() {
                    self.stats.smm_ticks += icount.saturating_sub(t);
                }
            }
            _ => {}
        }
        if self.recording {
            self.queue.push(e);
        }
    }

    /// Takes the queued events.
    pub fn drain(&mut self) -> Vec<MachineEvent> {
        std::mem::take(&mut self.queue)
    }

    /// The queued events.
    pub fn queued(&self) -> &[MachineEvent] {
        &self.queue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_follow_entries_and_rsm() {
        let mut ev = Events::default();
        ev.push(MachineEvent::SmiRaised { cause: SmiCause::Pin, icount: 1 });
        ev.push(MachineEvent::SmmEntered { cause: Some(SmiCause::Pin), smbase: 0x30000, cs: 0, rip: 0, mode: "real", icount: 10 });
        ev.push(MachineEvent::RsmCompleted { smbase: 0x30000, rip: 0, mode: "real", smm_instructions: 5, icount: 15 });
        assert_eq!(ev.stats.smis_raised, 1);
        assert_eq!(ev.stats.smm_entries, 1);
        assert_eq!(ev.stats.smis_by_source.get("pin"), Some(&1));
        assert_eq!((ev.stats.smm_instructions, ev.stats.smm_ticks), (5, 5));
        assert_eq!(ev.drain().len(), 3);
        assert!(ev.queued().is_empty());
    }

    #[test]
    fn not_recording_still_counts() {
        let mut ev = Events { recording: false, ..Default::default() };
        ev.push(MachineEvent::SmiRaised { cause: SmiCause::Ipi, icount: 1 });
        assert!(ev.queued().is_empty());
        assert_eq!(ev.stats.smis_raised, 1);
    }
}
