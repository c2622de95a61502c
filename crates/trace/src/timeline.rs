//! The SMI timeline: [`Timeline`] folds the machine event stream into one [`SmiRecord`] per
//! SMM entry (when SMI# rose, when the CPU entered SMM, SMBASE, the handler's debugcon lines,
//! when RSM returned and how many instructions the handler ran), and formats each as one line.

use machine::events::MachineEvent;
use machine::smi::SmiCause;
use machine::ShutdownReason;

/// The SMBASE every CPU starts with; an SMI from any other one runs a relocated handler.
const DEFAULT_SMBASE: u32 = 0x30000;

/// How an SMI ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// RSM returned to the interrupted program.
    Resumed,
    /// RSM found an invalid saved state and shut the CPU down (a
    /// [`ShutdownReason::RsmCheck`]).
    Failed(ShutdownReason),
    /// The run ended while the CPU was in SMM.
    Unfinished,
}

/// One SMM entry and what happened until RSM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmiRecord {
    /// 1 for the first SMI of the run.
    pub index: u64,
    /// The CPU that took it (smmlab emulates one CPU: 0).
    pub cpu: u32,
    /// The SMI the CPU acknowledged (None: unknown).
    pub cause: Option<SmiCause>,
    /// Guest time (ticks) at which SMI# rose for this SMI (the entry time if no source was seen).
    pub raised: u64,
    /// Guest time (ticks) of SMM entry.
    pub entered: u64,
    /// Guest time (ticks) of RSM, of the failed RSM, or of the end of the run.
    pub left: u64,
    /// SMBASE at entry.
    pub smbase: u32,
    /// SMBASE after RSM, when RSM returned.
    pub smbase_after: Option<u32>,
    /// Handler entry point (CS selector and RIP).
    pub cs: u16,
    /// Handler entry RIP.
    pub rip: u64,
    /// Instructions retired in SMM, including RSM (0 if unfinished).
    pub smm_instructions: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Lines the handler wrote to debugcon.
    pub log: Vec<String>,
    /// Other sources that raised SMI# while this SMI was pending (or while the previous one
    /// ran): SMI# is one wire, so one SMM entry serves them all.
    pub merged: Vec<SmiCause>,
    /// Whether SMRAM was already locked (D_LCK) at entry: the firmware's boot phase was over.
    pub after_lock: bool,
}

impl SmiRecord {
    /// The source name ("apm", "periodic", "io-trap", ..., "unknown").
    pub fn source(&self) -> &'static str {
        self.cause.map_or("unknown", |c| c.source())
    }

    /// What selects the handler: the source, with the APM command or the trapped port.
    pub fn handler(&self) -> String {
        match self.cause {
            Some(SmiCause::Apm { cmd, .. }) => format!("apm {cmd:#04x}"),
            Some(SmiCause::IoTrap { port, write }) => format!("io-trap {port:#06x} {}", if write { "out" } else { "in" }),
            _ => self.source().to_string(),
        }
    }

    /// A short label: [`SmiRecord::handler`], then any sources merged into this SMI.
    pub fn label(&self) -> String {
        let mut l = self.handler();
        for c in &self.merged {
            l.push('+');
            l.push_str(c.source());
        }
        l
    }

    /// The APM command value, for an APM SMI.
    pub fn apm_command(&self) -> Option<u8> {
        match self.cause {
            Some(SmiCause::Apm { cmd, .. }) => Some(cmd),
            _ => None,
        }
    }

    /// Time in SMM in ticks.
    pub fn ticks(&self) -> u64 {
        self.left.saturating_sub(self.entered)
    }

    /// Whether the handler finished (RSM, successful or not).
    pub fn finished(&self) -> bool {
        self.outcome != Outcome::Unfinished
    }
}

/// Guest ticks to nanoseconds at `ips` instructions per second (0 is treated as 1).
pub fn ns(ticks: u64, ips: u64) -> u64 {
    u64::try_from(u128::from(ticks) * 1_000_000_000 / u128::from(ips.max(1))).unwrap_or(u64::MAX)
}

