//! The PIIX3 PCI-to-ISA bridge function, 00:01.0 (8086:7000), as QEMU's `pc` machine presents
//! it: only its identity, so that PCI scans find the multi-function device 1 whose function 3
//! is the PIIX4 power management ([`super::piix4_pm`]). Its registers (PIRQ routing, ...) come
//! with the platform issue. Intel 82371SB (PIIX3) datasheet, doc. 290550, §2.2.

use crate::chipset::q35::mch::VENDOR_INTEL;
use crate::pci::config::{ConfigSpace, HEADER_TYPE_MULTI_FUNCTION};
use crate::pci::PciFunction;

/// PIIX3 ISA bridge device ID.
pub const PIIX3_ISA_DEVICE_ID: u16 = 0x7000;
/// ISA bridge class code.
pub const PIIX3_ISA_CLASS: u32 = 0x06_01_00;

/// The ISA bridge function.
#[derive(Clone, Debug)]
pub struct Piix3Isa {
    cfg: ConfigSpace,
}

impl Default for Piix3Isa {
    fn default() -> Self {
        Piix3Isa { cfg: ConfigSpace::new(VENDOR_INTEL, PIIX3_ISA_DEVICE_ID, 0, PIIX3_ISA_CLASS, HEADER_TYPE_MULTI_FUNCTION) }
    }
}

impl PciFunction for Piix3Isa {
    fn config_read(&self, offset: u8, size: u8) -> u32 {
        self.cfg.read(offset, size)
    }

    fn config_write(&mut self, offset: u8, size: u8, value: u32) {
        self.cfg.write(offset, size, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_a_multifunction_isa_bridge_with_no_writable_registers() {
        let mut b = Piix3Isa::default();
        assert_eq!(b.config_read(0, 4), 0x7000_8086);
        assert_eq!(b.config_read(0x0e, 1), 0x80);
        b.config_write(0x60, 4, u32::MAX);
        assert_eq!(b.config_read(0x60, 4), 0);
    }
}
