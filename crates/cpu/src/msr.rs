//! Model-specific registers (Intel SDM vol. 4). Any MSR not listed here raises #GP.

use crate::cr::*;
use crate::exception::Exc;
use crate::Cpu;

/// Time-stamp counter.
pub const IA32_TSC: u32 = 0x10;
/// SMIs taken since reset (Intel, read-only).
pub const MSR_SMI_COUNT: u32 = 0x34;
/// SMBASE (Intel, readable in SMM only).
pub const IA32_SMBASE: u32 = 0x9e;
/// SMM machine-check capabilities (bit 58: SMM_CODE_CHK).
pub const MSR_SMM_MCA_CAP: u32 = 0x17d;
/// SMRR base (Intel, writable in SMM only).
pub const IA32_SMRR_PHYSBASE: u32 = 0x1f2;
/// SMRR mask and valid bit (Intel, writable in SMM only).
pub const IA32_SMRR_PHYSMASK: u32 = 0x1f3;
/// SMM_FEATURE_CONTROL: LOCK and SMM_CODE_CHK_EN (Intel, SMM only).
pub const MSR_SMM_FEATURE_CONTROL: u32 = 0x4e0;
/// AMD hardware configuration (HWCR.SmmLock).
pub const AMD_HWCR: u32 = 0xc001_0015;
/// AMD SMM_BASE: SMBASE.
pub const AMD_SMM_BASE: u32 = 0xc001_0111;
/// AMD SMM_ADDR: the TSeg base.
pub const AMD_SMM_ADDR: u32 = 0xc001_0112;
/// AMD SMM_MASK: the ASeg/TSeg valid, close and mask bits.
pub const AMD_SMM_MASK: u32 = 0xc001_0113;
/// Local APIC base address and enable.
pub const IA32_APIC_BASE: u32 = 0x1b;
/// IA32_PLATFORM_ID (Intel): the platform ID in bits 52:50, read-only.
pub const IA32_PLATFORM_ID: u32 = 0x17;
/// IA32_FEATURE_CONTROL (Intel): lock bit 0 and the VMX/SMX enables.
pub const IA32_FEATURE_CONTROL: u32 = 0x3a;
/// IA32_BIOS_SIGN_ID (Intel) / PATCH_LEVEL (AMD): the microcode revision in bits 63:32.
pub const IA32_BIOS_SIGN_ID: u32 = 0x8b;
/// IA32_DEBUGCTL: LBR (bit 0) and BTF (bit 1).
pub const IA32_DEBUGCTL: u32 = 0x1d9;
/// The microcode revision the models report: 1, as QEMU's do (`ucode_rev`).
const MICROCODE_REVISION: u64 = 1 << 32;
/// MTRR capabilities (bit 11: SMRR supported).
pub const IA32_MTRRCAP: u32 = 0xfe;
/// SYSENTER target CS.
pub const IA32_SYSENTER_CS: u32 = 0x174;
/// SYSENTER target ESP.
pub const IA32_SYSENTER_ESP: u32 = 0x175;
/// SYSENTER target EIP.
pub const IA32_SYSENTER_EIP: u32 = 0x176;
/// Miscellaneous feature enables.
pub const IA32_MISC_ENABLE: u32 = 0x1a0;
/// The first variable-range MTRR (base 0).
pub const IA32_MTRR_PHYSBASE0: u32 = 0x200;
/// The last variable-range MTRR (mask 7).
pub const IA32_MTRR_PHYSMASK7: u32 = 0x20f;
/// Fixed-range MTRR for 0..0x80000.
pub const IA32_MTRR_FIX64K_00000: u32 = 0x250;
/// Fixed-range MTRR for 0x80000..0xA0000.
pub const IA32_MTRR_FIX16K_80000: u32 = 0x258;
/// Fixed-range MTRR for 0xA0000..0xC0000.
pub const IA32_MTRR_FIX16K_A0000: u32 = 0x259;
/// The first 4 KiB fixed-range MTRR (0xC0000..0xC8000).
pub const IA32_MTRR_FIX4K_C0000: u32 = 0x268;
/// The last 4 KiB fixed-range MTRR (0xF8000..0x100000).
pub const IA32_MTRR_FIX4K_F8000: u32 = 0x26f;
/// Page attribute table.
pub const IA32_PAT: u32 = 0x277;
/// Default memory type and MTRR enables.
pub const IA32_MTRR_DEF_TYPE: u32 = 0x2ff;
/// EFER (the bits in [`crate::cr`]).
pub const IA32_EFER: u32 = 0xc000_0080;
/// SYSCALL target selectors (STAR).
pub const IA32_STAR: u32 = 0xc000_0081;
/// 64-bit SYSCALL target RIP (LSTAR).
pub const IA32_LSTAR: u32 = 0xc000_0082;
/// Compatibility-mode SYSCALL target RIP (CSTAR).
pub const IA32_CSTAR: u32 = 0xc000_0083;
/// RFLAGS mask applied by SYSCALL (FMASK).
pub const IA32_FMASK: u32 = 0xc000_0084;
/// FS base.
pub const IA32_FS_BASE: u32 = 0xc000_0100;
/// GS base.
pub const IA32_GS_BASE: u32 = 0xc000_0101;
/// The GS base SWAPGS exchanges with GS's.
pub const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
/// TSC_AUX (RDTSCP's ECX).
pub const IA32_TSC_AUX: u32 = 0xc000_0103;