/// What the caller may print after feeding one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// The SMI at this position of [`Timeline::records`] finished.
    Smi(usize),
    /// The guest wrote this line to debugcon outside SMM.
    Debugcon(String),
    /// Something the platform saw that the user should see: the note at this position of
    /// [`Timeline::notes`] (power-off, injected errors, thermal limits, SMRAM attacks).
    Note(usize),
}

/// A platform event shown between the SMIs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Guest time (ticks).
    pub at: u64,
    /// Whether it is a security alert (an attack on SMRAM or a refused one).
    pub alert: bool,
    /// What happened.
    pub text: String,
}

/// Builds [`SmiRecord`]s from machine events.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    ips: u64,
    records: Vec<SmiRecord>,
    open: Option<SmiRecord>,
    /// When SMI# rose for the SMI not yet taken.
    pending_since: Option<u64>,
    /// The sources raised since the last SMM entry.
    pending_causes: Vec<SmiCause>,
    locked_at: Option<u64>,
    /// Whether SMM is in service: an SMI ran with a relocated SMBASE (see `feed`).
    in_service: bool,
    /// SMRAM pages written from outside SMM during set-up (before SMM was in service or
    /// locked), and of them how many SMM ran code from.
    set_up_writes: (u64, u64),
    /// The 4 KiB pages of those writes.
    set_up_pages: std::collections::BTreeSet<u64>,
    last: u64,
    notes: Vec<Note>,
    sensors: Vec<Reading>,
}

/// The hardware monitor's readings from a time on (see [`MachineEvent::Sensors`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    /// Guest time (ticks).
    pub at: u64,
    /// CPU temperature, whole degrees C.
    pub temp_c: u8,
    /// Fan duty, percent.
    pub fan_duty: u8,
    /// Fan tachometer, rpm.
    pub fan_rpm: u16,
}

impl Timeline {
    /// An empty timeline for a clock at `ips` instructions per second.
    pub fn new(ips: u64) -> Self {
        Timeline { ips: ips.max(1), ..Default::default() }
    }

    /// The clock rate.
    pub fn ips(&self) -> u64 {
        self.ips
    }

    /// Finished SMIs, in order (plus the unfinished one after [`Timeline::finish`]).
    pub fn records(&self) -> &[SmiRecord] {
        &self.records
    }

    /// The hardware monitor's readings, in order (empty without the built-in platform).
    pub fn sensors(&self) -> &[Reading] {
        &self.sensors
    }

    /// The platform notes, in order.
    pub fn notes(&self) -> &[Note] {
        &self.notes
    }

    fn note(&mut self, at: u64, alert: bool, text: String) -> Option<Line> {
        self.seen(at);
        self.notes.push(Note { at, alert, text });
        Some(Line::Note(self.notes.len() - 1))
    }

    /// One line for a note: its guest time, then the text (alerts marked `!!`).
    pub fn format_note(&self, n: &Note) -> String {
        let at = ns(n.at, self.ips);
        format!("[{:>4}.{:06} ms] {} {}", at / 1_000_000, at % 1_000_000, if n.alert { "!!" } else { "--" }, n.text)
    }

    /// When SMRAM was locked (D_LCK), in ticks.
    pub fn locked_at(&self) -> Option<u64> {
        self.locked_at
    }

    /// The latest guest time seen, in ticks.
    pub fn last_time(&self) -> u64 {
        self.last
    }

