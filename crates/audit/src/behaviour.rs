//! Behaviour checks: after the hand-off the auditor raises every SW SMI (0x00-0xFF) with
//! chipsec-like register patterns and watches what the handler does through the board's SMM
//! access observer.
//!
//! The SMIs are raised through the machine's host API ([`Machine::raise_sw_smi`]: a stub
//! `OUT 0xB2, AL; HLT` the machine runs with the pattern in the registers, until the CPU is
//! back from SMM).
//!
//! SMM_CODE_CHK_EN is cleared while the checks run (and restored after): with it, a call-out
//! is a machine check that ends the run; without it the observer sees the fetch. The
//! configuration check reports the mitigation on its own.

use crate::report::{SmiContext, Status, Verdict};
use crate::rules;
use cpu::regs::{RBX, RCX, RDI, RSI};
use machine::board::observer::{SmmAccess, SmmAccessKind};
use machine::host::{SmiRegisters, SwSmiOutcome};
use machine::Machine;
use std::collections::{BTreeMap, BTreeSet};

/// The auditor's buffer (chipsec's smm_ptr allocates one below 4 GiB).
pub const BUFFER: u64 = 0x30_0000;
/// Size of the auditor's buffer.
pub const BUFFER_LEN: u64 = 0x1000;
/// The low-memory pointer.
pub const LOW: u64 = 0x1000;
/// What the registers that carry no pointer hold.
pub const FILL: u64 = 0x5a5a_5a5a_5a5a_5a5a;
/// Two reads of one byte closer than this many SMM accesses are one copy (a memcpy may load
/// overlapping chunks), not a double fetch.
pub const DOUBLE_FETCH_GAP: u64 = 16;
/// Instructions one SMI may take before the auditor calls it a hang.
const SMI_BUDGET: u64 = 50_000_000;

/// A register pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pattern {
    /// Its name in findings ("control", "buffer", "smram"...).
    pub name: &'static str,
    /// The pointer in RBX, RCX, RSI and RDI (None: all [`FILL`]).
    pub ptr: Option<u64>,
    /// How many bytes from `ptr` count as passed.
    pub window: u64,
    /// Whether `ptr` points into SMRAM (or runs into it).
    pub into_smram: bool,
    /// Whether the auditor writes a communication header (GUID, MessageLength 0x20) at `ptr`.
    pub header: bool,
}

/// The patterns for SMRAM `smram` (the largest decoded range).
pub fn patterns(smram: Option<(u64, u64)>) -> Vec<Pattern> {
    let mut p = vec![
        Pattern { name: "control", ptr: None, window: 0, into_smram: false, header: false },
        Pattern { name: "buffer", ptr: Some(BUFFER), window: BUFFER_LEN, into_smram: false, header: true },
        Pattern { name: "low-memory", ptr: Some(LOW), window: 0x1000, into_smram: false, header: false },
    ];
    if let Some((base, size)) = smram {
        p.push(Pattern { name: "smram", ptr: Some(base + size / 2 + 0x100), window: 0x100, into_smram: true, header: true });
        if base >= 0x10_0000 {
            p.push(Pattern { name: "straddle-smram", ptr: Some(base - 0x20), window: 0x40, into_smram: true, header: true });
        }
    }
    p
}

/// One finding before it becomes a verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The rule it breaks (see [`crate::rules`]).
    pub rule: &'static str,
    /// The addresses involved.
    pub addresses: Vec<u64>,
    /// The instruction behind the first one (see [`SmmAccess::rip`]; 0 unknown).
    pub rip: u64,
}

fn in_window(p: &Pattern, addr: u64) -> bool {
    p.ptr.is_some_and(|s| addr >= s && addr < s.saturating_add(p.window))
}

