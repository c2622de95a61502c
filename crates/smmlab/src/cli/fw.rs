//! `smmlab fw`: look inside UEFI firmware images (PI spec Vol. 3 volumes, files, sections).

use anyhow::Context;
use clap::{Args, Subcommand};
use fwimage::{Image, Module};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Args)]
pub struct FwArgs {
    #[command(subcommand)]
    pub command: FwCommand,
}

#[derive(Subcommand)]
pub enum FwCommand {
    /// List the FFS files (modules) of a firmware image, nested and compressed volumes included.
    ///
    /// Offsets of files inside decompressed volumes are offsets in the decompressed data.
    Inspect(InspectArgs),
}

#[derive(Args)]
pub struct InspectArgs {
    /// Firmware image (for example /usr/share/OVMF/OVMF_CODE_4M.secboot.fd).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print `{"modules": [...]}` as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    modules: &'a [Module],
}

pub fn run(a: FwArgs) -> anyhow::Result<i32> {
    match a.command {
        FwCommand::Inspect(i) => inspect(i),
    }
}

fn inspect(a: InspectArgs) -> anyhow::Result<i32> {
    let path = a.file.display().to_string();
    // 64 MiB: the largest SPI flash parts hold 64 MiB (OVMF's images are 4 MiB).
    let data = machine::input::read_at_most(&a.file, 64 << 20).with_context(|| format!("cannot read {path}"))?;
    let image =
        fwimage::parse(&data).with_context(|| format!("{path} is not a valid firmware image"))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&Report {
                modules: &image.modules
            })?
        );
    } else {
        print_table(&image);
    }
    Ok(0)
}

fn print_table(image: &Image) {
    println!("Volumes:");
    for v in &image.volumes {
        let place = match v.parent {
            None => "in the image".to_string(),
            Some(m) => {
                let parent = image.modules.get(m);
                let guid = parent.map(|p| p.guid.to_string()).unwrap_or_default();
                let fv = parent.map(|p| p.fv).unwrap_or_default();
                let how = if v.in_decompressed {
                    "decompressed from"
                } else {
                    "in"
                };
                format!("{how} file {guid} (fv{fv})")
            }
        };
        let name = v
            .header
            .name
            .map(|g| g.to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "  fv{:<3} offset {:#10x}  size {:#10x}  {:<5} name {name}  {place}",
            v.index,
            v.offset,
            v.header.length,
            v.header.file_system.name()
        );
    }
    println!();
    println!(
        "{:<5} {:>10} {:>9}  {:<21} {:<36}  {:<4} NAME",
        "FV", "OFFSET", "SIZE", "TYPE", "GUID", "SMM"
    );
    for m in &image.modules {
        let offset = format!(
            "{:#x}{}",
            m.offset,
            if m.in_decompressed { "*" } else { "" }
        );
        let name = m.name.as_deref().unwrap_or("-");
        println!(
            "fv{:<3} {:>10} {:>#9x}  {:<21} {:<36}  {:<4} {name}",
            m.fv,
            offset,
            m.size,
            m.file_type.to_string(),
            m.guid.to_string(),
            if m.smm { "SMM" } else { "" },
        );
        for n in &m.notes {
            println!("      note: {n}");
        }
    }
    let mm = image.mm_modules().count();
    println!();
    println!(
        "{} modules, {mm} MM (SMM); * = offset in decompressed data, not in the image",
        image.modules.len()
    );
}
