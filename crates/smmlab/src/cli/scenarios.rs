//! `smmlab scenarios` and the scenario table `smmlab run --scenario NAME` picks from.
//!
//! A scenario is a named, reproducible run: a firmware and what to do to the machine before it
//! starts (keys to type, errors to inject, a fan to break: `machine::lab`). The built-in
//! firmware learns the scenario's name through fw_cfg (`firmware_image::scenarios`) and its OS
//! does what the scenario is about. Every scenario lives in [`SCENARIOS`].

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
    /// What the scenario types on the USB keyboard (`smmlab run --type` replaces it).
    pub types: Option<&'static str>,
}

/// Sets the machine up for scenario `sc`, with `typed` (if any) typed instead of the
/// scenario's own text.
pub fn prepare(m: &mut Machine, sc: &Scenario, typed: Option<&str>) -> anyhow::Result<()> {
    (sc.setup)(m)?;
    if let Some(text) = typed.or(sc.types) {
        // The OS reads a line: it ends at Enter.
        let line = if text.ends_with('\n') { text.to_string() } else { format!("{text}\n") };
        type_text(m, 5.0, 2.0, &line)?;
    }
    Ok(())
}

/// Every scenario, in the order `smmlab scenarios` lists them.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "default",
        summary: "the built-in firmware with every use of SMM once: settings in SMM-only flash, an emulated COM2, a USB keyboard as i8042, ECC errors, fan control, and the OS measuring the time SMIs steal",
        rom: builtin_rom,
        setup: default_setup,
        types: Some("smm"),
    },
    // --- the uses of SMM (built-in platform issue) ---
    Scenario { name: "thermal-runaway", summary: "the fan fails under a busy workload: the thermal SMI handler shuts the machine down (S5) at the critical temperature", rom: builtin_rom, setup: thermal_runaway, types: None },
    Scenario { name: "keyboard", summary: "the OS reads a line typed on a USB keyboard, through the i8042 that SMM emulates on ports 0x60/0x64", rom: builtin_rom, setup: keyboard, types: Some(KEYBOARD_TEXT) },
    Scenario { name: "memory-errors", summary: "ECC errors in the OS's memory: corrected ones counted, an uncorrectable one retires its page and leaves a CPER record", rom: builtin_rom, setup: memory_errors, types: None },
    Scenario { name: "hardware-emulation", summary: "the OS talks to a COM2 16550 the board does not have; SMM answers every access through an I/O trap", rom: builtin_rom, setup: hardware_emulation, types: None },
    Scenario { name: "configuration", summary: "settings kept in a flash sector only SMM may write (BIOSWE/BLE/SMM_BWP); the OS's own flash writes fail", rom: builtin_rom, setup: configuration, types: None },
    Scenario { name: "rootkit-unlocked", summary: "the firmware leaves SMRAM unlocked (no D_LCK, no SMRR): the OS plants an SMI handler in TSEG that hides and grants root", rom: builtin_rom, setup: rootkit_unlocked, types: None },
    Scenario { name: "rootkit-locked", summary: "the same rootkit against the locked firmware: stopped at its first step by D_LCK", rom: builtin_rom, setup: rootkit_locked, types: None },
    // --- end uses of SMM ---
    // --- planted bugs of the built-in firmware (audit issue): the name goes to the firmware in
    // the fw_cfg file opt/smmlab/scenario (firmware_image::scenarios); `smmlab audit` finds each.
    Scenario { name: "bug-smram-unlocked", summary: "built-in firmware, planted bug: D_LCK is never set", rom: builtin_rom, setup: bug_smram_unlocked, types: None },
    Scenario { name: "bug-no-smrr", summary: "built-in firmware, planted bug: SMRR (and SMM_CODE_CHK) not programmed", rom: builtin_rom, setup: bug_no_smrr, types: None },
    Scenario { name: "bug-callout", summary: "built-in firmware, planted bug: SW SMI 0x01 calls a function pointer in OS memory", rom: builtin_rom, setup: bug_callout, types: None },
    Scenario { name: "bug-unchecked-pointer", summary: "built-in firmware, planted bug: SW SMI 0x01 writes through RBX unchecked", rom: builtin_rom, setup: bug_unchecked_pointer, types: None },
    Scenario { name: "bug-toctou", summary: "built-in firmware, planted bug: SW SMI 0x10 reads MessageLength twice from the caller", rom: builtin_rom, setup: bug_toctou, types: None },
    // --- end planted bugs ---
];

// --- the uses of SMM (built-in platform issue) ---
/// Where the OS's workload buffer starts (firmware/src/boot/os/workload.rs WORK_BUF).
const OS_WORK_BUF: u64 = 0x30_0000;

/// Guest time `ms` milliseconds after reset.
fn at_ms(m: &Machine, ms: f64) -> machine::clock::Ticks {
    m.ticks_at_ns((ms * 1e6) as u64)
}

