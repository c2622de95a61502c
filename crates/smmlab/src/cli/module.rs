//! `smmlab module run|call`: one UEFI SMM driver on its own (crates/module-runner), from a
//! PE32+ file or from the MM modules of a firmware image: its entry point run in SMM on a
//! synthetic q35 platform, what it registered listed in the inventory format, and its handlers
//! called one by one.

use machine::devices::pflash_bank::PflashImage;
use super::run::CpuKind;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use cpu::cpuid::Vendor;
use cpu::CpuModel;
use module_runner::{report, source, CallResult, Phase, Runner};
use std::path::PathBuf;

#[derive(Args)]
pub struct ModuleArgs {
    #[command(subcommand)]
    pub command: ModuleCommand,
}

#[derive(Subcommand)]
pub enum ModuleCommand {
    /// Load the module into SMRAM, run its entry point (in SMM; an SMM core's or SMM CPU
    /// driver's outside SMM with SMRAM open, as edk2 does), signal the boot's SMM lifecycle
    /// events, and list what it registered (exit 0 when every entry point returned
    /// EFI_SUCCESS, 1 when one failed or did not return, 2 on bad input).
    Run(RunArgs),
    /// Run the module, then call one of its handlers: a GUID handler with a communication
    /// buffer, or the SW SMI handler of a value (exit 0 when the call returned, 1 when it did
    /// not, 2 on bad input).
    Call(CallArgs),
}

