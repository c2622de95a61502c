//! `smmlab audit` (configuration and SW SMI behaviour checks, crates/audit) and
//! `smmlab smram dump` (SMRAM at the hand-off, raw).

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use cpu::cpuid::Vendor;
use cpu::CpuModel;
use machine::BoardKind;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AuditMachine {
    /// i440FX + PIIX4.
    Pc,
    /// Q35 + ICH9.
    Q35,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AuditCpu {
    Intel64,
    Amd64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Sarif,
}

/// What to boot (shared by `audit`, `smram dump` and `disasm`).
#[derive(Args)]
pub struct Target {
    /// Machine type.
    #[arg(long, value_enum, default_value = "q35")]
    pub machine: AuditMachine,
    /// Firmware ROM [default: the built-in firmware].
    #[arg(long, value_name = "FILE", conflicts_with_all = ["pflash", "ovmf"])]
    pub bios: Option<PathBuf>,
    /// A system flash unit, as for `smmlab run` (repeatable; UEFI firmware): the hand-off point
    /// is the UEFI Shell's prompt on the serial port. The files are never written.
    #[arg(long, value_name = "FILE[,readonly]")]
    pub pflash: Vec<String>,
    /// Whether only SMM may program the flash, as for `smmlab run`.
    #[arg(long, value_enum, value_name = "on|off", default_value = "on")]
    pub pflash_secure: super::run::Switch,
    /// Debian's OVMF with SMM and secure boot, as for `smmlab run --ovmf` (256 MiB unless
    /// --memory says otherwise).
    #[arg(long, conflicts_with = "pflash")]
    pub ovmf: bool,
    /// A scenario of the built-in firmware (`smmlab scenarios`: default, bug-*).
    #[arg(long, value_name = "NAME")]
    pub scenario: Option<String>,
    /// CPU model [default: intel64 for the built-in firmware, amd64 with --bios, as `run`].
    #[arg(long, value_enum)]
    pub cpu: Option<AuditCpu>,
    /// Guest RAM in MiB (1-3072; the built-in firmware needs at least 16) [default: 128, 256
    /// with --ovmf].
    #[arg(long, value_name = "MiB")]
    pub memory: Option<u64>,
    /// Give up after N instructions (audit: an error if no hand-off point was reached by then;
    /// smram dump and disasm take the state at that point).
    #[arg(long, value_name = "N", default_value_t = 2_000_000_000)]
    pub max_instructions: u64,
}

#[derive(Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub target: Target,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Write the report to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Only the configuration checks (no SW SMIs are raised).
    #[arg(long)]
    pub no_smi: bool,
    /// Audit one SMM driver run on its own (`smmlab module run`): a PE32+ file, or a firmware
    /// image with --module-name or --all-smm. Its handlers get the behaviour checks after its
    /// entry point and the boot's lifecycle events.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["bios", "pflash", "ovmf", "scenario", "no_smi"])]
    pub module: Option<PathBuf>,
    /// The module of a firmware image given with --module: its UI name or file GUID.
    #[arg(long, value_name = "NAME|GUID", requires = "module")]
    pub module_name: Option<String>,
    /// Every MM module of the firmware image given with --module, each on its own.
    #[arg(long, requires = "module")]
    pub all_smm: bool,
}

#[derive(Args)]
pub struct SmramArgs {
    #[command(subcommand)]
    pub command: SmramCommand,
}

#[derive(Subcommand)]
pub enum SmramCommand {
    /// Write SMRAM (the A/B segment or HSEG, and TSEG, as the chipset decodes them, in that
    /// order) at the hand-off point to FILE as raw bytes; the ranges go to stderr.
    Dump(DumpArgs),
}

#[derive(Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub target: Target,
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
}

impl Target {
    /// Guest RAM in MiB.
    pub fn memory(&self) -> u64 {
        self.memory.unwrap_or(if self.ovmf { 256 } else { 128 })
    }

    /// The firmware's name for reports: its file (flash unit 0), or "built-in".
    pub fn firmware_name(&self, flash: &[machine::devices::pflash_bank::PflashImage]) -> String {
        match (&self.bios, flash.first()) {
            (Some(p), _) => p.display().to_string(),
            (None, Some(u)) => u.path.display().to_string(),
            (None, None) => "built-in".to_string(),
        }
    }

    /// The flash units given (`--pflash`, `--ovmf`), read.
    pub fn flash(&self) -> anyhow::Result<Vec<machine::devices::pflash_bank::PflashImage>> {
        let units = if self.ovmf { super::pflash::ovmf_units()? } else { self.pflash.iter().map(|p| super::pflash::PflashArg::parse(p)).collect::<anyhow::Result<Vec<_>>>()? };
        super::pflash::open(&units)
    }
}

