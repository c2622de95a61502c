//! The 82441FX PCI and memory controller, host bridge 00:00.0 (8086:1237): SMRAM at 72h and
//! PAM0-6 at 59h-5Fh. Registers from the Intel 440FX PCIset datasheet (doc. 290549),
//! §3.2 "PMC register description".
//!
//! SMRAM lock as Bochs models it and the datasheet states: once D_LCK is set it stays set until
//! reset and D_OPEN is forced to 0 on every later write (G_SMRAME and D_CLS stay writable, as
//! in Bochs). A write that sets D_LCK clears D_OPEN in the same write ("when D_LCK is set to
//! 1, D_OPEN is reset to 0"). QEMU does not implement D_LCK on i440FX.

use crate::chipset::q35::mch::VENDOR_INTEL;
use crate::memory::pam::{Pam, PAM0_WMASK, PAM_WMASK};
use crate::pci::config::ConfigSpace;
use crate::pci::PciFunction;
use crate::smram::SmramConfig;

/// PMC device ID.
pub const PMC_DEVICE_ID: u16 = 0x1237;
/// PMC revision as QEMU presents it.
pub const PMC_REVISION: u8 = 0x02;
/// Host bridge class code.
pub const PMC_CLASS: u32 = 0x06_00_00;
/// PMCCFG, DETURBO, DBC, ... 50h-58h: stored for firmware.
pub const PMC_PMCCFG: u8 = 0x50;
/// DRAMT, DRAM timing (last stored byte before PAM0).
pub const PMC_DRAMT: u8 = 0x58;
/// PAM0 (high nibble: 0xF0000-0xFFFFF); PAM1-PAM6 at 5Ah-5Fh.
pub const PMC_PAM0: u8 = 0x59;
/// DRB0-DRB7, DRAM row boundaries (stored).
pub const PMC_DRB0: u8 = 0x60;
/// SMRAM control (8 bits).
pub const PMC_SMRAM: u8 = 0x72;
pub use crate::chipset::smram_reg::{SMRAM_C_BASE_SEG, SMRAM_D_CLS, SMRAM_D_LCK, SMRAM_D_OPEN, SMRAM_G_SMRAME, SMRAM_RESET};
/// SMRAM writable bits.
pub const SMRAM_WMASK: u8 = 0x78;

/// The PMC's configuration function.
#[derive(Clone, Debug)]
pub struct Pmc {
    cfg: ConfigSpace,
}

impl Default for Pmc {
    fn default() -> Self {
        Self::new()
    }
}

impl Pmc {
    /// A PMC at reset.
    pub fn new() -> Self {
        let mut cfg = ConfigSpace::new(VENDOR_INTEL, PMC_DEVICE_ID, PMC_REVISION, PMC_CLASS, 0);
        for r in PMC_PMCCFG..=PMC_DRAMT {
            cfg.set_wmask(r, 1, 0xff);
        }
        cfg.set_wmask(PMC_PAM0, 1, PAM0_WMASK as u32);
        for k in 1..7 {
            cfg.set_wmask(PMC_PAM0 + k, 1, PAM_WMASK as u32);
        }
        for k in 0..8 {
            cfg.set_wmask(PMC_DRB0 + k, 1, 0xff);
        }
        cfg.set(PMC_SMRAM, 1, SMRAM_RESET as u32);
        cfg.set_wmask(PMC_SMRAM, 1, SMRAM_WMASK as u32);
        Pmc { cfg }
    }

    /// Whether D_LCK is set.
    pub fn locked(&self) -> bool {
        self.cfg.byte(PMC_SMRAM) & SMRAM_D_LCK != 0
    }

    /// SMRAM control decoded for [`crate::smram::route`] (no TSEG, no high SMRAM).
    pub fn smram(&self, low_ram_top: u64) -> SmramConfig {
        let s = self.cfg.byte(PMC_SMRAM);
        SmramConfig {
            g_smrame: s & SMRAM_G_SMRAME != 0,
            d_open: s & SMRAM_D_OPEN != 0,
            d_cls: s & SMRAM_D_CLS != 0,
            d_lck: s & SMRAM_D_LCK != 0,
            h_smrame: false,
            t_en: false,
            tseg_size: 0,
            low_ram_top,
            default_smbase: false,
        }
    }

    /// PAM0-PAM6.
    pub fn pam(&self) -> Pam {
        let mut p = [0u8; 7];
        for (k, b) in p.iter_mut().enumerate() {
            *b = self.cfg.byte(PMC_PAM0 + k as u8);
        }
        Pam(p)
    }
}

impl PciFunction for Pmc {
    fn config_read(&self, offset: u8, size: u8) -> u32 {
        self.cfg.read(offset, size)
    }

    fn config_write(&mut self, offset: u8, size: u8, value: u32) {
        let was_locked = self.locked();
        self.cfg.write(offset, size, value);
        let mut s = self.cfg.byte(PMC_SMRAM);
        if was_locked {
            s |= SMRAM_D_LCK;
        }
        if s & SMRAM_D_LCK != 0 {
            s &= !SMRAM_D_OPEN;
        }
        self.cfg.set(PMC_SMRAM, 1, s as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::config::VENDOR_ID;

    #[test]
    fn identifies_as_8086_1237() {
        let p = Pmc::new();
        assert_eq!(p.config_read(VENDOR_ID, 4), 0x1237_8086);
        assert_eq!(p.config_read(PMC_SMRAM, 1), 0x02);
    }

    #[test]
    fn seabios_open_and_close_values() {
        let mut p = Pmc::new();
        p.config_write(PMC_SMRAM, 1, 0x4a);
        assert!(p.smram(1 << 27).open());
        p.config_write(PMC_SMRAM, 1, 0x0a);
        let c = p.smram(1 << 27);
        assert!(c.g_smrame && !c.open());
        p.config_write(PMC_SMRAM, 1, 0xff);
        assert_eq!(p.config_read(PMC_SMRAM, 1), 0x3a, "C_BASE_SEG hard-wired; D_LCK clears D_OPEN");
    }

    #[test]
    fn d_lck_makes_d_open_read_only() {
        let mut p = Pmc::new();
        p.config_write(PMC_SMRAM, 1, 0x1a);
        p.config_write(PMC_SMRAM, 1, 0x4a);
        assert_eq!(p.config_read(PMC_SMRAM, 1), 0x1a, "D_OPEN forced 0, D_LCK stays 1");
        p.config_write(PMC_SMRAM, 1, 0x00);
        assert_eq!(p.config_read(PMC_SMRAM, 1), 0x12, "D_LCK sticky; G_SMRAME writable (Bochs)");
    }

    #[test]
    fn pam_dwords_as_seabios_writes_them() {
        let mut p = Pmc::new();
        p.config_write(PMC_DRAMT, 4, 0x3333_3000);
        p.config_write(0x5c, 4, 0x3333_3333);
        assert_eq!(p.pam(), Pam([0x30, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33]));
        p.config_write(PMC_DRAMT, 4, 0x1111_1000);
        assert_eq!(p.pam().0[0], 0x10);
    }

    #[test]
    fn unknown_registers_read_zero() {
        let mut p = Pmc::new();
        p.config_write(0x90, 4, u32::MAX);
        assert_eq!(p.config_read(0x90, 4), 0);
    }
}
