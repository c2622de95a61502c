//! `smmlab fuzz`: coverage-guided fuzzing of one SMI handler of an SMM module run on its own
//! (crates/module-runner), built on LibAFL.
//!
//! - The input is bytes: for a GUID handler the communication message (the handler gets it
//!   as CommBuffer, CommBufferSize its length); for a SW SMI the first 48 bytes are RAX, RBX,
//!   RCX, RDX, RSI and RDI (little-endian, zero-padded), the other registers
//!   [`audit::module::MODULE_FILL`].
//! - The executor is LibAFL's in-process executor: the harness runs one call on the runner.
//!   The runner is snapshotted once its entry point and lifecycle events have run
//!   ([`Snapshotted`]: the CPU, the device state, the host's services, and RAM through the
//!   machine's dirty-page log), and every execution starts from that snapshot: only the pages
//!   written since are put back. A call that brings the machine down is undone the same way.
//! - Coverage: the SMM edges each call ran (pairs of blocks, AFL-style, counted by the CPU in
//!   a 64 KiB map: [`cpu::smm_edges`], installed with [`machine::Machine::cover_smm_edges`]
//!   for the campaign only), bucketed by LibAFL's `HitcountsMapObserver`, judged by
//!   `MaxMapFeedback`.
//! - Objectives: the audit's oracles over the call's SMM accesses (see [`judge`]); a call that
//!   breaks one returns `ExitKind::Crash`, as a fault does.
//! - Mutations: LibAFL's havoc mutations and token insert/replace over a dictionary of
//!   platform addresses ([`tokens`]), in the havoc stage and in a stage of their own.

use audit::behaviour::{analyze, Pattern};
use audit::rules;
use machine::board::observer::{SmmAccess, SmmAccessKind};
use module_runner::layout::{COMM_BUFFER, SAVE_STATE, TSEG_BASE, TSEG_SIZE};
use module_runner::runner::RunnerSnapshot;
use module_runner::{CallResult, Runner};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

pub mod campaign;
pub mod confirm;
pub mod firmware;
pub mod flash;
pub mod parallel;

pub use campaign::{campaign, campaign_with, minimise, Execution, FuzzState, Subject};

/// Entries of the coverage map.
pub const MAP_SIZE: usize = 1 << 16;

/// Where the communication message starts (after the 24-byte EFI_MM_COMMUNICATE_HEADER).
pub const MESSAGE: u64 = COMM_BUFFER + 24;

/// The longest input (the runner's communication buffer less its header).
pub const MAX_INPUT: usize = 0x1000;

/// The handler to fuzz.
#[derive(Clone, Debug)]
pub enum Target {
    /// A GUID handler, reached through the communication buffer.
    Guid(fwimage::Guid),
    /// The SW SMI handler for this APM_CNT value.
    Sw(u8),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Guid(g) => write!(f, "GUID handler {g}"),
            Target::Sw(v) => write!(f, "SW SMI {v:#04x} handler"),
        }
    }
}

/// How long and where.
#[derive(Clone, Debug)]
pub struct Config {
    /// Stop after this long.
    pub time: Duration,
    /// The random seed.
    pub seed: u64,
    /// Where reproducers go (created).
    pub out: PathBuf,
    /// Stop at the first finding.
    pub stop_on_finding: bool,
    /// This campaign is client N of several (crate::parallel): its findings are named
    /// RULE-cN-M.bin.
    pub client: Option<usize>,
}

/// One finding.
#[derive(Clone, Debug)]
pub struct Finding {
    /// The rule (SMM101, SMM102, SMM103, SMM104, SMM106).
    pub rule: &'static str,
    /// What happened.
    pub message: String,
    /// The reproducer: the input, minimised and saved.
    pub file: PathBuf,
    /// The instruction that broke the rule, when known.
    pub rip: Option<u64>,
    /// That instruction as `Module+0xRVA` (see [`Subject::place`]).
    pub at: Option<String>,
    /// The minimised input.
    pub input: Vec<u8>,
    /// The length of the input the fuzzer found it with.
    pub original_len: usize,
}

/// How a campaign went.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Executions (calls into the handler).
    pub executions: u64,
    /// How long it ran.
    pub elapsed: Duration,
    /// Coverage map entries set.
    pub coverage: usize,
    /// Which entries (the map's indexes).
    pub covered: Vec<u32>,
    /// Inputs taken from other clients into the corpus (0 alone).
    pub imported: usize,
    /// Inputs received from other clients, new here or not (0 alone).
    pub received: u64,
    /// Inputs kept in the corpus.
    pub corpus: usize,
    /// Calls that faulted only because the input held a wild pointer (see [`tamed`]): not
    /// findings.
    pub wild_faults: u64,
    /// Findings, one per rule and place.
    pub findings: Vec<Finding>,
}

