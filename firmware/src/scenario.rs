//! Scenarios (planted bugs and the uses of SMM), chosen at run time: smmlab puts the scenario's name in the fw_cfg
//! file `opt/smmlab/scenario` (QEMU fw_cfg, selector port 0x510, data port 0x511; the file
//! directory is key 0x19, big-endian). No file, or an unknown name, means the clean firmware.

use crate::io::{inb, outw};

/// The fw_cfg file that names the scenario.
pub const FW_CFG_FILE: &[u8] = b"opt/smmlab/scenario";

/// The clean firmware.
pub const DEFAULT: u64 = 0;
/// D_LCK is never set.
pub const SMRAM_UNLOCKED: u64 = 1;
/// SMRR (and so SMM_CODE_CHK, which checks against SMRR) is not programmed.
pub const NO_SMRR: u64 = 2;
/// The ping handler calls a function pointer kept in OS memory.
pub const CALLOUT: u64 = 3;
/// The ping handler writes its count through RBX without checking it lies outside SMRAM.
pub const UNCHECKED_POINTER: u64 = 4;
/// The communication handler reads MessageLength a second time from the caller's buffer.
pub const TOCTOU: u64 = 5;
/// The fan has failed (the host breaks it); the OS runs a long busy workload.
pub const THERMAL_RUNAWAY: u64 = 6;
/// The host types on the USB keyboard; the OS reads it through the emulated i8042.
pub const KEYBOARD: u64 = 7;
/// The host injects correctable and uncorrectable ECC errors.
pub const MEMORY_ERRORS: u64 = 8;
/// The OS talks to a COM2 UART that only SMM emulates.
pub const HARDWARE_EMULATION: u64 = 9;
/// The OS changes settings through SMM and tries to write the flash itself.
pub const CONFIGURATION: u64 = 10;
/// The firmware leaves SMRAM unlocked and SMRR unprogrammed; the OS plants a rootkit.
pub const ROOTKIT_UNLOCKED: u64 = 11;
/// The same rootkit against the locked firmware.
pub const ROOTKIT_LOCKED: u64 = 12;

const NAMES: [(&[u8], u64); 12] = [
    (b"bug-smram-unlocked", SMRAM_UNLOCKED),
    (b"bug-no-smrr", NO_SMRR),
    (b"bug-callout", CALLOUT),
    (b"bug-unchecked-pointer", UNCHECKED_POINTER),
    (b"bug-toctou", TOCTOU),
    (b"thermal-runaway", THERMAL_RUNAWAY),
    (b"keyboard", KEYBOARD),
    (b"memory-errors", MEMORY_ERRORS),
    (b"hardware-emulation", HARDWARE_EMULATION),
    (b"configuration", CONFIGURATION),
    (b"rootkit-unlocked", ROOTKIT_UNLOCKED),
    (b"rootkit-locked", ROOTKIT_LOCKED),
];

const PORT_SEL: u16 = 0x510;
const PORT_DATA: u16 = 0x511;
const KEY_FILE_DIR: u16 = 0x19;

fn read_be32() -> u32 {
    let mut v = 0u32;
    for _ in 0..4 {
        v = v << 8 | inb(PORT_DATA) as u32;
    }
    v
}

/// The scenario fw_cfg names (DEFAULT when there is no fw_cfg or no file).
pub fn read() -> u64 {
    outw(PORT_SEL, KEY_FILE_DIR);
    let count = read_be32();
    if count > 4096 {
        return DEFAULT; // all ones: no fw_cfg device
    }
    let mut found: Option<(u16, u32)> = None;
    for _ in 0..count {
        let size = read_be32();
        let key = (inb(PORT_DATA) as u16) << 8 | inb(PORT_DATA) as u16;
        inb(PORT_DATA);
        inb(PORT_DATA);
        let mut name = [0u8; 56];
        for b in name.iter_mut() {
            *b = inb(PORT_DATA);
        }
        let len = name.iter().position(|&b| b == 0).unwrap_or(56);
        if found.is_none() && &name[..len] == FW_CFG_FILE {
            found = Some((key, size));
        }
    }
    let Some((key, size)) = found else { return DEFAULT };
    let mut value = [0u8; 32];
    let n = (size as usize).min(value.len());
    outw(PORT_SEL, key);
    for b in value[..n].iter_mut() {
        *b = inb(PORT_DATA);
    }
    let text = &value[..n];
    let text = match text.iter().position(|&b| b == 0 || b == b'\n') {
        Some(e) => &text[..e],
        None => text,
    };
    NAMES.iter().find(|(nm, _)| *nm == text).map_or(DEFAULT, |&(_, id)| id)
}

/// The scenario's name, for the log.
pub fn name(id: u64) -> &'static str {
    match NAMES.iter().find(|&&(_, k)| k == id) {
        Some((nm, _)) => core::str::from_utf8(nm).unwrap_or("?"),
        None => "default",
    }
}

/// Where the boot code leaves the call-out target for [`CALLOUT`]: a function pointer in OS
/// memory, as a boot-services table would hold it.
pub const CALLOUT_SLOT: u64 = 0x6_f000;
