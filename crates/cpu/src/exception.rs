//! Exceptions and interrupts: vectors, error codes, delivery through the real-mode IVT and the
//! protected/long-mode IDT, double fault and triple fault (Intel SDM vol. 3, chapter 6).

use crate::bus::Bus;
use crate::flags::bits;
use crate::segment::Segment;
use crate::{sreg, Cpu, ShutdownReason};

/// Divide error.
pub const DE: u8 = 0;
/// Debug exception.
pub const DB: u8 = 1;
/// Non-maskable interrupt.
pub const NMI: u8 = 2;
/// Breakpoint (INT3).
pub const BP: u8 = 3;
/// Overflow (INTO).
pub const OF: u8 = 4;
/// BOUND range exceeded.
pub const BR: u8 = 5;
/// Invalid opcode.
pub const UD: u8 = 6;
/// Device not available (x87 with CR0.TS or EM).
pub const NM: u8 = 7;
/// Double fault.
pub const DF: u8 = 8;
/// Invalid TSS.
pub const TS: u8 = 10;
/// Segment not present.
pub const NP: u8 = 11;
/// Stack-segment fault.
pub const SS: u8 = 12;
/// General protection.
pub const GP: u8 = 13;
/// Page fault.
pub const PF: u8 = 14;
/// x87 floating-point error.
pub const MF: u8 = 16;
/// Alignment check.
pub const AC: u8 = 17;
/// Machine check.
pub const MC: u8 = 18;
/// SIMD floating-point exception.
pub const XM: u8 = 19;

/// An exception raised by an instruction: vector and optional error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exc {
    /// The vector (see the constants above).
    pub vector: u8,
    /// The error code pushed with it, if the vector has one.
    pub code: Option<u32>,
}

impl Exc {
    /// An exception without an error code.
    pub fn new(vector: u8) -> Self {
        Exc { vector, code: None }
    }
    /// An exception with an error code.
    pub fn code(vector: u8, code: u32) -> Self {
        Exc { vector, code: Some(code) }
    }
    /// #UD.
    pub fn ud() -> Self {
        Exc::new(UD)
    }
    /// #GP(0).
    pub fn gp0() -> Self {
        Exc::code(GP, 0)
    }
}

/// Where an event comes from; decides privilege checks and the pushed return address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A fault or trap raised by an instruction (return address already set in RIP).
    Fault,
    /// INT n / INT3 / INTO: the gate's DPL is checked against CPL.
    Software,
    /// INTR or NMI from outside.
    External,
}

fn contributory(v: u8) -> bool {
    matches!(v, DE | TS | NP | SS | GP)
}

impl Cpu {
    /// Delivers an exception or interrupt, escalating to #DF and to shutdown as the SDM's
    /// table 6-5 says.
    pub fn raise(&mut self, bus: &mut dyn Bus, e: Exc, src: Source) {
        let mut cur = e;
        let mut src = src;
        // The vectors delivery was attempted for, for the shutdown reason.
        let mut chain = [0u8; 8];
        // The longest chain is benign -> contributory -> #PF -> #DF -> shutdown.
        for n in 0..8 {
            chain[n] = cur.vector;
            match self.deliver(bus, cur, src) {
                Ok(()) => match self.task_fault.take() {
                    // Delivered through a task gate, and the new task faulted while its
                    // state was loaded: that fault is the new task's, delivered next.
                    Some(e) => {
                        cur = e;
                        src = Source::Fault;
                    }
                    None => return,
                },
                Err(e2) => {
                    if src == Source::Software {
                        // A fault while delivering INT n (gate DPL, bad gate) is a fault of
                        // the INT instruction: the saved EIP points at it.
                        self.rip = self.cur_rip;
                    }
                    if cur.vector == DF {
                        self.shutdown = Some(ShutdownReason::TripleFault {
                            chain: chain[..=n].to_vec(),
                            fault: e2.vector,
                            cs: self.seg[sreg::CS].selector,
                            rip: self.rip,
                            mode: self.mode_name(),
                        });
                        return;
                    }
                    let df = (contributory(cur.vector) && contributory(e2.vector))
                        || (cur.vector == PF && (contributory(e2.vector) || e2.vector == PF));
                    cur = if df { Exc::code(DF, 0) } else { e2 };
                    src = Source::Fault;
                }
            }
        }
        self.shutdown = Some(ShutdownReason::Undeliverable { chain: chain.to_vec(), vector: cur.vector });
    }

