//! Hardware task switching in legacy protected mode (SDM vol. 3, chapter 8): JMP and CALL to a
//! TSS descriptor or a task gate, interrupts and exceptions through task gates, and IRET with
//! NT set back along the previous-task link; 16- and 32-bit TSS formats, the busy bit, the
//! link, CR0.TS, CR3 and LDTR loads, the debug trap (T) bit and the checks of table 8-2.
//!
//! The switch runs in the SDM's order (8.3): the checks on the new TSS (which fault in the old
//! task), the old task's state saved, the busy bits and link written, TR, CR3 and the new
//! registers loaded, and only then the new task's segments qualified. A fault from that last
//! step belongs to the new task (its EIP, its flags): it is left in `Cpu::task_fault` and
//! delivered as soon as the switch returns, never as a fault of the instruction that switched.

use crate::bus::Bus;
use crate::exception::{Exc, DB, GP, NP, SS as SS_FAULT, TS};
use crate::flags::bits;
use crate::segment::{Segment, ATTR_UNUSABLE};
use crate::{cr, sreg, Cpu};

type R = Result<(), Exc>;

/// What starts a task switch; it decides the busy bits, NT and the previous-task link
/// (SDM vol. 3, table 8-2 and 8.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskEntry {
    /// JMP: the old task stops being busy, no link.
    Jmp,
    /// CALL: the new task links back to the old one and runs with NT set.
    Call,
    /// An interrupt or exception through a task gate: as CALL.
    Interrupt,
    /// IRET with NT set: back to the linked task, which is already busy.
    Iret,
}

/// The state a TSS holds for its task, in either format.
struct TaskImage {
    cr3: Option<u64>,
    eip: u64,
    eflags: u64,
    gprs: [u64; 8],
    /// ES, CS, SS, DS, FS, GS.
    segs: [u16; 6],
    ldt: u16,
    /// The debug trap bit (32-bit TSS only).
    trap: bool,
}

/// The least limit of a TSS whose task can be entered: 0x67 (32-bit), 0x2B (16-bit).
fn min_limit(tss32: bool) -> u32 {
    if tss32 {
        0x67
    } else {
        0x2b
    }
}

/// The offsets in the old TSS that a switch writes reach up to here (the GS field or the
/// last 16-bit selector).
fn dynamic_end(tss32: bool) -> u32 {
    if tss32 {
        0x5f
    } else {
        0x29
    }
}

impl Cpu {
    /// JMP or CALL to a TSS descriptor or a task gate (SDM vol. 2, JMP and CALL, "TASK-GATE"
    /// and "TASK-STATE-SEGMENT"): the selector's RPL and the CPL must not exceed the DPL; the
    /// TSS must be available and present.
    pub(crate) fn far_to_task(&mut self, bus: &mut dyn Bus, sel: u16, raw: u64, kind: TaskEntry) -> R {
        let d = Segment::from_descriptor(sel, raw);
        let rpl = (sel & 3) as u8;
        if d.dpl() < self.cpl || d.dpl() < rpl {
            return Err(Exc::code(GP, sel as u32 & 0xfffc));
        }
        if !d.present() {
            return Err(Exc::code(NP, sel as u32 & 0xfffc));
        }
        let (tss, tss_raw) = if d.typ() == 0x5 { self.task_gate_target(bus, ((raw >> 16) & 0xffff) as u16, 0)? } else { (sel, raw) };
        self.switch_task(bus, tss, tss_raw, kind, None, 0)?;
        self.deliver_task_fault(bus);
        Ok(())
    }

    /// The TSS a task gate names: a GDT selector of an available, present TSS (#GP or #NP
    /// with the TSS selector; `ext` is the error code's EXT bit).
    pub(crate) fn task_gate_target(&mut self, bus: &mut dyn Bus, tss: u16, ext: u32) -> Result<(u16, u64), Exc> {
        let err = Exc::code(GP, (tss as u32 & 0xfffc) | ext);
        if tss & 4 != 0 || tss & 0xfffc == 0 {
            return Err(err);
        }
        let raw = self.read_descriptor(bus, tss, GP).map_err(|e| if e.vector == GP { err } else { e })?;
        let d = Segment::from_descriptor(tss, raw);
        if d.s() || (d.typ() != 0x1 && d.typ() != 0x9) {
            return Err(err);
        }
        if !d.present() {
            return Err(Exc::code(NP, (tss as u32 & 0xfffc) | ext));
        }
        Ok((tss, raw))
    }