/// MSR values that are plain storage.
#[derive(Clone, Debug)]
pub struct MsrFile {
    /// IA32_APIC_BASE.
    pub apic_base: u64,
    /// IA32_SYSENTER_CS, _ESP, _EIP.
    pub sysenter: [u64; 3],
    /// IA32_MISC_ENABLE.
    pub misc_enable: u64,
    /// The variable-range MTRRs, base and mask pairs 0..7.
    pub mtrr_var: [u64; 16],
    /// The fixed-range MTRRs, in MSR order.
    pub mtrr_fixed: [u64; 11],
    /// IA32_MTRR_DEF_TYPE.
    pub mtrr_def_type: u64,
    /// IA32_PAT.
    pub pat: u64,
    /// STAR.
    pub star: u64,
    /// LSTAR.
    pub lstar: u64,
    /// CSTAR.
    pub cstar: u64,
    /// FMASK.
    pub fmask: u64,
    /// KERNEL_GS_BASE.
    pub kernel_gs_base: u64,
    /// TSC_AUX.
    pub tsc_aux: u64,
    /// IA32_FEATURE_CONTROL (Intel).
    pub feature_control: u64,
    /// IA32_DEBUGCTL.
    pub debugctl: u64,
}

impl Default for MsrFile {
    fn default() -> Self {
        MsrFile {
            apic_base: 0xfee0_0900,
            sysenter: [0; 3],
            misc_enable: 1,
            mtrr_var: [0; 16],
            mtrr_fixed: [0; 11],
            mtrr_def_type: 0,
            pat: 0x0007_0406_0007_0406,
            star: 0,
            lstar: 0,
            cstar: 0,
            fmask: 0,
            kernel_gs_base: 0,
            tsc_aux: 0,
            feature_control: 0,
            debugctl: 0,
        }
    }
}

fn fixed_index(idx: u32) -> Option<usize> {
    match idx {
        IA32_MTRR_FIX64K_00000 => Some(0),
        IA32_MTRR_FIX16K_80000 => Some(1),
        IA32_MTRR_FIX16K_A0000 => Some(2),
        IA32_MTRR_FIX4K_C0000..=IA32_MTRR_FIX4K_F8000 => Some(3 + (idx - IA32_MTRR_FIX4K_C0000) as usize),
        _ => None,
    }
}