/// What went wrong setting up LibAFL.
#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    /// LibAFL refused.
    #[error("libafl: {0}")]
    Libafl(String),
    /// The output directory.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<libafl::Error> for FuzzError {
    fn from(e: libafl::Error) -> Self {
        FuzzError::Libafl(e.to_string())
    }
}

/// The dictionary: the platform's SMRAM addresses as 8-byte little-endian words (TSEG base,
/// its middle, the save state, the top bytes of TSEG) and the small integers 0-16.
pub fn tokens() -> Vec<Vec<u8>> {
    let words = [TSEG_BASE, TSEG_BASE + TSEG_SIZE / 2, TSEG_BASE + TSEG_SIZE / 2 + 0x100, SAVE_STATE, TSEG_BASE + TSEG_SIZE - 8];
    words.into_iter().chain(0..=16).map(|w| w.to_le_bytes().to_vec()).collect()
}

fn drained(r: &mut Runner) -> Vec<SmmAccess> {
    r.machine.take_smm_accesses()
}

/// The SW SMI registers an input gives.
pub fn sw_registers(input: &[u8]) -> machine::host::SmiRegisters {
    let mut regs = [audit::module::MODULE_FILL; 16];
    for (i, reg) in [cpu::regs::RAX, cpu::regs::RBX, cpu::regs::RCX, cpu::regs::RDX, cpu::regs::RSI, cpu::regs::RDI].into_iter().enumerate() {
        let mut w = [0u8; 8];
        let from = input.get(i * 8..).unwrap_or(&[]);
        let n = from.len().min(8);
        w[..n].copy_from_slice(&from[..n]);
        regs[reg] = u64::from_le_bytes(w);
    }
    regs
}

/// One call of the target with `input`: its result and the SMM accesses it made.
pub fn call(r: &mut Runner, target: &Target, input: &[u8]) -> (CallResult, Vec<SmmAccess>) {
    drained(r);
    let res = match target {
        Target::Guid(g) => r.call_guid(g, &input[..input.len().min(MAX_INPUT)], None),
        Target::Sw(v) => r.call_sw(*v, 0, &sw_registers(input)),
    };
    (res, drained(r))
}

/// A runner and its snapshot: every [`Snapshotted::call`] starts from the state the runner
/// was in when it was made.
pub struct Snapshotted {
    /// The runner.
    pub runner: Runner,
    snap: RunnerSnapshot,
    /// RAM pages put back by the last restore.
    pub restored_pages: usize,
}

impl Snapshotted {
    /// Snapshots `runner` as it is now.
    pub fn new(mut runner: Runner) -> Self {
        // Code stays decoded from call to call, and the accesses are numbered the same.
        runner.machine.fuzz_mode(true);
        let snap = runner.snapshot();
        Snapshotted { runner, snap, restored_pages: 0 }
    }

    /// Puts the runner back to the snapshot.
    pub fn restore(&mut self) {
        // The snapshot is the runner's last one (only `new` takes one): restore cannot refuse.
        self.restored_pages = self.runner.restore(&self.snap).unwrap_or(0);
    }

    /// One call of `target` with `input` from the snapshot's state ([`call`]).
    pub fn call(&mut self, target: &Target, input: &[u8]) -> (CallResult, Vec<SmmAccess>) {
        self.call_raced(target, input, None)
    }

    /// [`Snapshotted::call`] with `race` staged for the call
    /// ([`machine::Machine::stage_race_write`]).
    pub fn call_raced(&mut self, target: &Target, input: &[u8], race: Option<machine::board::observer::RaceWrite>) -> (CallResult, Vec<SmmAccess>) {
        self.restore();
        let staged = race.is_some();
        if staged {
            self.runner.machine.stage_race_write(race);
        }
        let out = call(&mut self.runner, target, input);
        if staged {
            self.runner.machine.stage_race_write(None);
        }
        out
    }
}

/// A rule broken by one call, before it is saved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    /// The rule.
    pub rule: &'static str,
    /// What happened.
    pub message: String,
    /// What makes it one bug: the instruction (or the address for a call-out).
    pub key: u64,
    /// The instruction that broke it, when known (for a call-out, the code fetched).
    pub rip: Option<u64>,
    /// For SMM102, the SMRAM address written.
    pub written: Option<u64>,
    /// For SMM104, the byte read again and its value in the input (raced by
    /// [`confirm::confirm`]).
    pub reread: Option<(u64, u8)>,
}

