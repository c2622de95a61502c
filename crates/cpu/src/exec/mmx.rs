//! MMX: the 64-bit integer instructions on MM0-MM7, which are the low 64 bits of the x87
//! registers R0-R7 (SDM vol. 1, chapter 9), plus the SSE and SSE2 additions on MM registers
//! (PAVG, PMIN/PMAX, PSADBW, PMULHUW, PSHUFW, PEXTRW/PINSRW, PMOVMSKB, MOVNTQ, PADDQ/PSUBQ,
//! PMULUDQ, MOVQ2DQ/MOVDQ2Q). The lane arithmetic is the SSE module's on 128-bit values, with
//! the MMX operands in the low half (the packs, high unpacks and PSHUFW need their own
//! arrangement, below).
//!
//! Every MMX instruction but EMMS sets TOP to 0 and tags all registers valid; a write makes
//! the register's exponent field all ones (SDM vol. 1, 9.5.1). EMMS tags them all empty (and
//! sets TOP to 0 as well, measured on Intel).
//! Checks (SDM vol. 3, table 12-1): CR0.EM = 1 is #UD, CR0.TS = 1 #NM, and an unmasked x87
//! exception left pending is #MF (with CR0.NE).

use super::sse::sse_int;
use crate::bus::Bus;
use crate::cr::{CR0_EM, CR0_NE, CR0_TS};
use crate::decode::Insn;
use crate::exception::{Exc, MF, NM};
use crate::exec::Handler;
use crate::regs::xmm_index;
use crate::x87::fsw;
use crate::Cpu;
use iced_x86::{Code, Instruction, Mnemonic as M, OpKind, Register};

type R = Result<(), Exc>;

/// The handler for an instruction with an MM register operand (or EMMS), if one is here.
pub fn handler(i: &Instruction) -> Option<Handler> {
    let mm = (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Register && i.op_register(n).is_mm());
    if i.mnemonic() == M::Emms {
        return Some(emms);
    }
    if !mm {
        return None;
    }
    let h: Handler = match i.code() {
        Code::Movd_mm_rm32 | Code::Movq_mm_rm64 | Code::Movq_mm_mmm64 => load,
        Code::Movd_rm32_mm | Code::Movq_rm64_mm | Code::Movq_mmm64_mm | Code::Movntq_m64_mm => store,
        Code::Movq2dq_xmm_mm => movq2dq,
        Code::Movdq2q_mm_xmm => movdq2q,
        Code::Pmovmskb_r32_mm | Code::Pmovmskb_r64_mm => pmovmskb,
        Code::Pextrw_r32_mm_imm8 | Code::Pextrw_r64_mm_imm8 => pextrw,
        Code::Pinsrw_mm_r32m16_imm8 | Code::Pinsrw_mm_r64m16_imm8 => pinsrw,
        Code::Pshufw_mm_mmm64_imm8 => binop,
        _ if i.op0_kind() == OpKind::Register && i.op0_register().is_mm() && sse_int::compute(i.mnemonic(), 0, 0, 0).is_some() => binop,
        _ => return None,
    };
    Some(h)
}

/// The checks every MMX instruction makes, in order.
fn check(cpu: &Cpu) -> R {
    if cpu.cr0 & CR0_EM != 0 {
        return Err(Exc::ud());
    }
    if cpu.cr0 & CR0_TS != 0 {
        return Err(Exc::new(NM));
    }
    if cpu.fpu.fsw & fsw::ES != 0 && cpu.cr0 & CR0_NE != 0 {
        return Err(Exc::new(MF));
    }
    Ok(())
}

fn mm_index(r: Register) -> usize {
    r as usize - Register::MM0 as usize
}

/// MMX register `r`, reading which also enters MMX state (TOP 0, all valid).
fn mm(cpu: &mut Cpu, r: Register) -> u64 {
    enter(cpu);
    cpu.fpu.mmx(mm_index(r))
}

fn set_mm(cpu: &mut Cpu, r: Register, v: u64) {
    cpu.fpu.set_mmx(mm_index(r), v);
}

/// TOP 0 and every tag valid.
fn enter(cpu: &mut Cpu) {
    cpu.fpu.set_top(0);
    cpu.fpu.ftw = 0;
}

/// Operand `n` as 64 bits: an MM register, a GPR, memory (of the instruction's size) or an
/// immediate byte.
fn read64(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn, n: u32) -> Result<u64, Exc> {
    match d.i.op_kind(n) {
        OpKind::Register => {
            let r = d.i.op_register(n);
            Ok(if r.is_mm() { mm(cpu, r) } else if r.is_xmm() { cpu.xmm[xmm_index(r)] as u64 } else { cpu.reg(r) })
        }
        OpKind::Memory => {
            let size = d.i.memory_size().size().clamp(1, 8) as u8;
            cpu.read_mem(bus, d, size)
        }
        _ => Ok(d.i.immediate(n) & 0xff),
    }
}

