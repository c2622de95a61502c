//! `smmlab fuzz`: coverage-guided fuzzing of one SMI handler (crates/fuzz-smm, built on
//! LibAFL), of an SMM module run on its own (`--module`: loaded once, its entry point and
//! lifecycle events run as `smmlab audit --module` does) or of the built-in firmware
//! (`--scenario`: booted once to the hand-off as `smmlab audit` boots it); then the handler
//! runs with mutated inputs until the time is up. Every finding is minimised and saved as
//! RULE-N.bin (the input) and RULE-N.json (what replays it: `smmlab fuzz replay`, in
//! [`super::fuzz_replay`]). Exit 1 with findings, 0 without, 2 on bad input.

use super::module::{start, PhaseArg, Target as ModuleTarget};
use super::run::CpuKind;
use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use fuzz_smm::firmware::FirmwareSubject;
use fuzz_smm::flash::FlashSubject;
use fuzz_smm::{Config, Finding, ModuleSubject, Subject, Target};
use module_runner::source;
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct FuzzArgs {
    #[command(subcommand)]
    pub command: Option<FuzzCommand>,
    /// The SMM driver: a PE32+ file, or a firmware image with --module-name.
    #[arg(long, value_name = "FILE", conflicts_with = "scenario")]
    pub module: Option<PathBuf>,
    /// The module of a firmware image given with --module: its UI name or file GUID.
    #[arg(long, value_name = "NAME|GUID", requires = "module")]
    pub module_name: Option<String>,
    /// A scenario of the built-in firmware (`smmlab scenarios`: default, bug-*): its SW SMI
    /// handlers after the boot's hand-off.
    #[arg(long, value_name = "NAME")]
    pub scenario: Option<String>,
    /// A system flash unit of a UEFI firmware (repeatable, as for `smmlab audit`): the firmware
    /// is booted whole to the UEFI Shell's prompt and its GUID handlers are fuzzed through the
    /// SMM core's communication path. The files are never written.
    #[arg(long, value_name = "FILE[,readonly]", conflicts_with_all = ["module", "scenario"])]
    pub pflash: Vec<String>,
    /// Debian's OVMF with SMM and secure boot, as for `smmlab audit --ovmf`.
    #[arg(long, conflicts_with_all = ["module", "scenario", "pflash"])]
    pub ovmf: bool,
    /// Guest RAM in MiB for --pflash/--ovmf [default: 256 with --ovmf, else 128].
    #[arg(long, value_name = "MiB")]
    pub memory: Option<u64>,
    /// The handler: a GUID handler's HandlerType (--module, --pflash, --ovmf), or sw:N for the
    /// SW SMI handler of value N (the input's first 48 bytes are then RAX, RBX, RCX, RDX, RSI,
    /// RDI; with --scenario the rest is a buffer at 0x300000), or all (--scenario: AL picks
    /// the value; --pflash/--ovmf: the input's first byte picks the GUID handler).
    #[arg(long, value_name = "GUID|sw:N|all")]
    pub handler: Option<String>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value = "10")]
    pub time: f64,
    /// The random seed (the same seed and time give much the same campaign).
    #[arg(long, value_name = "N", default_value = "0")]
    pub seed: u64,
    /// Where the findings go: RULE-N.bin (the minimised input) and RULE-N.json (what replays it).
    #[arg(long, value_name = "DIR", default_value = "fuzz-out")]
    pub out: PathBuf,
    /// Stop at the first finding.
    #[arg(long)]
    pub stop_on_finding: bool,
    /// Client processes on this machine (LibAFL's launcher: one per core, sharing the inputs
    /// that found new edges through a broker this process runs).
    #[arg(long, value_name = "N", default_value = "1")]
    pub cores: usize,
    /// The TCP port of the broker the clients of --cores share their inputs through
    /// [default: 1337].
    #[arg(long, value_name = "PORT")]
    pub broker_port: Option<u16>,
    /// The CPU model [default: amd64 for a module of a firmware image, as its firmware runs on
    /// QEMU's AMD64 save-state map; intel64 for a lone PE file and the built-in firmware].
    #[arg(long, value_enum)]
    pub cpu: Option<CpuKind>,
}

#[derive(Subcommand)]
pub enum FuzzCommand {
    /// Rerun a finding (its RULE-N.json) and show what broke: exit 1 when the rule fires
    /// again, 0 when not, 2 on a missing or malformed file.
    Replay(super::fuzz_replay::ReplayArgs),
}

/// What `--handler` names.
pub enum Handler {
    /// One handler.
    One(Target),
    /// Every SW SMI value (the built-in firmware).
    All,
}