fn options(t: &Target, behaviour: bool) -> anyhow::Result<audit::Options> {
    let rom = t.bios.as_deref().map(machine::load_rom).transpose()?;
    let pflash = t.flash()?;
    let external = rom.is_some() || !pflash.is_empty();
    let cpu = t.cpu.unwrap_or(if external { AuditCpu::Amd64 } else { AuditCpu::Intel64 });
    let vendor = match cpu {
        AuditCpu::Intel64 => Vendor::Intel,
        AuditCpu::Amd64 => Vendor::Amd,
    };
    if let Some(name) = &t.scenario {
        if external {
            bail!("--scenario selects a built-in firmware scenario; it cannot be combined with --bios, --pflash or --ovmf");
        }
        super::scenarios::find(name)?;
        if firmware_image::scenarios::find(name).is_none() {
            bail!("scenario '{name}' is not a built-in firmware scenario the auditor can select");
        }
    }
    let (board, machine_name) = match t.machine {
        AuditMachine::Pc => (BoardKind::Pc, "pc"),
        AuditMachine::Q35 => (BoardKind::Q35, "q35"),
    };
    let firmware_name = t.firmware_name(&pflash);
    Ok(audit::Options {
        boot: audit::BootOptions {
            board,
            model: CpuModel { vendor, long_mode: true, tsc_hz: 1_000_000_000 },
            rom,
            scenario: t.scenario.clone(),
            memory_mib: t.memory(),
            max_instructions: t.max_instructions,
            pflash,
            pflash_secure: t.pflash_secure == super::run::Switch::On,
        },
        machine_name,
        cpu_name: match cpu {
            AuditCpu::Intel64 => "intel64",
            AuditCpu::Amd64 => "amd64",
        },
        firmware_name,
        behaviour,
    })
}

/// `smmlab audit`: exit 0 when clean, 1 with findings (errors exit 2 through main).
pub fn run(a: AuditArgs) -> anyhow::Result<i32> {
    if let Some(p) = &a.output {
        super::check_output("--output", p)?;
    }
    let reports = match &a.module {
        Some(file) => modules(&a, file)?,
        None => vec![audit::audit(&options(&a.target, !a.no_smi)?)?],
    };
    // Several modules: one JSON array, one SARIF log with a run per module.
    let text = match (a.format, reports.len()) {
        (_, 0 | 1) | (Format::Text, _) => reports.iter().map(|r| render(&a, r)).collect::<anyhow::Result<String>>()?,
        (Format::Json, _) => serde_json::to_string_pretty(&reports.iter().map(audit::output::json).collect::<Vec<_>>())? + "\n",
        (Format::Sarif, _) => {
            let mut log = audit::output::sarif(&reports[0]);
            for r in &reports[1..] {
                let more = audit::output::sarif(r);
                if let (Some(runs), Some(extra)) = (log["runs"].as_array_mut(), more["runs"].as_array()) {
                    runs.extend(extra.iter().cloned());
                }
            }
            serde_json::to_string_pretty(&log)? + "\n"
        }
    };
    match &a.output {
        Some(p) => std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?,
        None => print!("{text}"),
    }
    Ok(reports.iter().map(audit::report::Report::exit_code).max().unwrap_or(0))
}

/// `--module`: each module run on its own, then audited.
fn modules(a: &AuditArgs, file: &std::path::Path) -> anyhow::Result<Vec<audit::report::Report>> {
    let cpu = a.target.cpu.map(|c| match c {
        AuditCpu::Intel64 => super::run::CpuKind::Intel64,
        AuditCpu::Amd64 => super::run::CpuKind::Amd64,
    });
    // Started as `smmlab module run` starts it: the entry point, then every lifecycle event.
    let t = super::module::Target { file: file.to_path_buf(), vars: None, with: Vec::new(), module: a.module_name.clone(), cpu, phase: super::module::PhaseArg::ReadyToBoot, answer: Vec::new() };
    let (mods, fw) = module_runner::source::modules(file, a.module_name.as_deref(), a.all_smm)?;
    let mut out = Vec::new();
    for m in &mods {
        let cpu_name = match super::module::cpu_for(cpu, m) {
            super::run::CpuKind::Amd64 => "amd64",
            _ => "intel64",
        };
        let mut r = super::module::start(&t, m)?;
        let rep = module_runner::report::report(&mut r, fw.as_ref());
        out.push(audit::module::audit(&mut r, &rep, cpu_name, format!("{} ({})", file.display(), m.name)));
    }
    Ok(out)
}

fn render(a: &AuditArgs, r: &audit::report::Report) -> anyhow::Result<String> {
    Ok(match a.format {
        Format::Text => audit::output::text(r),
        Format::Json => serde_json::to_string_pretty(&audit::output::json(r))? + "\n",
        Format::Sarif => serde_json::to_string_pretty(&audit::output::sarif(r))? + "\n",
    })
}


/// `smmlab smram dump`.
pub fn smram(a: SmramArgs) -> anyhow::Result<i32> {
    let SmramCommand::Dump(d) = a.command;
    super::check_output("--output", &d.output)?;
    let o = options(&d.target, false)?;
    let booted = audit::boot::boot(&o.boot)?;
    let mut m = booted.machine;
    let (ranges, bytes) = audit::dump::dump(&mut m);
    if ranges.is_empty() {
        bail!("no SMRAM is decoded at the hand-off ({})", booted.handoff);
    }
    std::fs::write(&d.output, &bytes).with_context(|| format!("cannot write {}", d.output.display()))?;
    let mut off = 0u64;
    let parts: Vec<String> = ranges
        .iter()
        .map(|r| {
            let s = format!("{:#x}-{:#x} at file offset {off:#x}", r.start, r.end - 1);
            off += r.end - r.start;
            s
        })
        .collect();
    eprintln!("smram dump: {} ({} bytes; hand-off: {})", parts.join(", "), bytes.len(), booted.handoff);
    Ok(0)
}
