//! The CPU-side SMRAM protection: Intel's SMRR (IA32_SMRR_PHYSBASE/PHYSMASK, SDM vol. 3A,
//! 12.11.2.4) and AMD's ASeg/TSeg ranges (SMM_ADDR/SMM_MASK, locked by HWCR.SmmLock; AMD APM
//! vol. 2, 10.2.5). The chipset's own SMRAM decoding is the machine's business, not this file's.

use crate::cpuid::Vendor;
use crate::Cpu;

/// SMRR_PHYSMASK valid bit (SDM vol. 3A, 12.11.2.4).
pub const SMRR_VALID: u64 = 1 << 11;
/// AMD SMM_MASK.AValid: ASeg (0xA0000..0xC0000) is SMRAM (AMD APM vol. 2, 10.2.5).
pub const AMD_AVALID: u64 = 1 << 0;
/// AMD SMM_MASK.TValid: TSeg (SMM_ADDR/SMM_MASK) is SMRAM.
pub const AMD_TVALID: u64 = 1 << 1;
/// AMD SMM_MASK.AClose: SMM data accesses to ASeg go to MMIO.
pub const AMD_ACLOSE: u64 = 1 << 2;
/// AMD SMM_MASK.TClose: SMM data accesses to TSeg go to MMIO.
pub const AMD_TCLOSE: u64 = 1 << 3;
/// AMD HWCR.SmmLock.
pub const HWCR_SMMLOCK: u64 = 1 << 0;

/// How the CPU itself treats a physical address (SMRR on Intel, ASeg/TSeg on AMD).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuSmramView {
    /// The access goes to the bus as usual.
    Normal,
    /// The CPU blocks it: reads return all ones, writes are dropped, fetches get all ones.
    Blocked,
}

impl Cpu {
    /// Whether `phys` falls in the SMRR range (Intel, SMRR valid).
    pub fn in_smrr(&self, phys: u64) -> bool {
        let s = &self.smm_regs;
        s.smrr_mask & SMRR_VALID != 0 && (phys & s.smrr_mask & 0xffff_f000) == (s.smrr_base & s.smrr_mask & 0xffff_f000)
    }

    /// The CPU-side SMRAM protection: SMRR outside SMM on Intel; ASeg/TSeg on AMD
    /// (outside SMM both go to MMIO; in SMM with xClose, data accesses do while fetches reach
    /// DRAM — AMD APM vol. 2, 10.2.5).
    #[inline]
    pub fn cpu_smram_view(&self, phys: u64, fetch: bool) -> CpuSmramView {
        match self.model.vendor {
            Vendor::Intel => {
                if !self.smm && self.in_smrr(phys) {
                    return CpuSmramView::Blocked;
                }
            }
            Vendor::Amd => {
                let m = self.smm_regs.amd_mask;
                if m & (AMD_AVALID | AMD_TVALID) == 0 {
                    return CpuSmramView::Normal;
                }
                let in_aseg = m & AMD_AVALID != 0 && (0xa0000..0xc0000).contains(&phys);
                let tmask = m & 0xffff_fffe_0000;
                let in_tseg = m & AMD_TVALID != 0 && (phys & tmask) == (self.smm_regs.amd_addr & tmask);
                if !self.smm && (in_aseg || in_tseg) {
                    return CpuSmramView::Blocked;
                }
                if self.smm && !fetch && ((in_aseg && m & AMD_ACLOSE != 0) || (in_tseg && m & AMD_TCLOSE != 0)) {
                    return CpuSmramView::Blocked;
                }
            }
        }
        CpuSmramView::Normal
    }
}