    /// IRET with NT set: return to the task in the current TSS's previous-task link, which
    /// must be a busy TSS in the GDT (#TS otherwise; SDM vol. 2, IRET, "TASK-RETURN").
    pub(crate) fn iret_to_linked_task(&mut self, bus: &mut dyn Bus) -> R {
        let link = self.read_lin_sys(bus, self.tr.base, 2)? as u16;
        let err = Exc::code(TS, link as u32 & 0xfffc);
        if link & 4 != 0 || link & 0xfffc == 0 {
            return Err(err);
        }
        let raw = self.read_descriptor(bus, link, TS)?;
        let d = Segment::from_descriptor(link, raw);
        if d.s() || (d.typ() != 0x3 && d.typ() != 0xb) {
            return Err(err);
        }
        if !d.present() {
            return Err(Exc::code(NP, link as u32 & 0xfffc));
        }
        self.switch_task(bus, link, raw, TaskEntry::Iret, None, 0)?;
        self.deliver_task_fault(bus);
        Ok(())
    }

    /// An instruction's task switch completed: a fault the new task raised while its state
    /// was loaded is delivered now, in the new task.
    fn deliver_task_fault(&mut self, bus: &mut dyn Bus) {
        if let Some(e) = self.task_fault.take() {
            self.raise(bus, e, crate::exception::Source::Fault);
        }
    }

    /// Switches to the task whose TSS descriptor is `sel` (raw descriptor `raw`, checked by
    /// the caller for type, privilege and presence). `error_code` is pushed on the new task's
    /// stack (an exception through a task gate). An error returned is a fault of the old task;
    /// one after the point of no return is left in `task_fault`.
    pub(crate) fn switch_task(&mut self, bus: &mut dyn Bus, sel: u16, raw: u64, kind: TaskEntry, error_code: Option<u32>, ext: u32) -> R {
        let ts_new = Exc::code(TS, (sel as u32 & 0xfffc) | ext);
        let new = Segment::from_descriptor(sel, raw);
        let new32 = new.typ() & 8 != 0;
        if new.limit < min_limit(new32) {
            return Err(ts_new);
        }
        let old = self.tr;
        let old32 = old.typ() & 8 != 0;
        if old.limit < dynamic_end(old32) {
            return Err(Exc::code(TS, (old.selector as u32 & 0xfffc) | ext));
        }
        // Everything the new task needs is read before anything is written, so a page fault
        // on the new TSS is one of the old task.
        let image = self.read_task_image(bus, new.base, new32)?;
        let mut saved_flags = self.flags.get();
        if kind == TaskEntry::Iret {
            saved_flags &= !bits::NT;
        }
        self.save_task_state(bus, old.base, old32, saved_flags)?;
        if matches!(kind, TaskEntry::Jmp | TaskEntry::Iret) {
            self.set_tss_busy(bus, old.selector, false)?;
        }
        if matches!(kind, TaskEntry::Call | TaskEntry::Interrupt) {
            self.write_lin_sys(bus, new.base, 2, old.selector as u64)?;
        }
        if kind != TaskEntry::Iret {
            self.set_tss_busy(bus, sel, true)?;
        }
        // The point of no return: the new task's TR, CR3 and registers.
        let mut tr = new;
        tr.attr |= 2;
        self.tr = tr;
        self.cr0 |= cr::CR0_TS;
        if let Some(cr3) = image.cr3 {
            if self.cr0 & cr::CR0_PG != 0 {
                self.cr3 = cr3;
            }
        }
        self.flush_tlb();
        self.end_block = true;
        self.regs[..8].copy_from_slice(&image.gprs);
        self.rip = image.eip;
        let mut flags = image.eflags;
        if matches!(kind, TaskEntry::Call | TaskEntry::Interrupt) {
            flags |= bits::NT;
        }
        self.flags.set(flags | bits::FIXED);
        if let Err(e) = self.load_task_segments(bus, &image, ext) {
            self.task_fault = Some(e);
            return Ok(());
        }
        if image.eip > self.seg[sreg::CS].limit as u64 && !self.vm86() {
            self.task_fault = Some(Exc::gp0());
            return Ok(());
        }
        if let Some(code) = error_code {
            let size = if new32 { 4 } else { 2 };
            if let Err(e) = self.push(bus, size, code as u64) {
                self.task_fault = Some(e);
                return Ok(());
            }
        }
        if image.trap {
            // The T bit: a debug trap before the new task's first instruction (DR6.BT).
            self.dr[6] |= 1 << 15;
            self.task_fault = Some(Exc::new(DB));
        }
        Ok(())
    }

