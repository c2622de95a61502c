//! SMM entry: the state save at SMBASE + 0xFE00 (0xFC00 for Intel-64) and the SMM entry state
//! (Intel SDM vol. 3C, table 34-4; AMD APM vol. 2 ch. 10). NMIs are blocked from entry to RSM.

use super::io_restart::save_io;
use super::save_area::seg_to_image;
use super::savestate::Image;
use crate::bus::{Bus, SmmEntry};
use crate::cr::*;
use crate::flags::bits;
use crate::segment::Segment;
use crate::{sreg, Cpu};

impl Cpu {
    /// Enters SMM: saves the state map at SMBASE + 0xFE00 (0xFC00 for Intel-64) and loads the
    /// SMM entry state (SDM vol. 3C, table 34-4).
    pub fn enter_smm(&mut self, bus: &mut dyn Bus) {
        let io_trap = std::mem::replace(&mut self.smm_regs.smi_io_trap, false);
        self.smm_regs.smi_latched = false;
        let from_halt = self.leave_halt_for_smm();
        let map = self.smm_map();
        let io = self.trapped_io(io_trap);
        let mut img = Image {
            gpr: self.regs,
            rip: self.rip,
            rflags: self.flags.get(),
            cr0: self.cr0,
            cr3: self.cr3,
            cr4: self.cr4,
            dr6: self.dr[6],
            dr7: self.dr[7],
            efer: self.efer,
            ldtr: seg_to_image(&self.ldtr),
            tr: seg_to_image(&self.tr),
            gdtr_base: self.gdtr.base,
            gdtr_limit: self.gdtr.limit as u64,
            idtr_base: self.idtr.base,
            idtr_limit: self.idtr.limit as u64,
            smbase: self.smm_regs.smbase as u64,
            revision: map.revision() as u64,
            auto_halt: from_halt as u64,
            nmi_mask: self.nmi_blocked as u64,
            ..Default::default()
        };
        for k in 0..6 {
            img.seg[k] = seg_to_image(&self.seg[k]);
        }
        if let Some(r) = io {
            save_io(&mut img, map, &r);
        }
        self.smm_regs.inside_nmi = self.nmi_blocked;
        self.nmi_blocked = true;
        self.smm_regs.io = io;
        let entry = SmmEntry {
            smbase: self.smm_regs.smbase,
            cs: self.seg[sreg::CS].selector,
            rip: self.rip,
            mode: self.mode_name(),
            icount: self.icount,
            from_halt,
            io_trap: io.is_some(),
        };
        // SMIACT# first, so the save-area stores land in SMRAM.
        self.smm = true;
        self.flush_tlb();
        let base = self.smm_regs.smbase as u64 + 0xfc00;
        self.store_save_area(bus, map, base, &mut img);
        // Entry state.
        let smbase = self.smm_regs.smbase as u64;
        let data = Segment { selector: 0, base: 0, limit: 0xffff_ffff, attr: 0x893 };
        for k in 0..6 {
            self.seg[k] = data;
        }
        self.seg[sreg::CS] = Segment { selector: (smbase >> 4) as u16, base: smbase, limit: 0xffff_ffff, attr: 0x893 };
        self.rip = 0x8000;
        self.flags.set(bits::FIXED);
        self.cr0 &= !(CR0_PE | CR0_EM | CR0_TS | CR0_PG);
        self.cr4 = 0;
        self.efer = 0;
        self.dr[7] = 0x400;
        self.cpl = 0;
        self.shadow = false;
        self.end_block = true;
        self.flush_tlb();
        self.smm_regs.smi_count += 1;
        if let Some(r) = self.smm_blocks.as_deref_mut() {
            r.entered(self.smm_regs.smbase);
        }
        if let Some(e) = self.smm_edges.as_deref_mut() {
            e.entered();
        }
        self.smm_regs.entry_icount = self.icount;
        bus.smm_entered(&entry);
    }
}
