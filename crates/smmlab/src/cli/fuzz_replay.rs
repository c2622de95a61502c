//! `smmlab fuzz replay FINDING.json`: reruns a finding of `smmlab fuzz` from the same snapshot
//! the campaign used (the module started again, or the scenario booted again: both are
//! deterministic) and shows the rule, the SMI's instruction count and debugcon text, the
//! instruction that broke it (`Module+RVA`, disassembled with iced-x86) and the attacker's
//! bytes. Exit 1 when the rule fires again, 0 when not, 2 on a missing or malformed file.

use super::fuzz::{firmware_subject, flash_subject, handler, module_subject, Handler};
use super::run::CpuKind;
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use fuzz_smm::{Subject, Target};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ReplayArgs {
    /// The finding: the RULE-N.json `smmlab fuzz` wrote (its input RULE-N.bin beside it).
    #[arg(value_name = "FINDING.json")]
    pub finding: PathBuf,
}

/// What a finding file says.
pub struct Saved {
    pub module: Option<PathBuf>,
    pub module_name: Option<String>,
    pub scenario: Option<String>,
    /// The flash units of a firmware booted from flash (empty: none, or Debian's OVMF when
    /// `ovmf`).
    pub pflash: Vec<String>,
    pub ovmf: bool,
    pub memory: Option<u64>,
    pub handler: String,
    pub cpu: CpuKind,
    pub rule: String,
    /// The instruction that broke the rule, when the finding names one.
    pub rip: Option<u64>,
    pub input: Vec<u8>,
}

/// Reads finding `file` and its input.
pub fn read(file: &Path) -> anyhow::Result<Saved> {
    let text = std::fs::read_to_string(file).with_context(|| format!("{}: cannot read the finding", file.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{}: not a finding of smmlab fuzz (bad JSON)", file.display()))?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let need = |k: &str| field(k).ok_or_else(|| anyhow::anyhow!("{}: not a finding of smmlab fuzz (no \"{k}\")", file.display()));
    let cpu = CpuKind::from_str(&need("cpu")?, true).map_err(|e| anyhow::anyhow!("{}: cpu: {e}", file.display()))?;
    let bin = file.parent().unwrap_or(Path::new(".")).join(need("input")?);
    let input = std::fs::read(&bin).with_context(|| format!("{}: cannot read its input {}", file.display(), bin.display()))?;
    let module = field("module").map(PathBuf::from);
    let scenario = field("scenario");
    let pflash: Vec<String> = v.get("pflash").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default();
    let ovmf = v.get("ovmf").and_then(Value::as_bool).unwrap_or(false);
    let flash = ovmf || !pflash.is_empty();
    if [module.is_some(), scenario.is_some(), flash].iter().filter(|&&x| x).count() != 1 {
        bail!("{}: not a finding of smmlab fuzz (one of \"module\", \"scenario\" and \"pflash\"/\"ovmf\" needed)", file.display());
    }
    let rip = v.get("rip").and_then(Value::as_u64);
    let memory = v.get("memory").and_then(Value::as_u64);
    Ok(Saved { module, module_name: field("module_name"), scenario, pflash, ovmf, memory, handler: need("handler")?, cpu, rule: need("rule")?, rip, input })
}

/// Hex lines of 16 bytes with their offsets.
fn hex(bytes: &[u8]) -> String {
    bytes.chunks(16).enumerate().map(|(i, c)| format!("  {:04x}: {}\n", i * 16, c.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "))).collect()
}

pub fn run(a: ReplayArgs) -> anyhow::Result<i32> {
    let f = read(&a.finding)?;
    let h = handler(&f.handler).with_context(|| format!("{}", a.finding.display()))?;
    let (mut subject, what): (Box<dyn Subject>, String) = match (&f.module, &f.scenario, &h) {
        (Some(file), _, Handler::One(t)) => {
            (Box::new(module_subject(file, f.module_name.as_deref(), Some(f.cpu), t)?.0), format!("the {t} of {}", file.display()))
        }
        (_, Some(sc), Handler::One(Target::Sw(v))) => (Box::new(firmware_subject(sc, f.cpu, Some(*v))?), format!("SW SMI {v:#04x} of the built-in firmware (scenario {sc})")),
        (_, Some(sc), Handler::All) => (Box::new(firmware_subject(sc, f.cpu, None)?), format!("the SW SMI handlers of the built-in firmware (scenario {sc})")),
        (None, None, Handler::One(Target::Guid(g))) => (Box::new(flash_subject(&f.pflash, f.ovmf, f.memory, f.cpu, Some(*g))?), format!("GUID handler {g} of the firmware booted from flash")),
        (None, None, Handler::All) => (Box::new(flash_subject(&f.pflash, f.ovmf, f.memory, f.cpu, None)?), "the GUID handlers of the firmware booted from flash".to_string()),
        _ => bail!("{}: handler {} does not fit its target", a.finding.display(), f.handler),
    };
    println!("replaying {} ({}): {}", a.finding.display(), f.rule, what);
    let e = subject.execute(&f.input);
    if e.instructions > 0 {
        println!("the SMI retired {} instructions", e.instructions);
    }
    for line in subject.said().lines() {
        println!("debugcon: {line}");
    }
    let mut again = false;
    for b in &e.broken {
        let same = b.rule == f.rule;
        again |= same;
        println!("{} {}: {}", if same { "fires again:" } else { "also fires:" }, b.rule, b.message);
        if let Some(rip) = b.rip {
            let phys = subject.code_phys(rip);
            let insn = audit::instruction::text(subject.machine(), phys).unwrap_or_else(|| "(does not decode)".into());
            println!("  at {}: {insn}", subject.place(rip));
        }
    }
    if e.wild_fault {
        println!("the SMI faulted on a wild pointer of the input only (not a finding)");
    }
    println!("the attacker's bytes ({}):\n{}", f.input.len(), hex(&f.input));
    if !again {
        println!("{} did not fire", f.rule);
    }
    Ok(if again { 1 } else { 0 })
}