    /// One delivery attempt.
    fn deliver(&mut self, bus: &mut dyn Bus, e: Exc, src: Source) -> Result<(), Exc> {
        self.halted = false;
        if !self.protected() {
            return self.deliver_real(bus, e.vector);
        }
        if self.long_mode() {
            return self.deliver_long(bus, e, src);
        }
        self.deliver_protected(bus, e, src)
    }

    fn deliver_real(&mut self, bus: &mut dyn Bus, v: u8) -> Result<(), Exc> {
        let off = v as u64 * 4;
        if off + 3 > self.idtr.limit as u64 {
            return Err(Exc::code(GP, v as u32 * 8 + 2));
        }
        let ent = self.read_lin_sys(bus, self.idtr.base.wrapping_add(off), 4)?;
        let fl = self.flags.get();
        self.push(bus, 2, fl & 0xffff)?;
        self.push(bus, 2, self.seg[sreg::CS].selector as u64)?;
        self.push(bus, 2, self.rip & 0xffff)?;
        self.flags.set(fl & !(bits::IF | bits::TF | bits::AC | bits::RF));
        let sel = (ent >> 16) as u16;
        self.seg[sreg::CS].selector = sel;
        self.seg[sreg::CS].base = (sel as u64) << 4;
        self.rip = ent & 0xffff;
        Ok(())
    }

    fn read_gate(&mut self, bus: &mut dyn Bus, v: u8, size: u64, src: Source) -> Result<u64, Exc> {
        let ext = (src == Source::External) as u32;
        let code = v as u32 * 8 + 2 + ext;
        let off = v as u64 * size;
        if off + size - 1 > self.idtr.limit as u64 {
            return Err(Exc::code(GP, code));
        }
        self.read_lin_sys(bus, self.idtr.base.wrapping_add(off), 8)
    }

    fn deliver_protected(&mut self, bus: &mut dyn Bus, e: Exc, src: Source) -> Result<(), Exc> {
        let v = e.vector;
        let ext = (src == Source::External) as u32;
        let gate = self.read_gate(bus, v, 8, src)?;
        let gcode = v as u32 * 8 + 2 + ext;
        let typ = ((gate >> 40) & 0x1f) as u8;
        let dpl = ((gate >> 45) & 3) as u8;
        let present = gate & (1 << 47) != 0;
        let big = match typ {
            0x06 | 0x07 => false,
            0x0e | 0x0f => true,
            0x05 => {
                // A task gate (SDM vol. 3, 6.12.2): the handler is a task of its own.
                if src == Source::Software && dpl < self.cpl {
                    return Err(Exc::code(GP, gcode));
                }
                if !present {
                    return Err(Exc::code(NP, gcode));
                }
                let (tss, raw) = self.task_gate_target(bus, ((gate >> 16) & 0xffff) as u16, ext)?;
                let code = if src == Source::Software { None } else { e.code };
                return self.switch_task(bus, tss, raw, crate::exec::task_switch::TaskEntry::Interrupt, code, ext);
            }
            _ => return Err(Exc::code(GP, gcode)),
        };
        if src == Source::Software && dpl < self.cpl {
            return Err(Exc::code(GP, gcode));
        }
        if !present {
            return Err(Exc::code(NP, gcode));
        }
        let trap = typ & 1 != 0;
        let sel = ((gate >> 16) & 0xffff) as u16;
        let mut off = (gate & 0xffff) | ((gate >> 32) & 0xffff_0000);
        if !big {
            off &= 0xffff;
        }
        if sel & 0xfffc == 0 {
            return Err(Exc::code(GP, ext));
        }
        let raw = self.read_descriptor(bus, sel, GP)?;
        let cs = Segment::from_descriptor(sel, raw);
        if !cs.code() || cs.dpl() > self.cpl {
            return Err(Exc::code(GP, (sel as u32 & 0xfffc) + ext));
        }
        if !cs.present() {
            return Err(Exc::code(NP, (sel as u32 & 0xfffc) + ext));
        }
        let conforming = cs.typ() & 4 != 0;
        let new_cpl = if conforming { self.cpl } else { cs.dpl() };
        if off > cs.limit as u64 {
            return Err(Exc::code(GP, ext));
        }
        let fl = self.flags.get();
        let was_vm86 = self.vm86();
        let w: u8 = if big { 4 } else { 2 };
        let inner = if new_cpl < self.cpl || was_vm86 {
            if was_vm86 && new_cpl != 0 {
                return Err(Exc::code(GP, sel as u32 & 0xfffc));
            }
            // The stack for the handler's level from the TSS (SDM vol. 3, 6.12.1).
            let (new_ss, new_sp) = self.tss_stack(bus, new_cpl)?;
            Some((self.check_inner_stack(bus, new_ss, new_cpl)?, new_sp))
        } else {
            None
        };
        // A fault while the frame is pushed leaves the interrupted state as it was (the next
        // event, #DF or not, is delivered from there).
        let saved = (self.seg, self.regs[crate::regs::RSP], self.cpl);
        let code = if src == Source::Software { None } else { e.code };
        if let Err(e) = self.push_interrupt_frame(bus, inner, new_cpl, w, fl, code) {
            (self.seg, self.regs[crate::regs::RSP], self.cpl) = saved;
            self.flags.set(fl);
            self.flush_tlb();
            return Err(e);
        }
        self.set_cs((sel & !3) | new_cpl as u16, raw, new_cpl);
        self.rip = off;
        let mut nf = fl & !(bits::TF | bits::NT | bits::RF | bits::VM);
        if !trap {
            nf &= !bits::IF;
        }
        self.flags.set(nf);
        Ok(())
    }