/// The byte offsets of the input's 64-bit words that aim at `addr` (the word at or up to
/// 0x100 bytes below it), among `offsets`.
pub fn aiming(input: &[u8], offsets: impl Iterator<Item = usize>, addr: u64) -> Vec<usize> {
    offsets.filter(|&o| {
        let mut w = [0u8; 8];
        let have = input.get(o..).unwrap_or(&[]);
        let n = have.len().min(8);
        w[..n].copy_from_slice(&have[..n]);
        let w = u64::from_le_bytes(w);
        addr >= w && addr - w < 0x100
    })
    .collect()
}

/// Whether an SMM102 candidate is one: SMM's write at `addr` follows a word of the input
/// aimed at it, i.e. with one of those words (at `offsets`) moved 4 KiB up, the input `run`
/// again no longer writes `addr` beyond what `control` wrote. A write that stays put does not
/// go through the caller's pointer: the handler wrote its own data near where a word of the
/// input happened to point.
pub fn write_follows_input(input: &[u8], offsets: &[usize], addr: u64, control: &BTreeSet<u64>, run: &mut dyn FnMut(&[u8]) -> Vec<SmmAccess>) -> bool {
    offsets.iter().any(|&o| {
        let mut moved = input.to_vec();
        if moved.len() < o + 8 {
            moved.resize(o + 8, 0);
        }
        let w = u64::from_le_bytes(moved[o..o + 8].try_into().unwrap_or_default()).wrapping_add(0x1000);
        moved[o..o + 8].copy_from_slice(&w.to_le_bytes());
        !run(&moved).iter().any(|a| a.smram && a.kind == SmmAccessKind::Write && a.addr == addr && !control.contains(&a.addr))
    })
}

/// The oracles, over one call's result and accesses, `control` being the SMRAM bytes the
/// control call (an all-zero input) wrote:
/// - SMM106: the call faulted or hung ([`fuzz`] keeps it only when the input with its wild
///   pointers tamed faults too, see [`tamed`]).
/// - SMM101: SMM fetched code outside SMRAM.
/// - SMM104 (GUID handlers): a byte of the message read twice, a candidate the subject races
///   ([`confirm::confirm`]).
/// - SMM102: SMM wrote TSEG (the A/B segment, which the runner also reports to the module as
///   SMRAM, is not judged yet) at an address the control call did not write, and within 0x100
///   bytes at or above a 64-bit word of the input (any byte offset; for a SW SMI the
///   registers): a write through a pointer the caller passed. A write that merely goes deeper
///   into the SMM stack than the control call's is not one, since the input did not name it.
pub fn judge(target: &Target, input: &[u8], res: &CallResult, acc: &[SmmAccess], control: &BTreeSet<u64>) -> Vec<Broken> {
    let fault = match res {
        CallResult::Fault { why } => Some(why.as_str()),
        _ => None,
    };
    match target {
        Target::Guid(_) => judge_message(MESSAGE, input, fault, acc, control, &tseg, &[]),
        Target::Sw(_) => {
            let mut out: Vec<Broken> = fault.map(fault_broken).into_iter().collect();
            let p = Pattern { name: "fuzz", ptr: None, window: 0, into_smram: false, header: false };
            out.extend(callouts(&p, acc, control, &[]));
            out.extend(smram_pointer(acc, control, &sw_registers(input), &tseg));
            out
        }
    }
}

/// The oracles over one SMI that handed a handler the message `msg` at `at` (as [`judge`] for a
/// GUID handler), `in_smram` saying which SMRAM a write through a passed pointer counts in,
/// `by_design` the firmware's own areas outside SMRAM.
pub fn judge_message(at: u64, msg: &[u8], fault: Option<&str>, acc: &[SmmAccess], control: &BTreeSet<u64>, in_smram: &dyn Fn(u64) -> bool, by_design: &[std::ops::Range<u64>]) -> Vec<Broken> {
    let mut out: Vec<Broken> = fault.map(fault_broken).into_iter().collect();
    let p = Pattern { name: "fuzz", ptr: Some(at), window: msg.len() as u64, into_smram: false, header: false };
    out.extend(callouts(&p, acc, control, by_design));
    out.extend(confirm::double_fetches(&p, acc, &|a| msg.get((a - at) as usize).copied().unwrap_or(0), "message", at));
    let words: Vec<u64> = msg.windows(8).map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default())).collect();
    out.extend(smram_pointer(acc, control, &words, in_smram));
    out
}