/// mm1 = op(mm1, mm2/m64 or imm8 [, imm8]).
fn binop(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu)?;
    let b = read64(cpu, bus, d, 1)?;
    let dst = d.i.op0_register();
    let a = mm(cpu, dst);
    let imm = if d.i.op_count() > 2 { d.i.immediate(2) as u8 } else { b as u8 };
    let (a, b) = (a as u128, b as u128);
    let mn = d.i.mnemonic();
    let r = match mn {
        // The 128-bit packs narrow the first operand into the low half: put both MMX operands
        // there.
        M::Packsswb | M::Packssdw | M::Packuswb => sse_int::compute(mn, a | b << 64, 0, imm),
        // The high halves of the 64-bit operands are the low halves of their top 32 bits.
        M::Punpckhbw | M::Punpckhwd | M::Punpckhdq => {
            let low = match mn {
                M::Punpckhbw => M::Punpcklbw,
                M::Punpckhwd => M::Punpcklwd,
                _ => M::Punpckldq,
            };
            sse_int::compute(low, a >> 32, b >> 32, imm)
        }
        // PSHUFW: PSHUFLW's low half.
        M::Pshufw => sse_int::compute(M::Pshuflw, 0, b, imm),
        _ => sse_int::compute(mn, a, b, imm),
    }
    .ok_or_else(Exc::ud)?;
    set_mm(cpu, dst, r as u64);
    Ok(())
}

/// MOVD/MOVQ into an MM register (MOVD zero-extends).
fn load(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu)?;
    let mut v = read64(cpu, bus, d, 1)?;
    if d.i.code() == Code::Movd_mm_rm32 {
        v &= 0xffff_ffff;
    }
    enter(cpu);
    set_mm(cpu, d.i.op0_register(), v);
    Ok(())
}

/// MOVD/MOVQ/MOVNTQ from an MM register to a GPR, memory or another MM register.
fn store(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu)?;
    let v = mm(cpu, d.i.op1_register());
    let width = if d.i.code() == Code::Movd_rm32_mm { 4 } else { 8 };
    match d.i.op0_kind() {
        OpKind::Register if d.i.op0_register().is_mm() => set_mm(cpu, d.i.op0_register(), v),
        OpKind::Register => cpu.set_reg(d.i.op0_register(), if width == 4 { v & 0xffff_ffff } else { v }),
        _ => cpu.write_mem(bus, d, width, v)?,
    }
    Ok(())
}

/// MOVQ2DQ xmm, mm: the MMX register into the low quadword, the high one cleared.
fn movq2dq(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu)?;
    let v = mm(cpu, d.i.op1_register());
    cpu.xmm[xmm_index(d.i.op0_register())] = v as u128;
    Ok(())
}

/// MOVDQ2Q mm, xmm: the low quadword.
fn movdq2q(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu)?;
    let v = cpu.xmm[xmm_index(d.i.op1_register())] as u64;
    enter(cpu);
    set_mm(cpu, d.i.op0_register(), v);
    Ok(())
}

/// PMOVMSKB r, mm: the top bit of each byte.
fn pmovmskb(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu)?;
    let v = mm(cpu, d.i.op1_register());
    let m = (0..8).fold(0u64, |m, k| m | ((v >> (8 * k + 7)) & 1) << k);
    cpu.set_reg(d.i.op0_register(), m);
    Ok(())
}

/// PEXTRW r, mm, imm8: word imm8[1:0], zero-extended.
fn pextrw(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu)?;
    let sel = (d.i.immediate(2) & 3) as u32;
    let v = (mm(cpu, d.i.op1_register()) >> (16 * sel)) & 0xffff;
    cpu.set_reg(d.i.op0_register(), v);
    Ok(())
}

/// PINSRW mm, r32/m16, imm8: word imm8[1:0] from the source's low word.
fn pinsrw(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu)?;
    let sel = (d.i.immediate(2) & 3) as u32;
    let v = cpu.read_op(bus, d, 1, 2)? & 0xffff;
    let dst = d.i.op0_register();
    let m = 0xffffu64 << (16 * sel);
    let old = mm(cpu, dst);
    set_mm(cpu, dst, (old & !m) | (v << (16 * sel)));
    Ok(())
}

/// EMMS: every tag empty; TOP becomes 0 here too (measured on Intel).
fn emms(cpu: &mut Cpu, _bus: &mut dyn Bus, _d: &Insn) -> R {
    check(cpu)?;
    cpu.fpu.set_top(0);
    cpu.fpu.ftw = 0xffff;
    Ok(())
}
