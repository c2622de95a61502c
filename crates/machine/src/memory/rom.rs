//! The firmware ROM (flash): a flat image of any multiple of 64 KiB that ends at 4 GiB, whose top
//! 128 KiB also appear at 0xE0000-0xFFFFF (the legacy BIOS window). A 64 KiB image fills that
//! window twice, as an undecoded address line makes a small flash part repeat.

use super::MemoryBlock;
use std::ops::Range;

/// The legacy BIOS window below 1 MiB.
pub const ISA_BIOS: Range<u64> = 0xe_0000..0x10_0000;
const FOUR_GIB: u64 = 1 << 32;

/// The ROM image. Guest writes reach it only as the chipset's BIOS write protection allows
/// (the platform decides).
/// The bytes are a [`MemoryBlock`]: the CPU holds host pointers into them for fetches and
/// reads, so they are only copied in and out.
#[derive(Clone, Debug)]
pub struct Rom {
    bytes: MemoryBlock,
}

impl Rom {
    /// Takes an image (the caller checked its size, see [`crate::check_rom`]).
    pub fn new(bytes: Vec<u8>) -> Self {
        Rom { bytes: MemoryBlock::from_bytes(&bytes) }
    }

    /// Image size in bytes.
    pub fn len(&self) -> u64 {
        self.bytes.len()
    }

    /// Whether the image is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// A copy of the image.
    pub fn to_vec(&self) -> Vec<u8> {
        self.bytes.to_vec(0..self.len())
    }

    /// `size` bytes little-endian at image offset `off` (past the end: all ones).
    pub fn read_le(&self, off: u64, size: u8) -> u64 {
        self.bytes.read_le(off, size)
    }

    /// A flash write of `size` bytes at image offset `off`.
    pub fn write_le(&mut self, off: u64, size: u8, v: u64) {
        self.bytes.write_le(off, size, v)
    }

    /// Stores `data` at image offset `off` (a flash update from the host); false if it does
    /// not fit.
    pub fn write(&mut self, off: u64, data: &[u8]) -> bool {
        self.bytes.write(off, data)
    }

    /// A raw pointer into the image, for read-only host pages.
    pub fn page_ptr(&self, offset: u64) -> Option<std::ptr::NonNull<u8>> {
        self.bytes.page_ptr(offset)
    }

    /// The image offset at high address `addr` (just below 4 GiB), if the image covers it.
    pub fn high_offset(&self, addr: u64) -> Option<u64> {
        let base = FOUR_GIB.checked_sub(self.len())?;
        (base..FOUR_GIB).contains(&addr).then(|| addr - base)
    }

    /// The image offset seen at `addr` in the legacy window 0xE0000-0xFFFFF.
    pub fn isa_offset(&self, addr: u64) -> Option<u64> {
        if !ISA_BIOS.contains(&addr) || self.is_empty() {
            return None;
        }
        let (len, window, into) = (self.len(), ISA_BIOS.end - ISA_BIOS.start, addr - ISA_BIOS.start);
        // The window shows the image's top 128 KiB; a smaller image repeats in it. (No 128-bit
        // arithmetic: this runs on every TLB fill of a BIOS page.)
        Some(if len >= window { len - window + into } else { into % len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rom(kib: usize) -> Rom {
        Rom::new((0..kib * 1024).map(|i| (i / 0x10000) as u8).collect())
    }

    #[test]
    fn the_top_128k_appear_below_1m() {
        let r = rom(256);
        assert_eq!(r.isa_offset(0xe_0000), Some(0x2_0000));
        assert_eq!(r.isa_offset(0xf_fff0), Some(0x3_fff0));
        assert_eq!(r.high_offset(0xffff_fff0), Some(0x3_fff0));
        assert_eq!(r.high_offset(0xfffb_ffff), None);
    }

    #[test]
    fn a_64k_rom_appears_twice_in_the_window() {
        let r = rom(64);
        assert_eq!(r.isa_offset(0xe_0010), Some(0x10));
        assert_eq!(r.isa_offset(0xf_0010), Some(0x10));
        assert_eq!(r.high_offset(0xffff_0000), Some(0));
        assert_eq!(r.high_offset(0xfffe_ffff), None);
    }

    #[test]
    fn outside_the_window_is_not_rom() {
        assert_eq!(rom(64).isa_offset(0xd_ffff), None);
        assert_eq!(rom(64).isa_offset(0x10_0000), None);
        assert_eq!(rom(64).page_ptr(0x10_000 - 4095), None);
    }
}
