//! The built-in firmware's SW SMI handlers as a campaign's [`Subject`]: the scenario's
//! machine is booted once to the hand-off (`audit::boot`, as `smmlab audit` boots it: every
//! lock set, the OS about to run), snapshotted, and every execution restores it, writes the
//! input, raises the SW SMI through the host API and runs to RSM or [`SMI_BUDGET`].
//!
//! The input: bytes 0-47 are RAX, RBX, RCX, RDX, RSI, RDI (as [`crate::sw_registers`]); the
//! rest is the attacker's buffer, written at [`BUFFER`] in OS memory before the SMI (the
//! dictionary holds its address, so a register can point at it). With every handler
//! (`handler` None) the SW SMI value is AL, the input's first byte.
//!
//! Oracles, as the audit's behaviour sweep over the SMI's accesses ([`judge`]).

use crate::campaign::{Execution, Subject};
use crate::{sw_registers, tamed, wild, Broken, Target};
use audit::behaviour::{analyze, Pattern};
use audit::rules;
use machine::board::observer::{RaceWrite, SmmAccess, SmmAccessKind};
use machine::host::{Snapshot, SwSmiOutcome};
use machine::Machine;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

/// Where the attacker's buffer goes (the audit's buffer, in OS memory).
pub const BUFFER: u64 = audit::behaviour::BUFFER;
/// The longest buffer.
pub const BUFFER_LEN: usize = audit::behaviour::BUFFER_LEN as usize;
/// Where the buffer starts in the input.
pub const REGISTERS: usize = 48;
/// Instructions one SMI may take before it is a hang (the firmware's handlers take a few
/// thousand).
pub const SMI_BUDGET: u64 = 2_000_000;
/// The virtual address of TSEG's first byte in the firmware's SMM page tables
/// (firmware/src/layout.rs `SMM_VA`), where its SMM image runs.
pub const SMM_VA: u64 = 0xffff_ffff_8000_0000;
/// How far past a register's value a write still goes through that pointer: the largest
/// reply the firmware writes (header and a whole message).
const PASSED: u64 = 24 + 0x1000;

/// Why the machine could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    /// The boot.
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    /// The boot ended before the hand-off.
    #[error("the built-in firmware did not reach the hand-off: {0}")]
    NoHandoff(String),
}

/// The scenario's machine at the hand-off, snapshotted.
pub struct FirmwareSubject {
    /// The machine.
    pub machine: Machine,
    snap: Snapshot,
    /// The handler's SW SMI value (None: every value, AL from the input).
    pub handler: Option<u8>,
    /// SMRAM (the largest range decoded at the hand-off).
    pub smram: Option<(u64, u64)>,
    by_design: Vec<Range<u64>>,
    /// SMRAM bytes written by each command's control SMI (an all-zero input).
    control: BTreeMap<u8, BTreeSet<u64>>,
    debugcon: usize,
    /// The debugcon text the last execution's SMI wrote (the firmware's handlers write one
    /// line each).
    pub said: String,
    settled: crate::confirm::Settled,
    /// The race the next raise stages ([`FirmwareSubject::raise_raced`]).
    race: Option<RaceWrite>,
}

impl FirmwareSubject {
    /// Boots scenario `scenario` of the built-in firmware on q35 with `model`.
    pub fn boot(scenario: &str, model: cpu::CpuModel, handler: Option<u8>) -> Result<Self, FirmwareError> {
        let o = audit::BootOptions { board: machine::BoardKind::Q35, model, rom: None, scenario: Some(scenario.to_string()), memory_mib: 128, max_instructions: 2_000_000_000, pflash: Vec::new(), pflash_secure: false };
        let booted = audit::boot::boot(&o)?;
        if !booted.marker {
            return Err(FirmwareError::NoHandoff(booted.stopped));
        }
        let mut m = booted.machine;
        let smram = audit::dump::largest(&m);
        let ranges = audit::dump::ranges(&m);
        let by_design = audit::uefi::firmware_areas(&mut m, &ranges).into_iter().map(|a| a.0).collect();
        // As the audit's sweep: a call-out is seen, not a machine check.
        m.set_smm_code_check(false);
        m.observe_smm(true);
        m.fuzz_mode(true);
        let debugcon = m.board.debugcon().output.len();
        let snap = m.snapshot();
        Ok(FirmwareSubject { machine: m, snap, handler, smram, by_design, control: BTreeMap::new(), debugcon, said: String::new(), settled: Default::default(), race: None })
    }

    /// Where `rip` is in the firmware's SMM image: it runs at [`SMM_VA`], which maps TSEG's
    /// first byte, the image's too (firmware/src/layout.rs).
    fn image_offset(&self, rip: u64) -> Option<u64> {
        let off = rip.checked_sub(SMM_VA)?;
        (off < self.smram.map_or(0, |s| s.1)).then_some(off)
    }

