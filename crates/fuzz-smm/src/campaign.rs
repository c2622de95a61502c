//! The LibAFL campaign over a [`Subject`]: what is fuzzed (a module's handler, the built-in
//! firmware's SW SMI handlers) only runs one input from its snapshot and judges it; the loop,
//! the edge map, the findings, their minimisation and their files are here.

use crate::{Broken, Config, Finding, FuzzError, Summary, MAP_SIZE};
use libafl::corpus::{Corpus, InMemoryCorpus, Testcase};
use libafl::events::{EventFirer, EventReceiver, EventRestarter, ProgressReporter, SendExiting, SimpleEventManager};
use libafl::executors::{inprocess::InProcessExecutor, ExitKind};
use libafl::feedbacks::{CrashFeedback, MaxMapFeedback};
use libafl::fuzzer::{Fuzzer, StdFuzzer};
use libafl::inputs::{BytesInput, HasTargetBytes};
use libafl::monitors::NopMonitor;
use libafl::mutators::{havoc_mutations, tokens_mutations, HavocScheduledMutator, Tokens};
use libafl::observers::{HitcountsMapObserver, StdMapObserver};
use libafl::schedulers::QueueScheduler;
use libafl::stages::StdMutationalStage;
use libafl::state::{HasCorpus, HasExecutions, HasImported, StdState};
use libafl::{Evaluator, HasMetadata, HasNamedMetadata};
use libafl_bolts::rands::StdRand;
use libafl_bolts::tuples::{tuple_list, Merge};
use libafl_bolts::AsSlice;
use machine::Machine;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How one execution went.
#[derive(Clone, Debug, Default)]
pub struct Execution {
    /// The rules it broke.
    pub broken: Vec<Broken>,
    /// It faulted, but only on the input's wild pointers (not a finding).
    pub wild_fault: bool,
    /// Instructions the SMI retired (0 when it did not come back).
    pub instructions: u64,
}

/// What a campaign fuzzes: one handler, from a snapshot.
pub trait Subject {
    /// The machine the handler runs on (the campaign installs its edge map there).
    fn machine(&mut self) -> &mut Machine;
    /// Runs `input` once from the snapshot and judges it.
    fn execute(&mut self, input: &[u8]) -> Execution;
    /// The dictionary: words worth inserting (addresses of the platform).
    fn tokens(&self) -> Vec<Vec<u8>>;
    /// The first inputs.
    fn seeds(&self) -> Vec<Vec<u8>>;
    /// What the last execution's SMI wrote on debugcon (nothing when the target does not say).
    fn said(&self) -> String {
        String::new()
    }
    /// An SMM code address as a person reads it (`Module+0xRVA`, or the address).
    fn place(&self, rip: u64) -> String {
        format!("{rip:#x}")
    }
    /// The entries of the edge map: few enough that clearing and scanning it each execution
    /// stays cheap, enough that the subject's edges rarely share one.
    fn map_size(&self) -> usize {
        MAP_SIZE
    }
    /// The campaign saved the finding `rule` at `key`: the subject need not prove it again.
    fn found(&mut self, _rule: &'static str, _key: u64) {}
    /// The physical address of SMM code address `rip` (where its bytes are read).
    fn code_phys(&self, rip: u64) -> u64 {
        rip
    }
}

/// Executions a minimisation may take.
pub const MINIMISE_BUDGET: usize = 256;

/// `input` made shorter and plainer while `rule` still fires: cut the tail (halving, then
/// 8 bytes at a time), then zero the bytes one by one; at most [`MINIMISE_BUDGET`]
/// executions. The result is never longer than `input`, and fires `rule` unless `input`
/// itself did not.
pub fn minimise(s: &mut dyn Subject, input: &[u8], rule: &str) -> Vec<u8> {
    let mut runs = 0usize;
    let mut fires = |s: &mut dyn Subject, c: &[u8]| -> Option<bool> {
        if runs >= MINIMISE_BUDGET {
            return None;
        }
        runs += 1;
        Some(s.execute(c).broken.iter().any(|b| b.rule == rule))
    };
    let mut best = input.to_vec();
    'cut: for halving in [true, false] {
        while !best.is_empty() {
            let cut = if halving { best.len() / 2 } else { best.len().saturating_sub(8) };
            match fires(s, &best[..cut]) {
                Some(true) => best.truncate(cut),
                Some(false) => break,
                None => break 'cut,
            }
        }
    }
    for i in 0..best.len() {
        if best[i] == 0 {
            continue;
        }
        let mut c = best.clone();
        c[i] = 0;
        match fires(s, &c) {
            Some(true) => best = c,
            Some(false) => {}
            None => break,
        }
    }
    best
}