impl Cpu {
    /// The time-stamp counter: retired instructions plus the guest's offset.
    pub fn tsc(&self) -> u64 {
        self.icount.wrapping_add(self.tsc_offset)
    }

    /// The SMM-related MSRs (Intel SDM vol. 4; AMD APM vol. 2, 10.2.5): `None` if `idx` is not
    /// one of them on this model.
    fn rdmsr_smm(&self, idx: u32) -> Option<Result<u64, Exc>> {
        let s = &self.smm_regs;
        let intel = self.model.vendor == crate::cpuid::Vendor::Intel;
        let smm_only = |v: u64| if self.smm { Ok(v) } else { Err(Exc::gp0()) };
        Some(match idx {
            MSR_SMI_COUNT if intel => Ok(s.smi_count & 0xffff_ffff),
            IA32_SMBASE if intel => smm_only(s.smbase as u64),
            IA32_SMRR_PHYSBASE if intel => Ok(s.smrr_base),
            IA32_SMRR_PHYSMASK if intel => Ok(s.smrr_mask),
            // Bit 58: SMM_CODE_CHK supported (edk2 SmmCpuFeaturesLib tests BIT58).
            MSR_SMM_MCA_CAP if intel => smm_only(1 << 58),
            MSR_SMM_FEATURE_CONTROL if intel => smm_only(s.feature_control),
            AMD_HWCR if !intel => Ok(s.hwcr),
            AMD_SMM_BASE if !intel => Ok(s.smbase as u64),
            AMD_SMM_ADDR if !intel => Ok(s.amd_addr),
            AMD_SMM_MASK if !intel => Ok(s.amd_mask),
            _ => return None,
        })
    }

    fn wrmsr_smm(&mut self, idx: u32, v: u64) -> Option<Result<(), Exc>> {
        let intel = self.model.vendor == crate::cpuid::Vendor::Intel;
        let smm = self.smm;
        let amd_locked = self.smm_regs.hwcr & crate::smm::HWCR_SMMLOCK != 0;
        let s = &mut self.smm_regs;
        let r = match idx {
            // SMRR can be written only in SMM (SDM vol. 3A, 12.11.2.4).
            IA32_SMRR_PHYSBASE | IA32_SMRR_PHYSMASK if intel => {
                if !smm || v >> 32 != 0 {
                    Err(Exc::gp0())
                } else {
                    if idx == IA32_SMRR_PHYSBASE {
                        s.smrr_base = v & 0xffff_f0ff;
                    } else {
                        s.smrr_mask = v & 0xffff_f800;
                    }
                    Ok(())
                }
            }
            MSR_SMM_FEATURE_CONTROL if intel => {
                if !smm || s.feature_control & crate::smm::FEATURE_CONTROL_LOCK != 0 || v & !0x5 != 0 {
                    Err(Exc::gp0())
                } else {
                    s.feature_control = v;
                    Ok(())
                }
            }
            MSR_SMI_COUNT | IA32_SMBASE | MSR_SMM_MCA_CAP if intel => Err(Exc::gp0()),
            AMD_HWCR if !intel => {
                // SmmLock is sticky until reset.
                s.hwcr = v | (s.hwcr & crate::smm::HWCR_SMMLOCK);
                Ok(())
            }
            AMD_SMM_BASE | AMD_SMM_ADDR | AMD_SMM_MASK if !intel => {
                if amd_locked {
                    Err(Exc::gp0())
                } else {
                    match idx {
                        AMD_SMM_BASE => s.smbase = (v as u32) & !0xf,
                        AMD_SMM_ADDR => s.amd_addr = v & 0xffff_fffe_0000,
                        _ => s.amd_mask = v & 0xffff_fffe_773f,
                    }
                    Ok(())
                }
            }
            _ => return None,
        };
        if r.is_ok() {
            self.flush_tlb();
        }
        Some(r)
    }