/// What one SMI's accesses show, given the control run's SMRAM writes for the same command and
/// the firmware's own areas SMM writes by design (`by_design`, see [`crate::uefi`]).
pub fn analyze(p: &Pattern, acc: &[SmmAccess], control_smram: &BTreeSet<u64>, by_design: &[std::ops::Range<u64>]) -> Vec<Finding> {
    let mut out: BTreeMap<&'static str, (Vec<u64>, u64)> = BTreeMap::new();
    let mut add = |rule: &'static str, a: u64, rip: u64| {
        let v = out.entry(rule).or_insert_with(|| (Vec::new(), rip));
        if v.0.len() < 4 && !v.0.contains(&a) {
            v.0.push(a);
        }
    };
    for (b, rip) in rereads(p, acc, DOUBLE_FETCH_GAP) {
        add(rules::DOUBLE_FETCH, b, rip);
    }
    for a in acc {
        match (a.kind, a.smram) {
            (SmmAccessKind::Fetch, false) => add(rules::CALLOUT, a.addr, a.rip),
            (SmmAccessKind::Fetch, true) => {}
            (kind, true) => {
                if p.into_smram && in_window(p, a.addr) && !control_smram.contains(&a.addr) {
                    if p.name == "straddle-smram" {
                        add(rules::COMM_OVERLAP, a.addr, a.rip);
                    } else if kind == SmmAccessKind::Write {
                        add(rules::SMRAM_POINTER, a.addr, a.rip);
                    }
                }
            }
            (SmmAccessKind::Write, false) => {
                if !in_window(p, a.addr) && !by_design.iter().any(|r| r.contains(&a.addr)) {
                    add(rules::UNPASSED_WRITE, a.addr, a.rip);
                }
            }
            (SmmAccessKind::Read, false) => {}
        }
    }
    out.into_iter().map(|(rule, (addresses, rip))| Finding { rule, addresses, rip }).collect()
}

/// The bytes of `p`'s window (outside SMRAM) SMM read again more than `min_gap` accesses after
/// it last read them, each with the instruction of the read again, in the order read.
pub fn rereads(p: &Pattern, acc: &[SmmAccess], min_gap: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    if p.into_smram {
        return out;
    }
    let mut reads: BTreeMap<u64, u64> = BTreeMap::new();
    for a in acc.iter().filter(|a| a.kind == SmmAccessKind::Read && !a.smram && in_window(p, a.addr)) {
        for b in a.addr..a.addr + a.size.max(1) as u64 {
            if let Some(&prev) = reads.get(&b) {
                if a.seq.saturating_sub(prev) > min_gap {
                    out.push((b, a.rip));
                }
            }
            reads.insert(b, a.seq);
        }
    }
    out
}

/// What a staged race ([`machine::Machine::stage_race_write`]) did to an SMI: SMRAM bytes it
/// wrote that the same SMI unraced did not, or a fault the unraced one did not have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RaceEffect {
    /// SMRAM bytes written only when raced.
    Wrote {
        /// How many.
        bytes: usize,
        /// The lowest.
        lo: u64,
        /// The highest.
        hi: u64,
    },
    /// The raced SMI did not come back.
    Fault(String),
}

impl RaceEffect {
    /// `before` the unraced SMI's accesses, `raced` the raced one's, `fault` why it did not
    /// come back. None: the race changed nothing that matters.
    pub fn of(before: &[SmmAccess], raced: &[SmmAccess], fault: Option<String>) -> Option<RaceEffect> {
        let written = |acc: &[SmmAccess]| -> BTreeSet<u64> { acc.iter().filter(|a| a.smram && a.kind == SmmAccessKind::Write).flat_map(|a| a.addr..a.addr + u64::from(a.size)).collect() };
        let extra: Vec<u64> = written(raced).difference(&written(before)).copied().collect();
        match (extra.first(), extra.last(), fault) {
            (Some(&lo), Some(&hi), _) => Some(RaceEffect::Wrote { bytes: extra.len(), lo, hi }),
            (_, _, Some(why)) => Some(RaceEffect::Fault(why)),
            _ => None,
        }
    }

    /// The proof in words, after "with the byte set to X right after SMM's first read of it,".
    pub fn describe(&self) -> String {
        match self {
            RaceEffect::Wrote { bytes, lo, hi } => format!("the handler wrote {bytes} more SMRAM bytes ({lo:#x}-{hi:#x})"),
            RaceEffect::Fault(why) => format!("the handler did not return ({why})"),
        }
    }
}