/// Fuzzes `s` until `cfg.time` (or the first finding with `cfg.stop_on_finding`); `report`
/// gets each finding, minimised and saved, as it is found.
pub fn campaign(s: &mut dyn Subject, cfg: &Config, report: &mut dyn FnMut(&Finding)) -> Result<Summary, FuzzError> {
    let mut mgr = SimpleEventManager::new(NopMonitor::new());
    campaign_with(s, cfg, report, &mut mgr, None)
}

/// The state of one campaign (what LibAFL's restarting manager hands back to a restarted
/// client).
pub type FuzzState = StdState<InMemoryCorpus<BytesInput>, BytesInput, StdRand, InMemoryCorpus<BytesInput>>;

/// [`campaign`] with the event manager given: a [`SimpleEventManager`] alone, or one client
/// of LibAFL's launcher (crate::parallel), which shares its corpus with the other clients.
/// `state` is a restarted client's state.
pub fn campaign_with<EM>(s: &mut dyn Subject, cfg: &Config, report: &mut dyn FnMut(&Finding), mgr: &mut EM, state: Option<FuzzState>) -> Result<Summary, FuzzError>
where
    EM: EventFirer<BytesInput, FuzzState> + EventRestarter<FuzzState> + ProgressReporter<FuzzState> + SendExiting + EventReceiver<BytesInput, FuzzState>,
{
    std::fs::create_dir_all(&cfg.out)?;
    let tokens = s.tokens();
    let seeds = s.seeds();
    let mut edges = Box::new(cpu::smm_edges::EdgeMap::new(s.map_size()));
    let map_size = edges.counters().len();
    let counters = edges.counters().as_mut_ptr();
    s.machine().cover_smm_edges(Some(edges));
    let findings: RefCell<Vec<Finding>> = RefCell::new(Vec::new());
    let mut seen: BTreeSet<(&'static str, u64)> = BTreeSet::new();
    let mut io_error: Option<std::io::Error> = None;
    let mut wild = 0u64;
    let start = Instant::now();
    let result = {
        let mut harness = |input: &BytesInput| -> ExitKind {
            let bytes = input.target_bytes();
            let bytes = bytes.as_slice();
            let e = s.execute(bytes);
            wild += u64::from(e.wild_fault);
            let mut exit = ExitKind::Ok;
            for b in e.broken {
                exit = ExitKind::Crash;
                if !seen.insert((b.rule, b.key)) {
                    continue;
                }
                // The finding describes the minimised input (what its file replays): its
                // message and instruction come from running that once more.
                let (small, b) = {
                    let m = s.machine().cover_smm_edges(None);
                    let small = minimise(&mut *s, bytes, b.rule);
                    let again = s.execute(&small).broken.into_iter().find(|x| x.rule == b.rule);
                    s.machine().cover_smm_edges(m);
                    (small, again.unwrap_or(b))
                };
                let mut f = findings.borrow_mut();
                let n = f.iter().filter(|x| x.rule == b.rule).count();
                let file = cfg.out.join(match cfg.client {
                    Some(c) => format!("{}-c{c}-{n}.bin", b.rule),
                    None => format!("{}-{n}.bin", b.rule),
                });
                if let Err(e) = std::fs::write(&file, &small) {
                    io_error.get_or_insert(e);
                }
                s.found(b.rule, b.key);
                let at = b.rip.map(|r| s.place(r));
                let finding = Finding { rule: b.rule, message: b.message, file, rip: b.rip, at, original_len: bytes.len(), input: small };
                report(&finding);
                f.push(finding);
            }
            exit
        };
        run(&mut harness, mgr, state, (counters, map_size), &tokens, &seeds, cfg, start, &findings)
    };
    // The map goes back to the subject's machine's owner with the machine; coverage is off.
    drop(s.machine().cover_smm_edges(None));
    if let Some(e) = io_error {
        return Err(e.into());
    }
    let r = result?;
    Ok(Summary { executions: r.executions, elapsed: start.elapsed(), coverage: r.covered.len(), covered: r.covered, corpus: r.corpus, imported: r.imported, received: 0, wild_faults: wild, findings: findings.into_inner() })
}

/// What the loop leaves.
struct Ran {
    executions: u64,
    corpus: usize,
    imported: usize,
    covered: Vec<u32>,
}

/// The LibAFL loop over `harness`, whose machine counts SMM edges in the `map.1` counters at
/// `map.0`.
#[allow(clippy::too_many_arguments)]
fn run<H, EM>(harness: &mut H, mgr: &mut EM, state: Option<FuzzState>, map: (*mut u8, usize), tokens: &[Vec<u8>], seeds: &[Vec<u8>], cfg: &Config, start: Instant, findings: &RefCell<Vec<Finding>>) -> Result<Ran, FuzzError>
where
    H: FnMut(&BytesInput) -> ExitKind,
    EM: EventFirer<BytesInput, FuzzState> + EventRestarter<FuzzState> + ProgressReporter<FuzzState> + SendExiting + EventReceiver<BytesInput, FuzzState>,
{
    // SAFETY: the counters are the edge map the harness's machine holds for the whole
    // campaign (it is taken back only after `run` returns); the CPU writes them while the
    // harness runs, the observer resets and reads them between executions, on this thread.
    let observer = HitcountsMapObserver::new(unsafe { StdMapObserver::from_mut_ptr("smm-edges", map.0, map.1) });
    let mut feedback = MaxMapFeedback::new(&observer);
    let mut objective = CrashFeedback::new();
    let fresh = state.is_none();
    let mut state = match state {
        Some(s) => s,
        None => StdState::new(StdRand::with_seed(cfg.seed), InMemoryCorpus::<BytesInput>::new(), InMemoryCorpus::new(), &mut feedback, &mut objective)?,
    };
    if fresh {
        let mut t = Tokens::new();
        for w in tokens {
            t.add_token(w);
        }
        state.add_metadata(t);
    }
    let mut fuzzer = StdFuzzer::new(QueueScheduler::new(), feedback, objective);
    let mut executor = InProcessExecutor::new(harness, tuple_list!(observer), &mut fuzzer, &mut state, mgr)?;
    if fresh {
        for seed in seeds {
            fuzzer.add_input(&mut state, &mut executor, mgr, BytesInput::new(seed.clone()))?;
        }
        // A seed that breaks a rule is a solution, not a corpus entry: when every seed does,
        // the corpus would be empty and there would be nothing to mutate. The seeds are
        // entries all the same (their findings stand).
        if state.corpus().count() == 0 {
            for seed in seeds {
                // (The queue scheduler's on_add only records a parent, which a seed has not.)
                state.corpus_mut().add(Testcase::from(BytesInput::new(seed.clone())))?;
            }
        }
    }
    // Havoc with the token mutations among its choices, then a stage of token mutations
    // alone (as AFL's dictionary stage): the platform's addresses in the words of the input.
    // Few stacked mutations (at most 8 in havoc, 2 here): the inputs are short structures.
    let havoc = HavocScheduledMutator::with_max_stack_pow(havoc_mutations().merge(tokens_mutations()), 3);
    let dictionary = HavocScheduledMutator::with_max_stack_pow(tokens_mutations(), 1);
    let mut stages = tuple_list!(StdMutationalStage::new(havoc), StdMutationalStage::new(dictionary));
    while start.elapsed() < cfg.time && (!cfg.stop_on_finding || findings.borrow().is_empty()) {
        fuzzer.fuzz_one(&mut stages, &mut executor, &mut state, mgr)?;
        mgr.maybe_report_progress(&mut state, Duration::from_secs(1))?;
    }
    mgr.report_progress(&mut state)?;
    let covered = state
        .named_metadata::<libafl::feedbacks::MapFeedbackMetadata<u8>>("smm-edges")
        .map(|m| m.history_map.iter().enumerate().filter(|(_, &v)| v != 0).map(|(i, _)| i as u32).collect())
        .unwrap_or_default();
    Ok(Ran { executions: *state.executions(), corpus: state.corpus().count(), imported: *state.imported(), covered })
}
