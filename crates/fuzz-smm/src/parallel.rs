//! One campaign on several processes: LibAFL's `Launcher` forks a client per core, each
//! running [`campaign_with`] on its own copy of the subject (booted and snapshotted once,
//! before the fork), and the parent process becomes the LLMP broker through which the clients
//! share the inputs that found new edges. A broker given `remote_broker` also connects to the
//! broker of another node over TCP (LLMP's broker-to-broker link: the `llmp_bind_public`
//! feature makes every broker listen on all interfaces), so a campaign spans machines.
//!
//! The clients write their summaries as `.client-N.json` in the output directory; the broker
//! process stops its broker once all are there and returns their sum. The clients and
//! their restarting parents never return from [`launch`]: they exit.

use crate::{campaign_with, Config, Finding, FuzzError, Subject, Summary};
use libafl::events::{Event, EventConfig, EventManagerHook, EventWithStats, Launcher, SendExiting};
use libafl::monitors::NopMonitor;
use libafl_bolts::core_affinity::{get_core_ids, Cores};
use libafl_bolts::shmem::{ShMemProvider, StdShMemProvider};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How the campaign is spread.
#[derive(Clone, Debug)]
pub struct Parallel {
    /// Client processes on this node (one per core, cores 0..N).
    pub cores: usize,
    /// The TCP port of this node's broker (its clients attach to it; other nodes' brokers
    /// connect to it).
    pub broker_port: u16,
    /// Another node's broker to join.
    pub remote_broker: Option<SocketAddr>,
}

/// Inputs this client process has received from the other clients (of this node and of the
/// nodes joined to it): every one, whether it turned out new here or not.
static RECEIVED: AtomicU64 = AtomicU64::new(0);

/// Counts the inputs a client receives ([`RECEIVED`]).
#[derive(Clone, Copy, Debug)]
struct CountReceived;