    /// RDMSR.
    pub fn rdmsr(&mut self, idx: u32) -> Result<u64, Exc> {
        if let Some(r) = self.rdmsr_smm(idx) {
            return r;
        }
        let m = &self.msr;
        let intel = self.model.vendor == crate::cpuid::Vendor::Intel;
        Ok(match idx {
            IA32_TSC => self.tsc(),
            IA32_APIC_BASE => m.apic_base,
            // Firmware reads these to pick a microcode update (SDM vol. 3A, 10.11.4-10.11.7):
            // platform 0 and revision 1, as QEMU's models report them.
            IA32_PLATFORM_ID if intel => 0,
            IA32_BIOS_SIGN_ID => MICROCODE_REVISION,
            IA32_FEATURE_CONTROL if intel => m.feature_control,
            IA32_DEBUGCTL => m.debugctl,
            // 8 variable ranges, fixed ranges, write-combining (SDM vol. 3, 12.11.1); bit 11
            // SMRR on the Intel models.
            IA32_MTRRCAP => 0x508 | if self.model.vendor == crate::cpuid::Vendor::Intel { 0x800 } else { 0 },
            IA32_SYSENTER_CS..=IA32_SYSENTER_EIP => m.sysenter[(idx - IA32_SYSENTER_CS) as usize],
            IA32_MISC_ENABLE => m.misc_enable,
            IA32_MTRR_PHYSBASE0..=IA32_MTRR_PHYSMASK7 => m.mtrr_var[(idx - IA32_MTRR_PHYSBASE0) as usize],
            IA32_PAT => m.pat,
            IA32_MTRR_DEF_TYPE => m.mtrr_def_type,
            IA32_EFER => self.efer,
            IA32_STAR => m.star,
            IA32_LSTAR => m.lstar,
            IA32_CSTAR => m.cstar,
            IA32_FMASK => m.fmask,
            IA32_FS_BASE => self.seg[crate::sreg::FS].base,
            IA32_GS_BASE => self.seg[crate::sreg::GS].base,
            IA32_KERNEL_GS_BASE => m.kernel_gs_base,
            IA32_TSC_AUX => m.tsc_aux,
            _ => match fixed_index(idx) {
                Some(k) => m.mtrr_fixed[k],
                None => return Err(Exc::gp0()),
            },
        })
    }

