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
    SmiRaised {
        /// Which source.
        cause: SmiCause,
        /// Guest time in ticks.
        icount: u64,
    },
    /// The CPU entered SMM.
    SmmEntered {
        /// The SMI it acknowledged (None if it entered SMM without acknowledging one).
        cause: Option<SmiCause>,
        /// SMBASE of this entry.
        smbase: u32,
        /// CS selector of the interrupted program.
        cs: u16,
        /// RIP of the interrupted program's next instruction.
        rip: u64,
        /// The interrupted program's mode ("real", "protected32", "long"...).
        mode: &'static str,
        /// Guest time in ticks.
        icount: u64,
    },
    /// RSM returned to the interrupted program.
    RsmCompleted {
        /// SMBASE after RSM (changed if the handler relocated it).
        smbase: u32,
        /// Where execution resumes.
        rip: u64,
        /// The mode execution resumes in.
        mode: &'static str,
        /// Instructions retired in SMM, including the RSM.
        smm_instructions: u64,
        /// Guest time in ticks.
        icount: u64,
    },
    /// RSM found an invalid saved state and shut the CPU down.
    RsmFailed {
        /// Which check failed (a [`cpu::ShutdownReason::RsmCheck`]).
        reason: cpu::ShutdownReason,
        /// Guest time in ticks.
        icount: u64,
    },
    /// A chipset register write changed the SMRAM decoding.
    SmramConfigChanged {
        /// The decoding before the write.
        old: SmramConfig,
        /// The decoding after it.
        new: SmramConfig,
        /// Guest time in ticks.
        icount: u64,
    },
    /// D_LCK was set: SMRAM control is frozen until reset.
    SmramLocked {
        /// Guest time in ticks.
        icount: u64,
    },
    /// The PAM registers (BIOS shadowing) changed.
    PamChanged {
        /// PAM0..PAM6 after the change.
        pam: [u8; 7],
        /// Guest time in ticks.
        icount: u64,
    },
    /// The guest wrote a line to debugcon (port 0x402). Lines longer than
    /// [`DEBUGCON_LINE_MAX`] bytes are split. Queued only while [`Events::recording`].
    DebugconLine {
        /// The line, without its newline.
        text: String,
        /// The time of its last byte, in ticks.
        icount: u64,
        /// Whether that byte was written in SMM.
        in_smm: bool,
    },
    /// The guest wrote SLP_EN with SLP_TYP = S5: the machine powered off.
    PowerOff {
        /// Whether the write came from SMM.
        from_smm: bool,
        /// Guest time in ticks.
        icount: u64,
    },
    /// The host's error injector put a DRAM ECC error in the MCH's ERRSTS.
    MemoryErrorInjected {
        /// Physical address of the error.
        addr: u64,
        /// Whether ECC cannot correct it.
        uncorrectable: bool,
        /// Guest time in ticks.
        icount: u64,
    },
    /// The hardware monitor's temperature reached its HIGH or CRIT limit.
    ThermalLimit {
        /// The temperature, whole degrees C.
        temp_c: u8,
        /// The CRIT limit (false: HIGH).
        crit: bool,
        /// Guest time in ticks.
        icount: u64,
    },
    /// A write to the MCH's SMRAM or ESMRAMC register was dropped or changed because D_LCK is
    /// set.
    SmramLockViolation {
        /// "SMRAM" (0x9D) or "ESMRAMC" (0x9E).
        register: &'static str,
        /// Guest time in ticks.
        icount: u64,
    },
    /// The first write from outside SMM to a 4 KiB page of the TSEG range (the top TSEG_SZ
    /// bytes of low RAM, whatever T_EN says) while it was open to non-SMM code (T_EN or
    /// G_SMRAME cleared), once TSEG had been enabled at least once; `addr` is the written
    /// address. CPU writes only (DMA is not watched).
    SmramWrittenOutsideSmm {
        /// The written physical address.
        addr: u64,
        /// Guest time in ticks.
        icount: u64,
    },
    /// The CPU, in SMM, fetched code from a page that had been written from outside SMM (see
    /// [`MachineEvent::SmramWrittenOutsideSmm`]): SMM runs code somebody else put there. Once
    /// per page.
    SmmRanCodeWrittenOutsideSmm {
        /// The page (its 4 KiB-aligned physical address).
        addr: u64,
        /// Guest time in ticks.
        icount: u64,
    },
    /// The first write from outside SMM to a block of a secure flash unit (`--pflash-secure`),
    /// which the flash refused: only SMM may program the variable store. Once per block.
    PflashWriteRefused {
        /// The written physical address.
        addr: u64,
        /// The flash unit (0 the code, 1 the variable store).
        unit: u8,
        /// Guest time in ticks.
        icount: u64,
    },
    /// The hardware monitor's readings changed (sampled every millisecond while monitoring).
    Sensors {
        /// CPU temperature, whole degrees C.
        temp_c: u8,
        /// Fan duty, percent.
        fan_duty: u8,
        /// Tachometer, rpm.
        fan_rpm: u16,
        /// Guest time in ticks.
        icount: u64,
    },
}