impl<I, S> EventManagerHook<I, S> for CountReceived {
    fn pre_receive(&mut self, _state: &mut S, _from: libafl_bolts::ClientId, event: &EventWithStats<I>) -> Result<bool, libafl::Error> {
        if matches!(event.event(), Event::NewTestcase { .. }) {
            RECEIVED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(true)
    }
}

/// One client's summary, as it writes it for the broker.
#[derive(serde::Serialize, serde::Deserialize)]
struct ClientSummary {
    executions: u64,
    elapsed_s: f64,
    corpus: usize,
    imported: usize,
    received: u64,
    wild_faults: u64,
    covered: Vec<u32>,
    findings: Vec<ClientFinding>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ClientFinding {
    rule: String,
    message: String,
    file: PathBuf,
    rip: Option<u64>,
    at: Option<String>,
    input: Vec<u8>,
    original_len: usize,
}

fn summary_file(out: &Path, client: usize) -> PathBuf {
    out.join(format!(".client-{client}.json"))
}

/// A client's event manager: LLMP to the broker, restarting, counting what it receives.
type ClientManager = libafl::events::LlmpRestartingEventManager<(CountReceived, ()), libafl::inputs::BytesInput, crate::FuzzState, <StdShMemProvider as ShMemProvider>::ShMem, StdShMemProvider>;

/// The cores of this machine a campaign may use.
pub fn available_cores() -> usize {
    get_core_ids().map_or(1, |c| c.len())
}

/// Runs `s` on `par.cores` client processes for `cfg.time`; `report` gets each finding in
/// the client that found it. Returns, in the broker process, the clients' summaries summed
/// (executions and findings added, coverage the union of their edges, the corpus the
/// largest client's, `imported` the inputs clients took from one another into their corpus,
/// `received` the inputs they were sent).
pub fn launch(s: &mut dyn Subject, cfg: &Config, par: &Parallel, report: &mut dyn FnMut(&Finding)) -> Result<Summary, FuzzError> {
    let have = available_cores();
    if par.cores == 0 || par.cores > have {
        return Err(FuzzError::Libafl(format!("--cores {}: this machine has {have} core(s) to run clients on", par.cores)));
    }
    std::fs::create_dir_all(&cfg.out)?;
    for c in 1..=par.cores {
        let _ = std::fs::remove_file(summary_file(&cfg.out, c));
    }
    // The clients keep the terminal (LibAFL would send their output to /dev/null): each
    // prints its own findings as it finds them.
    std::env::set_var("LIBAFL_DEBUG_OUTPUT", "1");
    let cores = Cores::from((0..par.cores).collect::<Vec<_>>());
    let shmem = StdShMemProvider::new()?;
    let broker = std::process::id();
    let mut client = |state: Option<crate::FuzzState>, mut mgr: ClientManager, desc: libafl::events::ClientDescription| -> Result<(), libafl::Error> {
        let id = desc.id();
        // Client N draws from seed + N - 1: client 1 runs as a lone campaign would.
        let cfg = Config { client: Some(id), seed: cfg.seed.wrapping_add(id as u64 - 1), ..cfg.clone() };
        let outcome = campaign_with(&mut *s, &cfg, &mut *report, &mut mgr, state);
        let code = match outcome {
            Ok(sum) => {
                let doc = ClientSummary {
                    executions: sum.executions,
                    elapsed_s: sum.elapsed.as_secs_f64(),
                    corpus: sum.corpus,
                    imported: sum.imported,
                    received: RECEIVED.load(Ordering::Relaxed),
                    wild_faults: sum.wild_faults,
                    covered: sum.covered,
                    findings: sum
                        .findings
                        .into_iter()
                        .map(|f| ClientFinding { rule: f.rule.to_string(), message: f.message, file: f.file, rip: f.rip, at: f.at, input: f.input, original_len: f.original_len })
                        .collect(),
                };
                let file = summary_file(&cfg.out, id);
                match serde_json::to_vec(&doc).map_err(std::io::Error::other).and_then(|b| std::fs::write(&file, b)) {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("fuzz client {id}: cannot write {}: {e}", file.display());
                        2
                    }
                }
            }
            Err(e) => {
                eprintln!("fuzz client {id}: {e}");
                2
            }
        };
        // Tell the broker (and this client's restarting parent) that this client is done,
        // then leave: the broker exits once every client has.
        let _ = mgr.send_exiting();
        std::process::exit(code);
    };
    // The broker leaves on its own once its clients have, but not while another node's broker
    // is joined to it (that link stays a client until the other node says it exits, which a
    // node that ends does not). So this process ends its broker itself once every client has
    // written its summary: a thread (not forked with the clients: fork copies only the
    // calling thread) that sends the broker the Ctrl-C it stops on.
    let watch_out = cfg.out.clone();
    let clients = par.cores;
    std::thread::spawn(move || {
        while !(1..=clients).all(|c| summary_file(&watch_out, c).exists()) {
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: a signal to this process, whose broker loop handles SIGINT.
        unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
    });
    let launched = Launcher::builder()
        .shmem_provider(shmem)
        .configuration(EventConfig::AlwaysUnique)
        .monitor(NopMonitor::new())
        .run_client(&mut client)
        .cores(&cores)
        .broker_port(par.broker_port)
        .remote_broker_addr(par.remote_broker)
        .launch_delay(0)
        .build()
        .launch_with_hooks::<_, libafl::inputs::BytesInput, crate::FuzzState>(libafl_bolts::tuples::tuple_list!(CountReceived));
    // Every process but the broker (this one, which forked the others) has exited or exits
    // here: a client's restarting parent returns once its client has gone.
    if std::process::id() != broker {
        std::process::exit(0);
    }
    match launched {
        // The broker returns "shutting down" once the last client has left.
        Ok(()) | Err(libafl::Error::ShuttingDown) => {}
        Err(e) => return Err(e.into()),
    }
    gather(&cfg.out, par.cores, cfg.time)
}

/// The broker's sum of the clients' summaries.
fn gather(out: &Path, clients: usize, time: Duration) -> Result<Summary, FuzzError> {
    let mut sum = Summary { executions: 0, elapsed: time, coverage: 0, covered: Vec::new(), corpus: 0, imported: 0, received: 0, wild_faults: 0, findings: Vec::new() };
    let mut covered = BTreeSet::new();
    let mut elapsed: f64 = 0.0;
    for c in 1..=clients {
        let file = summary_file(out, c);
        let bytes = std::fs::read(&file).map_err(|e| FuzzError::Libafl(format!("client {c} left no summary ({}: {e})", file.display())))?;
        let doc: ClientSummary = serde_json::from_slice(&bytes).map_err(|e| FuzzError::Libafl(format!("{}: {e}", file.display())))?;
        let _ = std::fs::remove_file(&file);
        sum.executions += doc.executions;
        sum.corpus = sum.corpus.max(doc.corpus);
        sum.imported += doc.imported;
        sum.received += doc.received;
        sum.wild_faults += doc.wild_faults;
        elapsed = elapsed.max(doc.elapsed_s);
        covered.extend(doc.covered);
        for f in doc.findings {
            let Some(rule) = audit::rules::rule(&f.rule).map(|r| r.id) else {
                return Err(FuzzError::Libafl(format!("{}: unknown rule {}", file.display(), f.rule)));
            };
            sum.findings.push(Finding { rule, message: f.message, file: f.file, rip: f.rip, at: f.at, input: f.input, original_len: f.original_len });
        }
    }
    sum.elapsed = Duration::from_secs_f64(elapsed);
    sum.coverage = covered.len();
    sum.covered = covered.into_iter().collect();
    Ok(sum)
}
