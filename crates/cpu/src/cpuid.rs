//! The configurable CPU model and the CPUID leaves it answers. Only implemented features are
//! advertised.

/// CPU vendor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    /// GenuineIntel: Intel-64 or P6 save-state maps, SMRR and SMM_FEATURE_CONTROL.
    Intel,
    /// AuthenticAMD: the AMD64 save-state map, SMM_ADDR/SMM_MASK and HWCR.SmmLock.
    Amd,
}

/// What CPU smmlab presents to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuModel {
    /// The vendor CPUID reports, which also selects the vendor's SMM behaviour.
    pub vendor: Vendor,
    /// Whether long mode (and with it the 64-bit save-state maps) exists.
    pub long_mode: bool,
    /// Guest instructions per second, for RDTSC and the virtual clock.
    pub tsc_hz: u64,
}

impl Default for CpuModel {
    fn default() -> Self {
        CpuModel { vendor: Vendor::Intel, long_mode: true, tsc_hz: 1_000_000_000 }
    }
}

// CPUID.1:EDX feature bits (Intel SDM vol. 2, CPUID, table 3-11).
const FPU: u32 = 1 << 0;
const DE: u32 = 1 << 2;
const PSE: u32 = 1 << 3;
const TSC: u32 = 1 << 4;
const MSR: u32 = 1 << 5;
const PAE: u32 = 1 << 6;
const CX8: u32 = 1 << 8;
const APIC: u32 = 1 << 9;
const SEP: u32 = 1 << 11;
const MTRR: u32 = 1 << 12;
const PGE: u32 = 1 << 13;
const CMOV: u32 = 1 << 15;
const PAT: u32 = 1 << 16;
const PSE36: u32 = 1 << 17;
const CLFSH: u32 = 1 << 19;
const MMX: u32 = 1 << 23;
const FXSR: u32 = 1 << 24;
const SSE: u32 = 1 << 25;
const SSE2: u32 = 1 << 26;
// CPUID.1:ECX.
const CX16: u32 = 1 << 13;
const MOVBE: u32 = 1 << 22;
const POPCNT: u32 = 1 << 23;
// CPUID.80000001.
const LAHF_LM: u32 = 1 << 0;
const ABM: u32 = 1 << 5; // LZCNT
const SYSCALL: u32 = 1 << 11;
const NX: u32 = 1 << 20;
const PDPE1GB: u32 = 1 << 26;
const RDTSCP: u32 = 1 << 27;
const LM: u32 = 1 << 29;
// CPUID.7.0:EBX.
const BMI1: u32 = 1 << 3; // TZCNT

impl CpuModel {
    /// EDX after reset: family/model/stepping.
    pub fn reset_edx(&self) -> u32 {
        0x0000_0663
    }

    /// Answers CPUID for leaf `eax`, subleaf `ecx`, as (eax, ebx, ecx, edx).
    pub fn cpuid(&self, leaf: u32, sub: u32, apic_id: u8) -> (u32, u32, u32, u32) {
        let vendor: &[u8; 12] = match self.vendor {
            Vendor::Intel => b"GenuineIntel",
            Vendor::Amd => b"AuthenticAMD",
        };
        let w = |k: usize| u32::from_le_bytes([vendor[k], vendor[k + 1], vendor[k + 2], vendor[k + 3]]);
        match leaf {
            0 => (7, w(0), w(8), w(4)),
            1 => {
                let edx = FPU | DE | PSE | TSC | MSR | PAE | CX8 | APIC | SEP | MTRR | PGE | CMOV | PAT | PSE36 | CLFSH | MMX | FXSR | SSE | SSE2;
                let ecx = CX16 | MOVBE | POPCNT;
                (0x0000_0663, ((apic_id as u32) << 24) | (1 << 16) | (8 << 8), ecx, edx)
            }
            7 if sub == 0 => (0, BMI1, 0, 0),
            0x8000_0000 => (0x8000_0008, w(0), w(8), w(4)),
            0x8000_0001 => {
                let mut edx = NX;
                if self.long_mode {
                    edx |= LM | SYSCALL | PDPE1GB | RDTSCP;
                }
                (0, 0, LAHF_LM | ABM, edx)
            }
            0x8000_0002..=0x8000_0004 => {
                let name = *b"smmlab virtual x86 CPU\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
                let base = ((leaf - 0x8000_0002) * 16) as usize;
                let r = |k: usize| u32::from_le_bytes([name[base + k], name[base + k + 1], name[base + k + 2], name[base + k + 3]]);
                (r(0), r(4), r(8), r(12))
            }
            0x8000_0008 => (if self.long_mode { 0x3028 } else { 0x24 }, 0, 0, 0),
            _ => (0, 0, 0, 0),
        }
    }
}
