//! Data movement: MOV and its extending forms, LEA, XCHG, the stack (PUSH/POP/PUSHA/POPA/
//! PUSHF/POPF/ENTER/LEAVE), far-pointer loads, XLAT, MOVBE.

use crate::bus::Bus;
use crate::decode::Insn;
use crate::exception::Exc;
use crate::flags::{bits, mask};
use crate::regs::{seg_index, RAX, RBP, RBX, RSP};
use crate::{sreg, undefined, Cpu};
use iced_x86::{Mnemonic, OpKind, Register};

type R = Result<(), Exc>;

/// MOV between registers, memory, immediates and segment registers.
pub fn mov(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let i = &d.i;
    // Segment register destinations and sources have their own sizes and checks.
    if i.op0_kind() == OpKind::Register && is_seg(i.op0_register()) {
        let v = cpu.read_op(bus, d, 1, 2)? as u16;
        let idx = seg_index(i.op0_register());
        if idx == sreg::CS {
            return Err(Exc::ud());
        }
        return cpu.load_seg(bus, idx, v);
    }
    if i.op1_kind() == OpKind::Register && is_seg(i.op1_register()) {
        let v = cpu.reg(i.op1_register());
        // To a register: zero-extended to the operand size; to memory: 16 bits.
        return if i.op0_kind() == OpKind::Memory { cpu.write_mem(bus, d, 2, v) } else { {
            let r = i.op0_register();
            cpu.set_reg(r, v);
            Ok(())
        } };
    }
    let sz = d.osize;
    let v = cpu.read_op(bus, d, 1, sz)?;
    cpu.write_op(bus, d, 0, sz, v)
}

/// `mov reg, reg` without operand-kind dispatch.
pub fn mov_rr(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    let v = cpu.get_r(d.r1);
    cpu.set_r(d.r0, v);
    Ok(())
}

/// `mov reg, imm`.
pub fn mov_ri(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    cpu.set_r(d.r0, d.imm);
    Ok(())
}

/// `mov reg, [mem]`.
pub fn mov_rm(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let v = cpu.read_mem(bus, d, d.osize)?;
    cpu.set_r(d.r0, v);
    Ok(())
}

/// `mov [mem], reg`.
pub fn mov_mr(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let v = cpu.get_r(d.r1);
    cpu.write_mem(bus, d, d.osize, v)
}

fn is_seg(r: Register) -> bool {
    r.is_segment_register()
}

/// MOVZX, MOVSX, MOVSXD.
pub fn movx(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let i = &d.i;
    let src_size = match i.op1_kind() {
        OpKind::Register => crate::regs::gpr_size(i.op1_register()),
        _ => i.memory_size().size() as u8,
    };
    let v = cpu.read_op(bus, d, 1, src_size)?;
    let v = if i.mnemonic() == Mnemonic::Movzx {
        v
    } else {
        let sh = 64 - src_size as u32 * 8;
        (((v << sh) as i64) >> sh) as u64
    };
    let dst = i.op0_register();
    cpu.set_reg(dst, v & mask(crate::regs::gpr_size(dst)));
    Ok(())
}

/// LEA: the effective address, without a memory access.
pub fn lea(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    let v = cpu.ea(d);
    cpu.set_reg(d.i.op0_register(), v);
    Ok(())
}

/// XCHG of a register with a register or memory.
pub fn xchg(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = d.osize;
    let a = cpu.read_op(bus, d, 0, sz)?;
    let b = cpu.read_op(bus, d, 1, sz)?;
    // Memory first, so a fault leaves the register unchanged.
    if d.i.op0_kind() == OpKind::Memory {
        cpu.write_op(bus, d, 0, sz, b)?;
        cpu.write_op(bus, d, 1, sz, a)
    } else {
        cpu.write_op(bus, d, 1, sz, a)?;
        cpu.write_op(bus, d, 0, sz, b)
    }
}

/// The push/pop size of a stack instruction, from iced's stack pointer increment.
#[inline]
pub(crate) fn stack_op_size(d: &Insn) -> u8 {
    d.i.stack_pointer_increment().unsigned_abs() as u8
}

/// PUSH of a register, memory operand, immediate or segment register.
pub fn push(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = stack_op_size(d);
    let v = match d.i.op0_kind() {
        OpKind::Register => cpu.reg(d.i.op0_register()),
        OpKind::Memory => cpu.read_mem(bus, d, sz)?,
        _ => d.i.immediate(0),
    };
    if sz == 4 && d.i.op0_kind() == OpKind::Register && is_seg(d.i.op0_register()) && undefined::push_sreg32_writes_word(cpu.model.vendor) {
        return cpu.push_into_slot(bus, 4, 2, v);
    }
    cpu.push(bus, sz, v & mask(sz))
}