    /// Pushes a protected-mode interrupt frame of `w`-byte slots: on the stack `inner` names
    /// (the caller's SS:ESP first, and the data segments when leaving virtual-8086 mode), then
    /// EFLAGS, CS, EIP and the error code.
    fn push_interrupt_frame(&mut self, bus: &mut dyn Bus, inner: Option<(Segment, u64)>, new_cpl: u8, w: u8, fl: u64, code: Option<u32>) -> Result<(), Exc> {
        let old_cs = self.seg[sreg::CS].selector as u64;
        let was_vm86 = self.vm86();
        if let Some((ss, sp)) = inner {
            let (old_ss, old_sp) = (self.seg[sreg::SS].selector as u64, self.regs[crate::regs::RSP]);
            let segs = [sreg::GS, sreg::FS, sreg::DS, sreg::ES].map(|idx| self.seg[idx].selector as u64);
            self.flags.set(fl & !bits::VM);
            self.cpl = new_cpl;
            self.flush_tlb();
            self.seg[sreg::SS] = ss;
            self.regs[crate::regs::RSP] = sp;
            if was_vm86 {
                for v in segs {
                    self.push(bus, w, v)?;
                }
            }
            self.push(bus, w, old_ss)?;
            self.push(bus, w, old_sp)?;
            if was_vm86 {
                for idx in [sreg::GS, sreg::FS, sreg::DS, sreg::ES] {
                    self.seg[idx] = Segment { selector: 0, base: 0, limit: 0, attr: crate::segment::ATTR_UNUSABLE };
                }
            }
        }
        self.push(bus, w, fl)?;
        self.push(bus, w, old_cs)?;
        self.push(bus, w, self.rip)?;
        if let Some(c) = code {
            self.push(bus, w, c as u64)?;
        }
        Ok(())
    }

    /// SS:ESP for privilege level `pl` from the current 32-bit (or 16-bit) TSS.
    pub(crate) fn tss_stack(&mut self, bus: &mut dyn Bus, pl: u8) -> Result<(u16, u64), Exc> {
        let tss32 = self.tr.typ() & 8 != 0;
        let (off, w) = if tss32 { (4 + pl as u64 * 8, 4) } else { (2 + pl as u64 * 4, 2) };
        if off + w * 2 - 1 > self.tr.limit as u64 {
            return Err(Exc::code(TS, self.tr.selector as u32 & 0xfffc));
        }
        let sp = self.read_lin_sys(bus, self.tr.base.wrapping_add(off), w as u8)?;
        let ss = self.read_lin_sys(bus, self.tr.base.wrapping_add(off + w), 2)? as u16;
        Ok((ss, sp))
    }

