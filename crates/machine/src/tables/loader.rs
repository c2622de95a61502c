//! The fw_cfg "linker/loader" script (`etc/table-loader`), QEMU's interface for firmware that
//! places tables in guest memory (`hw/acpi/bios-linker-loader.c` documents it; facts only).
//! The script is a sequence of 128-byte little-endian commands:
//!
//! | command | layout after the `u32` command word |
//! |---|---|
//! | 1 ALLOCATE | `file[56]`, `u32 align`, `u8 zone` (1 = high memory, 2 = F segment) |
//! | 2 ADD_POINTER | `dest_file[56]`, `src_file[56]`, `u32 offset`, `u8 size`: add the address of `src_file` to the `size`-byte integer at `offset` in `dest_file` |
//! | 3 ADD_CHECKSUM | `file[56]`, `u32 offset`, `u32 start`, `u32 length`: subtract the byte sum of `start..start+length` from the byte at `offset` |
//!
//! File names are NUL-padded to 56 bytes.

/// ALLOCATE: load a file into guest memory.
pub const COMMAND_ALLOCATE: u32 = 1;
/// ADD_POINTER: add a file's address to a pointer in another file.
pub const COMMAND_ADD_POINTER: u32 = 2;
/// ADD_CHECKSUM: fix up a checksum byte.
pub const COMMAND_ADD_CHECKSUM: u32 = 3;
/// Allocation zones.
pub const ZONE_HIGH: u8 = 1;
/// The F segment (0xF0000-0xFFFFF).
pub const ZONE_FSEG: u8 = 2;
/// Bytes per command and per file name.
pub const COMMAND_SIZE: usize = 128;
/// Bytes per file name.
pub const FILE_NAME_SIZE: usize = 56;

/// A script under construction.
#[derive(Clone, Debug, Default)]
pub struct Loader {
    bytes: Vec<u8>,
}

fn name(buf: &mut Vec<u8>, file: &str) {
    let mut n = [0u8; FILE_NAME_SIZE];
    let b = file.as_bytes();
    let len = b.len().min(FILE_NAME_SIZE - 1);
    n[..len].copy_from_slice(&b[..len]);
    buf.extend_from_slice(&n);
}

impl Loader {
    fn push(&mut self, mut cmd: Vec<u8>) {
        cmd.resize(COMMAND_SIZE, 0);
        self.bytes.extend_from_slice(&cmd);
    }

    /// Places `file` in `zone`, aligned to `align` bytes (a power of two).
    pub fn allocate(&mut self, file: &str, align: u32, zone: u8) {
        let mut c = COMMAND_ALLOCATE.to_le_bytes().to_vec();
        name(&mut c, file);
        c.extend_from_slice(&align.to_le_bytes());
        c.push(zone);
        self.push(c);
    }

    /// Adds the address of `src` to the `size`-byte field at `offset` of `dest`.
    pub fn add_pointer(&mut self, dest: &str, src: &str, offset: u32, size: u8) {
        let mut c = COMMAND_ADD_POINTER.to_le_bytes().to_vec();
        name(&mut c, dest);
        name(&mut c, src);
        c.extend_from_slice(&offset.to_le_bytes());
        c.push(size);
        self.push(c);
    }

    /// Makes the bytes `start..start+length` of `file` sum to 0 through the byte at `offset`.
    pub fn add_checksum(&mut self, file: &str, offset: u32, start: u32, length: u32) {
        let mut c = COMMAND_ADD_CHECKSUM.to_le_bytes().to_vec();
        name(&mut c, file);
        for v in [offset, start, length] {
            c.extend_from_slice(&v.to_le_bytes());
        }
        self.push(c);
    }

    /// The script.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_layout() {
        let mut l = Loader::default();
        l.allocate("etc/acpi/rsdp", 16, ZONE_FSEG);
        l.add_pointer("etc/acpi/rsdp", "etc/acpi/tables", 16, 4);
        l.add_checksum("etc/acpi/rsdp", 8, 0, 20);
        let b = l.into_bytes();
        assert_eq!(b.len(), 3 * COMMAND_SIZE);
        assert_eq!(&b[0..4], &[1, 0, 0, 0]);
        assert_eq!(&b[4..17], b"etc/acpi/rsdp");
        assert_eq!(&b[60..64], &16u32.to_le_bytes());
        assert_eq!(b[64], ZONE_FSEG);
        let p = &b[COMMAND_SIZE..];
        assert_eq!(&p[60..75], b"etc/acpi/tables");
        assert_eq!(&p[116..120], &16u32.to_le_bytes());
        assert_eq!(p[120], 4);
        let c = &b[2 * COMMAND_SIZE..];
        assert_eq!(&c[0..4], &[3, 0, 0, 0]);
        assert_eq!(&c[60..72], &[8, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0]);
    }
}
