//! The q35 memory controller hub, host bridge 00:00.0 (8086:29C0): SMRAM control, TSEG, PAM
//! and PCIEXBAR. Registers from the Intel 3 Series Chipset Family MCH datasheet (doc. 316966,
//! §5.1 "Host Bridge/DRAM Controller Registers (D0:F0)"); EXT_TSEG_MBYTES (0x50) is QEMU's
//! (`include/hw/pci-host/q35.h`).
//!
//! Memory errors (§5.1.40-5.1.41): ERRSTS (0xC8) and SMICMD (0xCC) as the datasheet has them;
//! DEAP (0xD0) and CECNT (0xD4) are smmlab's own (on real parts the error address is in
//! MCHBAR). [`Mch::memory_error`] is the ECC logic seeing an error.
//!
//! Lock semantics: the write is applied first, then, if D_LCK is set, D_OPEN is forced to 0,
//! SMRAM stays writable only in D_CLS and ESMRAMC becomes read-only, until reset. A single
//! write of D_LCK | D_OPEN therefore leaves D_OPEN = 0.

use crate::memory::pam::{Pam, PAM0_WMASK, PAM_WMASK};
use crate::pci::config::ConfigSpace;
use crate::pci::PciFunction;
use crate::smram::SmramConfig;

/// Intel's vendor ID.
pub const VENDOR_INTEL: u16 = 0x8086;
/// MCH device ID (82G33/P35 family as QEMU presents it).
pub const MCH_DEVICE_ID: u16 = 0x29c0;
/// Host bridge class code.
pub const MCH_CLASS: u32 = 0x06_00_00;

