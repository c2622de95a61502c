//! A copy of the CPU's state to go back to ([`Cpu::snapshot`], [`Cpu::restore`]): what a
//! snapshot fuzzer restores before every execution. The caches (TLB, decoded blocks) are not
//! state: a restore flushes the TLB (its host pointers and write permissions were taken after
//! the snapshot) and keeps the decoded blocks, which the machine invalidates for the pages it
//! puts back. The host's tools' settings (the SMM block record, the SMM RIP report) stay as the
//! host set them; the breakpoints are restored, since the host set them for the state it
//! snapshotted.

use crate::Cpu;

/// The CPU's state at one point.
#[derive(Clone, Debug)]
pub struct CpuSnapshot {
    regs: [u64; 16],
    rip: u64,
    flags: crate::flags::Flags,
    seg: [crate::segment::Segment; 6],
    ldtr: crate::segment::Segment,
    tr: crate::segment::Segment,
    gdtr: crate::TableReg,
    idtr: crate::TableReg,
    cr: [u64; 6],
    dr: [u64; 8],
    xmm: [u128; 16],
    mxcsr: u32,
    fpu: crate::x87::X87,
    cpl: u8,
    smm: bool,
    a20: bool,
    msr: crate::msr::MsrFile,
    icount: u64,
    halted: bool,
    task_fault: Option<crate::exception::Exc>,
    shadow: bool,
    nmi_blocked: bool,
    shutdown: Option<crate::ShutdownReason>,
    end_block: bool,
    cur_rip: u64,
    tsc_offset: u64,
    smm_regs: crate::smm::SmmRegs,
    nmi_latched: bool,
    stalls: u64,
    breakpoints: Option<Box<rustc_hash::FxHashSet<u64>>>,
    bp_resume: bool,
}

impl Cpu {
    /// The CPU's state now.
    pub fn snapshot(&self) -> CpuSnapshot {
        // Every field named, so a new one cannot be forgotten here.
        let Cpu {
            regs,
            rip,
            flags,
            seg,
            ldtr,
            tr,
            gdtr,
            idtr,
            cr0,
            cr2,
            cr3,
            cr4,
            cr8,
            efer,
            dr,
            xmm,
            mxcsr,
            fpu,
            cpl,
            smm,
            a20,
            msr,
            model: _,
            icount,
            halted,
            unimplemented: _,
            missing_features: _,
            task_fault,
            shadow,
            nmi_blocked,
            shutdown,
            end_block,
            tlb: _,
            cache: _,
            cur_rip,
            tsc_offset,
            smm_regs,
            nmi_latched,
            stalls,
            smm_blocks: _,
            smm_edges: _,
            breakpoints,
            trace_smm_rip: _,
            one_at_a_time: _,
            exact_breakpoints: _,
            bp_resume,
        } = self;
        CpuSnapshot {
            regs: *regs,
            rip: *rip,
            flags: *flags,
            seg: *seg,
            ldtr: *ldtr,
            tr: *tr,
            gdtr: *gdtr,
            idtr: *idtr,
            cr: [*cr0, *cr2, *cr3, *cr4, *cr8, *efer],
            dr: *dr,
            xmm: *xmm,
            mxcsr: *mxcsr,
            fpu: fpu.clone(),
            cpl: *cpl,
            smm: *smm,
            a20: *a20,
            msr: msr.clone(),
            icount: *icount,
            halted: *halted,
            task_fault: *task_fault,
            shadow: *shadow,
            nmi_blocked: *nmi_blocked,
            shutdown: shutdown.clone(),
            end_block: *end_block,
            cur_rip: *cur_rip,
            tsc_offset: *tsc_offset,
            smm_regs: smm_regs.clone(),
            nmi_latched: *nmi_latched,
            stalls: *stalls,
            breakpoints: breakpoints.clone(),
            bp_resume: *bp_resume,
        }
    }

    /// Goes back to `s` (the counts of unimplemented instructions and missing features, which
    /// are reports, are kept). The TLB is flushed; decoded blocks stay.
    pub fn restore(&mut self, s: &CpuSnapshot) {
        self.regs = s.regs;
        self.rip = s.rip;
        self.flags = s.flags;
        self.seg = s.seg;
        self.ldtr = s.ldtr;
        self.tr = s.tr;
        self.gdtr = s.gdtr;
        self.idtr = s.idtr;
        [self.cr0, self.cr2, self.cr3, self.cr4, self.cr8, self.efer] = s.cr;
        self.dr = s.dr;
        self.xmm = s.xmm;
        self.mxcsr = s.mxcsr;
        self.fpu.clone_from(&s.fpu);
        self.cpl = s.cpl;
        self.smm = s.smm;
        self.a20 = s.a20;
        self.msr.clone_from(&s.msr);
        self.icount = s.icount;
        self.halted = s.halted;
        self.task_fault = s.task_fault;
        self.shadow = s.shadow;
        self.nmi_blocked = s.nmi_blocked;
        self.shutdown.clone_from(&s.shutdown);
        self.end_block = s.end_block;
        self.cur_rip = s.cur_rip;
        self.tsc_offset = s.tsc_offset;
        self.smm_regs.clone_from(&s.smm_regs);
        self.nmi_latched = s.nmi_latched;
        self.stalls = s.stalls;
        if self.breakpoints != s.breakpoints {
            self.breakpoints.clone_from(&s.breakpoints);
        }
        self.bp_resume = s.bp_resume;
        self.flush_tlb();
    }
}

#[cfg(test)]
mod tests {
    use crate::{Cpu, CpuModel};

    #[test]
    fn restore_brings_back_every_register_and_counter() {
        let mut c = Cpu::new(CpuModel::default());
        c.regs[3] = 7;
        c.xmm[2] = 9;
        c.icount = 100;
        c.smm_regs.smbase = 0x7f0_0000;
        let s = c.snapshot();
        c.regs[3] = 8;
        c.xmm[2] = 10;
        c.icount = 200;
        c.rip = 0x1234;
        c.smm = true;
        c.smm_regs.smbase = 0x3_0000;
        c.breakpoints = Some(Box::new([5u64].into_iter().collect()));
        c.restore(&s);
        assert_eq!((c.regs[3], c.xmm[2], c.icount, c.rip, c.smm, c.smm_regs.smbase), (7, 9, 100, 0xfff0, false, 0x7f0_0000));
        assert!(c.breakpoints.is_none());
    }
}