    /// Takes one event; returns what became printable.
    pub fn feed(&mut self, e: &MachineEvent) -> Option<Line> {
        match e {
            MachineEvent::SmiRaised { cause, icount } => {
                self.seen(*icount);
                self.pending_since.get_or_insert(*icount);
                self.pending_causes.push(*cause);
                None
            }
            MachineEvent::SmmEntered { cause, smbase, cs, rip, icount, .. } => {
                self.seen(*icount);
                self.in_service |= *smbase != DEFAULT_SMBASE;
                // An entry without RSM in between (cannot happen on real hardware): close it.
                let closed = self.close(*icount, Outcome::Unfinished, None, 0);
                let raised = self.pending_since.take().unwrap_or(*icount).min(*icount);
                let mut merged: Vec<SmiCause> = Vec::new();
                let mut taken = *cause;
                for c in std::mem::take(&mut self.pending_causes) {
                    if taken == Some(c) {
                        taken = None; // the acknowledged one itself, once
                    } else if !merged.contains(&c) && Some(c) != *cause {
                        merged.push(c);
                    }
                }
                self.open = Some(SmiRecord {
                    index: self.records.len() as u64 + 1,
                    cpu: 0,
                    cause: *cause,
                    raised,
                    entered: *icount,
                    left: *icount,
                    smbase: *smbase,
                    smbase_after: None,
                    cs: *cs,
                    rip: *rip,
                    smm_instructions: 0,
                    outcome: Outcome::Unfinished,
                    log: Vec::new(),
                    merged,
                    after_lock: self.locked_at.is_some(),
                });
                closed
            }
            MachineEvent::RsmCompleted { smbase, smm_instructions, icount, .. } => {
                self.seen(*icount);
                self.close(*icount, Outcome::Resumed, Some(*smbase), *smm_instructions)
            }
            MachineEvent::RsmFailed { reason, icount } => {
                self.seen(*icount);
                self.close(*icount, Outcome::Failed(reason.clone()), None, 0)
            }
            MachineEvent::SmramLocked { icount } => {
                self.seen(*icount);
                self.locked_at.get_or_insert(*icount);
                None
            }
            MachineEvent::DebugconLine { text, icount, in_smm } => {
                self.seen(*icount);
                match self.open.as_mut() {
                    Some(r) if *in_smm => {
                        r.log.push(text.clone());
                        None
                    }
                    _ => Some(Line::Debugcon(text.clone())),
                }
            }
            MachineEvent::SmramConfigChanged { old, new, icount } => {
                // Once the firmware has locked SMRAM, any change is news; before, it is set-up.
                // Opening TSEG (T_EN cleared) before the lock is how UEFI's SMM IPL loads the
                // SMM core into SMRAM; once locked it cannot happen on ICH9/Q35.
                let opened = old.t_en && !new.t_en;
                // Locking SMRAM at the default SMBASE (QEMU's q35) adds SMRAM, whenever it comes.
                if !old.default_smbase && new.default_smbase && (machine::smram::SmramConfig { default_smbase: true, ..*old }) == *new {
                    return self.note(*icount, false, "SMRAM at the default SMBASE locked (0x30000-0x4FFFF)".to_string());
                }
                if let Some(what) = match (self.locked_at.is_some(), opened) {
                    (true, true) => Some("TSEG disabled (ESMRAMC.T_EN cleared): TSEG is ordinary memory now"),
                    (true, false) => Some("SMRAM decoding changed"),
                    (false, true) => Some("TSEG opened (ESMRAMC.T_EN cleared) before SMRAM was locked"),
                    (false, false) => None,
                } {
                    return self.note(*icount, self.locked_at.is_some(), what.to_string());
                }
                self.seen(*icount);
                None
            }
            MachineEvent::PamChanged { icount, .. } => {
                self.seen(*icount);
                None
            }
            MachineEvent::PowerOff { from_smm, icount } => {
                let who = if *from_smm { "by the SMI handler" } else { "by the OS" };
                self.note(*icount, false, format!("power off: S5 requested {who}"))
            }
            MachineEvent::MemoryErrorInjected { addr, uncorrectable, icount } => {
                let kind = if *uncorrectable { "uncorrectable" } else { "correctable" };
                self.note(*icount, false, format!("ECC error injected: {kind} at {addr:#x}"))
            }
            MachineEvent::ThermalLimit { temp_c, crit, icount } => {
                let which = if *crit { "critical" } else { "high" };
                self.note(*icount, false, format!("hardware monitor: {temp_c} C reached the {which} limit, SMI# asserted"))
            }
            MachineEvent::SmramLockViolation { register, icount } => {
                self.note(*icount, true, format!("SMRAM lock violation: a write to {register} was refused (D_LCK is set)"))
            }
            // Firmware sets SMM up this way: edk2's PiSmmIpl opens TSEG and copies the SMM core
            // into it from outside SMM, before any SMI runs from a relocated SMBASE. Once SMM
            // is in service (an SMI ran with its SMBASE relocated) or SMRAM is locked, nobody
            // but an attacker writes SMRAM from outside: an alert. Set-up writes become one at
            // the end of a run in which SMRAM was never locked (`unlocked_verdict`).
            MachineEvent::SmramWrittenOutsideSmm { addr, icount } => {
                let set_up = self.locked_at.is_none() && !self.in_service;
                if set_up {
                    self.set_up_writes.0 += 1;
                    self.set_up_pages.insert(addr & !0xfff);
                }
                let when = if set_up { "TSEG open during firmware set-up, before SMM was in service" } else { "TSEG open to non-SMM code" };
                self.note(*icount, !set_up, format!("SMRAM written from outside SMM at {addr:#x} ({when})"))
            }
            MachineEvent::PflashWriteRefused { addr, unit, icount } => {
                let locked = self.locked_at.is_some();
                self.note(*icount, locked, format!("flash unit {unit} refused a write from outside SMM at {addr:#x} (secure flash: only SMM may program it)"))
            }
            MachineEvent::Sensors { temp_c, fan_duty, fan_rpm, icount } => {
                self.seen(*icount);
                self.sensors.push(Reading { at: *icount, temp_c: *temp_c, fan_duty: *fan_duty, fan_rpm: *fan_rpm });
                None
            }
            MachineEvent::SmmRanCodeWrittenOutsideSmm { addr, icount } => {
                // What counts is when the page was written: the code the SMM IPL put there
                // during set-up runs for the whole boot.
                let set_up = self.set_up_pages.contains(&(addr & !0xfff));
                self.set_up_writes.1 += u64::from(set_up);
                let what = if set_up { "written during firmware set-up (the SMM core's loader)" } else { "code injected into SMRAM" };
                self.note(*icount, !set_up, format!("SMM ran code from page {addr:#x}, which was written from outside SMM: {what}"))
            }
        }
    }

