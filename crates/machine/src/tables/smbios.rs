//! The SMBIOS tables of the `pc` and `q35` boards, built by smmlab (DMTF DSP0134, System
//! Management BIOS Reference Specification 2.5 structure layouts), handed to firmware as
//! QEMU does: the structures in `etc/smbios/smbios-tables` and a 31-byte 2.1-style entry
//! point in `etc/smbios/smbios-anchor` whose structure-table address the firmware fills in
//! when it places the tables (SeaBIOS and OVMF both do, and recompute the checksums).
//!
//! Structures: type 1 (system), 3 (chassis), 4 (processor), 16 (physical memory array),
//! 17 (memory device), 19 (memory array mapped address), 32 (system boot) and 127 (end of
//! table). There is deliberately no type 0: it describes the BIOS, which is the firmware's
//! to say (SeaBIOS and OVMF add their own when the platform gives none, as with QEMU).

use crate::devices::fw_cfg::FwCfg;

/// fw_cfg file holding the structure table.
pub const FILE_TABLES: &str = "etc/smbios/smbios-tables";
/// fw_cfg file holding the entry point.
pub const FILE_ANCHOR: &str = "etc/smbios/smbios-anchor";
/// Structure types (DSP0134 §7).
pub const TYPE_SYSTEM: u8 = 1;
/// Chassis information.
pub const TYPE_CHASSIS: u8 = 3;
/// Processor information.
pub const TYPE_PROCESSOR: u8 = 4;
/// Physical memory array.
pub const TYPE_MEMORY_ARRAY: u8 = 16;
/// Memory device.
pub const TYPE_MEMORY_DEVICE: u8 = 17;
/// Memory array mapped address.
pub const TYPE_ARRAY_MAPPED_ADDRESS: u8 = 19;
/// System boot information.
pub const TYPE_SYSTEM_BOOT: u8 = 32;
/// End of table.
pub const TYPE_END: u8 = 127;
/// The version the entry point announces.
pub const SMBIOS_MAJOR: u8 = 2;
/// SMBIOS minor version.
pub const SMBIOS_MINOR: u8 = 5;
/// The 2.1 entry point's length (§5.2.1).
pub const ENTRY_POINT_LEN: u8 = 0x1f;
/// Handles: structure n gets 0x0100 + n.
const HANDLE_BASE: u16 = 0x0100;
/// "No error information" handle (§7.17.1).
const HANDLE_NO_ERROR_INFO: u16 = 0xfffe;
const HANDLE_NONE: u16 = 0xffff;

/// The two fw_cfg files.
#[derive(Clone, Debug)]
pub struct SmbiosFiles {
    /// `etc/smbios/smbios-anchor`: the entry point.
    pub anchor: Vec<u8>,
    /// `etc/smbios/smbios-tables`: the structures.
    pub tables: Vec<u8>,
}

impl SmbiosFiles {
    /// Adds both files to `fw_cfg`.
    pub fn install(self, fw_cfg: &mut FwCfg) {
        fw_cfg.add_file(FILE_ANCHOR, self.anchor);
        fw_cfg.add_file(FILE_TABLES, self.tables);
    }
}

/// One structure: formatted area (after the 4-byte header) and its strings.
fn structure(kind: u8, handle: u16, formatted: &[u8], strings: &[&str]) -> Vec<u8> {
    let mut s = vec![kind, 4 + formatted.len() as u8];
    s.extend_from_slice(&handle.to_le_bytes());
    s.extend_from_slice(formatted);
    for st in strings {
        s.extend(st.bytes().filter(|&b| b != 0));
        s.push(0);
    }
    if strings.is_empty() {
        s.push(0);
    }
    s.push(0);
    s
}

fn checksum_fix(buf: &mut [u8], at: usize, range: std::ops::Range<usize>) {
    buf[at] = 0;
    let sum = buf[range].iter().fold(0u8, |a, &b| a.wrapping_add(b));
    buf[at] = sum.wrapping_neg();
}