/// The longest debugcon line one [`MachineEvent::DebugconLine`] carries.
pub const DEBUGCON_LINE_MAX: usize = 256;

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
    /// The counters the run summary prints.
    pub stats: SmmStats,
    smm_entered_at: Option<u64>,
    /// The debugcon line being written (only while recording).
    debugcon_line: Vec<u8>,
}

impl Default for Events {
    fn default() -> Self {
        Events { queue: Vec::new(), recording: true, stats: SmmStats::default(), smm_entered_at: None, debugcon_line: Vec::new() }
    }
}

impl Events {
    /// Goes back to `s` (a snapshot of this queue): the queue only grows between drains, so
    /// it is cut back to `s`'s length when it still starts with it, and copied otherwise.
    pub(crate) fn restore_from(&mut self, s: &Events) {
        if self.queue.len() >= s.queue.len() && self.queue[..s.queue.len()] == s.queue[..] {
            self.queue.truncate(s.queue.len());
        } else {
            self.queue.clone_from(&s.queue);
        }
        self.recording = s.recording;
        self.stats.clone_from(&s.stats);
        self.smm_entered_at = s.smm_entered_at;
        self.debugcon_line.clone_from(&s.debugcon_line);
    }

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

    /// Collects a byte the guest wrote to debugcon at `icount`; a newline (or a full
    /// [`DEBUGCON_LINE_MAX`]-byte line) queues a [`MachineEvent::DebugconLine`]. Does nothing
    /// unless recording.
    pub fn debugcon_byte(&mut self, b: u8, icount: u64, in_smm: bool) {
        if !self.recording {
            return;
        }
        if b != b'\n' {
            self.debugcon_line.push(b);
        }
        if b == b'\n' || self.debugcon_line.len() >= DEBUGCON_LINE_MAX {
            let line = std::mem::take(&mut self.debugcon_line);
            let text = String::from_utf8_lossy(&line).trim_end_matches('\r').to_string();
            self.queue.push(MachineEvent::DebugconLine { text, icount, in_smm });
        }
    }

    /// When the SMM stay in progress began (guest ticks), or None outside SMM.
    pub fn smm_entered_at(&self) -> Option<u64> {
        self.smm_entered_at
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
    fn debugcon_bytes_become_lines() {
        let mut ev = Events::default();
        for b in b"smm: hi\nab" {
            ev.debugcon_byte(*b, 7, true);
        }
        assert_eq!(ev.drain(), vec![MachineEvent::DebugconLine { text: "smm: hi".into(), icount: 7, in_smm: true }]);
        for _ in 0..DEBUGCON_LINE_MAX {
            ev.debugcon_byte(b'x', 9, false);
        }
        let q = ev.drain();
        assert!(matches!(&q[..], [MachineEvent::DebugconLine { text, in_smm: false, .. }] if text.len() == DEBUGCON_LINE_MAX && text.starts_with("abx")));
        let mut off = Events { recording: false, ..Default::default() };
        off.debugcon_byte(b'\n', 1, false);
        assert!(off.queued().is_empty());
    }

    #[test]
    fn not_recording_still_counts() {
        let mut ev = Events { recording: false, ..Default::default() };
        ev.push(MachineEvent::SmiRaised { cause: SmiCause::Ipi, icount: 1 });
        assert!(ev.queued().is_empty());
        assert_eq!(ev.stats.smis_raised, 1);
    }
}