pub fn handler(s: &str) -> anyhow::Result<Handler> {
    if s == "all" {
        return Ok(Handler::All);
    }
    if let Some(n) = s.strip_prefix("sw:") {
        let n = n.trim();
        let v = match n.strip_prefix("0x").or_else(|| n.strip_prefix("0X")) {
            Some(h) => u8::from_str_radix(h, 16),
            None => n.parse(),
        };
        return Ok(Handler::One(Target::Sw(v.map_err(|_| anyhow::anyhow!("--handler {s}: {n} is not a SW SMI value (0-255)"))?)));
    }
    Ok(Handler::One(Target::Guid(s.parse().map_err(|_| anyhow::anyhow!("--handler {s}: neither a GUID, sw:N nor all"))?)))
}

/// The CPU model of the built-in firmware's machine, as `smmlab audit` builds it.
pub fn firmware_model(cpu: CpuKind) -> anyhow::Result<cpu::CpuModel> {
    let vendor = match cpu {
        CpuKind::Intel64 => cpu::cpuid::Vendor::Intel,
        CpuKind::Amd64 => cpu::cpuid::Vendor::Amd,
        CpuKind::I686 => bail!("--cpu i686: the built-in firmware's SMM runs in long mode (intel64 or amd64)"),
    };
    Ok(cpu::CpuModel { vendor, long_mode: true, tsc_hz: 1_000_000_000 })
}

/// The built-in firmware's subject for `scenario` and `handler` (None: every value).
pub fn firmware_subject(scenario: &str, cpu: CpuKind, handler: Option<u8>) -> anyhow::Result<FirmwareSubject> {
    super::scenarios::find(scenario)?;
    if firmware_image::scenarios::find(scenario).is_none() {
        bail!("scenario '{scenario}' is not a built-in firmware scenario");
    }
    Ok(FirmwareSubject::boot(scenario, firmware_model(cpu)?, handler)?)
}

/// A UEFI firmware booted from flash (`--pflash` units, or Debian's OVMF with `ovmf`) to the
/// Shell, its GUID handler `handler` (None: all) fuzzed through the core's communication path.
pub fn flash_subject(pflash: &[String], ovmf: bool, memory: Option<u64>, cpu: CpuKind, handler: Option<fwimage::Guid>) -> anyhow::Result<FlashSubject> {
    let units = if ovmf { super::pflash::ovmf_units()? } else { pflash.iter().map(|p| super::pflash::PflashArg::parse(p)).collect::<anyhow::Result<Vec<_>>>()? };
    let memory_mib = memory.unwrap_or(if ovmf { 256 } else { 128 });
    let o = audit::BootOptions {
        board: machine::BoardKind::Q35,
        model: firmware_model(cpu)?,
        rom: None,
        scenario: None,
        memory_mib,
        max_instructions: 20_000_000_000,
        pflash: super::pflash::open(&units)?,
        pflash_secure: true,
    };
    Ok(FlashSubject::boot(&o, handler)?)
}

/// The module target of a campaign or replay.
pub fn module_target(file: &std::path::Path, module_name: Option<&str>, cpu: CpuKind) -> ModuleTarget {
    ModuleTarget { file: file.to_path_buf(), vars: None, with: Vec::new(), module: module_name.map(str::to_string), cpu: Some(cpu), phase: PhaseArg::ReadyToBoot, answer: Vec::new() }
}

/// The module's subject: loaded, started, the handler checked to be registered; with the CPU
/// model it runs on (`cpu`, or the module commands' default for it).
pub fn module_subject(file: &std::path::Path, module_name: Option<&str>, cpu: Option<CpuKind>, target: &Target) -> anyhow::Result<(ModuleSubject, CpuKind)> {
    let (mods, _fw) = source::modules(file, module_name, false)?;
    let Some(m) = mods.first() else { bail!("{}: no SMM module", file.display()) };
    let cpu = super::module::cpu_for(cpu, m);
    let r = start(&module_target(file, module_name, cpu), m)?;
    let registered = match target {
        Target::Guid(g) => r.env.handlers.iter().any(|h| h.guid == Some(*g)),
        Target::Sw(v) => r.env.sw_registration(*v).is_some(),
    };
    if !registered {
        bail!("{} registered no {target}", r.module.name);
    }
    Ok((ModuleSubject::new(r, target.clone()), cpu))
}