    /// The SW SMI value `input` raises.
    pub fn command(&self, input: &[u8]) -> u8 {
        self.handler.unwrap_or_else(|| input.first().copied().unwrap_or(0))
    }

    /// Runs `input` once from the snapshot: the outcome and the SMI's accesses.
    pub fn raise(&mut self, input: &[u8]) -> (SwSmiOutcome, Vec<SmmAccess>) {
        self.raise_with(input, &[], &mut |_| Ok(()))
    }

    /// [`FirmwareSubject::raise`] with `breakpoints` set (after the restore, which puts back
    /// the snapshot's none), calling `on_breakpoint` at each (see
    /// [`Machine::raise_sw_smi_with`]): how a debugger stops in the SMI.
    pub fn raise_with(&mut self, input: &[u8], breakpoints: &[u64], on_breakpoint: &mut dyn FnMut(&mut Machine) -> Result<(), String>) -> (SwSmiOutcome, Vec<SmmAccess>) {
        let m = &mut self.machine;
        // The snapshot is the machine's only one: restore cannot refuse.
        let _ = m.restore(&self.snap);
        if !breakpoints.is_empty() {
            m.set_breakpoints(breakpoints);
        }
        let race = self.race.take();
        let staged = race.is_some();
        if staged {
            m.stage_race_write(race);
        }
        m.board.debugcon().output.truncate(self.debugcon);
        let buffer = input.get(REGISTERS..).unwrap_or(&[]);
        if !buffer.is_empty() {
            m.write_phys(BUFFER, &buffer[..buffer.len().min(BUFFER_LEN)]);
        }
        let regs = sw_registers(input);
        let cmd = self.handler.unwrap_or((regs[cpu::regs::RAX] & 0xff) as u8);
        m.take_smm_accesses();
        let r = m.raise_sw_smi_with(cmd, 0, &regs, SMI_BUDGET, on_breakpoint);
        let acc = m.take_smm_accesses();
        if staged {
            m.stage_race_write(None);
        }
        let out = &m.board.debugcon().output;
        self.said = String::from_utf8_lossy(out.get(self.debugcon..).unwrap_or(&[])).into_owned();
        (r, acc)
    }

    /// [`FirmwareSubject::raise`] with `race` staged for the SMI
    /// ([`Machine::stage_race_write`]).
    pub fn raise_raced(&mut self, input: &[u8], race: Option<RaceWrite>) -> (SwSmiOutcome, Vec<SmmAccess>) {
        self.race = race;
        self.raise(input)
    }

    fn control(&mut self, cmd: u8) -> &BTreeSet<u64> {
        if !self.control.contains_key(&cmd) {
            let mut zero = vec![0u8; REGISTERS];
            zero[0] = cmd;
            // The control is a judgement, not coverage.
            let map = self.machine.cover_smm_edges(None);
            let (_, acc) = self.raise(&zero);
            self.machine.cover_smm_edges(map);
            let set = acc.iter().filter(|a| a.smram && a.kind == SmmAccessKind::Write).flat_map(|a| a.addr..a.addr + u64::from(a.size)).collect();
            self.control.insert(cmd, set);
        }
        &self.control[&cmd]
    }
}

/// The oracles over one SW SMI of the built-in firmware, the registers and buffer from
/// `input`, `control` the SMRAM bytes the same command's all-zero SMI wrote:
/// - SMM106: the SMI did not come back (a fault, a triple fault, a hang past the budget).
/// - SMM101: SMM fetched code outside SMRAM.
/// - SMM104: a byte of the attacker's buffer read twice, a candidate the subject races
///   ([`crate::confirm::confirm`]).
/// - SMM102: a write into SMRAM the control SMI did not make, within 0x100 bytes at or above
///   a register's value: a write through a pointer the caller passed.
/// - SMM103: a write outside SMRAM to memory no register points at (within the largest reply
///   the firmware writes) and not the firmware's own by design.
pub fn judge(input: &[u8], outcome: &SwSmiOutcome, acc: &[SmmAccess], control: &BTreeSet<u64>, smram: Option<(u64, u64)>, by_design: &[Range<u64>]) -> Vec<Broken> {
    let mut out = Vec::new();
    if let SwSmiOutcome::Fault(why) = outcome {
        out.push(Broken { rule: rules::HANDLER_FAULT, message: format!("the SMI did not come back: {why}"), key: 0, rip: None, written: None, reread: None });
    }
    let regs = sw_registers(input);
    let buffer_len = input.len().saturating_sub(REGISTERS).clamp(1, BUFFER_LEN) as u64;
    let p = Pattern { name: "fuzz", ptr: Some(BUFFER), window: buffer_len.max(24), into_smram: false, header: false };
    let passed = |a: u64, reach: u64| regs.iter().any(|&w| a >= w && a - w < reach);
    for f in analyze(&p, acc, control, by_design) {
        let a0 = f.addresses.first().copied().unwrap_or(0);
        match f.rule {
            rules::CALLOUT => out.push(Broken { rule: f.rule, message: format!("SMM fetched code outside SMRAM at {a0:#x} (call-out)"), key: a0, rip: Some(a0), written: None, reread: None }),
            rules::UNPASSED_WRITE if !f.addresses.iter().all(|&a| passed(a, PASSED)) => {
                out.push(Broken { rule: f.rule, message: format!("SMM wrote {a0:#x}, outside SMRAM and outside anything the caller passed"), key: f.rip, rip: Some(f.rip), written: None, reread: None });
            }
            _ => {}
        }
    }
    out.extend(crate::confirm::double_fetches(&p, acc, &|a| input.get(REGISTERS + (a - BUFFER) as usize).copied().unwrap_or(0), "buffer", BUFFER));
    let in_smram = |a: u64| smram.is_some_and(|(b, s)| a >= b && a < b + s);
    if let Some(a) = acc.iter().find(|a| a.smram && in_smram(a.addr) && a.kind == SmmAccessKind::Write && passed(a.addr, 0x100) && !control.contains(&a.addr)) {
        out.push(Broken { rule: rules::SMRAM_POINTER, message: format!("SMM wrote SMRAM at {:#x} through a pointer the caller passed (instruction at {:#x})", a.addr, a.rip), key: a.rip, rip: Some(a.rip), written: Some(a.addr), reread: None });
    }
    out
}