/// EXT_TSEG_MBYTES (QEMU-specific, 16 bits): write 0xFFFF to query; reads the size in MiB.
pub const MCH_EXT_TSEG_MBYTES: u8 = 0x50;
/// The query value of EXT_TSEG_MBYTES, also its reset value.
pub const MCH_EXT_TSEG_MBYTES_QUERY: u16 = 0xffff;
/// GGC, graphics control (16 bits, stored).
pub const MCH_GGC: u8 = 0x52;
/// PCIEXBAR, PCI Express register range base (64 bits, stored).
pub const MCH_PCIEXBAR: u8 = 0x60;
/// PCIEXBAR reset value (datasheet: E000_0000h, disabled).
pub const MCH_PCIEXBAR_RESET: u32 = 0xe000_0000;
/// PCIEXBAR writable bits, low dword: base 31:26, length 2:1, enable 0.
pub const MCH_PCIEXBAR_WMASK_LO: u32 = 0xfc00_0007;
/// PCIEXBAR writable bits, high dword: base 35:32.
pub const MCH_PCIEXBAR_WMASK_HI: u32 = 0x0000_000f;
/// PAM0 (0xF0000-0xFFFFF); PAM1-PAM6 follow at 0x91-0x96.
pub const MCH_PAM0: u8 = 0x90;
/// F_SMBASE (QEMU 0x9C, not an Intel register): SMRAM at the default SMBASE. Firmware writes
/// QUERY (0xFF) and reads IN_RAM (0x01) back when the feature exists; then only LCK (0x02)
/// is writable, and setting it locks 0x30000-0x4FFFF as SMRAM until reset. Any other write
/// before the query reads back 0 (QEMU 7.2 `mch_update_smbase_smram`, hw/pci-host/q35.c;
/// on for q35 machine types from 4.2, as OVMF's PlatformPei probes it).
pub const MCH_F_SMBASE: u8 = 0x9c;
/// F_SMBASE: the query value.
pub const F_SMBASE_QUERY: u8 = 0xff;
/// F_SMBASE: the feature exists (the query's answer).
pub const F_SMBASE_IN_RAM: u8 = 0x01;
/// F_SMBASE: locked.
pub const F_SMBASE_LCK: u8 = 0x02;
/// SMRAM, system management RAM control (8 bits).
pub const MCH_SMRAM: u8 = 0x9d;
pub use crate::chipset::smram_reg::{SMRAM_C_BASE_SEG, SMRAM_D_CLS, SMRAM_D_LCK, SMRAM_D_OPEN, SMRAM_G_SMRAME, SMRAM_RESET};
/// SMRAM writable bits before D_LCK.
pub const SMRAM_WMASK: u8 = SMRAM_D_OPEN | SMRAM_D_CLS | SMRAM_D_LCK | SMRAM_G_SMRAME;
/// SMRAM writable bits after D_LCK.
pub const SMRAM_WMASK_LCK: u8 = SMRAM_D_CLS;
/// ESMRAMC, extended system management RAM control (8 bits).
pub const MCH_ESMRAMC: u8 = 0x9e;
/// ESMRAMC.H_SMRAME (bit 7).
pub const ESMRAMC_H_SMRAME: u8 = 1 << 7;
/// ESMRAMC.E_SMERR (bit 6).
pub const ESMRAMC_E_SMERR: u8 = 1 << 6;
/// ESMRAMC.SM_CACHE (bit 5, read-only 1).
pub const ESMRAMC_SM_CACHE: u8 = 1 << 5;
/// ESMRAMC.SM_L1 (bit 4, read-only 1).
pub const ESMRAMC_SM_L1: u8 = 1 << 4;
/// ESMRAMC.SM_L2 (bit 3, read-only 1).
pub const ESMRAMC_SM_L2: u8 = 1 << 3;
/// ESMRAMC.TSEG_SZ (bits 2:1): 00 1 MiB, 01 2 MiB, 10 8 MiB, 11 extended (EXT_TSEG_MBYTES).
pub const ESMRAMC_TSEG_SZ_MASK: u8 = 0b110;
/// ESMRAMC.T_EN (bit 0).
pub const ESMRAMC_T_EN: u8 = 1 << 0;
/// ESMRAMC reset value.
pub const ESMRAMC_RESET: u8 = ESMRAMC_SM_CACHE | ESMRAMC_SM_L1 | ESMRAMC_SM_L2;
/// ESMRAMC writable bits before D_LCK.
pub const ESMRAMC_WMASK: u8 = ESMRAMC_H_SMRAME | ESMRAMC_TSEG_SZ_MASK | ESMRAMC_T_EN;
/// TOM, TOUUD (16 bits each), GBSM, BGSM, TSEGMB (32 bits each), TOLUD (16 bits): stored
/// for firmware; TSEG is decoded from the RAM size, not from TSEGMB (as QEMU does).
pub const MCH_TOM: u8 = 0xa0;
/// Top of upper usable DRAM.
pub const MCH_TOUUD: u8 = 0xa2;
/// Graphics base of stolen memory.
pub const MCH_GBSM: u8 = 0xa4;
/// Base of GTT stolen memory.
pub const MCH_BGSM: u8 = 0xa8;
/// TSEG memory base.
pub const MCH_TSEGMB: u8 = 0xac;
/// Top of low usable DRAM.
pub const MCH_TOLUD: u8 = 0xb0;
/// ERRSTS, error status (16 bits, write one to clear).
pub const MCH_ERRSTS: u8 = 0xc8;
/// ERRSTS.DSERR (bit 0): a correctable (single-bit) DRAM ECC error.
pub const ERRSTS_DSERR: u16 = 1 << 0;
/// ERRSTS.DMERR (bit 1): an uncorrectable (multi-bit) DRAM ECC error.
pub const ERRSTS_DMERR: u16 = 1 << 1;
/// SMICMD, SMI command (16 bits): send an SMI message over DMI when DSERR/DMERR sets.
pub const MCH_SMICMD: u8 = 0xcc;
/// SMICMD.DSESMI (bit 0).
pub const SMICMD_DSESMI: u16 = 1 << 0;
/// SMICMD.DMESMI (bit 1).
pub const SMICMD_DMESMI: u16 = 1 << 1;
/// DEAP (smmlab's own, 32 bits, RO): the 4 KiB-aligned address of the last error.
pub const MCH_DEAP: u8 = 0xd0;
/// CECNT (smmlab's own, 16 bits, RO): correctable errors since reset.
pub const MCH_CECNT: u8 = 0xd4;