/// What every module command takes.
#[derive(Args, Clone)]
pub struct Target {
    /// A PE32+ SMM driver, or a firmware image (its MM modules).
    pub file: PathBuf,
    /// The module of a firmware image: its UI name or file GUID.
    #[arg(long, value_name = "NAME|GUID")]
    pub module: Option<String>,
    /// The CPU model (its save-state map and SMM behaviour) [default: amd64 for a module of a
    /// firmware image, which runs on q35 as `smmlab run` runs flash (QEMU's AMD64 save-state
    /// map, revision 0x20064, which OVMF's SMM CPU driver writes); intel64 for a lone driver].
    #[arg(long, value_enum)]
    pub cpu: Option<CpuKind>,
    /// Signal the boot's SMM lifecycle events up to this one after the entry point.
    #[arg(long, value_enum, default_value = "ready-to-boot")]
    pub phase: PhaseArg,
    /// What a stub function returns: GUID#INDEX=VALUE (repeatable), e.g. a PCD the module
    /// reads (`11b34006-d85b-4d0a-a290-d5a571310ef7#4=0xffc00000`).
    #[arg(long, value_name = "GUID#N=VALUE")]
    pub answer: Vec<String>,
    /// A variable-store flash unit (e.g. /usr/share/OVMF/OVMF_VARS_4M.fd) mapped below the
    /// firmware image, which is mapped as system flash when FILE is a firmware image; read
    /// here, never written back.
    #[arg(long, value_name = "FILE")]
    pub vars: Option<PathBuf>,
    /// Another module of the same firmware image to load into the same SMRAM and run first
    /// (repeatable, in order), e.g. the one producing a protocol the module waits for.
    #[arg(long = "with", value_name = "NAME|GUID")]
    pub with: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PhaseArg {
    /// Only the entry point.
    Entry,
    /// Then EndOfDxe.
    EndOfDxe,
    /// Then ReadyToLock.
    ReadyToLock,
    /// Then ReadyToBoot (what the OS finds).
    ReadyToBoot,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub target: Target,
    /// Run every MM module of the firmware image, each on its own platform.
    #[arg(long)]
    pub all_smm: bool,
    /// Write the reports as JSON to FILE ('-': stdout, instead of the text).
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
}

#[derive(Args)]
pub struct CallArgs {
    #[command(flatten)]
    pub target: Target,
    /// Call the GUID handlers of this HandlerType through a communication buffer.
    #[arg(long, value_name = "GUID", conflicts_with = "sw", required_unless_present = "sw")]
    pub guid: Option<String>,
    /// The message after the EFI_SMM_COMMUNICATE_HEADER (a file; empty without it).
    #[arg(long, value_name = "FILE", requires = "guid")]
    pub buffer: Option<PathBuf>,
    /// Write the message as the handler left it (as many bytes as --buffer gave) to FILE:
    /// the handler's reply, e.g. the ReturnStatus it filled in.
    #[arg(long, value_name = "FILE", requires = "guid")]
    pub reply: Option<PathBuf>,
    /// Raise this SW SMI value and call its SW dispatcher handler.
    #[arg(long, value_name = "N", value_parser = parse_u8)]
    pub sw: Option<u8>,
    /// APM_STS for --sw.
    #[arg(long, value_name = "N", value_parser = parse_u8, default_value = "0")]
    pub data: u8,
    /// A general register at the SMI for --sw: NAME=VALUE (rax..r15, repeatable).
    #[arg(long, value_name = "REG=VALUE")]
    pub reg: Vec<String>,
    /// Write the result as JSON to FILE ('-': stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    };
    r.map_err(|_| format!("{s:?} is not a number"))
}

fn parse_u8(s: &str) -> Result<u8, String> {
    let v = parse_u64(s)?;
    u8::try_from(v).map_err(|_| format!("{s} is more than 0xff"))
}

/// The CPU model `--cpu` names, or the default for `module` (see [`Target::cpu`]).
pub fn cpu_for(cpu: Option<CpuKind>, module: &module_runner::Module) -> CpuKind {
    cpu.unwrap_or(if module.guid.is_some() { CpuKind::Amd64 } else { CpuKind::Intel64 })
}

fn model(k: CpuKind) -> anyhow::Result<CpuModel> {
    Ok(match k {
        CpuKind::Intel64 => CpuModel { vendor: Vendor::Intel, long_mode: true, ..CpuModel::default() },
        CpuKind::Amd64 => CpuModel { vendor: Vendor::Amd, long_mode: true, ..CpuModel::default() },
        CpuKind::I686 => bail!("--cpu i686: UEFI SMM drivers are x64 code and need long mode"),
    })
}

fn answers(list: &[String]) -> anyhow::Result<Vec<(String, u64)>> {
    list.iter()
        .map(|a| {
            let (key, v) = a.split_once('=').with_context(|| format!("--answer {a}: expected GUID#INDEX=VALUE"))?;
            let (g, i) = key.split_once('#').with_context(|| format!("--answer {a}: expected GUID#INDEX=VALUE"))?;
            let g: fwimage::Guid = g.parse().map_err(|_| anyhow::anyhow!("--answer {a}: {g} is not a GUID"))?;
            let i: usize = i.parse().map_err(|_| anyhow::anyhow!("--answer {a}: {i} is not a function index"))?;
            let v = parse_u64(v).map_err(|e| anyhow::anyhow!("--answer {a}: {e}"))?;
            Ok((format!("{g}#{i}"), v))
        })
        .collect()
}

/// The phases `p` asks for.
pub fn phases(p: PhaseArg) -> Vec<Phase> {
    match p {
        PhaseArg::Entry => Vec::new(),
        PhaseArg::EndOfDxe => Phase::through(Phase::EndOfDxe),
        PhaseArg::ReadyToLock => Phase::through(Phase::ReadyToLock),
        PhaseArg::ReadyToBoot => Phase::through(Phase::ReadyToBoot),
    }
}

/// Loads and runs `module` as `t` says: entry point, then the lifecycle events.
pub fn start(t: &Target, module: &module_runner::Module) -> anyhow::Result<Runner> {
    let answers = answers(&t.answer)?;
    // Read once: `Runner::start` may build the platform more than once.
    let lone = |flag: &str, what: &str| anyhow::anyhow!("{flag} {what}: needs a firmware image as FILE, not a lone PE32+ driver");
    let mut flash = Vec::new();
    if module.guid.is_some() {
        // From a firmware image: the image is the platform's flash, as on its board.
        flash.push(PflashImage::open(&t.file, true).with_context(|| format!("{}", t.file.display()))?);
        if let Some(v) = &t.vars {
            flash.push(PflashImage::open(v, false).with_context(|| format!("--vars {}", v.display()))?);
        }
    } else if let Some(v) = &t.vars {
        return Err(lone("--vars", &v.display().to_string()));
    }
    let mut first = Vec::new();
    for w in &t.with {
        if module.guid.is_none() {
            return Err(lone("--with", w));
        }
        let (mut others, _) = source::modules(&t.file, Some(w), false).with_context(|| format!("--with {w}"))?;
        first.push((w, others.swap_remove(0)));
    }
    let mut setup = |r: &mut Runner| -> anyhow::Result<()> {
        r.env.answers.extend(answers.clone());
        if !flash.is_empty() {
            r.attach_flash(flash.clone()).with_context(|| format!("{}: as system flash", t.file.display()))?;
        }
        for (w, m) in &first {
            r.run_first(m).with_context(|| format!("--with {w}"))?;
        }
        Ok(())
    };
    Runner::start(model(cpu_for(t.cpu, module))?, module, &phases(t.phase), &mut setup).with_context(|| format!("{}", t.file.display()))
}

fn write_json(path: &str, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    if path == "-" {
        print!("{text}");
    } else {
        std::fs::write(path, text).with_context(|| format!("--json {path}"))?;
    }
    Ok(())
}

pub fn run(a: ModuleArgs) -> anyhow::Result<i32> {
    match a.command {
        ModuleCommand::Run(r) => run_modules(r),
        ModuleCommand::Call(c) => call(c),
    }
}

fn run_modules(a: RunArgs) -> anyhow::Result<i32> {
    if let Some(p) = a.json.as_deref().filter(|p| *p != "-") {
        super::check_output("--json", std::path::Path::new(p))?;
    }
    answers(&a.target.answer)?;
    let (mods, fw) = source::modules(&a.target.file, a.target.module.as_deref(), a.all_smm)?;
    let mut reports = Vec::new();
    let mut ok = true;
    for m in &mods {
        let mut r = start(&a.target, m)?;
        ok &= matches!(r.entry_result, Some(CallResult::Returned { status: 0, .. }));
        let rep = report::report(&mut r, fw.as_ref());
        if a.json.as_deref() != Some("-") {
            print!("{}", rep.render());
            if mods.len() > 1 {
                println!();
            }
        }
        reports.push(rep);
    }
    if let Some(p) = &a.json {
        write_json(p, &reports)?;
    }
    Ok(if ok { 0 } else { 1 })
}

fn registers(list: &[String]) -> anyhow::Result<machine::host::SmiRegisters> {
    const NAMES: [&str; 16] = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];
    let mut regs = [0u64; 16];
    for r in list {
        let (n, v) = r.split_once('=').with_context(|| format!("--reg {r}: expected NAME=VALUE"))?;
        let i = NAMES.iter().position(|x| x.eq_ignore_ascii_case(n.trim())).with_context(|| format!("--reg {r}: {n} is not a general register (rax..r15)"))?;
        if i == 4 {
            bail!("--reg {r}: RSP is the interrupted program's stack, not an input");
        }
        regs[i] = parse_u64(v).map_err(|e| anyhow::anyhow!("--reg {r}: {e}"))?;
    }
    Ok(regs)
}