/// How one SMI went.
enum Outcome {
    /// The CPU entered SMM and came back to the stub's HLT.
    Returned(Vec<SmmAccess>),
    /// No SMI reached SMM (the command does not raise one, or SMIs are off).
    NoSmi,
    /// The machine died or hung.
    Fault(String),
}

fn raise(m: &mut Machine, cmd: u8, p: &Pattern) -> Outcome {
    let mut regs: SmiRegisters = [FILL; 16];
    regs[cpu::regs::RAX] = 0;
    if let Some(ptr) = p.ptr {
        for r in [RBX, RCX, RSI, RDI] {
            regs[r] = ptr;
        }
    }
    m.take_smm_accesses();
    let r = m.raise_sw_smi(cmd, 0, &regs, SMI_BUDGET);
    let acc = m.take_smm_accesses();
    match r {
        SwSmiOutcome::Returned { .. } => Outcome::Returned(acc),
        SwSmiOutcome::NoSmi => Outcome::NoSmi,
        SwSmiOutcome::Fault(why) => Outcome::Fault(why),
    }
}

/// Writes the pattern's buffer: a communication header (GUID of 0x11 bytes, MessageLength
/// 0x20) at the pointer, the rest of the auditor's buffer filled with 0x11 as chipsec does.
fn prepare_buffer(m: &mut Machine, p: &Pattern) {
    let Some(ptr) = p.ptr else { return };
    if !p.header || p.name == "smram" {
        return;
    }
    if p.name == "buffer" {
        m.write_phys(ptr, &vec![0x11u8; BUFFER_LEN as usize]);
    }
    let mut header = vec![0x11u8; 16];
    header.extend_from_slice(&0x20u64.to_le_bytes());
    m.write_phys(ptr, &header);
}

/// The result of the sweep.
pub struct Sweep {
    /// The behaviour verdicts.
    pub verdicts: Vec<Verdict>,
    /// SW SMIs raised.
    pub smis: u64,
    /// Why some checks could not run, or how many SW SMI values reached SMM.
    pub notes: Vec<String>,
}