/// QEMU's default extended TSEG size for machine types up to pc-q35-10.1.
pub const DEFAULT_EXT_TSEG_MBYTES: u16 = 16;

/// The MCH's configuration function.
#[derive(Clone, Debug)]
pub struct Mch {
    cfg: ConfigSpace,
    ext_tseg_mbytes: u16,
    /// Registers whose write D_LCK dropped or changed ("SMRAM", "ESMRAMC"), until taken.
    violations: Vec<&'static str>,
}

impl Mch {
    /// An MCH at reset with an extended TSEG of `ext_tseg_mbytes` MiB (0: none).
    pub fn new(ext_tseg_mbytes: u16) -> Self {
        let mut cfg = ConfigSpace::new(VENDOR_INTEL, MCH_DEVICE_ID, 0, MCH_CLASS, 0);
        cfg.set(MCH_EXT_TSEG_MBYTES, 2, MCH_EXT_TSEG_MBYTES_QUERY as u32);
        if ext_tseg_mbytes != 0 {
            cfg.set_wmask(MCH_EXT_TSEG_MBYTES, 2, 0xffff);
        }
        cfg.set_wmask(MCH_GGC, 2, 0xffff);
        cfg.set(MCH_PCIEXBAR, 4, MCH_PCIEXBAR_RESET);
        cfg.set_wmask(MCH_PCIEXBAR, 4, MCH_PCIEXBAR_WMASK_LO);
        cfg.set_wmask(MCH_PCIEXBAR + 4, 4, MCH_PCIEXBAR_WMASK_HI);
        cfg.set_wmask(MCH_PAM0, 1, PAM0_WMASK as u32);
        for k in 1..7 {
            cfg.set_wmask(MCH_PAM0 + k, 1, PAM_WMASK as u32);
        }
        cfg.set_wmask(MCH_F_SMBASE, 1, 0xff);
        cfg.set(MCH_SMRAM, 1, SMRAM_RESET as u32);
        cfg.set_wmask(MCH_SMRAM, 1, SMRAM_WMASK as u32);
        cfg.set(MCH_ESMRAMC, 1, ESMRAMC_RESET as u32);
        cfg.set_wmask(MCH_ESMRAMC, 1, ESMRAMC_WMASK as u32);
        for (reg, size) in [(MCH_TOM, 2), (MCH_TOUUD, 2), (MCH_GBSM, 4), (MCH_BGSM, 4), (MCH_TSEGMB, 4), (MCH_TOLUD, 2)] {
            cfg.set_wmask(reg, size, u32::MAX);
        }
        cfg.set_w1cmask(MCH_ERRSTS, 2, (ERRSTS_DSERR | ERRSTS_DMERR) as u32);
        cfg.set_wmask(MCH_SMICMD, 2, (SMICMD_DSESMI | SMICMD_DMESMI) as u32);
        Mch { cfg, ext_tseg_mbytes, violations: Vec::new() }
    }

    /// The ECC logic saw an error at `addr`: ERRSTS, DEAP and CECNT record it. Returns
    /// whether SMICMD asks for an SMI message over DMI ([`crate::smi::memory_error`]).
    pub fn memory_error(&mut self, addr: u64, uncorrectable: bool) -> bool {
        let errsts = self.cfg.read(MCH_ERRSTS, 2) as u16;
        let bit = if uncorrectable { ERRSTS_DMERR } else { ERRSTS_DSERR };
        self.cfg.set(MCH_ERRSTS, 2, (errsts | bit) as u32);
        self.cfg.set(MCH_DEAP, 4, (addr as u32) & !0xfff);
        if !uncorrectable {
            let n = self.cfg.read(MCH_CECNT, 2) as u16;
            self.cfg.set(MCH_CECNT, 2, n.saturating_add(1) as u32);
        }
        crate::smi::memory_error::mch_sends_smi(self.cfg.read(MCH_SMICMD, 2) as u16, uncorrectable)
    }

