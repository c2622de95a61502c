//! The firmware ROM (flash): a flat image of any multiple of 64 KiB that ends at 4 GiB, whose top
//! 128 KiB also appear at 0xE0000-0xFFFFF (the legacy BIOS window). A 64 KiB image fills that
//! window twice, as an undecoded address line makes a small flash part repeat.

use std::ops::Range;

/// The legacy BIOS window below 1 MiB.
pub const ISA_BIOS: Range<u64> = 0xe_0000..0x10_0000;
const FOUR_GIB: u64 = 1 << 32;

/// The ROM image. Guest writes reach it only as the chipset's BIOS write protection allows
/// (the platform decides).
#[derive(Clone, Debug)]
pub struct Rom {
    bytes: Vec<u8>,
}

impl Rom {
    /// Wraps an image (the caller checked its size, see [`crate::check_rom`]).
    pub fn new(bytes: Vec<u8>) -> Self {
        Rom { bytes }
    }

    /// Image size in bytes.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Whether the image is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The image.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    /// The image, for a flash write.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    /// A raw pointer into the image, for read-only host pages.
    pub fn page_ptr(&mut self, offset: u64) -> Option<std::ptr::NonNull<u8>> {
        let o = usize::try_from(offset).ok()?;
        if o.checked_add(4096)? > self.bytes.len() {
            return None;
        }
        std::ptr::NonNull::new(self.bytes[o..].as_mut_ptr())
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
        let len = self.len() as i128;
        let window = (ISA_BIOS.end - ISA_BIOS.start) as i128;
        let off = (addr - ISA_BIOS.start) as i128 + len - window;
        Some(off.rem_euclid(len) as u64)
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
