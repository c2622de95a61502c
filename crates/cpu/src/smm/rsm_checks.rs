//! The consistency checks RSM makes on the saved state before loading it; a failed check shuts
//! the CPU down (Intel SDM vol. 3C, 34.11; the cases Bochs also checks).

use super::savestate::Image;
use crate::cr::*;
use crate::flags::bits;
use crate::{sreg, Cpu};

impl Cpu {
    /// The checks RSM makes before loading a saved state (SDM vol. 3C, 34.11; the cases Bochs
    /// also checks). Returns what is wrong.
    pub(super) fn rsm_check(&self, img: &Image) -> Option<String> {
        let cr0 = img.cr0;
        if cr0 >> 32 != 0 {
            return Some(format!("CR0 {cr0:#x} has reserved bits set"));
        }
        if cr0 & CR0_PG != 0 && cr0 & CR0_PE == 0 {
            return Some(format!("CR0 {cr0:#x} has PG set without PE"));
        }
        if cr0 & CR0_NW != 0 && cr0 & CR0_CD == 0 {
            return Some(format!("CR0 {cr0:#x} has NW set without CD"));
        }
        let cr4_ok = CR4_VME | CR4_PVI | CR4_TSD | CR4_DE | CR4_PSE | CR4_PAE | CR4_MCE | CR4_PGE | CR4_PCE | CR4_OSFXSR | CR4_OSXMMEXCPT;
        if img.cr4 & !cr4_ok != 0 {
            return Some(format!("CR4 {:#x} has reserved bits set", img.cr4));
        }
        let efer_ok = if self.model.long_mode { EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE } else { EFER_NXE };
        if img.efer & !efer_ok != 0 {
            return Some(format!("EFER {:#x} has reserved bits set", img.efer));
        }
        let lma = img.efer & EFER_LME != 0 && cr0 & CR0_PG != 0;
        if lma && img.cr4 & CR4_PAE == 0 {
            return Some("long mode (EFER.LME and CR0.PG) without CR4.PAE".into());
        }
        if lma && img.rflags & bits::VM != 0 {
            return Some("RFLAGS.VM set in long mode".into());
        }
        let cs_attr = img.seg[sreg::CS].attr;
        if lma && cs_attr & 0x2000 != 0 && cs_attr & 0x4000 != 0 {
            return Some("CS has both L and D set in long mode".into());
        }
        if lma && cs_attr & 0x2000 != 0 && !crate::segment::canonical(img.rip) {
            return Some(format!("RIP {:#x} is not canonical", img.rip));
        }
        None
    }
}