/// POP into a register, memory operand or segment register.
pub fn pop(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = stack_op_size(d);
    let i = &d.i;
    if i.op0_kind() == OpKind::Register && is_seg(i.op0_register()) {
        // The increment follows the stack popped from: POP SS that loads a 32-bit stack
        // segment from a 16-bit one still wraps SP within 16 bits and keeps ESP's upper
        // half (SDM vol. 2, POP: the stack-address size is the current SS's B bit).
        let ss = cpu.stack_size();
        let v = cpu.peek_stack(bus, 0, sz)?;
        cpu.load_seg(bus, seg_index(i.op0_register()), v as u16)?;
        let sp = cpu.regs[RSP].wrapping_add(sz as u64);
        cpu.set_gpr(RSP, ss, sp);
        return Ok(());
    }
    let v = cpu.peek_stack(bus, 0, sz)?;
    let ss = cpu.stack_size();
    let old_sp = cpu.regs[RSP];
    cpu.set_gpr(RSP, ss, old_sp.wrapping_add(sz as u64));
    // POP to memory computes the address after incrementing the stack pointer.
    if let Err(e) = cpu.write_op(bus, d, 0, sz, v) {
        cpu.regs[RSP] = old_sp;
        return Err(e);
    }
    Ok(())
}

/// PUSHA/PUSHAD.
pub fn pusha(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = if d.i.mnemonic() == Mnemonic::Pushad { 4 } else { 2 };
    let sp = cpu.regs[RSP];
    for r in 0..8 {
        let v = if r == RSP { sp } else { cpu.regs[r] };
        cpu.push(bus, sz, v & mask(sz))?;
    }
    Ok(())
}

/// POPA/POPAD (the saved SP is skipped).
pub fn popa(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = if d.i.mnemonic() == Mnemonic::Popad { 4 } else { 2 };
    for r in (0..8).rev() {
        let v = cpu.pop(bus, sz)?;
        if r != RSP {
            cpu.set_gpr(r, sz, v);
        }
    }
    Ok(())
}

/// PUSHF/PUSHFD/PUSHFQ (#GP in virtual-8086 mode below IOPL 3).
pub fn pushf(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = stack_op_size(d);
    if cpu.vm86() && cpu.iopl() < 3 {
        return Err(Exc::gp0());
    }
    // VM and RF are pushed as zero.
    let f = cpu.flags.get() & !(bits::VM | bits::RF);
    cpu.push(bus, sz, f & mask(sz))
}

/// POPF/POPFD/POPFQ: only the bits CPL and IOPL allow change.
pub fn popf(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = stack_op_size(d);
    if cpu.vm86() && cpu.iopl() < 3 {
        return Err(Exc::gp0());
    }
    let v = cpu.pop(bus, sz)?;
    cpu.write_flags(v, sz);
    cpu.end_block = true;
    Ok(())
}

impl Cpu {
    /// The I/O privilege level.
    pub fn iopl(&self) -> u8 {
        ((self.flags.get() >> 12) & 3) as u8
    }

    /// POPF/IRET-style flag write of `size` bytes with the privilege rules for IOPL and IF.
    pub(crate) fn write_flags(&mut self, v: u64, size: u8) {
        let old = self.flags.get();
        let mut writable = bits::ARITH | bits::TF | bits::DF | bits::NT | bits::AC | bits::ID;
        if !self.protected() || self.cpl == 0 {
            writable |= bits::IOPL | bits::IF;
        } else if self.cpl <= self.iopl() {
            writable |= bits::IF;
        }
        if self.vm86() {
            writable &= !bits::IOPL;
        }
        let writable = writable & mask(size);
        let new = (old & !writable & !bits::RF) | (v & writable);
        if new & bits::IF != 0 && old & bits::IF == 0 {
            self.shadow = true;
        }
        self.flags.set(new);
        if new & bits::AC != 0 && old & bits::AC == 0 {
            self.note_alignment_checking();
        }
    }
}

