//! `smmlab scenarios` and the scenario table `smmlab run --scenario NAME` picks from.
//!
//! A scenario is a named, reproducible run: a firmware and what to do to the machine before it
//! starts (extra SMI sources, devices, faults to inject). Every scenario lives in [`SCENARIOS`]:
//! adding one (thermal-runaway, keyboard, memory-errors, hardware-emulation, configuration,
//! rootkit-unlocked, rootkit-locked, bug-*) means adding one entry there.

use clap::Args;
use machine::Machine;

/// One scenario.
pub struct Scenario {
    /// The name given to `--scenario`.
    pub name: &'static str,
    /// One line for `smmlab scenarios`.
    pub summary: &'static str,
    /// The firmware image it runs (mapped to end at 4 GiB).
    pub rom: fn() -> Vec<u8>,
    /// Changes to the machine before the run starts.
    pub setup: fn(&mut Machine) -> anyhow::Result<()>,
}

/// Every scenario, in the order `smmlab scenarios` lists them.
pub const SCENARIOS: &[Scenario] = &[Scenario {
    name: "default",
    summary: "the built-in firmware on q35: SMBASE relocation into TSEG, then the OS calls the SW SMI services (0x01 ping, 0x10 communication buffer, 0xE0 ready-to-lock)",
    rom: builtin_rom,
    setup: no_setup,
},
// --- planted bugs of the built-in firmware (audit issue): the name goes to the firmware in
// the fw_cfg file opt/smmlab/scenario (firmware_image::scenarios); `smmlab audit` finds each.
Scenario { name: "bug-smram-unlocked", summary: "built-in firmware, planted bug: D_LCK is never set", rom: builtin_rom, setup: bug_smram_unlocked },
Scenario { name: "bug-no-smrr", summary: "built-in firmware, planted bug: SMRR (and SMM_CODE_CHK) not programmed", rom: builtin_rom, setup: bug_no_smrr },
Scenario { name: "bug-callout", summary: "built-in firmware, planted bug: SW SMI 0x01 calls a function pointer in OS memory", rom: builtin_rom, setup: bug_callout },
Scenario { name: "bug-unchecked-pointer", summary: "built-in firmware, planted bug: SW SMI 0x01 writes through RBX unchecked", rom: builtin_rom, setup: bug_unchecked_pointer },
Scenario { name: "bug-toctou", summary: "built-in firmware, planted bug: SW SMI 0x10 reads MessageLength twice from the caller", rom: builtin_rom, setup: bug_toctou },
// --- end planted bugs ---
];

// --- planted bugs (audit issue) ---
/// Names planted-bug scenario `name` to the built-in firmware through fw_cfg.
fn planted(m: &mut Machine, name: &str) -> anyhow::Result<()> {
    audit::boot::apply_scenario(m, name).map_err(|e| anyhow::anyhow!("{e}"))
}
fn bug_smram_unlocked(m: &mut Machine) -> anyhow::Result<()> {
    planted(m, "bug-smram-unlocked")
}
fn bug_no_smrr(m: &mut Machine) -> anyhow::Result<()> {
    planted(m, "bug-no-smrr")
}
fn bug_callout(m: &mut Machine) -> anyhow::Result<()> {
    planted(m, "bug-callout")
}
fn bug_unchecked_pointer(m: &mut Machine) -> anyhow::Result<()> {
    planted(m, "bug-unchecked-pointer")
}
fn bug_toctou(m: &mut Machine) -> anyhow::Result<()> {
    planted(m, "bug-toctou")
}
// --- end planted bugs ---

fn builtin_rom() -> Vec<u8> {
    firmware_image::ROM.to_vec()
}

fn no_setup(_: &mut Machine) -> anyhow::Result<()> {
    Ok(())
}

/// The scenario called `name`, or an error that lists the valid names.
pub fn find(name: &str) -> anyhow::Result<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        anyhow::anyhow!("unknown scenario '{name}'; valid scenarios: {}", names.join(", "))
    })
}

#[derive(Args)]
pub struct ScenariosArgs {}

/// Lists the scenarios, one per line.
pub fn run(_: ScenariosArgs) -> anyhow::Result<i32> {
    let width = SCENARIOS.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in SCENARIOS {
        println!("{:<width$}  {}", s.name, s.summary);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_default_exists() {
        let mut names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SCENARIOS.len());
        assert!(find("default").is_ok());
        let e = find("nope").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("nope") && e.contains("default"), "{e}");
    }
}