    fn deliver_long(&mut self, bus: &mut dyn Bus, e: Exc, src: Source) -> Result<(), Exc> {
        let v = e.vector;
        let ext = (src == Source::External) as u32;
        let gcode = v as u32 * 8 + 2 + ext;
        let lo = self.read_gate(bus, v, 16, src)?;
        let hi = self.read_lin_sys(bus, self.idtr.base.wrapping_add(v as u64 * 16 + 8), 8)?;
        let typ = ((lo >> 40) & 0x1f) as u8;
        let dpl = ((lo >> 45) & 3) as u8;
        if typ != 0x0e && typ != 0x0f {
            return Err(Exc::code(GP, gcode));
        }
        if src == Source::Software && dpl < self.cpl {
            return Err(Exc::code(GP, gcode));
        }
        if lo & (1 << 47) == 0 {
            return Err(Exc::code(NP, gcode));
        }
        let sel = ((lo >> 16) & 0xffff) as u16;
        let off = (lo & 0xffff) | ((lo >> 32) & 0xffff_0000) | (hi << 32);
        let ist = (lo >> 32) & 7;
        let raw = self.read_descriptor(bus, sel, GP)?;
        let cs = Segment::from_descriptor(sel, raw);
        if sel & 0xfffc == 0 || !cs.code() || !cs.long() || cs.big() || cs.dpl() > self.cpl {
            return Err(Exc::code(GP, (sel as u32 & 0xfffc) + ext));
        }
        if !cs.present() {
            return Err(Exc::code(NP, (sel as u32 & 0xfffc) + ext));
        }
        let new_cpl = if cs.typ() & 4 != 0 { self.cpl } else { cs.dpl() };
        let fl = self.flags.get();
        let old_ss = self.seg[sreg::SS].selector as u64;
        let old_sp = self.regs[crate::regs::RSP];
        let old_cs = self.seg[sreg::CS].selector as u64;
        let mut sp = old_sp;
        if ist != 0 || new_cpl < self.cpl {
            // 64-bit TSS: RSP0-2 at 4 + 8n, IST1-7 at 0x24 + 8(n-1).
            let off = if ist != 0 { 0x24 + (ist - 1) * 8 } else { 4 + new_cpl as u64 * 8 };
            if off + 7 > self.tr.limit as u64 {
                return Err(Exc::code(TS, self.tr.selector as u32 & 0xfffc));
            }
            sp = self.read_lin_sys(bus, self.tr.base.wrapping_add(off), 8)?;
        }
        sp &= !0xf;
        let frame = [old_ss, old_sp, fl, old_cs, self.rip];
        let mut cur = sp;
        let user = self.cpl == 3 && new_cpl == 3;
        for val in frame {
            cur = cur.wrapping_sub(8);
            self.write_lin_priv(bus, cur, 8, val, user)?;
        }
        if let Some(c) = e.code {
            if src != Source::Software {
                cur = cur.wrapping_sub(8);
                self.write_lin_priv(bus, cur, 8, c as u64, user)?;
            }
        }
        // Only once the whole frame is written: a fault while writing it leaves SS as it was.
        if new_cpl < self.cpl {
            self.seg[sreg::SS] = Segment { selector: new_cpl as u16, base: 0, limit: 0, attr: crate::segment::ATTR_UNUSABLE | ((new_cpl as u16) << 5) };
        }
        self.regs[crate::regs::RSP] = cur;
        self.set_cs((sel & !3) | new_cpl as u16, raw, new_cpl);
        self.rip = off;
        let mut nf = fl & !(bits::TF | bits::NT | bits::RF | bits::VM);
        if typ == 0x0e {
            nf &= !bits::IF;
        }
        self.flags.set(nf);
        Ok(())
    }
}

/// The SDM's mnemonic for a vector.
pub fn vector_name(v: u8) -> String {
    let n = match v {
        DE => "#DE",
        DB => "#DB",
        NMI => "NMI",
        BP => "#BP",
        OF => "#OF",
        BR => "#BR",
        UD => "#UD",
        NM => "#NM",
        DF => "#DF",
        TS => "#TS",
        NP => "#NP",
        SS => "#SS",
        GP => "#GP",
        PF => "#PF",
        MF => "#MF",
        AC => "#AC",
        MC => "#MC",
        XM => "#XM",
        _ => return format!("vector {v:#x}"),
    };
    n.to_string()
}