/// Raises SW SMIs 0x00-0xFF with every pattern.
pub fn sweep(m: &mut Machine, smram: Option<(u64, u64)>) -> Sweep {
    let pats = patterns(smram);
    let areas = crate::uefi::firmware_areas(m, &crate::dump::ranges(m));
    let by_design: Vec<std::ops::Range<u64>> = areas.iter().map(|a| a.0.clone()).collect();
    let mut verdicts: Vec<Verdict> = Vec::new();
    // (rule, where) -> the finding, its first pattern and the commands that showed it. "Where"
    // is the offset from the passed pointer when the address is in the passed window (one
    // bug seen through several patterns is one finding), the address otherwise.
    let mut found: BTreeMap<(&'static str, u64), (Finding, Pattern, Vec<u8>)> = BTreeMap::new();
    let mut notes: Vec<String> = areas.iter().map(|(_, what)| format!("SMM writes {what} on every SMI by design; those writes are not findings")).collect();
    let mut smis = 0u64;
    let code_check = m.set_smm_code_check(false);
    if m.board.smm_observer().is_some() {
        m.observe_smm(true);
    } else {
        notes.push("behaviour checks need the pc or q35 machine".into());
        return Sweep { verdicts, smis, notes };
    }
    let mut reached = 0u32;
    'sweep: for cmd in 0..=255u8 {
        let mut control_smram = BTreeSet::new();
        for p in &pats {
            prepare_buffer(m, p);
            match raise(m, cmd, p) {
                Outcome::NoSmi => break,
                Outcome::Fault(why) => {
                    verdicts.push(Verdict {
                        rule: rules::HANDLER_FAULT,
                        status: Status::Fail,
                        message: format!("SW SMI {cmd:#04x} with pattern {}: {why}; the sweep stopped here", p.name),
                        registers: vec![],
                        smi: Some(SmiContext { commands: vec![cmd], pattern: p.name, addresses: p.ptr.into_iter().collect(), module: None }),
                    });
                    break 'sweep;
                }
                Outcome::Returned(acc) => {
                    smis += 1;
                    if p.ptr.is_none() {
                        control_smram = acc.iter().filter(|a| a.smram && a.kind != SmmAccessKind::Fetch).flat_map(|a| a.addr..a.addr + a.size as u64).collect();
                    }
                    if p.name == pats[0].name {
                        reached += 1;
                    }
                    for f in analyze(p, &acc, &control_smram, &by_design) {
                        let a0 = f.addresses.first().copied().unwrap_or(0);
                        let at = match p.ptr {
                            Some(ptr) if in_window(p, a0) => a0 - ptr,
                            _ => a0,
                        };
                        let e = found.entry((f.rule, at)).or_insert_with(|| (f.clone(), *p, Vec::new()));
                        if !e.2.contains(&cmd) {
                            e.2.push(cmd);
                        }
                        for a in f.addresses {
                            if e.0.addresses.len() < 4 && !e.0.addresses.contains(&a) {
                                e.0.addresses.push(a);
                            }
                        }
                    }
                }
            }
        }
    }
    let mut behaviour: Vec<Verdict> = found.into_values().map(|(f, p, cmds)| finding_verdict(&f, &cmds, &p)).collect();
    behaviour.sort_by(|a, b| a.rule.cmp(b.rule));
    behaviour.extend(verdicts);
    let verdicts = behaviour;
    m.observe_smm(false);
    m.set_smm_code_check(code_check);
    if reached == 0 {
        notes.push("no SW SMI reached SMM (APMC_EN or GBL_SMI_EN off?): the behaviour checks saw nothing".into());
    } else {
        notes.push(format!("{reached} of 256 SW SMI values reached SMM"));
    }
    Sweep { verdicts, smis, notes }
}

/// "0x00-0x0f, 0x12" for a sorted list of commands.
pub fn command_list(cmds: &[u8]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < cmds.len() {
        let mut j = i;
        while j + 1 < cmds.len() && cmds[j + 1] == cmds[j].wrapping_add(1) && cmds[j] != 0xff {
            j += 1;
        }
        parts.push(if j == i { format!("{:#04x}", cmds[i]) } else { format!("{:#04x}-{:#04x}", cmds[i], cmds[j]) });
        i = j + 1;
    }
    parts.join(", ")
}