pub fn run(a: FuzzArgs) -> anyhow::Result<i32> {
    if let Some(FuzzCommand::Replay(r)) = a.command {
        return super::fuzz_replay::run(r);
    }
    if !(a.time.is_finite() && a.time >= 0.0) {
        bail!("--time {}: not a number of seconds", a.time);
    }
    let Some(h) = a.handler.as_deref() else { bail!("--handler: give the handler to fuzz (GUID, sw:N or all)") };
    let h = handler(h)?;
    let cfg = Config { time: Duration::from_secs_f64(a.time), seed: a.seed, out: a.out.clone(), stop_on_finding: a.stop_on_finding, client: None };
    if a.cores == 0 {
        bail!("--cores 0: give at least one client");
    }
    let parallel = (a.cores > 1).then(|| fuzz_smm::parallel::Parallel { cores: a.cores, broker_port: a.broker_port.unwrap_or(1337), remote_broker: None });
    let flash = a.ovmf || !a.pflash.is_empty();
    let (mut subject, what, name, cpu): (Box<dyn Subject>, String, String, CpuKind) = match (&a.module, &a.scenario) {
        (None, None) if flash => {
            let g = match &h {
                Handler::One(Target::Guid(g)) => Some(*g),
                Handler::One(Target::Sw(_)) => bail!("--handler sw:N: a firmware booted from flash is fuzzed through its GUID handlers (GUID or all)"),
                Handler::All => None,
            };
            let cpu = a.cpu.unwrap_or(CpuKind::Amd64);
            let s = flash_subject(&a.pflash, a.ovmf, a.memory, cpu, g)?;
            let what = match s.handler {
                Some(i) => format!("GUID handler {}", s.handlers[i].label),
                None => format!("{} GUID handlers ({})", s.handlers.len(), s.handlers.iter().map(|h| h.label.as_str()).collect::<Vec<_>>().join(", ")),
            };
            let fw = if a.ovmf { super::pflash::OVMF_CODE.to_string() } else { a.pflash[0].clone() };
            (Box::new(s), what, format!("{fw} booted to the Shell"), cpu)
        }
        (Some(file), None) => {
            let Handler::One(t) = &h else { bail!("--handler all: with --scenario only (a module's handlers are fuzzed one at a time)") };
            let (s, cpu) = module_subject(file, a.module_name.as_deref(), a.cpu, t)?;
            let name = s.snap.runner.module.name.clone();
            (Box::new(s), t.to_string(), name, cpu)
        }
        (None, Some(sc)) => {
            let v = match &h {
                Handler::One(Target::Sw(v)) => Some(*v),
                Handler::One(Target::Guid(_)) => bail!("--handler: the built-in firmware has SW SMI handlers only (sw:N or all)"),
                Handler::All => None,
            };
            let cpu = a.cpu.unwrap_or(CpuKind::Intel64);
            let s = firmware_subject(sc, cpu, v)?;
            let what = v.map_or("SW SMI handlers".to_string(), |v| Target::Sw(v).to_string());
            (Box::new(s), what, format!("the built-in firmware (scenario {sc})"), cpu)
        }
        _ => bail!("give --module FILE, --scenario NAME, --pflash FILE or --ovmf"),
    };
    let cpu_name = cpu.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default();
    match &parallel {
        None => println!("fuzzing the {what} of {name} for {}s (seed {}, findings in {})", a.time, a.seed, a.out.display()),
        Some(p) => println!(
            "fuzzing the {what} of {name} for {}s on {} client(s) (seed {}, findings in {}; broker on port {}{})",
            a.time,
            p.cores,
            a.seed,
            a.out.display(),
            p.broker_port,
            p.remote_broker.map(|r| format!(", joined to {r}")).unwrap_or_default()
        ),
    }
    let mut io_error = None;
    let mut report = |f: &Finding| {
        println!("found {} in the {what} of {name}: {} input {} ({} bytes, {} before minimising)", f.rule, f.message, f.file.display(), f.input.len(), f.original_len);
        let doc = json!({
            "module": a.module.as_ref().map(|p| p.display().to_string()),
            "module_name": a.module_name,
            "scenario": a.scenario,
            "pflash": if flash { Some(&a.pflash) } else { None },
            "ovmf": a.ovmf,
            "memory": a.memory,
            "handler": a.handler,
            "cpu": cpu_name,
            "seed": a.seed,
            "rule": f.rule,
            "message": f.message,
            "rip": f.rip,
            "at": f.at,
            "input": f.file.file_name().map(|n| n.to_string_lossy().into_owned()),
            "input_len": f.input.len(),
            "found_len": f.original_len,
        });
        let json = f.file.with_extension("json");
        if let Err(e) = std::fs::write(&json, serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n") {
            io_error.get_or_insert(anyhow::anyhow!("cannot write {}: {e}", json.display()));
        }
    };
    let s = match &parallel {
        None => fuzz_smm::campaign(subject.as_mut(), &cfg, &mut report),
        Some(p) => fuzz_smm::parallel::launch(subject.as_mut(), &cfg, p, &mut report),
    }
    .context("fuzz")?;
    if let Some(e) = io_error {
        return Err(e);
    }
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    println!("{} executions in {:.1}s ({:.0} exec/s), {} coverage entries, {} inputs in the corpus, {} faults on wild pointers only, {} findings", s.executions, secs, s.executions as f64 / secs, s.coverage, s.corpus, s.wild_faults, s.findings.len());
    if let Some(p) = &parallel {
        println!("{} client(s): {:.0} exec/s per client; {} inputs received from other clients, {} of them new to the receiver", p.cores, s.executions as f64 / secs / p.cores as f64, s.received, s.imported);
    }
    Ok(if s.findings.is_empty() { 0 } else { 1 })
}