    /// The run ended at `end` ticks: an SMI still in progress becomes an unfinished record.
    pub fn finish(&mut self, end: u64) -> Option<Line> {
        self.seen(end);
        self.close(self.last, Outcome::Unfinished, None, 0)
    }

    /// After [`Timeline::finish`]: if SMRAM was never locked and was written from outside SMM,
    /// an alert saying so (nothing told those writes apart from an attacker's).
    pub fn unlocked_verdict(&mut self) -> Option<Line> {
        let (pages, code) = self.set_up_writes;
        if self.locked_at.is_some() || pages == 0 {
            return None;
        }
        let text = format!("SMRAM was never locked: {pages} pages of it were written from outside SMM during set-up, and SMM ran code from {code} of them; nothing tells those writes from an attacker's");
        self.note(self.last, true, text)
    }

    fn seen(&mut self, t: u64) {
        self.last = self.last.max(t);
    }

    fn close(&mut self, at: u64, outcome: Outcome, smbase_after: Option<u32>, instructions: u64) -> Option<Line> {
        let mut r = self.open.take()?;
        r.left = at.max(r.entered);
        r.outcome = outcome;
        r.smbase_after = smbase_after;
        r.smm_instructions = instructions;
        self.records.push(r);
        Some(Line::Smi(self.records.len() - 1))
    }

