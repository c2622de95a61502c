//! Subcommands, one file each.

mod fw;
mod run;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "smmlab", version, about = "x86 System Management Mode, emulated, traced and audited")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run firmware (by default the built-in firmware) on an emulated machine.
    Run(run::RunArgs),
    /// Inspect UEFI firmware images.
    Fw(fw::FwArgs),
}

/// Runs a subcommand; returns the process exit status.
pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run(a) => run::run(a),
        Command::Fw(a) => fw::run(a),
    }
}