    /// F_SMBASE after a write ([`MCH_F_SMBASE`]); `wmask` its writable bits before it (0xFF
    /// until queried, then LCK, then none).
    fn update_default_smbase(&mut self, wmask: u8) {
        let reg = self.cfg.byte(MCH_F_SMBASE);
        let (value, wmask) = if reg == F_SMBASE_QUERY {
            (F_SMBASE_IN_RAM, F_SMBASE_LCK)
        } else if wmask == 0xff {
            // Not queried yet: the write is dropped.
            (0, wmask)
        } else if reg & F_SMBASE_LCK != 0 {
            (F_SMBASE_LCK, 0)
        } else {
            (reg, wmask)
        };
        self.cfg.set(MCH_F_SMBASE, 1, value as u32);
        self.cfg.set_wmask(MCH_F_SMBASE, 1, wmask as u32);
    }

    /// Registers whose guest write D_LCK dropped or changed since the last call.
    pub fn take_lock_violations(&mut self) -> Vec<&'static str> {
        std::mem::take(&mut self.violations)
    }

    /// Whether D_LCK is set.
    pub fn locked(&self) -> bool {
        self.cfg.byte(MCH_SMRAM) & SMRAM_D_LCK != 0
    }

    /// TSEG size in bytes from ESMRAMC.TSEG_SZ.
    pub fn tseg_size(&self) -> u64 {
        match (self.cfg.byte(MCH_ESMRAMC) & ESMRAMC_TSEG_SZ_MASK) >> 1 {
            0 => 1 << 20,
            1 => 2 << 20,
            2 => 8 << 20,
            _ => (self.ext_tseg_mbytes as u64) << 20,
        }
    }

    /// SMRAM control decoded for [`crate::smram::route`].
    pub fn smram(&self, low_ram_top: u64) -> SmramConfig {
        let s = self.cfg.byte(MCH_SMRAM);
        let e = self.cfg.byte(MCH_ESMRAMC);
        SmramConfig {
            g_smrame: s & SMRAM_G_SMRAME != 0,
            d_open: s & SMRAM_D_OPEN != 0,
            d_cls: s & SMRAM_D_CLS != 0,
            d_lck: s & SMRAM_D_LCK != 0,
            h_smrame: e & ESMRAMC_H_SMRAME != 0,
            t_en: e & ESMRAMC_T_EN != 0,
            tseg_size: self.tseg_size(),
            low_ram_top,
            default_smbase: self.cfg.byte(MCH_F_SMBASE) & F_SMBASE_LCK != 0,
        }
    }

    /// The ECAM window PCIEXBAR enables, as (base, size): bit 0 PCIEXBAREN, bits 2:1 LENGTH
    /// (00 = 256 MiB, 01 = 128 MiB, 10 = 64 MiB, 11 reserved), base in bits 35:26 aligned
    /// to the length (datasheet §5.1.14 "PCIEXBAR").
    pub fn ecam(&self) -> Option<(u64, u64)> {
        let lo = self.config_read(MCH_PCIEXBAR, 4);
        let hi = self.config_read(MCH_PCIEXBAR + 4, 4);
        if lo & 1 == 0 {
            return None;
        }
        let size: u64 = match (lo >> 1) & 3 {
            0 => 256 << 20,
            1 => 128 << 20,
            2 => 64 << 20,
            _ => return None,
        };
        let base = ((hi as u64) << 32 | (lo & 0xfc00_0000) as u64) & !(size - 1);
        Some((base, size))
    }

    /// PAM0-PAM6.
    pub fn pam(&self) -> Pam {
        let mut p = [0u8; 7];
        for (k, b) in p.iter_mut().enumerate() {
            *b = self.cfg.byte(MCH_PAM0 + k as u8);
        }
        Pam(p)
    }
}

impl PciFunction for Mch {
    fn config_read(&self, offset: u8, size: u8) -> u32 {
        self.cfg.read(offset, size)
    }

