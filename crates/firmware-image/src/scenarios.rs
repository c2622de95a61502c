//! The built-in firmware's scenarios (the uses of SMM and planted bugs), chosen at run time without rebuilding: the
//! host puts the scenario's name in the fw_cfg file [`FW_CFG_FILE`], and the firmware
//! (`firmware/src/scenario.rs`) reads it at boot. `default` (no file) is the clean firmware.

/// The fw_cfg file that names the scenario.
pub const FW_CFG_FILE: &str = "opt/smmlab/scenario";

/// One scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// The name `--scenario` takes.
    pub name: &'static str,
    /// What the scenario does, in a line.
    pub description: &'static str,
}

/// Every scenario, `default` first.
pub const SCENARIOS: &[Scenario] = &[
    Scenario { name: "default", description: "the clean firmware: every lock set, every pointer checked" },
    Scenario { name: "bug-smram-unlocked", description: "D_LCK is never set (SMRAM stays writable through D_OPEN)" },
    Scenario { name: "bug-no-smrr", description: "SMRR is not programmed (and so neither is SMM_CODE_CHK)" },
    Scenario { name: "bug-callout", description: "SW SMI 0x01 calls a function pointer kept in OS memory" },
    Scenario {
        name: "bug-unchecked-pointer",
        description: "SW SMI 0x01 writes through RBX without checking that it lies outside SMRAM",
    },
    Scenario {
        name: "bug-toctou",
        description: "SW SMI 0x10 reads MessageLength a second time from the caller's buffer",
    },
    Scenario { name: "thermal-runaway", description: "the fan fails under a long busy workload" },
    Scenario { name: "keyboard", description: "the OS reads a line typed on the USB keyboard through the i8042 SMM emulates" },
    Scenario { name: "memory-errors", description: "correctable and uncorrectable ECC errors in the OS's memory" },
    Scenario { name: "hardware-emulation", description: "the OS writes to a COM2 UART that only SMM emulates" },
    Scenario { name: "configuration", description: "settings in the SMM-only flash sector; the OS tries to write the flash itself" },
    Scenario { name: "rootkit-unlocked", description: "no D_LCK, no SMRR: the OS plants an SMI handler in TSEG" },
    Scenario { name: "rootkit-locked", description: "the same rootkit against the locked firmware" },
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// The fw_cfg file contents for scenario `name` (None for `default`, which adds no file).
pub fn fw_cfg_contents(name: &str) -> Option<Vec<u8>> {
    (name != "default").then(|| name.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for s in SCENARIOS {
            assert_eq!(find(s.name), Some(s));
        }
        assert!(find("nope").is_none());
        assert_eq!(fw_cfg_contents("default"), None);
        assert_eq!(fw_cfg_contents("bug-toctou").as_deref(), Some(&b"bug-toctou"[..]));
    }
}
