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
//! - Coverage: the SMM blocks each call ran ([`machine::Machine::record_smm_blocks`]), each
//!   block's address hashed into a 64 KiB map of hit-count buckets, judged by
//!   `MaxMapFeedback`. Recording is on only inside the harness.
//! - Objectives: the audit's oracles over the call's SMM accesses (see [`judge`]); a call that
//!   breaks one returns `ExitKind::Crash`, as a fault does.
//! - Mutations: LibAFL's havoc mutations and token insert/replace over a dictionary of
//!   platform addresses ([`tokens`]), in the havoc stage and in a stage of their own.

use audit::behaviour::{analyze, Pattern};
use audit::rules;
use libafl::corpus::{Corpus, InMemoryCorpus};
use libafl::events::SimpleEventManager;
use libafl::executors::{inprocess::InProcessExecutor, ExitKind};
use libafl::feedbacks::{CrashFeedback, MaxMapFeedback};
use libafl::fuzzer::{Fuzzer, StdFuzzer};
use libafl::inputs::{BytesInput, HasTargetBytes};
use libafl::monitors::NopMonitor;
use libafl::mutators::{havoc_mutations, tokens_mutations, HavocScheduledMutator, Tokens};
use libafl::observers::StdMapObserver;
use libafl::schedulers::QueueScheduler;
use libafl::stages::StdMutationalStage;
use libafl::state::{HasCorpus, HasExecutions, StdState};
use libafl::{Evaluator, HasMetadata};
use libafl_bolts::rands::StdRand;
use libafl_bolts::tuples::{tuple_list, Merge};
use libafl_bolts::AsSlice;
use machine::board::observer::{SmmAccess, SmmAccessKind};
use module_runner::layout::{COMM_BUFFER, SAVE_STATE, TSEG_BASE, TSEG_SIZE};
use module_runner::runner::RunnerSnapshot;
use module_runner::{CallResult, Runner};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
}

/// One finding.
#[derive(Clone, Debug)]
pub struct Finding {
    /// The rule (SMM101, SMM102, SMM104, SMM106).
    pub rule: &'static str,
    /// What happened.
    pub message: String,
    /// The reproducer: the input, saved.
    pub file: PathBuf,
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
        self.restore();
        call(&mut self.runner, target, input)
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
}

/// The oracles, over one call's result and accesses, `control` being the SMRAM bytes the
/// control call (an all-zero input) wrote:
/// - SMM106: the call faulted or hung ([`fuzz`] keeps it only when the input with its wild
///   pointers tamed faults too, see [`tamed`]).
/// - SMM101: SMM fetched code outside SMRAM.
/// - SMM104 (GUID handlers): a byte of the message read twice (the audit's double-fetch rule,
///   the message being the window).
/// - SMM102: SMM wrote TSEG (the A/B segment, which the runner also reports to the module as
///   SMRAM, is not judged yet) at an address the control call did not write, and within 0x100
///   bytes at or above a 64-bit word of the input (any byte offset; for a SW SMI the
///   registers): a write through a pointer the caller passed. A write that merely goes deeper
///   into the SMM stack than the control call's is not one, since the input did not name it.
pub fn judge(target: &Target, input: &[u8], res: &CallResult, acc: &[SmmAccess], control: &BTreeSet<u64>) -> Vec<Broken> {
    let mut out = Vec::new();
    if let CallResult::Fault { why } = res {
        out.push(Broken { rule: rules::HANDLER_FAULT, message: format!("the call did not come back: {why}"), key: 0 });
    }
    let p = match target {
        Target::Guid(_) => Pattern { name: "fuzz", ptr: Some(MESSAGE), window: input.len() as u64, into_smram: false, header: false },
        Target::Sw(_) => Pattern { name: "fuzz", ptr: None, window: 0, into_smram: false, header: false },
    };
    for f in analyze(&p, acc, control, &[]) {
        let a0 = f.addresses.first().copied().unwrap_or(0);
        match f.rule {
            rules::CALLOUT => out.push(Broken { rule: f.rule, message: format!("SMM fetched code outside SMRAM at {a0:#x} (call-out)"), key: a0 }),
            rules::DOUBLE_FETCH => out.push(Broken { rule: f.rule, message: format!("SMM read the message's byte at {a0:#x} (offset {:#x}) twice (double fetch)", a0.wrapping_sub(MESSAGE)), key: f.rip }),
            _ => {}
        }
    }
    let words: Vec<u64> = match target {
        Target::Guid(_) => input.windows(8).map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default())).collect(),
        Target::Sw(_) => sw_registers(input).to_vec(),
    };
    let aimed = |a: u64| words.iter().any(|&w| a >= w && a - w < 0x100);
    if let Some(a) = acc.iter().find(|a| a.smram && tseg(a.addr) && a.kind == SmmAccessKind::Write && !control.contains(&a.addr) && aimed(a.addr)) {
        out.push(Broken { rule: rules::SMRAM_POINTER, message: format!("SMM wrote SMRAM at {:#x} through a pointer the caller passed (instruction at {:#x})", a.addr, a.rip), key: a.rip });
    }
    out
}

