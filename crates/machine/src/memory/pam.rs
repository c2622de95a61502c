//! PAM (Programmable Attribute Map) shadowing of 0xC0000-0xFFFFF, shared by the i440FX PMC
//! (PAM0-6 at 59h-5Fh, Intel 440FX PMC datasheet doc. 290549 §3.2.x "PAM") and the q35 MCH
//! (PAM0-6 at 90h-96h, Intel 3 Series Chipset MCH datasheet doc. 316966 §5.1.2x "PAM0-PAM6").
//!
//! PAM0 bits 5:4 cover 0xF0000-0xFFFFF (its low nibble is reserved); PAM1-PAM6 cover
//! 0xC0000-0xEFFFF in 16 KiB segments, low nibble for the lower segment and high nibble for
//! the upper. In each nibble bit 0 is RE (reads go to DRAM) and bit 1 is WE (writes go to
//! DRAM); otherwise the access goes to the PCI/ROM side. The registers are stored by the
//! chipsets; this file decodes them.

/// RE: reads from DRAM.
pub const PAM_RE: u8 = 1;
/// WE: writes to DRAM.
pub const PAM_WE: u8 = 2;
/// Writable bits of PAM0 (high nibble only, RE|WE).
pub const PAM0_WMASK: u8 = 0x30;
/// Writable bits of PAM1-PAM6 (RE|WE in both nibbles).
pub const PAM_WMASK: u8 = 0x33;

/// The seven PAM registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Pam(pub [u8; 7]);

impl Pam {
    /// The RE|WE bits that govern `addr`, or `None` outside 0xC0000-0xFFFFF.
    pub fn attr(&self, addr: u64) -> Option<u8> {
        match addr {
            0xf_0000..=0xf_ffff => Some((self.0[0] >> 4) & 3),
            0xc_0000..=0xe_ffff => {
                let seg = ((addr - 0xc_0000) >> 14) as usize; // 16 KiB segments, 0..12
                let reg = self.0[1 + seg / 2];
                Some(if seg.is_multiple_of(2) { reg & 3 } else { (reg >> 4) & 3 })
            }
            _ => None,
        }
    }

    /// Whether a read (or fetch) at `addr` goes to DRAM.
    pub fn read_dram(&self, addr: u64) -> bool {
        self.attr(addr).is_some_and(|a| a & PAM_RE != 0)
    }

    /// Whether a write at `addr` goes to DRAM.
    pub fn write_dram(&self, addr: u64) -> bool {
        self.attr(addr).is_some_and(|a| a & PAM_WE != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_sends_everything_to_rom() {
        let p = Pam::default();
        assert!(!p.read_dram(0xf_0000) && !p.write_dram(0xc_0000));
        assert_eq!(p.attr(0xb_ffff), None);
    }

    #[test]
    fn seabios_make_bios_writable_opens_all_segments() {
        // i440FX dword 0x58 = 0x33333000 (PAM0 at 0x59), 0x5C = 0x33333333.
        let p = Pam([0x30, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33]);
        for a in (0xc_0000..0x10_0000).step_by(0x4000) {
            assert!(p.read_dram(a) && p.write_dram(a), "{a:#x}");
        }
    }

    #[test]
    fn nibbles_select_the_lower_and_upper_segment() {
        let p = Pam([0x10, 0x21, 0, 0, 0, 0, 0x02]);
        assert!(p.read_dram(0xc_0000) && !p.write_dram(0xc_3fff));
        assert!(!p.read_dram(0xc_4000) && p.write_dram(0xc_7fff));
        assert!(p.write_dram(0xe_8000) && !p.write_dram(0xe_c000));
        assert!(p.read_dram(0xf_ffff) && !p.write_dram(0xf_0000));
    }
}
