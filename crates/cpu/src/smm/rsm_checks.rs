//! The consistency checks RSM makes on the saved state before loading it; a failed check shuts
//! the CPU down (Intel SDM vol. 3C, 34.11; the cases Bochs also checks).

use super::savestate::Image;
use crate::cr::*;
use crate::flags::bits;
use crate::{sreg, Cpu};
use std::fmt;

/// An RSM consistency check the saved state failed, with the saved value it found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsmCheck {
    /// Saved CR0 has bits 63:32 set.
    Cr0Reserved {
        /// The saved CR0.
        cr0: u64,
    },
    /// Saved CR0 has PG without PE.
    Cr0PgWithoutPe {
        /// The saved CR0.
        cr0: u64,
    },
    /// Saved CR0 has NW without CD.
    Cr0NwWithoutCd {
        /// The saved CR0.
        cr0: u64,
    },
    /// Saved CR4 has a bit set this CPU does not support.
    Cr4Reserved {
        /// The saved CR4.
        cr4: u64,
    },
    /// Saved EFER has a bit set this CPU does not support.
    EferReserved {
        /// The saved EFER.
        efer: u64,
    },
    /// EFER.LME and CR0.PG (long mode) without CR4.PAE.
    LongModeWithoutPae,
    /// RFLAGS.VM set in long mode.
    Vm86InLongMode,
    /// CS has both L and D set in long mode.
    CsLongAndDefaultBig,
    /// A 64-bit CS with a non-canonical RIP.
    RipNotCanonical {
        /// The saved RIP.
        rip: u64,
    },
}

impl fmt::Display for RsmCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RsmCheck::Cr0Reserved { cr0 } => write!(f, "CR0 {cr0:#x} has reserved bits set"),
            RsmCheck::Cr0PgWithoutPe { cr0 } => write!(f, "CR0 {cr0:#x} has PG set without PE"),
            RsmCheck::Cr0NwWithoutCd { cr0 } => write!(f, "CR0 {cr0:#x} has NW set without CD"),
            RsmCheck::Cr4Reserved { cr4 } => write!(f, "CR4 {cr4:#x} has reserved bits set"),
            RsmCheck::EferReserved { efer } => write!(f, "EFER {efer:#x} has reserved bits set"),
            RsmCheck::LongModeWithoutPae => f.write_str("long mode (EFER.LME and CR0.PG) without CR4.PAE"),
            RsmCheck::Vm86InLongMode => f.write_str("RFLAGS.VM set in long mode"),
            RsmCheck::CsLongAndDefaultBig => f.write_str("CS has both L and D set in long mode"),
            RsmCheck::RipNotCanonical { rip } => write!(f, "RIP {rip:#x} is not canonical"),
        }
    }
}

impl Cpu {
    /// The checks RSM makes before loading a saved state (SDM vol. 3C, 34.11; the cases Bochs
    /// also checks). Returns the first that fails.
    pub(super) fn rsm_check(&self, img: &Image) -> Option<RsmCheck> {
        let cr0 = img.cr0;
        if cr0 >> 32 != 0 {
            return Some(RsmCheck::Cr0Reserved { cr0 });
        }
        if cr0 & CR0_PG != 0 && cr0 & CR0_PE == 0 {
            return Some(RsmCheck::Cr0PgWithoutPe { cr0 });
        }
        if cr0 & CR0_NW != 0 && cr0 & CR0_CD == 0 {
            return Some(RsmCheck::Cr0NwWithoutCd { cr0 });
        }
        let cr4_ok = CR4_VME | CR4_PVI | CR4_TSD | CR4_DE | CR4_PSE | CR4_PAE | CR4_MCE | CR4_PGE | CR4_PCE | CR4_OSFXSR | CR4_OSXMMEXCPT;
        if img.cr4 & !cr4_ok != 0 {
            return Some(RsmCheck::Cr4Reserved { cr4: img.cr4 });
        }
        let efer_ok = if self.model.long_mode { EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE } else { EFER_NXE };
        if img.efer & !efer_ok != 0 {
            return Some(RsmCheck::EferReserved { efer: img.efer });
        }
        let lma = img.efer & EFER_LME != 0 && cr0 & CR0_PG != 0;
        if lma && img.cr4 & CR4_PAE == 0 {
            return Some(RsmCheck::LongModeWithoutPae);
        }
        if lma && img.rflags & bits::VM != 0 {
            return Some(RsmCheck::Vm86InLongMode);
        }
        let cs_attr = img.seg[sreg::CS].attr;
        if lma && cs_attr & 0x2000 != 0 && cs_attr & 0x4000 != 0 {
            return Some(RsmCheck::CsLongAndDefaultBig);
        }
        if lma && cs_attr & 0x2000 != 0 && !crate::segment::canonical(img.rip) {
            return Some(RsmCheck::RipNotCanonical { rip: img.rip });
        }
        None
    }
}