impl Subject for FirmwareSubject {
    fn machine(&mut self) -> &mut Machine {
        &mut self.machine
    }

    fn execute(&mut self, input: &[u8]) -> Execution {
        let cmd = self.command(input);
        self.control(cmd);
        let (outcome, acc) = self.raise(input);
        let mut broken = judge(input, &outcome, &acc, &self.control[&cmd], self.smram, &self.by_design);
        let instructions = match outcome {
            SwSmiOutcome::Returned { instructions, .. } => instructions,
            _ => 0,
        };
        if broken.is_empty() {
            return Execution { broken, wild_fault: false, instructions };
        }
        let faulted = matches!(outcome, SwSmiOutcome::Fault(_));
        let control = self.control[&cmd].clone();
        let aiming = |addr: u64| crate::aiming(input, (0..6).map(|r| r * 8), addr);
        let tame = (faulted && sw_registers(input).iter().any(|&w| wild(w))).then(|| tamed(&Target::Sw(cmd), input));
        let j = crate::confirm::Judged { input, acc: &acc, faulted, control: &control, aiming: &aiming, tame };
        let mut settled = std::mem::take(&mut self.settled);
        let wild_fault = crate::confirm::confirm(&mut broken, &j, &mut settled, &mut |i, race| crate::confirm::rerun(self, |s| s.raise_raced(i, race)));
        self.settled = settled;
        Execution { broken, wild_fault, instructions }
    }

    fn found(&mut self, rule: &'static str, key: u64) {
        self.settled.found(rule, key);
    }

    fn tokens(&self) -> Vec<Vec<u8>> {
        let mut words = vec![BUFFER, BUFFER + 0x10, audit::behaviour::LOW];
        if let Some((base, size)) = self.smram {
            words.extend([base, base + size / 2, base + size / 2 + 0x100, base + size - 8, base - 0x20]);
        }
        let mut t: Vec<Vec<u8>> = words.into_iter().chain(0..=16).map(|w| w.to_le_bytes().to_vec()).collect();
        // MessageLength values and the firmware's SW SMI values as single bytes.
        t.extend([0x01u8, 0x10, 0xe0].map(|b| vec![b]));
        t
    }

    fn said(&self) -> String {
        self.said.clone()
    }

    fn map_size(&self) -> usize {
        // The built-in firmware's SW SMI handlers run a few hundred edges (175 in all with
        // --handler all): 4 Ki entries keep them apart at a sixteenth of the default's cost.
        1 << 12
    }

    fn place(&self, rip: u64) -> String {
        match self.image_offset(rip) {
            Some(off) => format!("smm-image+{off:#x}"),
            None => format!("{rip:#x}"),
        }
    }

    fn code_phys(&self, rip: u64) -> u64 {
        match (self.image_offset(rip), self.smram) {
            (Some(off), Some((base, _))) => base + off,
            _ => rip,
        }
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let cmd = self.handler.unwrap_or(0x01);
        let mut zero = vec![0u8; REGISTERS];
        zero[0] = cmd;
        // RBX at the buffer, the buffer a header of MessageLength 8.
        let mut at_buffer = zero.clone();
        at_buffer[8..16].copy_from_slice(&BUFFER.to_le_bytes());
        at_buffer.extend_from_slice(&[0; 16]);
        at_buffer.extend_from_slice(&8u64.to_le_bytes());
        at_buffer.extend_from_slice(&[0; 8]);
        vec![zero, at_buffer]
    }
}
