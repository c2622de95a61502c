//! RSM (0F AA): leaving SMM. Loads the saved state after its checks (`rsm_checks`), applies
//! SMBASE relocation, I/O-instruction and auto-HALT restart, restores NMI blocking, and reports
//! the exit to the bus (Intel SDM vol. 3C ch. 34; AMD APM vol. 2 ch. 10). A failed check shuts
//! the CPU down.

use super::relocation::relocated_smbase;
use super::rsm_checks::RsmCheck;
use super::save_area::seg_from_image;
use crate::bus::{Bus, SmmExit};
use crate::cr::*;
use crate::decode::Insn;
use crate::exception::Exc;
use crate::flags::bits;
use crate::{sreg, Cpu, ShutdownReason, TableReg};

impl Cpu {
    /// Ends in shutdown, reporting why RSM failed.
    fn rsm_shutdown(&mut self, bus: &mut dyn Bus, check: RsmCheck) {
        let reason = ShutdownReason::RsmCheck(check);
        self.shutdown = Some(reason.clone());
        self.smm = false;
        self.flush_tlb();
        self.end_block = true;
        bus.smm_left(&SmmExit {
            smbase: self.smm_regs.smbase,
            cs: self.seg[sreg::CS].selector,
            rip: self.rip,
            mode: self.mode_name(),
            smm_instructions: self.icount + 1 - self.smm_regs.entry_icount,
            icount: self.icount + 1,
            io_restarted: false,
            halt_restarted: false,
            shutdown: Some(reason),
        });
    }

    /// RSM (0F AA).
    pub(crate) fn rsm(&mut self, bus: &mut dyn Bus) -> Result<(), Exc> {
        if !self.smm {
            return Err(Exc::ud());
        }
        let map = self.smm_map();
        let smbase = self.smm_regs.smbase as u64;
        let img = self.load_save_area(bus, map, smbase + 0xfc00);
        if let Some(check) = self.rsm_check(&img) {
            self.rsm_shutdown(bus, check);
            return Ok(());
        }
        let long_mode = img.efer & EFER_LME != 0 && img.cr0 & CR0_PG != 0;
        self.efer = (img.efer & !EFER_LMA) | if long_mode { EFER_LMA } else { 0 };
        self.cr4 = img.cr4;
        self.cr3 = img.cr3;
        self.cr0 = img.cr0 | CR0_ET;
        let protected = img.cr0 & CR0_PE != 0;
        self.gdtr = TableReg { base: img.gdtr_base, limit: img.gdtr_limit as u16 };
        self.idtr = TableReg { base: img.idtr_base, limit: img.idtr_limit as u16 };
        self.ldtr = seg_from_image(&img.ldtr, true);
        self.tr = seg_from_image(&img.tr, true);
        for k in 0..6 {
            self.seg[k] = seg_from_image(&img.seg[k], protected);
        }
        let width_mask = if self.model.long_mode { u64::MAX } else { 0xffff_ffff };
        for k in 0..16 {
            self.regs[k] = img.gpr[k] & width_mask;
        }
        self.rip = img.rip & width_mask;
        self.flags.set(img.rflags);
        self.dr[6] = img.dr6 | 0xffff_0ff0;
        self.dr[7] = img.dr7 | 0x400;
        self.cpl = if !protected {
            0
        } else if img.rflags & bits::VM != 0 {
            3
        } else {
            self.seg[sreg::SS].dpl()
        };
        let new_base = relocated_smbase(map, &img);
        self.smm_regs.smbase = new_base;
        let io_restarted = self.io_restart(&img);
        let halt_restarted = self.auto_halt_restart(&img, io_restarted);
        self.nmi_blocked = self.smm_regs.inside_nmi;
        self.smm = false;
        self.shadow = false;
        self.end_block = true;
        self.flush_tlb();
        bus.smm_left(&SmmExit {
            smbase: new_base,
            cs: self.seg[sreg::CS].selector,
            rip: self.rip,
            mode: self.mode_name(),
            smm_instructions: self.icount + 1 - self.smm_regs.entry_icount,
            icount: self.icount + 1,
            io_restarted,
            halt_restarted,
            shutdown: None,
        });
        Ok(())
    }
}

/// The RSM instruction's handler.
pub fn rsm(cpu: &mut Cpu, bus: &mut dyn Bus, _d: &Insn) -> Result<(), Exc> {
    cpu.rsm(bus)
}
