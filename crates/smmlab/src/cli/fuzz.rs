//! `smmlab fuzz`: coverage-guided fuzzing of one SMI handler of an SMM module run on its own
//! (crates/fuzz-smm, built on LibAFL). The module is loaded once and its entry point and
//! lifecycle events run as `smmlab audit --module` does; then the handler is called with
//! mutated inputs until the time is up. Exit 1 with findings, 0 without, 2 on bad input.

use super::module::{start, PhaseArg, Target as ModuleTarget};
use super::run::CpuKind;
use anyhow::{bail, Context};
use clap::Args;
use fuzz_smm::{Config, Target};
use module_runner::source;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct FuzzArgs {
    /// The SMM driver: a PE32+ file, or a firmware image with --module-name.
    #[arg(long, value_name = "FILE")]
    pub module: PathBuf,
    /// The module of a firmware image given with --module: its UI name or file GUID.
    #[arg(long, value_name = "NAME|GUID")]
    pub module_name: Option<String>,
    /// The handler: a GUID handler's HandlerType, or sw:N for the SW SMI handler of value N
    /// (the input's first 48 bytes are then RAX, RBX, RCX, RDX, RSI, RDI).
    #[arg(long, value_name = "GUID|sw:N")]
    pub handler: String,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value = "10")]
    pub time: f64,
    /// The random seed (the same seed and time give much the same campaign).
    #[arg(long, value_name = "N", default_value = "0")]
    pub seed: u64,
    /// Where the reproducers go: RULE-N.bin, the input that broke RULE.
    #[arg(long, value_name = "DIR", default_value = "fuzz-out")]
    pub out: PathBuf,
    /// Stop at the first finding.
    #[arg(long)]
    pub stop_on_finding: bool,
    /// The CPU model.
    #[arg(long, value_enum, default_value = "intel64")]
    pub cpu: CpuKind,
}

fn target(s: &str) -> anyhow::Result<Target> {
    if let Some(n) = s.strip_prefix("sw:") {
        let n = n.trim();
        let v = match n.strip_prefix("0x").or_else(|| n.strip_prefix("0X")) {
            Some(h) => u8::from_str_radix(h, 16),
            None => n.parse(),
        };
        return Ok(Target::Sw(v.map_err(|_| anyhow::anyhow!("--handler {s}: {n} is not a SW SMI value (0-255)"))?));
    }
    Ok(Target::Guid(s.parse().map_err(|_| anyhow::anyhow!("--handler {s}: neither a GUID nor sw:N"))?))
}

pub fn run(a: FuzzArgs) -> anyhow::Result<i32> {
    let target = target(&a.handler)?;
    if !(a.time.is_finite() && a.time >= 0.0) {
        bail!("--time {}: not a number of seconds", a.time);
    }
    let (mods, _fw) = source::modules(&a.module, a.module_name.as_deref(), false)?;
    let Some(m) = mods.first() else { bail!("{}: no SMM module", a.module.display()) };
    let t = ModuleTarget { file: a.module.clone(), vars: None, with: Vec::new(), module: a.module_name.clone(), cpu: Some(a.cpu), phase: PhaseArg::ReadyToBoot, answer: Vec::new() };
    let r = start(&t, m)?;
    let registered = match &target {
        Target::Guid(g) => r.env.handlers.iter().any(|h| h.guid == Some(*g)),
        Target::Sw(v) => r.env.sw_registration(*v).is_some(),
    };
    if !registered {
        bail!("{} registered no {target}", r.module.name);
    }
    let cfg = Config { time: Duration::from_secs_f64(a.time), seed: a.seed, out: a.out.clone(), stop_on_finding: a.stop_on_finding };
    println!("fuzzing the {target} of {} for {}s (seed {}, reproducers in {})", r.module.name, a.time, a.seed, a.out.display());
    let name = r.module.name.clone();
    drop(r);
    let mut make = || start(&t, m).expect("the module loaded once loads again");
    let s = fuzz_smm::fuzz(&mut make, &target, &cfg, &mut |f| println!("found {} in the {target} of {name}: {} input {}", f.rule, f.message, f.file.display())).context("fuzz")?;
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    println!("{} executions in {:.1}s ({:.0} exec/s), {} coverage entries, {} inputs in the corpus, {} faults on wild pointers only, {} findings", s.executions, secs, s.executions as f64 / secs, s.coverage, s.corpus, s.wild_faults, s.findings.len());
    Ok(if s.findings.is_empty() { 0 } else { 1 })
}