fn call(a: CallArgs) -> anyhow::Result<i32> {
    if let Some(p) = a.json.as_deref().filter(|p| *p != "-") {
        super::check_output("--json", std::path::Path::new(p))?;
    }
    if let Some(p) = &a.reply {
        super::check_output("--reply", p)?;
    }
    let regs = registers(&a.reg)?;
    let payload = match &a.buffer {
        Some(p) => std::fs::read(p).with_context(|| format!("--buffer {}", p.display()))?,
        None => Vec::new(),
    };
    if payload.len() as u64 > module_runner::layout::COMM_BUFFER_SIZE - 24 {
        bail!("--buffer {}: {} bytes, more than the {} the communication buffer holds", a.buffer.as_ref().map(|p| p.display().to_string()).unwrap_or_default(), payload.len(), module_runner::layout::COMM_BUFFER_SIZE - 24);
    }
    let guid: Option<fwimage::Guid> = a.guid.as_deref().map(|g| g.parse().map_err(|_| anyhow::anyhow!("--guid {g}: not a GUID"))).transpose()?;
    let (mods, _fw) = source::modules(&a.target.file, a.target.module.as_deref(), false)?;
    let mut r = start(&a.target, &mods[0])?;
    if !matches!(r.entry_result, Some(CallResult::Returned { status: 0, .. })) {
        eprintln!("note: the entry point did not return EFI_SUCCESS: {}", r.entry_result.as_ref().map(report::describe).unwrap_or_default());
    }
    let (what, result) = match (guid, a.sw) {
        (Some(g), _) => {
            if !r.env.handlers.iter().any(|h| h.guid == Some(g)) {
                eprintln!("note: {} registered no handler for {g}", r.module.name);
            }
            (format!("GUID handler {g} with a {}-byte message", payload.len()), r.call_guid(&g, &payload, None))
        }
        (None, Some(v)) => {
            if r.env.sw_registration(v).is_none() {
                eprintln!("note: {} registered no SW SMI handler for {v:#04x}", r.module.name);
            }
            (format!("SW SMI {v:#04x}"), r.call_sw(v, a.data, &regs))
        }
        (None, None) => unreachable!("clap requires --guid or --sw"),
    };
    if let Some(p) = &a.reply {
        let reply = r.machine.read_phys(module_runner::layout::COMM_BUFFER + 24, payload.len(), false);
        std::fs::write(p, reply).with_context(|| format!("--reply {}", p.display()))?;
    }
    let text = format!("{}: {what}: {}", r.module.name, report::describe(&result));
    match a.json.as_deref() {
        Some(p) => {
            let out = serde_json::json!({ "module": r.module, "call": what, "result": result, "served": r.env.served.len() });
            write_json(p, &out)?;
            if p != "-" {
                println!("{text}");
            }
        }
        None => println!("{text}"),
    }
    Ok(if matches!(result, CallResult::Returned { .. }) { 0 } else { 1 })
}