fn finding_verdict(f: &Finding, cmds: &[u8], p: &Pattern) -> Verdict {
    let a0 = f.addresses.first().copied().unwrap_or(0);
    let what = match f.rule {
        rules::CALLOUT => format!("SMM fetched code outside SMRAM at {a0:#x} (call-out)"),
        rules::SMRAM_POINTER => format!("SMM wrote SMRAM at {a0:#x} through the pointer passed in RBX/RCX/RSI/RDI ({:#x})", p.ptr.unwrap_or(0)),
        rules::UNPASSED_WRITE => format!("SMM wrote {a0:#x}, outside SMRAM and outside anything the caller passed"),
        rules::DOUBLE_FETCH => format!("SMM read the caller's buffer byte at {a0:#x} twice (double fetch / TOCTOU)"),
        rules::COMM_OVERLAP => format!("SMM accessed {a0:#x}, the part inside SMRAM of a buffer passed at {:#x} that runs into SMRAM", p.ptr.unwrap_or(0)),
        _ => format!("{} at {a0:#x}", f.rule),
    };
    Verdict {
        rule: f.rule,
        status: Status::Fail,
        message: format!("SW SMI {} ({} value{}), pattern {}: {what}", command_list(cmds), cmds.len(), if cmds.len() == 1 { "" } else { "s" }, p.name),
        registers: vec![],
        smi: Some(SmiContext { commands: cmds.to_vec(), pattern: p.name, addresses: f.addresses.clone(), module: None }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(seq: u64, kind: SmmAccessKind, addr: u64, size: u8, smram: bool) -> SmmAccess {
        SmmAccess { seq, kind, addr, size, smram, rip: 0 }
    }

    fn pat(name: &str) -> Pattern {
        *patterns(Some((0x7f0_0000, 0x10_0000))).iter().find(|p| p.name == name).unwrap()
    }

    #[test]
    fn command_lists_compress_runs() {
        assert_eq!(command_list(&[0, 1, 2, 4, 0xfe, 0xff]), "0x00-0x02, 0x04, 0xfe-0xff");
        assert_eq!(command_list(&[0x10]), "0x10");
    }

    #[test]
    fn callouts_are_fetches_outside_smram() {
        let a = [acc(0, SmmAccessKind::Fetch, 0x7f0_0000, 1, true), acc(1, SmmAccessKind::Fetch, 0x10_0000, 1, false)];
        let f = analyze(&pat("control"), &a, &BTreeSet::new(), &[]);
        assert_eq!(f, vec![Finding { rule: rules::CALLOUT, addresses: vec![0x10_0000], rip: 0 }]);
    }

    #[test]
    fn smram_writes_through_the_pointer_unless_the_control_run_made_them() {
        let p = pat("smram");
        let ptr = p.ptr.unwrap();
        let a = [acc(0, SmmAccessKind::Write, ptr, 8, true), acc(1, SmmAccessKind::Write, 0x7f7_0000, 8, true)];
        let f = analyze(&p, &a, &BTreeSet::new(), &[]);
        assert_eq!(f, vec![Finding { rule: rules::SMRAM_POINTER, addresses: vec![ptr], rip: 0 }]);
        let control: BTreeSet<u64> = [ptr].into();
        assert!(analyze(&p, &a, &control, &[]).is_empty());
    }

    #[test]
    fn writes_into_the_callers_buffer_are_legal_elsewhere_not() {
        let p = pat("buffer");
        let a = [acc(0, SmmAccessKind::Write, BUFFER + 16, 8, false), acc(1, SmmAccessKind::Write, 0x50_0000, 4, false)];
        assert_eq!(analyze(&p, &a, &BTreeSet::new(), &[]), vec![Finding { rule: rules::UNPASSED_WRITE, addresses: vec![0x50_0000], rip: 0 }]);
    }

    #[test]
    fn writes_to_the_firmwares_own_areas_are_by_design() {
        let p = pat("control");
        let a = [acc(0, SmmAccessKind::Write, 0xe6d_6169, 1, false)];
        assert_eq!(analyze(&p, &a, &BTreeSet::new(), &[]).len(), 1);
        let smmc = std::ops::Range { start: 0xe6d_6140, end: 0xe6d_61a8 };
        assert!(analyze(&p, &a, &BTreeSet::new(), std::slice::from_ref(&smmc)).is_empty());
    }

    #[test]
    fn double_fetch_needs_distance() {
        let p = pat("buffer");
        let copy = [acc(0, SmmAccessKind::Read, BUFFER, 16, false), acc(1, SmmAccessKind::Read, BUFFER + 8, 16, false)];
        assert!(analyze(&p, &copy, &BTreeSet::new(), &[]).is_empty(), "overlapping loads of one copy");
        let twice = [acc(0, SmmAccessKind::Read, BUFFER + 16, 8, false), acc(100, SmmAccessKind::Read, BUFFER + 16, 8, false)];
        let f = analyze(&p, &twice, &BTreeSet::new(), &[]);
        assert_eq!(f[0].rule, rules::DOUBLE_FETCH);
        assert_eq!(f[0].addresses[0], BUFFER + 16);
    }

    #[test]
    fn straddling_buffer_accesses_inside_smram() {
        let p = pat("straddle-smram");
        let a = [acc(0, SmmAccessKind::Read, 0x7f0_0000 - 0x20, 8, false), acc(5, SmmAccessKind::Read, 0x7f0_0008, 8, true)];
        assert_eq!(analyze(&p, &a, &BTreeSet::new(), &[]), vec![Finding { rule: rules::COMM_OVERLAP, addresses: vec![0x7f0_0008], rip: 0 }]);
    }
}
