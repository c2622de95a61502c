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

    /// Far JMP or CALL to sel:off in protected mode: to a code segment directly, through a
    /// call gate (see [`crate::exec::call_gate`]), or to another task through a TSS descriptor
    /// or a task gate (see [`crate::exec::task_switch`]). SDM vol. 2, CALL and JMP.
    fn far_transfer(&mut self, bus: &mut dyn Bus, sel: u16, off: u64, osz: u8, call: bool) -> R {
        if sel & 0xfffc == 0 {
            return Err(Exc::gp0());
        }
        let raw = self.read_descriptor(bus, sel, GP)?;
        let desc = Segment::from_descriptor(sel, raw);
        if desc.s() {
            let cpl = self.check_code_target(sel, raw)?;
            let target = if osz == 8 { off } else { off & mask(osz) };
            if !(self.long_mode() && desc.long()) && target > desc.limit as u64 {
                return Err(Exc::gp0());
            }
            if call {
                let (ret_cs, ret_ip) = (self.seg[sreg::CS].selector as u64, self.rip);
                let saved_sp = self.regs[RSP];
                // Both pushes or neither (a fault on the second leaves ESP as it was).
                if let Err(e) = self.push(bus, osz, ret_cs).and_then(|_| self.push(bus, osz, ret_ip & mask(osz))) {
                    self.regs[RSP] = saved_sp;
                    return Err(e);
                }
            }
            self.set_cs(sel, raw, cpl);
            self.rip = target;
            return Ok(());
        }
        let kind = if call { crate::exec::task_switch::TaskEntry::Call } else { crate::exec::task_switch::TaskEntry::Jmp };
        match (desc.typ(), self.long_mode()) {
            (0x4 | 0xc, false) | (0xc, true) => self.far_through_call_gate(bus, sel, raw, call),
            // Task switches do not exist in IA-32e mode (SDM vol. 3, 8.7).
            (0x1 | 0x9 | 0x5, false) => self.far_to_task(bus, sel, raw, kind),
            _ => Err(Exc::code(GP, sel as u32 & 0xfffc)),
        }
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
    let ip = if osz == 8 { off } else { off & mask(osz) };
    let to64 = cpu.long_mode() && desc.long();
    if rpl == cpu.cpl {
        check_return_offset(to64, &desc, ip)?;
        let sp = cpu.regs[RSP].wrapping_add(2 * osz as u64 + extra);
        cpu.set_gpr(RSP, ss, sp);
        cpu.set_cs(sel, raw, rpl);
        cpu.rip = ip;
        return Ok(());
    }
    // Return to an outer privilege level (SDM vol. 2, RET, "RETURN-TO-OUTER-PRIVILEGE-
    // LEVEL"): SS:ESP follow the return address and the released parameters; every check is
    // made before CS, SS or the CPL change.
    let new_sp = cpu.peek_stack(bus, 2 * osz as u64 + extra, osz)?;
    let new_ss = cpu.peek_stack(bus, 3 * osz as u64 + extra, 2)? as u16;
    let stack = cpu.check_stack_for_return(bus, new_ss, rpl, to64)?;
    check_return_offset(to64, &desc, ip)?;
    cpu.commit_outer_return(bus, sel, raw, rpl, ip, stack, new_ss, new_sp.wrapping_add(extra), osz)
}

/// The return offset must lie within the code segment returned to (#GP(0); canonical for
/// 64-bit code).
fn check_return_offset(to64: bool, desc: &Segment, ip: u64) -> R {
    let ok = if to64 { crate::segment::canonical(ip) } else { ip <= desc.limit as u64 };
    if ok {
        Ok(())
    } else {
        Err(Exc::gp0())
    }
}

impl Cpu {
    /// The checks on the stack segment of a return to privilege `rpl` (far RET and IRET):
    /// a null selector only into 64-bit code below CPL 3, else a present writable data
    /// segment with RPL = DPL = `rpl` (#GP(selector), #SS(selector) when not present).
    /// Returns the descriptor to load, not yet loaded.
    fn check_stack_for_return(&mut self, bus: &mut dyn Bus, sel: u16, rpl: u8, to64: bool) -> Result<Segment, Exc> {
        if sel & 0xfffc == 0 {
            if to64 && rpl != 3 {
                return Ok(Segment { selector: sel, base: 0, limit: 0, attr: ATTR_UNUSABLE | ((rpl as u16) << 5) });
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
        let mut d = d;
        d.attr |= 1;
        Ok(d)
    }

    /// Completes a checked return to the outer level `rpl`: CS:EIP, the CPL, SS:ESP from the
    /// outer stack, and the data segment registers the new CPL may not use made null.
    #[allow(clippy::too_many_arguments)]
    fn commit_outer_return(&mut self, bus: &mut dyn Bus, sel: u16, raw: u64, rpl: u8, ip: u64, stack: Segment, ss_sel: u16, sp: u64, osz: u8) -> R {
        if !stack.unusable() {
            let ss_raw = self.read_descriptor(bus, ss_sel, GP)?;
            self.set_accessed(bus, ss_sel, ss_raw)?;
        }
        self.set_accessed(bus, sel, raw)?;
        self.set_cs(sel, raw, rpl);
        self.rip = ip;
        self.seg[sreg::SS] = stack;
        let w = if self.mode64() || osz == 8 { 8 } else { self.stack_size() };
        self.set_gpr(RSP, w, sp);
        self.null_inaccessible_segments();
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
    if cpu.flags.sys(bits::NT) {
        // A task return; IA-32e mode has no task switches (SDM vol. 2, IRET).
        if cpu.long_mode() {
            return Err(Exc::gp0());
        }
        return cpu.iret_to_linked_task(bus);
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
    let outer = rpl > cpu.cpl || osz == 8;
    let to64 = cpu.long_mode() && desc.long();
    let ip = if osz == 8 { ip } else { ip & mask(osz) };
    // Every check before anything changes (SDM vol. 2, IRET, "RETURN-TO-OUTER-PRIVILEGE-LEVEL").
    let outer_stack = if outer {
        let new_sp = cpu.peek_stack(bus, 3 * osz as u64, osz)?;
        let new_ss = cpu.peek_stack(bus, 4 * osz as u64, 2)? as u16;
        Some((cpu.check_stack_for_return(bus, new_ss, rpl, to64)?, new_ss, new_sp))
    } else {
        None
    };
    check_return_offset(to64, &desc, ip)?;
    // Flags with the privilege rules of the CPL the IRET ran at.
    cpu.write_flags(fl & !bits::VM, osz);
    match outer_stack {
        Some((stack, new_ss, new_sp)) => {
            // (IRETQ pops SS:RSP at the same level too; no data segment is then nulled, as
            // each one the CPL could use stays usable.)
            cpu.commit_outer_return(bus, sel, raw, rpl, ip, stack, new_ss, new_sp, osz)?;
        }
        None => {
            let ss = cpu.stack_size();
            let sp = cpu.regs[RSP].wrapping_add(3 * osz as u64);
            cpu.set_gpr(RSP, ss, sp);
            cpu.set_cs(sel, raw, rpl);
            cpu.rip = ip;
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