    /// WRMSR.
    pub fn wrmsr(&mut self, idx: u32, v: u64) -> Result<(), Exc> {
        if let Some(r) = self.wrmsr_smm(idx, v) {
            return r;
        }
        let long = self.model.long_mode;
        let canon = |v: u64| if crate::segment::canonical(v) { Ok(v) } else { Err(Exc::gp0()) };
        match idx {
            IA32_TSC => self.tsc_offset = v.wrapping_sub(self.icount),
            IA32_APIC_BASE => {
                if v & 0xffff_fff0_0000_02ff != 0 {
                    return Err(Exc::gp0());
                }
                self.msr.apic_base = v
            }
            IA32_SYSENTER_CS..=IA32_SYSENTER_EIP => self.msr.sysenter[(idx - IA32_SYSENTER_CS) as usize] = v,
            IA32_MISC_ENABLE => self.msr.misc_enable = v,
            // The revision is loaded by CPUID after a write of 0 (SDM vol. 3A, 10.11.7.1): the
            // write itself is accepted and the revision stays as the model reports it.
            IA32_BIOS_SIGN_ID => {}
            IA32_FEATURE_CONTROL if self.model.vendor == crate::cpuid::Vendor::Intel => {
                // Locked until reset; the VMX/SMX enables need features the models do not
                // advertise, so only the lock bit can be set.
                if self.msr.feature_control & 1 != 0 || v & !1 != 0 {
                    return Err(Exc::gp0());
                }
                self.msr.feature_control = v;
            }
            IA32_DEBUGCTL => {
                if v & !3 != 0 {
                    return Err(Exc::gp0());
                }
                self.msr.debugctl = v;
            }
            IA32_MTRR_PHYSBASE0..=IA32_MTRR_PHYSMASK7 => self.msr.mtrr_var[(idx - IA32_MTRR_PHYSBASE0) as usize] = v,
            IA32_PAT => self.msr.pat = v,
            IA32_MTRR_DEF_TYPE => {
                if v & !0xcff != 0 {
                    return Err(Exc::gp0());
                }
                self.msr.mtrr_def_type = v
            }
            IA32_EFER => {
                let mut allowed = EFER_NXE;
                if long {
                    allowed |= EFER_SCE | EFER_LME;
                }
                if v & !(allowed | EFER_LMA) != 0 {
                    return Err(Exc::gp0());
                }
                // LME cannot change while paging is on; LMA is read-only.
                if self.cr0 & CR0_PG != 0 && (v ^ self.efer) & EFER_LME != 0 {
                    return Err(Exc::gp0());
                }
                self.efer = (v & !EFER_LMA) | (self.efer & EFER_LMA);
                self.flush_tlb();
            }
            IA32_STAR if long => self.msr.star = v,
            IA32_LSTAR if long => self.msr.lstar = canon(v)?,
            IA32_CSTAR if long => self.msr.cstar = canon(v)?,
            IA32_FMASK if long => self.msr.fmask = v & 0xffff_ffff,
            IA32_FS_BASE if long => self.seg[crate::sreg::FS].base = canon(v)?,
            IA32_GS_BASE if long => self.seg[crate::sreg::GS].base = canon(v)?,
            IA32_KERNEL_GS_BASE if long => self.msr.kernel_gs_base = canon(v)?,
            IA32_TSC_AUX if long => self.msr.tsc_aux = v & 0xffff_ffff,
            _ => match fixed_index(idx) {
                Some(k) => self.msr.mtrr_fixed[k] = v,
                None => return Err(Exc::gp0()),
            },
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpuid::Vendor;
    use crate::CpuModel;

    fn cpu(vendor: Vendor) -> crate::Cpu {
        crate::Cpu::new(CpuModel { vendor, ..CpuModel::default() })
    }

    #[test]
    fn firmware_reads_the_identification_msrs_of_the_model() {
        let mut c = cpu(Vendor::Intel);
        assert_eq!(c.rdmsr(IA32_PLATFORM_ID), Ok(0));
        assert_eq!(c.wrmsr(IA32_BIOS_SIGN_ID, 0), Ok(()));
        assert_eq!(c.rdmsr(IA32_BIOS_SIGN_ID), Ok(1 << 32), "revision 1 after the write-0/CPUID protocol");
        assert_eq!(c.rdmsr(IA32_FEATURE_CONTROL), Ok(0));
        assert_eq!(c.wrmsr(IA32_FEATURE_CONTROL, 1), Ok(()));
        assert!(c.wrmsr(IA32_FEATURE_CONTROL, 0).is_err(), "locked until reset");
        assert!(c.wrmsr(IA32_PLATFORM_ID, 1).is_err(), "read-only");
        // AMD has the patch level at 0x8B but neither the platform ID nor the feature control.
        let mut a = cpu(Vendor::Amd);
        assert_eq!(a.rdmsr(IA32_BIOS_SIGN_ID), Ok(1 << 32));
        assert!(a.rdmsr(IA32_PLATFORM_ID).is_err());
        assert!(a.rdmsr(IA32_FEATURE_CONTROL).is_err());
        // An MSR the model lacks is still #GP.
        assert!(c.rdmsr(0x1234).is_err());
    }

    #[test]
    fn debugctl_keeps_lbr_and_btf_and_refuses_the_rest() {
        let mut c = cpu(Vendor::Intel);
        assert_eq!(c.wrmsr(IA32_DEBUGCTL, 3), Ok(()));
        assert_eq!(c.rdmsr(IA32_DEBUGCTL), Ok(3));
        assert!(c.wrmsr(IA32_DEBUGCTL, 1 << 6).is_err());
    }
}