/// Builds the tables for a board called `product` with `ram_size` bytes of RAM.
pub fn build(product: &str, ram_size: u64) -> SmbiosFiles {
    let version = env!("CARGO_PKG_VERSION");
    let h = |n: u16| HANDLE_BASE + n;
    let mut t = Vec::new();
    let mut count = 0u16;
    let mut max = 0usize;
    let mut add = |t: &mut Vec<u8>, s: Vec<u8>| {
        max = max.max(s.len());
        count += 1;
        t.extend(s);
    };
    // Type 1 (§7.2, 2.4 length 1Bh): manufacturer, product, version; no serial; UUID zero;
    // wake-up type 06h (power switch); no SKU or family.
    let mut f = vec![1, 2, 3, 0];
    f.extend_from_slice(&[0; 16]);
    f.extend_from_slice(&[0x06, 0, 0]);
    add(&mut t, structure(TYPE_SYSTEM, h(1), &f, &["smmlab", product, version]));
    // Type 3 (§7.4, 2.3 length 15h): manufacturer; type 01h (other); boot-up, power-supply and
    // thermal state 03h (safe); security 02h (unknown); no contained elements.
    let f = [1, 0x01, 0, 0, 0, 0x03, 0x03, 0x03, 0x02, 0, 0, 0, 0, 0, 0, 0, 0];
    add(&mut t, structure(TYPE_CHASSIS, h(3), &f, &["smmlab"]));
    // Type 4 (§7.5, 2.5 length 28h): socket "CPU 0", central processor (03h), family 01h
    // (other), manufacturer; no ID or version; speeds unknown (0); status 41h (populated,
    // enabled); upgrade 01h (other); no cache handles; 1 core, 1 enabled, 1 thread;
    // characteristics 02h (unknown).
    let mut f = vec![1, 0x03, 0x01, 2];
    f.extend_from_slice(&[0; 8]); // processor ID
    f.extend_from_slice(&[0, 0]); // version string, voltage
    f.extend_from_slice(&[0; 6]); // external clock, max speed, current speed
    f.extend_from_slice(&[0x41, 0x01]);
    for _ in 0..3 {
        f.extend_from_slice(&HANDLE_NONE.to_le_bytes());
    }
    f.extend_from_slice(&[0, 0, 0, 1, 1, 1]);
    f.extend_from_slice(&0x0002u16.to_le_bytes());
    add(&mut t, structure(TYPE_PROCESSOR, h(4), &f, &["CPU 0", "smmlab"]));
    // Type 16 (§7.17, length 0Fh): location 03h (system board), use 03h (system memory),
    // error correction 03h (none), maximum capacity in KiB, no error information, 1 device.
    let kib = (ram_size / 1024).min(u32::MAX as u64) as u32;
    let mut f = vec![0x03, 0x03, 0x03];
    f.extend_from_slice(&kib.to_le_bytes());
    f.extend_from_slice(&HANDLE_NO_ERROR_INFO.to_le_bytes());
    f.extend_from_slice(&1u16.to_le_bytes());
    add(&mut t, structure(TYPE_MEMORY_ARRAY, h(16), &f, &[]));
    // Type 17 (§7.18, 2.3 length 1Bh): in array h(16); widths unknown (FFFFh); size in MiB
    // (bit 15 clear; 7FFFh "use extended size" is not needed below 32 GiB); form factor 09h
    // (DIMM); locator "DIMM 0"; type 07h (RAM); type detail 0002h (other); speed unknown.
    let mib = (ram_size >> 20).min(0x7ffe) as u16;
    let mut f = Vec::new();
    f.extend_from_slice(&h(16).to_le_bytes());
    f.extend_from_slice(&HANDLE_NO_ERROR_INFO.to_le_bytes());
    f.extend_from_slice(&0xffffu16.to_le_bytes());
    f.extend_from_slice(&0xffffu16.to_le_bytes());
    f.extend_from_slice(&mib.to_le_bytes());
    f.extend_from_slice(&[0x09, 0, 1, 0, 0x07]);
    f.extend_from_slice(&0x0002u16.to_le_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // speed, manufacturer, serial, asset tag, part
    add(&mut t, structure(TYPE_MEMORY_DEVICE, h(17), &f, &["DIMM 0"]));
    // Type 19 (§7.20, length 0Fh): the RAM from 0, in KiB, end inclusive; array h(16);
    // partition width 1.
    let mut f = Vec::new();
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&kib.saturating_sub(1).to_le_bytes());
    f.extend_from_slice(&h(16).to_le_bytes());
    f.push(1);
    add(&mut t, structure(TYPE_ARRAY_MAPPED_ADDRESS, h(19), &f, &[]));
    // Type 32 (§7.33, length 0Bh): 6 reserved bytes, status 0 (no errors detected).
    add(&mut t, structure(TYPE_SYSTEM_BOOT, h(32), &[0; 7], &[]));
    // Type 127 (§7.45): end of table.
    add(&mut t, structure(TYPE_END, h(127), &[], &[]));

    // Entry point (§5.2.1): "_SM_", checksum, length, version, maximum structure size,
    // revision 0, formatted area, "_DMI_", intermediate checksum, table length, table address
    // (0: the firmware places the table), structure count, BCD revision.
    let mut a = b"_SM_".to_vec();
    a.extend_from_slice(&[0, ENTRY_POINT_LEN, SMBIOS_MAJOR, SMBIOS_MINOR]);
    a.extend_from_slice(&(max as u16).to_le_bytes());
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(b"_DMI_");
    a.push(0);
    a.extend_from_slice(&(t.len() as u16).to_le_bytes());
    a.extend_from_slice(&0u32.to_le_bytes());
    a.extend_from_slice(&count.to_le_bytes());
    a.push((SMBIOS_MAJOR << 4) | SMBIOS_MINOR);
    checksum_fix(&mut a, 0x15, 0x10..0x1f);
    checksum_fix(&mut a, 0x04, 0x00..0x1f);
    SmbiosFiles { anchor: a, tables: t }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_point_and_structures_are_well_formed() {
        let f = build("pc", 128 << 20);
        let a = &f.anchor;
        assert_eq!(a.len(), ENTRY_POINT_LEN as usize);
        assert_eq!(&a[0..4], b"_SM_");
        assert_eq!(&a[0x10..0x15], b"_DMI_");
        assert_eq!(a.iter().fold(0u8, |s, &b| s.wrapping_add(b)), 0);
        assert_eq!(a[0x10..].iter().fold(0u8, |s, &b| s.wrapping_add(b)), 0);
        assert_eq!(u16::from_le_bytes([a[0x16], a[0x17]]) as usize, f.tables.len());
        // Walk the structures: each ends with a double NUL after its strings.
        let (t, mut at, mut types) = (&f.tables, 0usize, Vec::new());
        while at < t.len() {
            types.push(t[at]);
            let mut p = at + t[at + 1] as usize;
            while !(t[p] == 0 && t[p + 1] == 0) {
                p += 1;
            }
            at = p + 2;
        }
        assert_eq!(at, t.len());
        assert_eq!(types, [1, 3, 4, 16, 17, 19, 32, 127]);
        assert_eq!(u16::from_le_bytes([a[0x1c], a[0x1d]]), 8);
    }
}