fn lab(m: &mut Machine, name: &str) -> anyhow::Result<()> {
    if name != "default" {
        planted(m, name)?;
    }
    // run, disasm and audit build the built-in firmware's board with the lab hardware.
    anyhow::ensure!(m.board.has_lab_hardware(), "scenario {name}: the built-in firmware runs on the q35 machine only (leave out --machine, or give --bios FILE to run other firmware)");
    Ok(())
}

/// HID usage and shift for an ASCII character (HID Usage Tables 10, keyboard page).
fn hid_usage(c: char) -> Option<(u8, bool)> {
    let shifted = "!@#$%^&*()_+<>?:\"{}|~";
    let plain = "1234567890-=,./;'[]\\`";
    Some(match c {
        'a'..='z' => (0x04 + (c as u8 - b'a'), false),
        'A'..='Z' => (0x04 + (c as u8 - b'A'), true),
        '1'..='9' => (0x1e + (c as u8 - b'1'), false),
        '0' => (0x27, false),
        '\n' => (0x28, false),
        ' ' => (0x2c, false),
        '-' => (0x2d, false),
        '=' => (0x2e, false),
        ',' => (0x36, false),
        '.' => (0x37, false),
        '/' => (0x38, false),
        '[' => (0x2f, false),
        ']' => (0x30, false),
        '\\' => (0x31, false),
        ';' => (0x33, false),
        '\'' => (0x34, false),
        '`' => (0x35, false),
        c if shifted.contains(c) => {
            let k = shifted.find(c)?;
            return hid_usage(plain.as_bytes()[k] as char).map(|(u, _)| (u, true));
        }
        _ => return None,
    })
}

/// Types `text` on the USB keyboard from `start_ms`: a key-down and a key-up report per
/// character, `step_ms` apart.
pub fn type_text(m: &mut Machine, start_ms: f64, step_ms: f64, text: &str) -> anyhow::Result<()> {
    let mut t = start_ms;
    for c in text.chars() {
        let (usage, shift) = hid_usage(c).ok_or_else(|| anyhow::anyhow!("cannot type {c:?} on the modelled keyboard"))?;
        let down = [if shift { 0x02 } else { 0 }, 0, usage, 0, 0, 0, 0, 0];
        anyhow::ensure!(m.board.queue_key_report(at_ms(m, t), down), "the machine has no USB keyboard");
        m.board.queue_key_report(at_ms(m, t + step_ms), [0; 8]);
        t += 2.0 * step_ms;
    }
    Ok(())
}

fn default_setup(m: &mut Machine) -> anyhow::Result<()> {
    lab(m, "default")?;
    for ms in [40.0, 55.0] {
        m.board.inject_memory_error(at_ms(m, ms), OS_WORK_BUF + 0x2_0040, false);
    }
    Ok(())
}
fn thermal_runaway(m: &mut Machine) -> anyhow::Result<()> {
    lab(m, "thermal-runaway")?;
    m.board.set_fan_failed(true);
    Ok(())
}
/// What the keyboard scenario types.
pub const KEYBOARD_TEXT: &str = "Hello, SMM!";
fn keyboard(m: &mut Machine) -> anyhow::Result<()> {
    lab(m, "keyboard")
}
/// The memory-errors scenario's uncorrectable error.
pub const UNCORRECTABLE_AT: u64 = OS_WORK_BUF + 0x5123;
fn memory_errors(m: &mut Machine) -> anyhow::Result<()> {
    lab(m, "memory-errors")?;
    for (k, ms) in [10.0, 20.0, 30.0].into_iter().enumerate() {
        m.board.inject_memory_error(at_ms(m, ms), OS_WORK_BUF + 0x1000 * k as u64 + 0x80, false);
    }
    m.board.inject_memory_error(at_ms(m, 50.0), UNCORRECTABLE_AT, true);
    Ok(())
}
fn hardware_emulation(m: &mut Machine) -> anyhow::Result<()> {
    lab(m, "hardware-emulation")
}
fn configuration(m: &mut Machine) -> anyhow::Result<()> {
    lab(m, "configuration")
}
fn rootkit_unlocked(m: &mut Machine) -> anyhow::Result<()> {
    lab(m, "rootkit-unlocked")
}
fn rootkit_locked(m: &mut Machine) -> anyhow::Result<()> {
    lab(m, "rootkit-locked")
}
// --- end uses of SMM ---

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
    fn every_printable_ascii_character_can_be_typed() {
        for c in (0x20u8..0x7f).map(char::from).chain(['\n']) {
            let (usage, _) = hid_usage(c).unwrap_or_else(|| panic!("{c:?}"));
            assert!((0x04..=0x38).contains(&usage), "{c:?}: {usage:#x}");
        }
        assert_eq!(hid_usage('A'), Some((0x04, true)));
        assert_eq!(hid_usage(':'), Some((0x33, true)));
        assert_eq!(hid_usage('\t'), None);
    }

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
