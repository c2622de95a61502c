//! Control transfer: near and far JMP/CALL/RET, Jcc, LOOP, JCXZ, INT/INT3/INTO/INT1, IRET,
//! BOUND, SYSCALL/SYSRET, SYSENTER/SYSEXIT (SDM vol. 2 and vol. 3 chapter 5).

use crate::bus::Bus;
use crate::decode::Insn;
use crate::exception::{self, Exc, BP, BR, DB, GP, NP, OF, SS as SS_FAULT, UD};
use crate::flags::{bits, mask};
use crate::regs::{RCX, RSP};
use crate::segment::{Segment, ATTR_UNUSABLE};
use crate::{cr, sreg, Cpu};
use iced_x86::{Mnemonic, OpKind};

type R = Result<(), Exc>;

/// Mask of an instruction pointer for an operand size in bytes.
fn ip_mask(sz: u8) -> u64 {
    mask(sz)
}

fn check_target(cpu: &Cpu, target: u64) -> R {
    if cpu.mode64() {
        if !crate::segment::canonical(target) {
            return Err(Exc::gp0());
        }
    } else if cpu.protected() && !cpu.vm86() && target > cpu.seg[sreg::CS].limit as u64 {
        return Err(Exc::gp0());
    }
    Ok(())
}

/// Operand size of a near branch (iced gives a target already wrapped to it).
fn near_target(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> Result<u64, Exc> {
    match d.i.op0_kind() {
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => Ok(d.i.near_branch_target()),
        _ => {
            let sz = if cpu.mode64() { 8 } else { d.osize };
            cpu.read_op(bus, d, 0, sz)
        }
    }
}

/// JMP near (relative or indirect).
pub fn jmp(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let t = near_target(cpu, bus, d)?;
    check_target(cpu, t)?;
    cpu.rip = t;
    Ok(())
}

/// Jcc: the near jump taken when the condition code holds.
pub fn jcc(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    if cpu.flags.cond(d.cc) {
        let t = d.imm;
        check_target(cpu, t)?;
        cpu.rip = t;
    }
    Ok(())
}

/// LOOP, LOOPE, LOOPNE, JCXZ/JECXZ/JRCXZ: the count register follows the address size.
pub fn loop_(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    let asz = d.asize;
    let m = mask(asz);
    let taken = match d.i.mnemonic() {
        Mnemonic::Jcxz | Mnemonic::Jecxz | Mnemonic::Jrcxz => cpu.regs[RCX] & m == 0,
        mn => {
            let c = cpu.regs[RCX].wrapping_sub(1) & m;
            cpu.set_gpr(RCX, asz, c);
            c != 0
                && match mn {
                    Mnemonic::Loope => cpu.flags.zf(),
                    Mnemonic::Loopne => !cpu.flags.zf(),
                    _ => true,
                }
        }
    };
    if taken {
        let t = d.i.near_branch_target();
        check_target(cpu, t)?;
        cpu.rip = t;
    }
    Ok(())
}

/// CALL near: pushes the return address and jumps.
pub fn call(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = crate::exec::data::stack_op_size(d);
    let t = near_target(cpu, bus, d)? & ip_mask(sz);
    check_target(cpu, t)?;
    let ret = cpu.rip;
    cpu.push(bus, sz, ret & ip_mask(sz))?;
    cpu.rip = t;
    Ok(())
}

/// RET near, with the optional immediate stack release.
pub fn ret(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = match d.i.code() {
        iced_x86::Code::Retnw | iced_x86::Code::Retnw_imm16 => 2,
        iced_x86::Code::Retnd | iced_x86::Code::Retnd_imm16 => 4,
        _ => 8,
    };
    let t = cpu.peek_stack(bus, 0, sz)?;
    check_target(cpu, t)?;
    let extra = if d.i.op_count() > 0 { d.i.immediate(0) & 0xffff } else { 0 };
    let ss = cpu.stack_size();
    let sp = cpu.regs[RSP].wrapping_add(sz as u64 + extra);
    cpu.set_gpr(RSP, ss, sp);
    cpu.rip = t;
    Ok(())
}

/// Reads the far pointer operand: (selector, offset, operand size).
fn far_operand(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> Result<(u16, u64, u8), Exc> {
    match d.i.op0_kind() {
        OpKind::FarBranch16 => Ok((d.i.far_branch_selector(), d.i.far_branch16() as u64, 2)),
        OpKind::FarBranch32 => Ok((d.i.far_branch_selector(), d.i.far_branch32() as u64, 4)),
        _ => {
            let total = d.i.memory_size().size() as u8;
            let osz = total - 2;
            let lin = cpu.mem_linear(d, total, false)?;
            let off = cpu.read_lin(bus, lin, osz)?;
            let sel = cpu.read_lin(bus, lin.wrapping_add(osz as u64), 2)? as u16;
            Ok((sel, off, osz))
        }
    }
}

impl Cpu {
    /// Loads CS in real or virtual-8086 mode.
    fn set_cs_real(&mut self, sel: u16) {
        let vm86 = self.vm86();
        let cs = &mut self.seg[sreg::CS];
        cs.selector = sel;
        cs.base = (sel as u64) << 4;
        if vm86 {
            cs.limit = 0xffff;
            cs.attr = 0xfb;
        }
        self.end_block = true;
    }

    /// Far JMP or CALL to sel:off in protected mode, through a code segment or a call gate.
    /// Returns after CS:RIP are set; `push_ret` pushes the return address first (CALL).
    fn far_transfer(&mut self, bus: &mut dyn Bus, sel: u16, off: u64, osz: u8, call: bool) -> R {
        if sel & 0xfffc == 0 {
            return Err(Exc::gp0());
        }
        let raw = self.read_descriptor(bus, sel, GP)?;
        let desc = Segment::from_descriptor(sel, raw);
        let ret_cs = self.seg[sreg::CS].selector as u64;
        let ret_ip = self.rip;
        if desc.s() {
            let cpl = self.check_code_target(sel, raw)?;
            let target = if osz == 8 { off } else { off & mask(osz) };
            let lim = desc.limit as u64;
            if !(self.long_mode() && desc.long()) && target > lim {
                return Err(Exc::gp0());
            }
            if call {
                self.push(bus, osz, ret_cs)?;
                self.push(bus, osz, ret_ip)?;
            }
            self.set_cs(sel, raw, cpl);
            self.rip = target;
            return Ok(());
        }
        // System descriptor: call gates only (task switches are not implemented).
        let gate64 = self.long_mode();
        let typ = desc.typ();
        if !(typ == 0xc || (typ == 0x4 && !gate64)) {
            *self.unimplemented.entry(format!("far {} through system descriptor type {typ:#x}", if call { "call" } else { "jmp" })).or_default() += 1;
            return Err(Exc::code(GP, sel as u32 & 0xfffc));
        }
        let rpl = (sel & 3) as u8;
        if desc.dpl() < self.cpl || desc.dpl() < rpl {
            return Err(Exc::code(GP, sel as u32 & 0xfffc));
        }
        if !desc.present() {
            return Err(Exc::code(NP, sel as u32 & 0xfffc));
        }
        let tsel = ((raw >> 16) & 0xffff) as u16;
        let mut toff = (raw & 0xffff) | if typ == 0xc { (raw >> 32) & 0xffff_0000 } else { 0 };
        if gate64 {
            let hi = self.read_descriptor_high(bus, sel)?;
            toff |= (hi & 0xffff_ffff) << 32;
        }
        let traw = self.read_descriptor(bus, tsel, GP)?;
        let td = Segment::from_descriptor(tsel, traw);
        if !td.code() || td.dpl() > self.cpl {
            return Err(Exc::code(GP, tsel as u32 & 0xfffc));
        }
        if !td.present() {
            return Err(Exc::code(NP, tsel as u32 & 0xfffc));
        }
        let conforming = td.typ() & 4 != 0;
        if call && !conforming && td.dpl() < self.cpl {
            *self.unimplemented.entry("call gate to an inner privilege level".into()).or_default() += 1;
            return Err(Exc::code(GP, tsel as u32 & 0xfffc));
        }
        if !call && !conforming && td.dpl() != self.cpl {
            return Err(Exc::code(GP, tsel as u32 & 0xfffc));
        }
        let gsz = if gate64 { 8 } else if typ == 0xc { 4 } else { 2 };
        if call {
            self.push(bus, gsz, ret_cs)?;
            self.push(bus, gsz, ret_ip)?;
        }
        let cpl = self.cpl;
        self.set_cs((tsel & !3) | cpl as u16, traw, cpl);
        self.rip = toff;
        Ok(())
    }
}

/// JMP FAR and CALL FAR.
pub fn far_jmp_call(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let (sel, off, osz) = far_operand(cpu, bus, d)?;
    let call = d.i.mnemonic() == Mnemonic::Call;
    if !cpu.protected() || cpu.vm86() {
        if call {
            cpu.push(bus, osz, cpu.seg[sreg::CS].selector as u64)?;
            cpu.push(bus, osz, cpu.rip)?;
        }
        cpu.set_cs_real(sel);
        cpu.rip = off & mask(osz);
        return Ok(());
    }
    cpu.far_transfer(bus, sel, off, osz, call)
}

/// RETF (with optional stack adjustment).
pub fn retf(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let osz = match d.i.code() {
        iced_x86::Code::Retfw | iced_x86::Code::Retfw_imm16 => 2,
        iced_x86::Code::Retfq | iced_x86::Code::Retfq_imm16 => 8,
        _ => 4,
    };
    let extra = if d.i.op_count() > 0 { d.i.immediate(0) & 0xffff } else { 0 };
    let off = cpu.peek_stack(bus, 0, osz)?;
    let sel = cpu.peek_stack(bus, osz as u64, 2)? as u16;
    let ss = cpu.stack_size();
    if !cpu.protected() || cpu.vm86() {
        cpu.set_cs_real(sel);
        cpu.rip = off & mask(osz);
        let sp = cpu.regs[RSP].wrapping_add(2 * osz as u64 + extra);
        cpu.set_gpr(RSP, ss, sp);
        return Ok(());
    }
    if sel & 0xfffc == 0 {
        return Err(Exc::gp0());
    }
    let raw = cpu.read_descriptor(bus, sel, GP)?;
    let desc = Segment::from_descriptor(sel, raw);
    let rpl = (sel & 3) as u8;
    let err = Exc::code(GP, sel as u32 & 0xfffc);
    if !desc.code() || rpl < cpu.cpl {
        return Err(err);
    }
    if desc.typ() & 4 != 0 {
        if desc.dpl() > rpl {
            return Err(err);
        }
    } else if desc.dpl() != rpl {
        return Err(err);
    }
    if !desc.present() {
        return Err(Exc::code(NP, sel as u32 & 0xfffc));
    }
    if rpl == cpu.cpl {
        let sp = cpu.regs[RSP].wrapping_add(2 * osz as u64 + extra);
        cpu.set_gpr(RSP, ss, sp);
        cpu.set_cs(sel, raw, rpl);
        cpu.rip = off & mask(osz);
        return Ok(());
    }
    // Return to an outer privilege level: SS:SP follow on the stack.
    let new_sp = cpu.peek_stack(bus, 2 * osz as u64 + extra, osz)?;
    let new_ss = cpu.peek_stack(bus, 3 * osz as u64 + extra, 2)? as u16;
    cpu.set_cs(sel, raw, rpl);
    cpu.rip = off & mask(osz);
    cpu.load_stack_for_return(bus, new_ss, rpl)?;
    cpu.set_gpr(RSP, if cpu.mode64() { 8 } else { cpu.stack_size() }, new_sp.wrapping_add(extra));
    cpu.null_inaccessible_segments();
    Ok(())
}

impl Cpu {
    /// Loads SS on a return to privilege `rpl`.
    fn load_stack_for_return(&mut self, bus: &mut dyn Bus, sel: u16, rpl: u8) -> R {
        if sel & 0xfffc == 0 {
            if self.mode64() && rpl != 3 {
                self.seg[sreg::SS] = Segment { selector: sel, base: 0, limit: 0, attr: ATTR_UNUSABLE | ((rpl as u16) << 5) };
                return Ok(());
            }
            return Err(Exc::gp0());
        }
        let raw = self.read_descriptor(bus, sel, GP)?;
        let d = Segment::from_descriptor(sel, raw);
        if (sel & 3) as u8 != rpl || d.dpl() != rpl || !d.s() || d.code() || d.typ() & 2 == 0 {
            return Err(Exc::code(GP, sel as u32 & 0xfffc));
        }
        if !d.present() {
            return Err(Exc::code(SS_FAULT, sel as u32 & 0xfffc));
        }
        self.set_accessed(bus, sel, raw)?;
        let mut d = d;
        d.attr |= 1;
        self.seg[sreg::SS] = d;
        Ok(())
    }

    /// After a return to an outer level, data segments the new CPL may not use become null.
    fn null_inaccessible_segments(&mut self) {
        for idx in [sreg::ES, sreg::DS, sreg::FS, sreg::GS] {
            let s = self.seg[idx];
            let conforming_code = s.code() && s.typ() & 4 != 0;
            if !s.unusable() && !conforming_code && s.dpl() < self.cpl {
                self.seg[idx] = Segment { selector: 0, base: 0, limit: 0, attr: ATTR_UNUSABLE };
            }
        }
    }
}

/// INT n, INT3, INTO, INT1.
pub fn int(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let v = match d.i.mnemonic() {
        Mnemonic::Int3 => BP,
        Mnemonic::Into => {
            if !cpu.flags.of() {
                return Ok(());
            }
            OF
        }
        Mnemonic::Int1 => DB,
        _ => d.i.immediate(0) as u8,
    };
    if cpu.vm86() && cpu.iopl() < 3 && d.i.mnemonic() == Mnemonic::Int {
        return Err(Exc::gp0());
    }
    let src = if d.i.mnemonic() == Mnemonic::Int1 { exception::Source::External } else { exception::Source::Software };
    // Deliver with RIP already at the next instruction; a fault during delivery is reported
    // by `raise` itself, so the instruction counts as retired.
    cpu.raise(bus, Exc::new(v), src);
    cpu.end_block = true;
    Ok(())
}

/// BOUND: #BR unless the index lies within the two bounds in memory.
pub fn bound(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = d.osize;
    let idx = cpu.reg(d.i.op0_register());
    let lin = cpu.mem_linear(d, sz * 2, false)?;
    let lo = cpu.read_lin(bus, lin, sz)?;
    let hi = cpu.read_lin(bus, lin.wrapping_add(sz as u64), sz)?;
    let s = |v: u64| ((v << (64 - sz as u32 * 8)) as i64) >> (64 - sz as u32 * 8);
    if s(idx) < s(lo) || s(idx) > s(hi) {
        return Err(Exc::new(BR));
    }
    Ok(())
}

/// IRET, IRETD, IRETQ.
pub fn iret(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let osz = match d.i.mnemonic() {
        Mnemonic::Iret => 2,
        Mnemonic::Iretd => 4,
        _ => 8,
    };
    cpu.nmi_blocked = false;
    cpu.end_block = true;
    if !cpu.protected() {
        let ip = cpu.peek_stack(bus, 0, osz)?;
        let cs = cpu.peek_stack(bus, osz as u64, 2)? as u16;
        let fl = cpu.peek_stack(bus, 2 * osz as u64, osz)?;
        if ip > cpu.seg[sreg::CS].limit as u64 {
            return Err(Exc::gp0());
        }
        let ss = cpu.stack_size();
        let sp = cpu.regs[RSP].wrapping_add(3 * osz as u64);
        cpu.set_gpr(RSP, ss, sp);
        cpu.set_cs_real(cs);
        cpu.rip = ip;
        cpu.write_flags(fl, osz);
        return Ok(());
    }
    if cpu.vm86() {
        if cpu.iopl() < 3 {
            return Err(Exc::gp0());
        }
        let ip = cpu.pop(bus, osz)?;
        let cs = cpu.pop(bus, osz)? as u16;
        let fl = cpu.pop(bus, osz)?;
        cpu.set_cs_real(cs);
        cpu.rip = ip & 0xffff;
        let keep = bits::VM | bits::IOPL | bits::VIP | bits::VIF;
        let old = cpu.flags.get();
        cpu.flags.set((old & keep) | (fl & !keep & mask(osz)) | (old & !mask(osz)));
        return Ok(());
    }
    if cpu.flags.sys(bits::NT) && !cpu.long_mode() {
        *cpu.unimplemented.entry("iret task return (NT=1)".into()).or_default() += 1;
        return Err(Exc::gp0());
    }
    let ip = cpu.peek_stack(bus, 0, osz)?;
    let sel = cpu.peek_stack(bus, osz as u64, 2)? as u16;
    let fl = cpu.peek_stack(bus, 2 * osz as u64, osz)?;
    if fl & bits::VM != 0 && cpu.cpl == 0 && !cpu.long_mode() && osz == 4 {
        // Return to virtual-8086 mode: ESP, SS, ES, DS, FS, GS follow.
        let mut vals = [0u64; 6];
        for (k, v) in vals.iter_mut().enumerate() {
            *v = cpu.peek_stack(bus, (3 + k as u64) * 4, 4)?;
        }
        cpu.flags.set(fl);
        cpu.cpl = 3;
        cpu.flush_tlb();
        cpu.set_cs_real(sel);
        cpu.rip = ip & 0xffff;
        let segs = [sreg::SS, sreg::ES, sreg::DS, sreg::FS, sreg::GS];
        for (k, idx) in segs.into_iter().enumerate() {
            cpu.seg[idx] = Segment::real(vals[k + 1] as u16);
            cpu.seg[idx].attr = 0xf3;
        }
        cpu.regs[RSP] = vals[0] & 0xffff_ffff;
        return Ok(());
    }
    if sel & 0xfffc == 0 {
        return Err(Exc::gp0());
    }
    let raw = cpu.read_descriptor(bus, sel, GP)?;
    let desc = Segment::from_descriptor(sel, raw);
    let rpl = (sel & 3) as u8;
    let err = Exc::code(GP, sel as u32 & 0xfffc);
    if !desc.code() || rpl < cpu.cpl {
        return Err(err);
    }
    if desc.typ() & 4 != 0 {
        if desc.dpl() > rpl {
            return Err(err);
        }
    } else if desc.dpl() != rpl {
        return Err(err);
    }
    if !desc.present() {
        return Err(Exc::code(NP, sel as u32 & 0xfffc));
    }
    let old_cpl = cpu.cpl;
    let outer = rpl > cpu.cpl || osz == 8;
    let (new_sp, new_ss) = if outer {
        (cpu.peek_stack(bus, 3 * osz as u64, osz)?, cpu.peek_stack(bus, 4 * osz as u64, 2)? as u16)
    } else {
        (0, 0)
    };
    if !outer {
        let ss = cpu.stack_size();
        let sp = cpu.regs[RSP].wrapping_add(3 * osz as u64);
        cpu.set_gpr(RSP, ss, sp);
    }
    cpu.set_cs(sel, raw, rpl);
    cpu.rip = if osz == 8 { ip } else { ip & mask(osz) };
    // Flags with the privilege rules of the CPL the IRET ran at.
    let save_cpl = cpu.cpl;
    cpu.cpl = old_cpl;
    cpu.write_flags(fl & !bits::VM, osz);
    cpu.cpl = save_cpl;
    if outer {
        cpu.load_stack_for_return(bus, new_ss, rpl)?;
        let w = if cpu.mode64() || osz == 8 { 8 } else { cpu.stack_size() };
        cpu.set_gpr(RSP, w, new_sp);
        if rpl > old_cpl {
            cpu.null_inaccessible_segments();
        }
    }
    Ok(())
}

/// SYSCALL (AMD64; SDM vol. 2).
pub fn syscall(cpu: &mut Cpu, _bus: &mut dyn Bus, _d: &Insn) -> R {
    if !cpu.long_mode() || cpu.efer & cr::EFER_SCE == 0 {
        return Err(Exc::new(UD));
    }
    if !cpu.mode64() {
        return Err(Exc::new(UD));
    }
    cpu.regs[RCX] = cpu.rip;
    let fl = cpu.flags.get();
    cpu.regs[11] = fl & !bits::RF;
    cpu.flags.set(fl & !(cpu.msr.fmask | bits::RF));
    let sel = ((cpu.msr.star >> 32) & 0xffff) as u16;
    cpu.seg[sreg::CS] = Segment { selector: sel & 0xfffc, base: 0, limit: 0xffff_ffff, attr: 0xa9b };
    cpu.seg[sreg::SS] = Segment { selector: (sel & 0xfffc) + 8, base: 0, limit: 0xffff_ffff, attr: 0xc93 };
    if cpu.cpl != 0 {
        cpu.cpl = 0;
        cpu.flush_tlb();
    }
    cpu.rip = cpu.msr.lstar;
    cpu.end_block = true;
    Ok(())
}

/// SYSRET.
pub fn sysret(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    if !cpu.long_mode() || cpu.efer & cr::EFER_SCE == 0 {
        return Err(Exc::new(UD));
    }
    if cpu.cpl != 0 || !cpu.mode64() {
        return Err(Exc::gp0());
    }
    let base = ((cpu.msr.star >> 48) & 0xffff) as u16;
    let q = d.i.code() == iced_x86::Code::Sysretq;
    let target = if q { cpu.regs[RCX] } else { cpu.regs[RCX] & 0xffff_ffff };
    if q && !crate::segment::canonical(target) {
        return Err(Exc::gp0());
    }
    cpu.flags.set((cpu.regs[11] & 0x3c_7fd7) | bits::FIXED);
    cpu.seg[sreg::CS] = if q {
        Segment { selector: (base + 16) | 3, base: 0, limit: 0xffff_ffff, attr: 0xafb }
    } else {
        Segment { selector: base | 3, base: 0, limit: 0xffff_ffff, attr: 0xcfb }
    };
    cpu.seg[sreg::SS].selector = (base + 8) | 3;
    cpu.seg[sreg::SS].attr = (cpu.seg[sreg::SS].attr & !0x60) | 0x60;
    cpu.cpl = 3;
    cpu.flush_tlb();
    cpu.rip = target;
    cpu.end_block = true;
    Ok(())
}

/// SYSENTER and SYSEXIT (SDM vol. 2).
pub fn sysenter(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    if !cpu.protected() {
        return Err(Exc::gp0());
    }
    let cs = (cpu.msr.sysenter[0] & 0xfffc) as u16;
    if cs == 0 {
        return Err(Exc::gp0());
    }
    let long = cpu.long_mode();
    if d.i.mnemonic() == Mnemonic::Sysenter {
        let fl = cpu.flags.get();
        cpu.flags.set(fl & !(bits::VM | bits::IF | bits::RF));
        cpu.seg[sreg::CS] = Segment { selector: cs, base: 0, limit: 0xffff_ffff, attr: if long { 0xa9b } else { 0xc9b } };
        cpu.seg[sreg::SS] = Segment { selector: cs + 8, base: 0, limit: 0xffff_ffff, attr: 0xc93 };
        cpu.cpl = 0;
        cpu.regs[RSP] = cpu.msr.sysenter[1];
        cpu.rip = cpu.msr.sysenter[2];
    } else {
        if cpu.cpl != 0 {
            return Err(Exc::gp0());
        }
        let q = d.i.code() == iced_x86::Code::Sysexitq;
        let (csel, attr) = if q { (cs + 32, 0xafb) } else { (cs + 16, 0xcfb) };
        cpu.seg[sreg::CS] = Segment { selector: csel | 3, base: 0, limit: 0xffff_ffff, attr };
        cpu.seg[sreg::SS] = Segment { selector: (csel + 8) | 3, base: 0, limit: 0xffff_ffff, attr: 0xcf3 };
        cpu.cpl = 3;
        let m = if q { u64::MAX } else { 0xffff_ffff };
        cpu.regs[RSP] = cpu.regs[crate::regs::RCX] & m;
        cpu.rip = cpu.regs[crate::regs::RDX] & m;
    }
    cpu.flush_tlb();
    cpu.end_block = true;
    Ok(())
}