/// SMM106: the SMI did not come back.
fn fault_broken(why: &str) -> Broken {
    Broken { rule: rules::HANDLER_FAULT, message: format!("the call did not come back: {why}"), key: 0, rip: None, written: None, reread: None }
}

/// SMM101: code fetched outside SMRAM.
fn callouts(p: &Pattern, acc: &[SmmAccess], control: &BTreeSet<u64>, by_design: &[std::ops::Range<u64>]) -> Vec<Broken> {
    analyze(p, acc, control, by_design)
        .into_iter()
        .filter(|f| f.rule == rules::CALLOUT)
        .map(|f| {
            let a0 = f.addresses.first().copied().unwrap_or(0);
            Broken { rule: f.rule, message: format!("SMM fetched code outside SMRAM at {a0:#x} (call-out)"), key: a0, rip: Some(a0), written: None, reread: None }
        })
        .collect()
}

/// SMM102 candidate: the first write into SMRAM (`in_smram`) the control call did not make,
/// within 0x100 bytes at or above one of `words`.
fn smram_pointer(acc: &[SmmAccess], control: &BTreeSet<u64>, words: &[u64], in_smram: &dyn Fn(u64) -> bool) -> Option<Broken> {
    let aimed = |a: u64| words.iter().any(|&w| a >= w && a - w < 0x100);
    acc.iter().find(|a| a.smram && in_smram(a.addr) && a.kind == SmmAccessKind::Write && !control.contains(&a.addr) && aimed(a.addr)).map(|a| Broken {
        rule: rules::SMRAM_POINTER,
        message: format!("SMM wrote SMRAM at {:#x} through a pointer the caller passed (instruction at {:#x})", a.addr, a.rip),
        key: a.rip,
        rip: Some(a.rip),
        written: Some(a.addr),
        reread: None,
    })
}

/// Whether `w` is a wild pointer: at or above 4 GiB (the platform has 128 MiB of memory; a
/// non-canonical address takes #GP in SMM and ends the SMI), or in the last page below it,
/// from which an access of a few bytes runs past 4 GiB (0xffffffff as an address of a u64).
pub fn wild(w: u64) -> bool {
    w >= (1 << 32) - 0x1000
}

/// `input` with every wild 64-bit word replaced by [`audit::module::MODULE_FILL`] (a canonical
/// address that no memory decodes): the 8-aligned words of a message, the registers of a SW
/// SMI. A handler that writes the caller's memory through a caller's pointer without checking
/// it is not outside SMRAM's business; one that faults even with the wild words tamed is.
pub fn tamed(target: &Target, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    let end = match target {
        Target::Guid(_) => out.len(),
        Target::Sw(_) => {
            // The registers are zero-padded: pad the input as they are.
            if out.len() < 48 {
                out.resize(48, 0);
            }
            48
        }
    };
    for c in out[..end].chunks_exact_mut(8) {
        let w = u64::from_le_bytes(c.try_into().unwrap_or_default());
        if wild(w) {
            c.copy_from_slice(&audit::module::MODULE_FILL.to_le_bytes());
        }
    }
    out
}

fn tseg(a: u64) -> bool {
    (TSEG_BASE..TSEG_BASE + TSEG_SIZE).contains(&a)
}

/// A module's handler as a campaign's [`Subject`]: the runner from its snapshot, judged
/// against the control call (an all-zero input) made once at the start.
pub struct ModuleSubject {
    /// The runner and its snapshot.
    pub snap: Snapshotted,
    /// The handler.
    pub target: Target,
    control: BTreeSet<u64>,
    settled: confirm::Settled,
}

impl ModuleSubject {
    /// `runner` (its entry point and lifecycle run), snapshotted as it is, observed, SMM code
    /// checks off (so a call-out is seen, not a machine check).
    pub fn new(mut runner: Runner, target: Target) -> Self {
        runner.machine.set_smm_code_check(false);
        runner.machine.observe_smm(true);
        let mut snap = Snapshotted::new(runner);
        let (_, acc) = snap.call(&target, &[0; 0x40]);
        let control = acc.iter().filter(|a| a.smram && a.kind == SmmAccessKind::Write).flat_map(|a| a.addr..a.addr + u64::from(a.size)).collect();
        ModuleSubject { snap, target, control, settled: Default::default() }
    }
}

impl Subject for ModuleSubject {
    fn machine(&mut self) -> &mut machine::Machine {
        &mut self.snap.runner.machine
    }