    /// One line for `r`: guest time of entry, index, label, SMBASE (with the new SMBASE when the
    /// handler relocated it), time in SMM in µs, SMM instructions, then the handler's debugcon
    /// lines (the first on the same line, the others indented below it).
    pub fn format(&self, r: &SmiRecord) -> String {
        let at = ns(r.entered, self.ips);
        let dur = ns(r.ticks(), self.ips);
        let smbase = match r.smbase_after {
            Some(b) if b != r.smbase => format!("{:#010x}->{:#010x}", r.smbase, b),
            _ => format!("{:#010x}", r.smbase),
        };
        let mut s = format!(
            "[{:>4}.{:06} ms] SMI {:>4} cpu{} {:<16} smbase {:<22} {:>6}.{:03} us {:>7} instr",
            at / 1_000_000,
            at % 1_000_000,
            r.index,
            r.cpu,
            r.label(),
            smbase,
            dur / 1000,
            dur % 1000,
            r.smm_instructions
        );
        match &r.outcome {
            Outcome::Resumed => {}
            Outcome::Failed(why) => s.push_str(&format!("  RSM FAILED: {why}")),
            Outcome::Unfinished => s.push_str("  (run ended in SMM)"),
        }
        if r.log.is_empty() && matches!((r.smbase_after, &r.outcome), (Some(b), Outcome::Resumed) if b != r.smbase) {
            s.push_str("  (SMBASE relocation)");
        }
        for (i, l) in r.log.iter().enumerate() {
            s.push_str(if i == 0 { "  " } else { "\n      " });
            s.push_str(l);
        }
        s
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use machine::RsmCheck;

    /// A relocation SMI (pin), a locked SMRAM, then two APM SMIs with handler output.
    pub(crate) fn sample() -> Vec<MachineEvent> {
        vec![
            MachineEvent::SmiRaised { cause: SmiCause::Pin, icount: 100 },
            MachineEvent::SmmEntered { cause: Some(SmiCause::Pin), smbase: 0x30000, cs: 0x3000, rip: 0x8000, mode: "real", icount: 101 },
            MachineEvent::DebugconLine { text: "smm: relocated".into(), icount: 150, in_smm: true },
            MachineEvent::RsmCompleted { smbase: 0x7f00_0000, rip: 0x10, mode: "long", smm_instructions: 80, icount: 201 },
            MachineEvent::DebugconLine { text: "os: hello".into(), icount: 300, in_smm: false },
            MachineEvent::SmramLocked { icount: 400 },
            MachineEvent::SmiRaised { cause: SmiCause::Apm { cmd: 1, data: 0 }, icount: 1000 },
            MachineEvent::SmmEntered { cause: Some(SmiCause::Apm { cmd: 1, data: 0 }), smbase: 0x7f00_0000, cs: 0, rip: 0x8000, mode: "real", icount: 1001 },
            MachineEvent::DebugconLine { text: "smm: sw 0x01 ping".into(), icount: 1100, in_smm: true },
            MachineEvent::RsmCompleted { smbase: 0x7f00_0000, rip: 0x20, mode: "long", smm_instructions: 50, icount: 1301 },
            MachineEvent::SmiRaised { cause: SmiCause::Apm { cmd: 0xe0, data: 0 }, icount: 2000 },
            MachineEvent::SmmEntered { cause: Some(SmiCause::Apm { cmd: 0xe0, data: 0 }), smbase: 0x7f00_0000, cs: 0, rip: 0x8000, mode: "real", icount: 2002 },
            MachineEvent::RsmCompleted { smbase: 0x7f00_0000, rip: 0x30, mode: "long", smm_instructions: 20, icount: 2102 },
        ]
    }

    pub(crate) fn built() -> Timeline {
        let mut t = Timeline::new(1_000_000_000);
        for e in sample() {
            t.feed(&e);
        }
        t.finish(5000);
        t
    }

    #[test]
    fn records_follow_entries_and_rsm() {
        let t = built();
        let r = t.records();
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].raised, r[0].entered, r[0].left, r[0].smm_instructions), (100, 101, 201, 80));
        assert_eq!(r[0].smbase_after, Some(0x7f00_0000));
        assert_eq!(r[0].log, vec!["smm: relocated".to_string()]);
        assert!(!r[0].after_lock && r[1].after_lock);
        assert_eq!(r[1].apm_command(), Some(1));
        assert_eq!(r[2].label(), "apm 0xe0");
        assert_eq!(t.locked_at(), Some(400));
    }

    #[test]
    fn debugcon_outside_smm_is_passed_through() {
        let mut t = Timeline::new(1);
        let out: Vec<_> = sample().iter().filter_map(|e| t.feed(e)).collect();
        assert_eq!(out, vec![Line::Smi(0), Line::Debugcon("os: hello".into()), Line::Smi(1), Line::Smi(2)]);
    }

    #[test]
    fn format_shows_time_label_smbase_duration_and_log() {
        let t = built();
        let s = t.format(&t.records()[0]);
        assert!(s.starts_with("[   0.000101 ms] SMI    1 cpu0 pin"), "{s}");
        assert!(s.contains("0x00030000->0x7f000000") && s.contains("0.100 us") && s.contains("80 instr"), "{s}");
        assert!(s.ends_with("  smm: relocated"), "{s}");
        assert!(t.format(&t.records()[1]).contains("apm 0x01"));
    }

    #[test]
    fn unfinished_and_failed_smis_are_kept() {
        let mut t = Timeline::new(1);
        t.feed(&MachineEvent::SmmEntered { cause: None, smbase: 0x30000, cs: 0, rip: 0, mode: "real", icount: 5 });
        let bad_cr0 = ShutdownReason::RsmCheck(RsmCheck::Cr0PgWithoutPe { cr0: 0x8000_0010 });
        t.feed(&MachineEvent::RsmFailed { reason: bad_cr0.clone(), icount: 9 });
        t.feed(&MachineEvent::SmmEntered { cause: None, smbase: 0x30000, cs: 0, rip: 0, mode: "real", icount: 10 });
        assert_eq!(t.finish(20), Some(Line::Smi(1)));
        assert_eq!(t.records()[0].outcome, Outcome::Failed(bad_cr0));
        assert_eq!((t.records()[1].outcome.clone(), t.records()[1].ticks()), (Outcome::Unfinished, 10));
        assert!(t.format(&t.records()[1]).contains("run ended in SMM"));
        assert_eq!(t.finish(30), None);
    }

    #[test]
    fn sources_raised_together_share_one_smi_and_its_label() {
        let mut t = Timeline::new(1);
        t.feed(&MachineEvent::SmiRaised { cause: SmiCause::BiosWrite, icount: 1 });
        t.feed(&MachineEvent::SmiRaised { cause: SmiCause::Usb, icount: 2 });
        t.feed(&MachineEvent::SmiRaised { cause: SmiCause::BiosWrite, icount: 3 });
        t.feed(&MachineEvent::SmmEntered { cause: Some(SmiCause::Usb), smbase: 0, cs: 0, rip: 0, mode: "real", icount: 4 });
        t.feed(&MachineEvent::RsmCompleted { smbase: 0, rip: 0, mode: "long", smm_instructions: 1, icount: 5 });
        t.feed(&MachineEvent::SmiRaised { cause: SmiCause::Usb, icount: 6 });
        t.feed(&MachineEvent::SmmEntered { cause: Some(SmiCause::Usb), smbase: 0, cs: 0, rip: 0, mode: "real", icount: 7 });
        let r = t.records();
        assert_eq!((r[0].label(), r[0].raised), ("usb+bios-write".to_string(), 1));
        t.finish(8);
        assert_eq!(t.records()[1].label(), "usb");
    }

    #[test]
    fn platform_events_become_notes_with_alerts() {
        let mut t = Timeline::new(1_000_000_000);
        assert_eq!(t.feed(&MachineEvent::SmramLockViolation { register: "ESMRAMC", icount: 2_000 }), Some(Line::Note(0)));
        assert_eq!(t.feed(&MachineEvent::PowerOff { from_smm: true, icount: 3_000 }), Some(Line::Note(1)));
        let n = t.notes();
        assert!(n[0].alert && !n[1].alert);
        assert_eq!(t.format_note(&n[0]), "[   0.002000 ms] !! SMRAM lock violation: a write to ESMRAMC was refused (D_LCK is set)");
        assert_eq!(t.format_note(&n[1]), "[   0.003000 ms] -- power off: S5 requested by the SMI handler");
        assert_eq!(t.last_time(), 3_000);
    }

    #[test]
    fn smram_writes_alert_once_smm_is_in_service_or_when_it_is_never_locked() {
        let set_up = |t: &mut Timeline| {
            t.feed(&MachineEvent::SmramWrittenOutsideSmm { addr: 0x7f0_0000, icount: 10 });
            t.feed(&MachineEvent::SmmEntered { cause: None, smbase: DEFAULT_SMBASE, cs: 0, rip: 0, mode: "real", icount: 12 });
            t.feed(&MachineEvent::RsmCompleted { smbase: 0x7f4_0000, rip: 0, mode: "real", smm_instructions: 1, icount: 13 });
            t.feed(&MachineEvent::SmmEntered { cause: None, smbase: 0x7f4_0000, cs: 0, rip: 0, mode: "real", icount: 20 });
            t.feed(&MachineEvent::SmmRanCodeWrittenOutsideSmm { addr: 0x7f0_0000, icount: 20 });
            t.feed(&MachineEvent::RsmCompleted { smbase: 0x7f4_0000, rip: 0, mode: "real", smm_instructions: 1, icount: 25 });
        };
        // Firmware set-up, then the lock: notes, and no verdict.
        let mut t = Timeline::new(1_000_000_000);
        set_up(&mut t);
        t.feed(&MachineEvent::SmramLocked { icount: 30 });
        t.finish(40);
        assert_eq!(t.unlocked_verdict(), None);
        assert!(t.notes().iter().all(|n| !n.alert), "{:?}", t.notes());
        // Code written during set-up and run after the lock is set-up too.
        t.feed(&MachineEvent::SmmRanCodeWrittenOutsideSmm { addr: 0x7f0_0010, icount: 35 });
        assert!(!t.notes().last().unwrap().alert);
        // Code nobody wrote during set-up is injected.
        t.feed(&MachineEvent::SmmRanCodeWrittenOutsideSmm { addr: 0x7f1_0000, icount: 36 });
        assert!(t.notes().last().unwrap().alert);
        // Unlocked, but SMM in service (an SMI ran from its relocated SMBASE): a write is an
        // alert at once.
        let mut t = Timeline::new(1_000_000_000);
        set_up(&mut t);
        t.feed(&MachineEvent::SmramWrittenOutsideSmm { addr: 0x7f1_0000, icount: 50 });
        assert!(t.notes().last().unwrap().alert);
        // Never locked: the end of the run says so.
        let mut t = Timeline::new(1_000_000_000);
        set_up(&mut t);
        t.finish(40);
        assert_eq!(t.unlocked_verdict(), Some(Line::Note(2)));
        let n = &t.notes()[2];
        assert!(n.alert);
        assert!(n.text.starts_with("SMRAM was never locked: 1 pages of it were written from outside SMM during set-up, and SMM ran code from 1 of them"), "{}", n.text);
    }

    #[test]
    fn events_out_of_order_do_not_panic() {
        let mut t = Timeline::new(0);
        t.feed(&MachineEvent::RsmCompleted { smbase: 0, rip: 0, mode: "real", smm_instructions: 1, icount: 0 });
        t.feed(&MachineEvent::SmiRaised { cause: SmiCause::Ipi, icount: u64::MAX });
        t.feed(&MachineEvent::SmmEntered { cause: Some(SmiCause::Ipi), smbase: 0, cs: 0, rip: 0, mode: "real", icount: 3 });
        t.feed(&MachineEvent::RsmCompleted { smbase: 0, rip: 0, mode: "real", smm_instructions: 1, icount: 1 });
        assert_eq!(t.records()[0].ticks(), 0);
        assert_eq!(ns(u64::MAX, 1), u64::MAX);
        let _ = t.format(&t.records()[0]);
    }
}