    /// Reads the task state of the TSS at linear `base`.
    fn read_task_image(&mut self, bus: &mut dyn Bus, base: u64, tss32: bool) -> Result<TaskImage, Exc> {
        let mut rd = |cpu: &mut Cpu, off: u64, size: u8| cpu.read_lin_sys(bus, base.wrapping_add(off), size);
        let mut gprs = [0u64; 8];
        let mut segs = [0u16; 6];
        if tss32 {
            let cr3 = rd(self, 0x1c, 4)?;
            let eip = rd(self, 0x20, 4)?;
            let eflags = rd(self, 0x24, 4)?;
            for (k, r) in gprs.iter_mut().enumerate() {
                *r = rd(self, 0x28 + 4 * k as u64, 4)?;
            }
            for (k, s) in segs.iter_mut().enumerate() {
                *s = rd(self, 0x48 + 4 * k as u64, 2)? as u16;
            }
            let ldt = rd(self, 0x60, 2)? as u16;
            let trap = rd(self, 0x64, 2)? & 1 != 0;
            return Ok(TaskImage { cr3: Some(cr3), eip, eflags, gprs, segs, ldt, trap });
        }
        let eip = rd(self, 0x0e, 2)?;
        let eflags = rd(self, 0x10, 2)?;
        // A 16-bit TSS holds the low halves only; the upper halves are the CPU model's (the
        // SDM leaves them undefined), FS and GS become null.
        let upper = crate::undefined::task16_upper_register_halves(self.model.vendor);
        for (k, r) in gprs.iter_mut().enumerate() {
            *r = upper | rd(self, 0x12 + 2 * k as u64, 2)?;
        }
        for (k, s) in segs.iter_mut().take(4).enumerate() {
            *s = rd(self, 0x22 + 2 * k as u64, 2)? as u16;
        }
        let ldt = rd(self, 0x2a, 2)? as u16;
        Ok(TaskImage { cr3: None, eip, eflags, gprs, segs, ldt, trap: false })
    }

    /// Writes the current task's dynamic state into its TSS at linear `base` (SDM vol. 3,
    /// 8.2.1: the general registers, segment selectors, EFLAGS and EIP; not CR3 or LDTR).
    fn save_task_state(&mut self, bus: &mut dyn Bus, base: u64, tss32: bool, flags: u64) -> R {
        let segs = [sreg::ES, sreg::CS, sreg::SS, sreg::DS, sreg::FS, sreg::GS];
        if tss32 {
            self.write_lin_sys(bus, base.wrapping_add(0x20), 4, self.rip & 0xffff_ffff)?;
            self.write_lin_sys(bus, base.wrapping_add(0x24), 4, flags & 0xffff_ffff)?;
            for k in 0..8 {
                self.write_lin_sys(bus, base.wrapping_add(0x28 + 4 * k as u64), 4, self.regs[k] & 0xffff_ffff)?;
            }
            for (k, &s) in segs.iter().enumerate() {
                self.write_lin_sys(bus, base.wrapping_add(0x48 + 4 * k as u64), 2, self.seg[s].selector as u64)?;
            }
            return Ok(());
        }
        self.write_lin_sys(bus, base.wrapping_add(0x0e), 2, self.rip & 0xffff)?;
        self.write_lin_sys(bus, base.wrapping_add(0x10), 2, flags & 0xffff)?;
        for k in 0..8 {
            self.write_lin_sys(bus, base.wrapping_add(0x12 + 2 * k as u64), 2, self.regs[k] & 0xffff)?;
        }
        for (k, &s) in segs.iter().take(4).enumerate() {
            self.write_lin_sys(bus, base.wrapping_add(0x22 + 2 * k as u64), 2, self.seg[s].selector as u64)?;
        }
        Ok(())
    }

    /// Sets or clears the busy bit (type bit 1) of the TSS descriptor `sel` in the GDT.
    fn set_tss_busy(&mut self, bus: &mut dyn Bus, sel: u16, busy: bool) -> R {
        if sel & 0xfffc == 0 {
            return Ok(());
        }
        let lin = self.gdtr.base.wrapping_add((sel & 0xfff8) as u64 + 5);
        let b = self.read_lin_sys(bus, lin, 1)?;
        self.write_lin_sys(bus, lin, 1, if busy { b | 2 } else { b & !2 })
    }