    fn execute(&mut self, input: &[u8]) -> Execution {
        let (res, acc) = self.snap.call(&self.target, input);
        let mut broken = judge(&self.target, input, &res, &acc, &self.control);
        let faulted = matches!(res, CallResult::Fault { .. });
        let instructions = match res {
            CallResult::Returned { instructions, .. } => instructions,
            _ => 0,
        };
        if broken.is_empty() {
            return Execution { broken, wild_fault: false, instructions };
        }
        let target = &self.target;
        let aiming = |addr: u64| match target {
            Target::Guid(_) => aiming(input, 0..input.len().saturating_sub(7), addr),
            Target::Sw(_) => aiming(input, (0..6).map(|r| r * 8), addr),
        };
        let tame = tamed(target, input);
        let j = confirm::Judged { input, acc: &acc, faulted, control: &self.control, aiming: &aiming, tame: (faulted && tame != input).then_some(tame) };
        let snap = &mut self.snap;
        let wild_fault = confirm::confirm(&mut broken, &j, &mut self.settled, &mut |i, race| {
            let m = snap.runner.machine.cover_smm_edges(None);
            let (res, acc) = snap.call_raced(target, i, race);
            snap.runner.machine.cover_smm_edges(m);
            (match res {
                CallResult::Fault { why } => Some(why),
                _ => None,
            }, acc)
        });
        Execution { broken, wild_fault, instructions }
    }

    fn found(&mut self, rule: &'static str, key: u64) {
        self.settled.found(rule, key);
    }

    fn tokens(&self) -> Vec<Vec<u8>> {
        tokens()
    }

    fn map_size(&self) -> usize {
        // About one entry per 8 bytes of the module's image (an edge per block of a dozen
        // bytes or so, with room to spare), 4 Ki to 64 Ki entries.
        (self.snap.runner.module.size as usize / 8).next_power_of_two().clamp(1 << 12, MAP_SIZE)
    }

    fn place(&self, rip: u64) -> String {
        let m = &self.snap.runner.module;
        if rip >= m.base && rip < m.base + m.size {
            format!("{}+{:#x}", m.name, rip - m.base)
        } else {
            format!("{rip:#x}")
        }
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        // An all-zero message and a message of function numbers.
        vec![vec![0u8; 24], [1u64, 0, 0].iter().flat_map(|w| w.to_le_bytes()).collect()]
    }
}

/// Fuzzes `target` of the module in the runner `make` builds (its entry point and lifecycle
/// run). `report` gets each finding as it is found.
pub fn fuzz(make: &mut dyn FnMut() -> Runner, target: &Target, cfg: &Config, report: &mut dyn FnMut(&Finding)) -> Result<Summary, FuzzError> {
    let mut s = ModuleSubject::new(make(), target.clone());
    campaign(&mut s, cfg, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(addr: u64) -> SmmAccess {
        SmmAccess { seq: 0, kind: SmmAccessKind::Write, addr, size: 8, smram: true, rip: 0x1000 }
    }

    fn word_at(input: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(input[o..o + 8].try_into().unwrap())
    }

    #[test]
    fn a_write_through_the_callers_pointer_follows_the_word() {
        let mut input = vec![0u8; 24];
        input[8..16].copy_from_slice(&0x7f0_0000u64.to_le_bytes());
        let offsets = aiming(&input, 0..input.len() - 7, 0x7f0_0010);
        assert_eq!(offsets, vec![8]);
        // The handler writes at the word + 0x10: moved, the write moves with it.
        let mut run = |i: &[u8]| vec![write(word_at(i, 8) + 0x10)];
        assert!(write_follows_input(&input, &offsets, 0x7f0_0010, &BTreeSet::new(), &mut run));
    }

    #[test]
    fn a_write_that_stays_put_is_the_handlers_own() {
        let mut input = vec![0u8; 24];
        input[8..16].copy_from_slice(&0x7f0_0000u64.to_le_bytes());
        let offsets = aiming(&input, 0..input.len() - 7, 0x7f0_0050);
        // The handler writes its own buffer at 0x7f00050 whatever the word says.
        let mut run = |_: &[u8]| vec![write(0x7f0_0050)];
        assert!(!write_follows_input(&input, &offsets, 0x7f0_0050, &BTreeSet::new(), &mut run));
    }

    #[test]
    fn a_word_past_the_inputs_end_counts_as_zero_padded() {
        // A SW SMI's registers past a short input are zero; the offsets still name them.
        assert_eq!(aiming(&[0x00, 0x10], (0..6).map(|r| r * 8), 0x1020), vec![0]);
        assert!(aiming(&[0x00, 0x10], (0..6).map(|r| r * 8), 0x1200).is_empty());
    }
}
