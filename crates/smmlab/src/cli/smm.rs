//! `smmlab smm inventory`: boot firmware (as `smmlab run` does), then read out of SMRAM what
//! edk2's SMM core holds: the modules it loaded, the SMI handlers registered with it and the SMM
//! protocol database, every address named `Module+0xRVA` (crates/uefi).

use super::run::{self, RunArgs};
use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct SmmArgs {
    #[command(subcommand)]
    pub command: SmmCommand,
}

#[derive(Subcommand)]
pub enum SmmCommand {
    /// Boot the firmware, then list the modules in SMRAM, the SMI handlers and the SMM
    /// protocols edk2's SMM core has registered, as the machine is when the run ends (use
    /// --stop-on-serial to end it where the OS would start: `--ovmf --stop-on-serial Shell>`).
    Inventory(InventoryArgs),
}

#[derive(Args)]
pub struct InventoryArgs {
    /// Write the inventory as JSON to FILE ('-': stdout, instead of the text).
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(a: SmmArgs) -> anyhow::Result<i32> {
    match a.command {
        SmmCommand::Inventory(i) => inventory(i),
    }
}

fn inventory(a: InventoryArgs) -> anyhow::Result<i32> {
    let InventoryArgs { json, mut run } = a;
    if let Some(p) = json.as_deref().filter(|p| *p != "-") {
        super::check_output("--json", std::path::Path::new(p))?;
    }
    // The inventory is the output: no timeline or summary around it.
    run.quiet = true;
    let bios = run.bios.clone();
    let after: run::AfterRun = Box::new(move |m| {
        // Names come from the firmware's own volumes: flash unit 0, or the --bios ROM.
        let firmware = match (m.board.pflash(), &bios) {
            (Some(bank), _) => Some(bank.units()[0].flash.contents()),
            (None, Some(p)) => Some(std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?),
            (None, None) => None,
        };
        let fw = firmware.as_deref().and_then(|d| fwimage::parse(d).ok());
        let ranges = audit::dump::ranges(m);
        anyhow::ensure!(!ranges.is_empty(), "the machine has no SMRAM decoded when the run ends (pc or q35, with SMRAM enabled)");
        let smram = uefi_smm::Smram::new(ranges.iter().map(|r| (r.start, m.read_phys(r.start, (r.end - r.start) as usize, true))).collect());
        let inv = uefi_smm::Inventory::build(&smram, fw.as_ref());
        match json.as_deref() {
            Some("-") => println!("{}", serde_json::to_string_pretty(&inv)?),
            Some(p) => {
                std::fs::write(p, serde_json::to_string_pretty(&inv)? + "\n").with_context(|| format!("cannot write {p}"))?;
                print!("{}", inv.render());
            }
            None => print!("{}", inv.render()),
        }
        Ok(())
    });
    run::run_then(run, Some(after))
}
