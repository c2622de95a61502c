//! Subcommands, one file each.

mod audit;
mod bench;
mod disasm;
mod fuzz;
mod fuzz_replay;
mod fw;
mod gdb;
mod host;
mod interrupt;
mod module;
mod observe;
mod pflash;
mod run;
mod scenarios;
mod smi_load;
mod smm;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "smmlab", version, about = "x86 System Management Mode, emulated, traced and audited")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Command {
    /// Run firmware (by default the built-in firmware) on an emulated machine.
    Run(run::RunArgs),
    /// Inspect UEFI firmware images.
    Fw(fw::FwArgs),
    /// List the scenarios `smmlab run --scenario` runs.
    Scenarios(scenarios::ScenariosArgs),
    /// Audit SMM: chipsec-style configuration checks at the hand-off, then every SW SMI with
    /// hostile register patterns (exit 0 clean, 1 findings, 2 error, also for firmware that
    /// never reaches its hand-off).
    Audit(audit::AuditArgs),
    /// SMRAM at the hand-off point.
    Smram(audit::SmramArgs),
    /// Disassemble the code that ran in SMM, each block annotated with the SMIs that ran it.
    Disasm(disasm::DisasmArgs),
    /// Measure the interpreter: MIPS on an ALU loop, microseconds per SMI round trip.
    Bench(bench::BenchArgs),
    /// UEFI SMM: `smm inventory` lists the modules, SMI handlers and protocols of edk2's SMM
    /// core after a boot.
    Smm(smm::SmmArgs),
    /// One UEFI SMM driver on its own: `module run` loads it (a PE32+ file, or an MM module of
    /// a firmware image) into the SMRAM of a synthetic platform, runs its entry point in SMM
    /// and lists what it registered; `module call` invokes one of its handlers.
    Module(module::ModuleArgs),
    /// Fuzz one SMI handler of an SMM driver run on its own, or the built-in firmware's SW SMI
    /// handlers (coverage-guided, LibAFL): the audit's oracles judge every call; each finding
    /// is minimised and saved (exit 0 clean, 1 findings, 2 error); `fuzz replay` reruns one.
    Fuzz(fuzz::FuzzArgs),
    /// The SMIs of the machine smmlab runs on: TSC gaps as Linux's hwlat tracer finds them,
    /// attributed to SMIs or NMIs by the host's counters, with the time they steal (exit 0
    /// when it ran, 2 when it could not start).
    Host(host::HostArgs),
    /// Run firmware as `smmlab run` does (any of its options), driven by gdb: `--listen ADDR`,
    /// or `--stdio` for `target remote | smmlab gdb --stdio`. System and SMM registers,
    /// watchpoints, reverse stepping, `monitor help` for SMIs, SMRAM views and the timeline.
    Gdb(gdb::GdbArgs),
}

/// Refuses an output file that cannot be written, before a run that may take long: `path` is
/// a directory, or its directory does not exist.
pub fn check_output(flag: &str, path: &std::path::Path) -> anyhow::Result<()> {
    if path.is_dir() {
        anyhow::bail!("{flag} {}: that is a directory, not a file", path.display());
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if !dir.is_dir() {
        anyhow::bail!("{flag} {}: the directory {} does not exist", path.display(), dir.display());
    }
    Ok(())
}

/// Runs a subcommand; returns the process exit status.
pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run(a) => run::run(a),
        Command::Fw(a) => fw::run(a),
        Command::Scenarios(a) => scenarios::run(a),
        Command::Audit(a) => audit::run(a),
        Command::Smram(a) => audit::smram(a),
        Command::Disasm(a) => disasm::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Smm(a) => smm::run(a),
        Command::Module(a) => module::run(a),
        Command::Fuzz(a) => fuzz::run(a),
        Command::Host(a) => host::run(a),
        Command::Gdb(a) => gdb::run(a),
    }
}