/// ENTER: builds a stack frame with its nesting level (SDM vol. 2, ENTER).
///
/// FrameTemp is the stack pointer of the operand size after BP is pushed (ESP whole for a
/// 32-bit operand even on a 16-bit stack); the display copies of the enclosing frames are read
/// through BP, which steps by the stack-address size; the stack pointer moves by that size too.
/// Nothing is written and no register changes unless a write at the final stack pointer would
/// succeed (#SS for the segment, #PF for the page, as for a push there).
pub fn enter(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = stack_op_size_enter(cpu, d);
    let alloc = d.i.immediate(0) & 0xffff;
    let level = d.i.immediate(1) & 31;
    let ss = cpu.stack_size();
    let step = |v: u64, by: u64| step_stack_pointer(v, ss, by);
    let mut sp = step(cpu.regs[RSP], sz as u64);
    let bp_slot = sp;
    let frame = sp & mask(sz);
    let mut bp = cpu.regs[RBP];
    let mut copies = Vec::new();
    if level > 0 {
        for _ in 1..level {
            bp = step(bp, sz as u64);
            copies.push(cpu.read_seg(bus, sreg::SS, bp & mask(ss), sz)?);
            sp = step(sp, sz as u64);
        }
        sp = step(sp, sz as u64);
    }
    let final_sp = step(sp, alloc);
    let lin = cpu.seg_linear(sreg::SS, final_sp & mask(ss), 1, true)?;
    cpu.translate(bus, lin, crate::bus::AccessKind::Write, crate::mmu::Priv::Current)?;
    cpu.write_seg(bus, sreg::SS, bp_slot & mask(ss), sz, cpu.regs[RBP] & mask(sz))?;
    let mut at = bp_slot;
    for v in copies {
        at = step(at, sz as u64);
        cpu.write_seg(bus, sreg::SS, at & mask(ss), sz, v)?;
    }
    if level > 0 {
        cpu.write_seg(bus, sreg::SS, sp & mask(ss), sz, frame)?;
    }
    cpu.regs[RBP] = bp;
    cpu.set_gpr(RBP, sz, frame);
    cpu.regs[RSP] = final_sp;
    Ok(())
}

/// `v` less `by`, as a stack pointer of `ss` bytes moves: a 16-bit stack wraps SP and keeps
/// the upper half of ESP, a 32-bit one zeroes RSP's upper half.
pub(crate) fn step_stack_pointer(v: u64, ss: u8, by: u64) -> u64 {
    match ss {
        2 => (v & !0xffff) | (v.wrapping_sub(by) & 0xffff),
        4 => v.wrapping_sub(by) & 0xffff_ffff,
        _ => v.wrapping_sub(by),
    }
}

fn stack_op_size_enter(cpu: &Cpu, d: &Insn) -> u8 {
    match d.i.code() {
        iced_x86::Code::Enterw_imm16_imm8 => 2,
        iced_x86::Code::Enterq_imm16_imm8 => 8,
        _ => {
            if cpu.mode64() {
                8
            } else {
                4
            }
        }
    }
}

/// LEAVE: releases the frame (SP from BP, then pops BP).
pub fn leave(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = match d.i.code() {
        iced_x86::Code::Leavew => 2,
        iced_x86::Code::Leaveq => 8,
        _ => 4,
    };
    let ss = cpu.stack_size();
    let old_sp = cpu.regs[RSP];
    cpu.set_gpr(RSP, ss, cpu.regs[RBP]);
    match cpu.pop(bus, sz) {
        Ok(v) => {
            cpu.set_gpr(RBP, sz, v);
            Ok(())
        }
        Err(e) => {
            cpu.regs[RSP] = old_sp;
            Err(e)
        }
    }
}

/// LDS, LES, LFS, LGS, LSS: load a far pointer from memory.
pub fn load_far_pointer(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    if d.i.op1_kind() != OpKind::Memory {
        return Err(Exc::ud());
    }
    let sz = crate::regs::gpr_size(d.i.op0_register());
    let lin = cpu.mem_linear(d, sz + 2, false)?;
    let off = cpu.read_lin(bus, lin, sz)?;
    let sel = cpu.read_lin(bus, lin.wrapping_add(sz as u64), 2)? as u16;
    let idx = match d.i.mnemonic() {
        Mnemonic::Lds => sreg::DS,
        Mnemonic::Les => sreg::ES,
        Mnemonic::Lfs => sreg::FS,
        Mnemonic::Lgs => sreg::GS,
        _ => sreg::SS,
    };
    cpu.load_seg(bus, idx, sel)?;
    cpu.set_reg(d.i.op0_register(), off);
    Ok(())
}

/// XLAT: AL from the table at seg:(E/R)BX (DS unless overridden).
pub fn xlat(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let off = cpu.regs[RBX].wrapping_add(cpu.regs[RAX] & 0xff) & mask(d.asize);
    let v = cpu.read_seg(bus, cpu.mem_seg(d), off, 1)?;
    cpu.set_gpr(RAX, 1, v);
    Ok(())
}

/// MOVBE: a move with the bytes reversed.
pub fn movbe(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = d.osize;
    let v = cpu.read_op(bus, d, 1, sz)?;
    let sw = match sz {
        2 => (v as u16).swap_bytes() as u64,
        4 => (v as u32).swap_bytes() as u64,
        _ => v.swap_bytes(),
    };
    cpu.write_op(bus, d, 0, sz, sw)
}

/// NOP and the hint instructions that do nothing here.
pub fn nop(_cpu: &mut Cpu, _bus: &mut dyn Bus, _d: &Insn) -> R {
    Ok(())
}