/// Whether `w` is a wild pointer: at or above 4 GiB (the platform has 128 MiB of memory; a
/// non-canonical address takes #GP in SMM and ends the SMI).
pub fn wild(w: u64) -> bool {
    w >= 1 << 32
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

static mut MAP: [u8; MAP_SIZE] = [0; MAP_SIZE];

fn bucket(count: u64) -> u8 {
    match count {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 4,
        4..=7 => 8,
        8..=15 => 16,
        16..=31 => 32,
        32..=127 => 64,
        _ => 128,
    }
}

fn slot(phys: u64) -> usize {
    let h = phys.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> 48) as usize & (MAP_SIZE - 1)
}

/// Fuzzes `target` of the module in `r` (its entry point and lifecycle run). `report` gets
/// each finding as it is found.
pub fn fuzz(make: &mut dyn FnMut() -> Runner, target: &Target, cfg: &Config, report: &mut dyn FnMut(&Finding)) -> Result<Summary, FuzzError> {
    std::fs::create_dir_all(&cfg.out)?;
    let mut r = make();
    r.machine.set_smm_code_check(false);
    r.machine.observe_smm(true);
    let mut snap = Snapshotted::new(r);
    let (_, acc) = snap.call(target, &[0; 0x40]);
    let control: BTreeSet<u64> = acc.iter().filter(|a| a.smram && a.kind == SmmAccessKind::Write).flat_map(|a| a.addr..a.addr + u64::from(a.size)).collect();

    let findings: RefCell<Vec<Finding>> = RefCell::new(Vec::new());
    let mut seen: BTreeSet<(&'static str, u64)> = BTreeSet::new();
    let mut io_error: Option<std::io::Error> = None;
    let mut wild = 0u64;
    let start = Instant::now();
    let result = {
        let mut harness = |input: &BytesInput| -> ExitKind {
            let bytes = input.target_bytes();
            let bytes = bytes.as_slice();
            snap.restore();
            snap.runner.machine.record_smm_blocks();
            let (res, acc) = call(&mut snap.runner, target, bytes);
            let blocks = snap.runner.machine.take_smm_blocks();
            // SAFETY: MAP is only touched by this harness and, between executions, by the
            // observer; both run on this thread, never at the same time.
            let map = unsafe { &mut *std::ptr::addr_of_mut!(MAP) };
            for ((phys, _, _), run) in &blocks.runs {
                let s = &mut map[slot(*phys)];
                *s = (*s).max(bucket(run.count));
            }
            let mut broken = judge(target, bytes, &res, &acc, &control);
            if matches!(res, CallResult::Fault { .. }) {
                // The machine is down: back to the snapshot. Then the fault is the handler's
                // (SMM106) only if it also faults with the wild words tamed.
                let tame = tamed(target, bytes);
                let (again, _) = snap.call(target, &tame);
                if !matches!(again, CallResult::Fault { .. }) {
                    broken.retain(|b| b.rule != rules::HANDLER_FAULT);
                    wild += 1;
                }
            }
            let mut exit = ExitKind::Ok;
            for b in broken {
                exit = ExitKind::Crash;
                if !seen.insert((b.rule, b.key)) {
                    continue;
                }
                let mut f = findings.borrow_mut();
                let n = f.iter().filter(|x| x.rule == b.rule).count();
                let file = cfg.out.join(format!("{}-{n}.bin", b.rule));
                if let Err(e) = std::fs::write(&file, bytes) {
                    io_error.get_or_insert(e);
                }
                let finding = Finding { rule: b.rule, message: b.message, file };
                report(&finding);
                f.push(finding);
            }
            exit
        };
        run(&mut harness, cfg, start, &findings)
    };
    if let Some(e) = io_error {
        return Err(e.into());
    }
    let (executions, corpus) = result?;
    // SAFETY: the executor, and with it every other user of MAP, is gone.
    let coverage = unsafe { (*std::ptr::addr_of!(MAP)).iter().filter(|&&b| b != 0).count() };
    Ok(Summary { executions, elapsed: start.elapsed(), coverage, corpus, wild_faults: wild, findings: findings.into_inner() })
}

fn run<H: FnMut(&BytesInput) -> ExitKind>(harness: &mut H, cfg: &Config, start: Instant, findings: &RefCell<Vec<Finding>>) -> Result<(u64, usize), FuzzError> {
    // SAFETY: a fresh campaign: clear the map before the observer borrows it.
    unsafe { (*std::ptr::addr_of_mut!(MAP)).fill(0) };
    // SAFETY: MAP lives for the program; the observer and the harness use it on this thread
    // only, one after the other (see the harness).
    let observer = unsafe { StdMapObserver::from_mut_ptr("smm-blocks", std::ptr::addr_of_mut!(MAP) as *mut u8, MAP_SIZE) };
    let mut feedback = MaxMapFeedback::new(&observer);
    let mut objective = CrashFeedback::new();
    let mut state = StdState::new(StdRand::with_seed(cfg.seed), InMemoryCorpus::<BytesInput>::new(), InMemoryCorpus::new(), &mut feedback, &mut objective)?;
    let mut t = Tokens::new();
    for w in tokens() {
        t.add_token(&w);
    }
    state.add_metadata(t);
    let mut mgr = SimpleEventManager::new(NopMonitor::new());
    let mut fuzzer = StdFuzzer::new(QueueScheduler::new(), feedback, objective);
    let mut executor = InProcessExecutor::new(harness, tuple_list!(observer), &mut fuzzer, &mut state, &mut mgr)?;
    // Seeds: an all-zero message and a message of function numbers.
    for seed in [vec![0u8; 24], [1u64, 0, 0].iter().flat_map(|w| w.to_le_bytes()).collect()] {
        fuzzer.add_input(&mut state, &mut executor, &mut mgr, BytesInput::new(seed))?;
    }
    // Havoc with the token mutations among its choices, then a stage of token mutations
    // alone (as AFL's dictionary stage): the platform's addresses in the words of the input.
    // Few stacked mutations (at most 8 in havoc, 2 here): the messages are short structures.
    let havoc = HavocScheduledMutator::with_max_stack_pow(havoc_mutations().merge(tokens_mutations()), 3);
    let dictionary = HavocScheduledMutator::with_max_stack_pow(tokens_mutations(), 1);
    let mut stages = tuple_list!(StdMutationalStage::new(havoc), StdMutationalStage::new(dictionary));
    while start.elapsed() < cfg.time && (!cfg.stop_on_finding || findings.borrow().is_empty()) {
        fuzzer.fuzz_one(&mut stages, &mut executor, &mut state, &mut mgr)?;
    }
    Ok((*state.executions(), state.corpus().count()))
}