    fn config_write(&mut self, offset: u8, size: u8, value: u32) {
        let locked_before = self.locked();
        let smbase_wmask = self.cfg.wmask_byte(MCH_F_SMBASE);
        self.cfg.write(offset, size, value);
        if (offset..offset.saturating_add(size.min(4))).contains(&MCH_F_SMBASE) {
            self.update_default_smbase(smbase_wmask);
        }
        let ext = offset as u16 <= MCH_EXT_TSEG_MBYTES as u16 + 1 && offset as u16 + size as u16 > MCH_EXT_TSEG_MBYTES as u16;
        if ext && self.ext_tseg_mbytes != 0 && self.cfg.read(MCH_EXT_TSEG_MBYTES, 2) == MCH_EXT_TSEG_MBYTES_QUERY as u32 {
            self.cfg.set(MCH_EXT_TSEG_MBYTES, 2, self.ext_tseg_mbytes as u32);
        }
        if self.locked() {
            let s = self.cfg.byte(MCH_SMRAM) & !SMRAM_D_OPEN;
            self.cfg.set(MCH_SMRAM, 1, s as u32);
            self.cfg.set_wmask(MCH_SMRAM, 1, SMRAM_WMASK_LCK as u32);
            self.cfg.set_wmask(MCH_ESMRAMC, 1, 0);
        }
        if locked_before {
            for (reg, mask, name) in [(MCH_SMRAM, SMRAM_WMASK, "SMRAM"), (MCH_ESMRAMC, ESMRAMC_WMASK, "ESMRAMC")] {
                if (offset..offset.saturating_add(size.min(4))).contains(&reg) {
                    let written = (value >> (8 * (reg - offset))) as u8;
                    if written & mask != self.cfg.byte(reg) & mask {
                        self.violations.push(name);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::config::{CLASS_CODE, DEVICE_ID, VENDOR_ID};

    fn mch() -> Mch {
        Mch::new(DEFAULT_EXT_TSEG_MBYTES)
    }

    #[test]
    fn identifies_as_8086_29c0_host_bridge() {
        let m = mch();
        assert_eq!(m.config_read(VENDOR_ID, 2), 0x8086);
        assert_eq!(m.config_read(DEVICE_ID, 2), 0x29c0);
        assert_eq!(m.config_read(CLASS_CODE + 1, 2), 0x0600);
    }

    #[test]
    fn smram_at_the_default_smbase_is_queried_then_locked() {
        let mut m = mch();
        // Before the query a write is dropped.
        m.config_write(MCH_F_SMBASE, 1, F_SMBASE_LCK as u32);
        assert_eq!(m.config_read(MCH_F_SMBASE, 1), 0);
        assert!(!m.smram(128 << 20).default_smbase);
        m.config_write(MCH_F_SMBASE, 1, F_SMBASE_QUERY as u32);
        assert_eq!(m.config_read(MCH_F_SMBASE, 1), F_SMBASE_IN_RAM as u32, "the feature exists");
        assert!(!m.smram(128 << 20).default_smbase);
        m.config_write(MCH_F_SMBASE, 1, F_SMBASE_LCK as u32);
        assert_eq!(m.config_read(MCH_F_SMBASE, 1), F_SMBASE_LCK as u32);
        assert!(m.smram(128 << 20).default_smbase);
        // Locked until reset: neither a clear nor another query undoes it.
        for v in [0, F_SMBASE_QUERY] {
            m.config_write(MCH_F_SMBASE, 1, v as u32);
            assert_eq!(m.config_read(MCH_F_SMBASE, 1), F_SMBASE_LCK as u32);
        }
    }

    #[test]
    fn smram_and_esmramc_reset_values() {
        let m = mch();
        assert_eq!(m.config_read(MCH_SMRAM, 1), 0x02);
        assert_eq!(m.config_read(MCH_ESMRAMC, 1), 0x38);
        assert_eq!(m.config_read(MCH_SMRAM - 1, 4), 0x0038_0200);
    }

    #[test]
    fn c_base_seg_is_hard_wired() {
        let mut m = mch();
        m.config_write(MCH_SMRAM, 1, 0x00);
        assert_eq!(m.config_read(MCH_SMRAM, 1), 0x02);
        m.config_write(MCH_SMRAM, 1, 0xff);
        assert_eq!(m.config_read(MCH_SMRAM, 1), 0x3a, "D_LCK in the same write clears D_OPEN");
    }

    #[test]
    fn d_lck_makes_d_open_read_only() {
        let mut m = mch();
        m.config_write(MCH_SMRAM, 1, (SMRAM_G_SMRAME | SMRAM_D_OPEN) as u32);
        m.config_write(MCH_SMRAM, 1, (SMRAM_G_SMRAME | SMRAM_D_LCK) as u32);
        assert_eq!(m.config_read(MCH_SMRAM, 1), 0x1a);
        m.config_write(MCH_SMRAM, 1, (SMRAM_G_SMRAME | SMRAM_D_OPEN) as u32);
        assert_eq!(m.config_read(MCH_SMRAM, 1), 0x1a, "D_OPEN stays 0, D_LCK stays 1, G_SMRAME frozen");
    }

    #[test]
    fn after_lock_only_d_cls_is_writable() {
        let mut m = mch();
        m.config_write(MCH_SMRAM, 1, 0x1a);
        m.config_write(MCH_SMRAM, 1, 0x20);
        assert_eq!(m.config_read(MCH_SMRAM, 1), 0x3a);
        m.config_write(MCH_SMRAM, 1, 0x00);
        assert_eq!(m.config_read(MCH_SMRAM, 1), 0x1a);
    }

    #[test]
    fn a_write_of_d_lck_with_d_open_leaves_d_open_clear() {
        let mut m = mch();
        m.config_write(MCH_SMRAM, 1, (SMRAM_D_LCK | SMRAM_D_OPEN | SMRAM_G_SMRAME) as u32);
        assert_eq!(m.config_read(MCH_SMRAM, 1) as u8 & SMRAM_D_OPEN, 0);
        assert!(m.locked());
        assert!(!m.smram(1 << 27).open());
    }

    #[test]
    fn esmramc_is_read_only_after_lock() {
        let mut m = mch();
        m.config_write(MCH_ESMRAMC, 1, 0x3f);
        assert_eq!(m.config_read(MCH_ESMRAMC, 1), 0x3f);
        m.config_write(MCH_SMRAM, 1, 0x1a);
        m.config_write(MCH_ESMRAMC, 1, 0x3e);
        assert_eq!(m.config_read(MCH_ESMRAMC, 1), 0x3f, "OVMF cannot reopen TSEG after lock");
    }

    #[test]
    fn esmramc_cache_bits_are_read_only() {
        let mut m = mch();
        m.config_write(MCH_ESMRAMC, 1, 0x00);
        assert_eq!(m.config_read(MCH_ESMRAMC, 1), 0x38);
        m.config_write(MCH_ESMRAMC, 1, 0xff);
        assert_eq!(m.config_read(MCH_ESMRAMC, 1), 0xbf);
    }

    #[test]
    fn tseg_sizes() {
        let mut m = mch();
        for (sz, want) in [(0u32, 1u64 << 20), (1, 2 << 20), (2, 8 << 20), (3, 16 << 20)] {
            m.config_write(MCH_ESMRAMC, 1, sz << 1 | 1);
            assert_eq!(m.tseg_size(), want);
        }
        let c = m.smram(256 << 20);
        assert!(c.t_en);
        assert_eq!(c.tseg(), None, "TSEG needs G_SMRAME too");
        m.config_write(MCH_SMRAM, 1, 0x0a);
        assert_eq!(m.smram(256 << 20).tseg(), Some((240 << 20)..(256 << 20)));
    }

    #[test]
    fn ext_tseg_query_reads_back_mebibytes() {
        let mut m = mch();
        assert_eq!(m.config_read(MCH_EXT_TSEG_MBYTES, 2), 0xffff);
        m.config_write(MCH_EXT_TSEG_MBYTES, 2, 0xffff);
        assert_eq!(m.config_read(MCH_EXT_TSEG_MBYTES, 2), 16);
        let mut none = Mch::new(0);
        none.config_write(MCH_EXT_TSEG_MBYTES, 2, 0xffff);
        assert_eq!(none.config_read(MCH_EXT_TSEG_MBYTES, 2), 0xffff, "no extended TSEG");
    }

    #[test]
    fn pam_registers_are_stored_with_masks() {
        let mut m = mch();
        m.config_write(MCH_PAM0, 4, 0x3333_3333);
        m.config_write(MCH_PAM0 + 4, 4, 0xff33_3333);
        assert_eq!(m.pam(), Pam([0x30, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33]));
        assert_eq!(m.config_read(MCH_PAM0 + 7, 1), 0, "0x97 is not a PAM register");
    }

    #[test]
    fn pciexbar_is_stored() {
        let mut m = mch();
        assert_eq!(m.config_read(MCH_PCIEXBAR, 4), MCH_PCIEXBAR_RESET);
        assert_eq!(m.ecam(), None);
        m.config_write(MCH_PCIEXBAR, 4, 0xb000_0001);
        assert_eq!(m.config_read(MCH_PCIEXBAR, 4), 0xb000_0001);
        assert_eq!(m.ecam(), Some((0xb000_0000, 256 << 20)));
        m.config_write(MCH_PCIEXBAR, 4, 0xb000_0007);
        assert_eq!(m.ecam(), None, "reserved length");
    }

    #[test]
    fn ecc_errors_set_errsts_deap_cecnt_and_ask_for_smi_per_smicmd() {
        let mut m = mch();
        assert!(!m.memory_error(0x12_3456, false), "SMICMD off");
        assert_eq!(m.config_read(MCH_ERRSTS, 2), 1);
        assert_eq!(m.config_read(MCH_DEAP, 4), 0x12_3000);
        assert_eq!(m.config_read(MCH_CECNT, 2), 1);
        m.config_write(MCH_SMICMD, 2, 0xffff);
        assert_eq!(m.config_read(MCH_SMICMD, 2), 3);
        assert!(m.memory_error(0x40_0000, true));
        assert_eq!(m.config_read(MCH_ERRSTS, 2), 3);
        assert_eq!(m.config_read(MCH_CECNT, 2), 1, "uncorrectable errors are not counted");
        m.config_write(MCH_DEAP, 4, 0);
        m.config_write(MCH_CECNT, 2, 0);
        assert_eq!((m.config_read(MCH_DEAP, 4), m.config_read(MCH_CECNT, 2)), (0x40_0000, 1), "read-only");
        m.config_write(MCH_ERRSTS, 2, 1);
        assert_eq!(m.config_read(MCH_ERRSTS, 2), 2, "write one to clear");
    }

    #[test]
    fn writes_that_d_lck_blocks_are_reported() {
        let mut m = mch();
        m.config_write(MCH_ESMRAMC, 1, 0x3f);
        m.config_write(MCH_SMRAM, 1, 0x1a);
        assert!(m.take_lock_violations().is_empty(), "setting the lock is no violation");
        m.config_write(MCH_SMRAM, 1, 0x1a);
        m.config_write(MCH_SMRAM - 1, 4, 0x003f_1a00);
        assert!(m.take_lock_violations().is_empty(), "writing the current values is fine");
        m.config_write(MCH_SMRAM, 1, 0x4a);
        m.config_write(MCH_ESMRAMC, 1, 0x3e);
        assert_eq!(m.take_lock_violations(), vec!["SMRAM", "ESMRAMC"]);
        m.config_write(MCH_SMRAM, 2, 0x3e1a);
        assert_eq!(m.take_lock_violations(), vec!["ESMRAMC"]);
    }

    #[test]
    fn unknown_registers_read_zero_and_ignore_writes() {
        let mut m = mch();
        m.config_write(0xf0, 4, 0xffff_ffff);
        assert_eq!(m.config_read(0xf0, 4), 0);
        assert_eq!(m.config_read(0xff, 4), 0xffff_ff00);
    }
}