    /// Loads LDTR and the segment registers of the new task with the checks of SDM vol. 3,
    /// table 8-2, in its order: LDT, CS (which sets the CPL), SS, then the data segments. The
    /// registers hold the new selectors, unusable until qualified, so a fault leaves the new
    /// task's selectors visible as the SDM says.
    fn load_task_segments(&mut self, bus: &mut dyn Bus, image: &TaskImage, ext: u32) -> R {
        let order = [sreg::ES, sreg::CS, sreg::SS, sreg::DS, sreg::FS, sreg::GS];
        for (k, &idx) in order.iter().enumerate() {
            self.seg[idx] = Segment { selector: image.segs[k], base: 0, limit: 0, attr: ATTR_UNUSABLE };
        }
        self.ldtr = Segment { selector: image.ldt, base: 0, limit: 0, attr: ATTR_UNUSABLE };
        let ts = |sel: u16| Exc::code(TS, (sel as u32 & 0xfffc) | ext);
        // LDT: null, or a present LDT descriptor in the GDT.
        if image.ldt & 0xfffc != 0 {
            if image.ldt & 4 != 0 {
                return Err(ts(image.ldt));
            }
            let raw = self.read_descriptor(bus, image.ldt, TS)?;
            let mut d = Segment::from_descriptor(image.ldt, raw);
            if d.s() || d.typ() != 2 || !d.present() {
                return Err(ts(image.ldt));
            }
            d.attr &= !ATTR_UNUSABLE;
            self.ldtr = d;
        }
        if image.eflags & bits::VM != 0 {
            // A virtual-8086 task: real-mode segments at CPL 3.
            for (k, &idx) in order.iter().enumerate() {
                let mut s = Segment::real(image.segs[k]);
                s.attr = if idx == sreg::CS { 0xfb } else { 0xf3 };
                self.seg[idx] = s;
            }
            if self.cpl != 3 {
                self.cpl = 3;
                self.flush_tlb();
            }
            return Ok(());
        }
        // CS: a present code segment; non-conforming at DPL = RPL, conforming at DPL <= RPL.
        let cs = image.segs[1];
        if cs & 0xfffc == 0 {
            return Err(ts(cs));
        }
        let raw = self.read_descriptor(bus, cs, TS)?;
        let d = Segment::from_descriptor(cs, raw);
        let rpl = (cs & 3) as u8;
        let conforming = d.typ() & 4 != 0;
        if !d.code() || (!conforming && d.dpl() != rpl) || (conforming && d.dpl() > rpl) {
            return Err(ts(cs));
        }
        if !d.present() {
            return Err(Exc::code(NP, (cs as u32 & 0xfffc) | ext));
        }
        self.set_accessed(bus, cs, raw)?;
        self.set_cs(cs, raw, rpl);
        // SS: a present writable data segment at DPL = RPL = CPL.
        let ss = image.segs[2];
        if ss & 0xfffc == 0 {
            return Err(ts(ss));
        }
        let raw = self.read_descriptor(bus, ss, TS)?;
        let d = Segment::from_descriptor(ss, raw);
        if !d.s() || d.code() || d.typ() & 2 == 0 || d.dpl() != self.cpl || (ss & 3) as u8 != self.cpl {
            return Err(ts(ss));
        }
        if !d.present() {
            return Err(Exc::code(SS_FAULT, (ss as u32 & 0xfffc) | ext));
        }
        self.set_accessed(bus, ss, raw)?;
        let mut d = d;
        d.attr |= 1;
        self.seg[sreg::SS] = d;
        // DS, ES, FS, GS: null, or present data or readable code the CPL may use.
        for (k, idx) in [(3, sreg::DS), (0, sreg::ES), (4, sreg::FS), (5, sreg::GS)] {
            let sel = image.segs[k];
            if sel & 0xfffc == 0 {
                continue;
            }
            let raw = self.read_descriptor(bus, sel, TS)?;
            let d = Segment::from_descriptor(sel, raw);
            let rpl = (sel & 3) as u8;
            let conforming_code = d.code() && d.typ() & 4 != 0;
            if !d.s() || (d.code() && d.typ() & 2 == 0) || (!conforming_code && (d.dpl() < self.cpl || d.dpl() < rpl)) {
                return Err(ts(sel));
            }
            if !d.present() {
                return Err(Exc::code(NP, (sel as u32 & 0xfffc) | ext));
            }
            self.set_accessed(bus, sel, raw)?;
            let mut d = d;
            d.attr |= 1;
            self.seg[idx] = d;
        }
        Ok(())
    }
}
