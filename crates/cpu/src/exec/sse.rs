//! SSE/SSE2: the moves and integer operations compilers emit, MXCSR, FXSAVE/FXRSTOR, gated by
//! CR0.EM/TS and CR4.OSFXSR (SDM vol. 3, 13.1).
//!
//! Only XMM forms are here: the MMX-register forms are in [`super::mmx`], the floating-point
//! arithmetic in [`super::sse_float`].

#[path = "sse_int.rs"]
pub(crate) mod sse_int;

use crate::bus::Bus;
use crate::cr::{CR0_EM, CR0_TS, CR4_OSFXSR};
use crate::decode::Insn;
use crate::exception::{Exc, NM};
use crate::exec::Handler;
use crate::regs::xmm_index;
use crate::Cpu;
use iced_x86::{Code, Instruction, Mnemonic as M, OpKind, Register};

type R = Result<(), Exc>;

/// MXCSR bits this CPU accepts (FXSAVE's MXCSR_MASK): all defined bits including DAZ.
const MXCSR_MASK: u32 = 0xffff;

/// The handler for an SSE instruction, or None if it is not one this module implements.
pub fn handler(i: &Instruction) -> Option<Handler> {
    if (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Register && i.op_register(n).is_mm()) {
        return None;
    }
    let xmm0 = i.op_count() >= 2 && i.op0_kind() == OpKind::Register && i.op0_register().is_xmm();
    let h: Handler = match i.mnemonic() {
        M::Movaps | M::Movapd | M::Movdqa | M::Movntdq | M::Movntps | M::Movntpd => mov128::<true>,
        M::Movups | M::Movupd | M::Movdqu => mov128::<false>,
        M::Movd | M::Movq
            if matches!(
                i.code(),
                Code::Movd_xmm_rm32 | Code::Movq_xmm_rm64 | Code::Movd_rm32_xmm | Code::Movq_rm64_xmm | Code::Movq_xmm_xmmm64 | Code::Movq_xmmm64_xmm
            ) =>
        {
            movd
        }
        M::Movss => scalar_move,
        M::Movsd if matches!(i.code(), Code::Movsd_xmm_xmmm64 | Code::Movsd_xmmm64_xmm) => scalar_move,
        M::Movlps | M::Movhps | M::Movlpd | M::Movhpd | M::Movhlps | M::Movlhps => half_move,
        M::Movnti => movnti,
        M::Pmovmskb | M::Movmskps | M::Movmskpd => movmsk,
        M::Pextrw if matches!(i.code(), Code::Pextrw_r32_xmm_imm8 | Code::Pextrw_r64_xmm_imm8) => pextrw,
        M::Pinsrw => pinsrw,
        M::Ldmxcsr => ldmxcsr,
        M::Stmxcsr => stmxcsr,
        M::Fxsave | M::Fxsave64 => fxsave,
        M::Fxrstor | M::Fxrstor64 => fxrstor,
        mn if xmm0 && sse_int::compute(mn, 0, 0, 0).is_some() => binop,
        _ => return super::sse_float::handler(i),
    };
    Some(h)
}

/// The SSE availability checks (SDM vol. 3, 2.5 and 13.1; vol. 2, chapter 2's exception-class
/// tables): #UD if CR0.EM = 1 or CR4.OSFXSR = 0 (or LOCK), then #NM if CR0.TS = 1.
#[inline]
pub(super) fn check(cpu: &Cpu, d: &Insn) -> R {
    if cpu.cr0 & CR0_EM != 0 || cpu.cr4 & CR4_OSFXSR == 0 || d.i.has_lock_prefix() {
        return Err(Exc::ud());
    }
    if cpu.cr0 & CR0_TS != 0 {
        return Err(Exc::new(NM));
    }
    Ok(())
}

#[inline]
pub(super) fn xmm(cpu: &Cpu, r: Register) -> u128 {
    cpu.xmm[xmm_index(r)]
}

#[inline]
pub(super) fn set_xmm(cpu: &mut Cpu, r: Register, v: u128) {
    cpu.xmm[xmm_index(r)] = v;
}

/// Size in bytes of the instruction's memory operand.
fn msize(d: &Insn) -> usize {
    d.i.memory_size().size()
}

/// Reads operand `n` as a 128-bit value: an XMM register, a GPR (zero-extended), memory of
/// the instruction's memory size (16-byte operands must be aligned when `aligned`, as every
/// legacy SSE m128 operand except MOVUPS/MOVUPD/MOVDQU), or an immediate byte.
pub(super) fn read_src(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn, n: u32, aligned: bool) -> Result<u128, Exc> {
    match d.i.op_kind(n) {
        OpKind::Register => {
            let r = d.i.op_register(n);
            Ok(if r.is_xmm() { xmm(cpu, r) } else { cpu.reg(r) as u128 })
        }
        OpKind::Memory => match msize(d) {
            16 => cpu.read_mem128(bus, d, aligned),
            s @ 1..=8 => Ok(cpu.read_mem(bus, d, s as u8)? as u128),
            _ => Err(Exc::ud()),
        },
        _ => Ok((d.i.immediate(n) & 0xff) as u128),
    }
}

/// Writes operand `n`: a whole XMM register, or memory of the instruction's memory size.
fn write_dst(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn, n: u32, v: u128, aligned: bool) -> R {
    match d.i.op_kind(n) {
        OpKind::Register => {
            set_xmm(cpu, d.i.op_register(n), v);
            Ok(())
        }
        _ => match msize(d) {
            16 => cpu.write_mem128(bus, d, v, aligned),
            s @ 1..=8 => cpu.write_mem(bus, d, s as u8, v as u64),
            _ => Err(Exc::ud()),
        },
    }
}

/// Every lane operation of [`sse_int::compute`]: xmm1 = op(xmm1, xmm2/m128 or imm8 [, imm8]).
fn binop(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu, d)?;
    let dst = d.i.op0_register();
    let a = xmm(cpu, dst);
    let b = read_src(cpu, bus, d, 1, true)?;
    let imm = if d.i.op_count() > 2 { d.i.immediate(2) as u8 } else { b as u8 };
    let r = sse_int::compute(d.i.mnemonic(), a, b, imm).ok_or_else(Exc::ud)?;
    set_xmm(cpu, dst, r);
    Ok(())
}

/// MOVAPS/MOVAPD/MOVDQA/MOVNT* (ALIGNED: #GP(0) on a misaligned m128) and MOVUPS/MOVUPD/MOVDQU.
fn mov128<const ALIGNED: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu, d)?;
    let v = read_src(cpu, bus, d, 1, ALIGNED)?;
    write_dst(cpu, bus, d, 0, v, ALIGNED)
}

/// MOVD/MOVQ between XMM and r/m32, r/m64 or xmm/m64; loads into XMM zero the rest.
fn movd(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu, d)?;
    match d.i.code() {
        Code::Movd_xmm_rm32 | Code::Movq_xmm_rm64 | Code::Movq_xmm_xmmm64 => {
            let size = if d.i.code() == Code::Movd_xmm_rm32 { 4 } else { 8 };
            let v = read_src(cpu, bus, d, 1, false)? as u64;
            let m = if size == 4 { 0xffff_ffff } else { u64::MAX };
            set_xmm(cpu, d.i.op0_register(), (v & m) as u128);
            Ok(())
        }
        Code::Movd_rm32_xmm | Code::Movq_rm64_xmm => {
            let size = if d.i.code() == Code::Movd_rm32_xmm { 4 } else { 8 };
            let v = xmm(cpu, d.i.op1_register()) as u64;
            cpu.write_op(bus, d, 0, size, if size == 4 { v & 0xffff_ffff } else { v })
        }
        // MOVQ xmm/m64, xmm (66 0F D6): a register destination has its upper half zeroed.
        _ => {
            let v = xmm(cpu, d.i.op1_register()) as u64;
            write_dst(cpu, bus, d, 0, v as u128, false)
        }
    }
}

/// MOVSS/MOVSD: register to register merges the low lane; a load zeroes the rest; a store
/// writes the low lane.
fn scalar_move(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu, d)?;
    let lane: u128 = if d.i.mnemonic() == M::Movss { 0xffff_ffff } else { u64::MAX as u128 };
    match (d.i.op0_kind(), d.i.op1_kind()) {
        (OpKind::Register, OpKind::Register) => {
            let v = xmm(cpu, d.i.op1_register()) & lane;
            let r = d.i.op0_register();
            set_xmm(cpu, r, (xmm(cpu, r) & !lane) | v);
            Ok(())
        }
        (OpKind::Register, _) => {
            let v = read_src(cpu, bus, d, 1, false)? & lane;
            set_xmm(cpu, d.i.op0_register(), v);
            Ok(())
        }
        _ => {
            let v = xmm(cpu, d.i.op1_register());
            write_dst(cpu, bus, d, 0, v & lane, false)
        }
    }
}

/// MOVLPS/MOVLPD/MOVHPS/MOVHPD (xmm <-> m64, the other half kept) and MOVHLPS/MOVLHPS.
fn half_move(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu, d)?;
    let lo: u128 = u64::MAX as u128;
    let mn = d.i.mnemonic();
    let high = matches!(mn, M::Movhps | M::Movhpd);
    if d.i.op0_kind() == OpKind::Memory {
        let v = xmm(cpu, d.i.op1_register());
        let v = if high { v >> 64 } else { v & lo };
        return cpu.write_mem(bus, d, 8, v as u64);
    }
    let dst = d.i.op0_register();
    let old = xmm(cpu, dst);
    let r = match mn {
        M::Movhlps => (old & !lo) | (xmm(cpu, d.i.op1_register()) >> 64),
        M::Movlhps => (old & lo) | (xmm(cpu, d.i.op1_register()) << 64),
        _ => {
            let v = cpu.read_mem(bus, d, 8)? as u128;
            if high {
                (old & lo) | (v << 64)
            } else {
                (old & !lo) | v
            }
        }
    };
    set_xmm(cpu, dst, r);
    Ok(())
}

/// MOVNTI m32/m64, r: a plain store. It uses no XMM state, so CR0.EM/TS and CR4.OSFXSR do not
/// apply (SDM vol. 2, MOVNTI exceptions).
fn movnti(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    if d.i.has_lock_prefix() {
        return Err(Exc::ud());
    }
    let size = if d.i.code() == Code::Movnti_m64_r64 { 8 } else { 4 };
    let v = cpu.reg(d.i.op1_register());
    cpu.write_mem(bus, d, size, v)
}

/// PMOVMSKB/MOVMSKPS/MOVMSKPD: the sign bit of each byte/dword/qword into a GPR, zero-extended.
fn movmsk(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu, d)?;
    let v = xmm(cpu, d.i.op1_register());
    let bits = match d.i.mnemonic() {
        M::Pmovmskb => 8,
        M::Movmskps => 32,
        _ => 64,
    };
    let mut m = 0u64;
    for k in 0..128 / bits {
        m |= (((v >> (bits * k + bits - 1)) & 1) as u64) << k;
    }
    cpu.set_reg(d.i.op0_register(), m);
    Ok(())
}

/// PEXTRW r32/r64, xmm, imm8: word imm8[2:0], zero-extended.
fn pextrw(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu, d)?;
    let sel = (d.i.immediate(2) & 7) as u32;
    let v = (xmm(cpu, d.i.op1_register()) >> (16 * sel)) as u64 & 0xffff;
    cpu.set_reg(d.i.op0_register(), v);
    Ok(())
}

/// PINSRW xmm, r32/m16, imm8: replaces word imm8[2:0] with the low word of the source.
fn pinsrw(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu, d)?;
    let sel = (d.i.immediate(2) & 7) as u32;
    let v = cpu.read_op(bus, d, 1, 2)? as u128 & 0xffff;
    let dst = d.i.op0_register();
    let m = 0xffffu128 << (16 * sel);
    set_xmm(cpu, dst, (xmm(cpu, dst) & !m) | (v << (16 * sel)));
    Ok(())
}

/// LDMXCSR m32: #GP(0) if a bit outside MXCSR_MASK is set (SDM vol. 2, LDMXCSR).
fn ldmxcsr(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu, d)?;
    let v = cpu.read_mem(bus, d, 4)? as u32;
    if v & !MXCSR_MASK != 0 {
        return Err(Exc::gp0());
    }
    cpu.mxcsr = v;
    Ok(())
}

fn stmxcsr(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu, d)?;
    cpu.write_mem(bus, d, 4, cpu.mxcsr as u64)
}

/// FXSAVE/FXRSTOR gating (SDM vol. 2, FXSAVE exceptions): #NM if CR0.TS or CR0.EM; they do not
/// depend on CR4.OSFXSR. Returns the linear address of each 8-byte chunk of the first `len`
/// bytes of the area after the segment, canonical and 16-byte alignment checks.
fn fx_area(cpu: &Cpu, d: &Insn, len: usize, write: bool) -> Result<Vec<u64>, Exc> {
    if d.i.has_lock_prefix() {
        return Err(Exc::ud());
    }
    if cpu.cr0 & (CR0_TS | CR0_EM) != 0 {
        return Err(Exc::new(NM));
    }
    let seg = cpu.mem_seg(d);
    let ea = cpu.ea(d);
    let amask = match d.asize {
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    };
    let mut lins = Vec::with_capacity(len / 8);
    for off in (0..len).step_by(8) {
        lins.push(cpu.seg_linear(seg, ea.wrapping_add(off as u64) & amask, 8, write)?);
    }
    if lins.first().is_some_and(|l| l & 15 != 0) {
        return Err(Exc::gp0());
    }
    Ok(lins)
}

/// Bytes of the FXSAVE area this CPU writes and reads: the legacy header, ST0-7 and XMM0-7, or
/// XMM0-15 in 64-bit mode (with or without REX.W: SDM vol. 1, tables 10-2 and 10-3).
fn fx_len(cpu: &Cpu) -> (usize, usize) {
    if cpu.mode64() {
        (416, 16)
    } else {
        (288, 8)
    }
}

/// FXSAVE/FXSAVE64: FCW, FSW, abridged FTW, MXCSR, MXCSR_MASK and the XMM registers. The x87
/// instruction/operand pointers and ST0-7 are stored as zero (this CPU keeps no x87 stack).
/// Bytes 416-511 are left untouched, as the SDM reserves them or leaves them to software.
fn fxsave(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let (len, nx) = fx_len(cpu);
    let lins = fx_area(cpu, d, len, true)?;
    let mut img = [0u8; 416];
    let x = &cpu.fpu;
    img[0..2].copy_from_slice(&x.fcw.to_le_bytes());
    img[2..4].copy_from_slice(&x.fsw.to_le_bytes());
    // Abridged tag: bit i set when physical register i is not empty.
    img[4] = x.abridged_tags();
    img[6..8].copy_from_slice(&x.fop.to_le_bytes());
    if cpu.mode64() && d.i.code() == iced_x86::Code::Fxsave64_m512byte {
        img[8..16].copy_from_slice(&x.fip.to_le_bytes());
        img[16..24].copy_from_slice(&x.fdp.to_le_bytes());
    } else {
        img[8..12].copy_from_slice(&(x.fip as u32).to_le_bytes());
        img[12..14].copy_from_slice(&x.fcs.to_le_bytes());
        img[16..20].copy_from_slice(&(x.fdp as u32).to_le_bytes());
        img[20..22].copy_from_slice(&x.fds.to_le_bytes());
    }
    // ST0-ST7 in stack order, 16 bytes each (SDM vol. 1, table 10-2).
    for k in 0..8u8 {
        img[32 + 16 * k as usize..42 + 16 * k as usize].copy_from_slice(&x.st(k).to_le_bytes()[..10]);
    }
    img[24..28].copy_from_slice(&cpu.mxcsr.to_le_bytes());
    img[28..32].copy_from_slice(&MXCSR_MASK.to_le_bytes());
    for k in 0..nx {
        img[160 + 16 * k..176 + 16 * k].copy_from_slice(&cpu.xmm[k].to_le_bytes());
    }
    // Probe the last chunk first (by rewriting it) so a page fault leaves memory unchanged.
    if let Some(&last) = lins.last() {
        let old = cpu.read_lin(bus, last, 8)?;
        cpu.write_lin(bus, last, 8, old)?;
    }
    for (k, lin) in lins.iter().enumerate() {
        let mut q = [0u8; 8];
        q.copy_from_slice(&img[8 * k..8 * k + 8]);
        cpu.write_lin(bus, *lin, 8, u64::from_le_bytes(q))?;
    }
    Ok(())
}

/// FXRSTOR/FXRSTOR64: #GP(0) if the image sets MXCSR bits outside MXCSR_MASK; nothing is
/// loaded unless the whole area could be read.
fn fxrstor(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let (len, nx) = fx_len(cpu);
    let lins = fx_area(cpu, d, len, false)?;
    let mut img = [0u8; 416];
    for (k, lin) in lins.iter().enumerate() {
        let q = cpu.read_lin(bus, *lin, 8)?;
        img[8 * k..8 * k + 8].copy_from_slice(&q.to_le_bytes());
    }
    let mxcsr = u32::from_le_bytes([img[24], img[25], img[26], img[27]]);
    if mxcsr & !MXCSR_MASK != 0 {
        return Err(Exc::gp0());
    }
    let wide_pointers = cpu.mode64() && d.i.code() == iced_x86::Code::Fxrstor64_m512byte;
    let x = &mut cpu.fpu;
    x.fcw = u16::from_le_bytes([img[0], img[1]]);
    x.fsw = u16::from_le_bytes([img[2], img[3]]);
    x.fop = u16::from_le_bytes([img[6], img[7]]) & 0x7ff;
    let q = |k: usize| u64::from_le_bytes(img[k..k + 8].try_into().unwrap());
    if wide_pointers {
        x.fip = q(8);
        x.fdp = q(16);
    } else {
        x.fip = q(8) & 0xffff_ffff;
        x.fcs = u16::from_le_bytes([img[12], img[13]]);
        x.fdp = q(16) & 0xffff_ffff;
        x.fds = u16::from_le_bytes([img[20], img[21]]);
    }
    for k in 0..8u8 {
        let mut b = [0u8; 16];
        b[..10].copy_from_slice(&img[32 + 16 * k as usize..42 + 16 * k as usize]);
        let p = x.phys(k);
        x.regs[p] = u128::from_le_bytes(b);
    }
    // Full tags from the abridged byte and the registers' contents.
    x.set_abridged_tags(img[4]);
    cpu.mxcsr = mxcsr;
    for k in 0..nx {
        let mut b = [0u8; 16];
        b.copy_from_slice(&img[160 + 16 * k..176 + 16 * k]);
        cpu.xmm[k] = u128::from_le_bytes(b);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::bus::{Access, AccessKind, Bus};
    use crate::cr::*;
    use crate::exception::{GP, NM, UD};
    use crate::segment::Segment;
    use crate::{sreg, Cpu, CpuModel, Exit};
    use core::arch::asm;
    use core::arch::x86_64::__m128i;
    use core::mem::transmute;
    use iced_x86::code_asm::*;
    use iced_x86::{Code, Encoder, Instruction, Register};
    use rand::{Rng, SeedableRng};
    use std::ptr::NonNull;

    const RAM: usize = 4 << 20;
    const GDT: u64 = 0x500;
    const IDT: u64 = 0x1000;
    const PML4: u64 = 0x2000;
    const STUBS: u64 = 0x5000;
    const CODE: u64 = 0x10000;
    const DATA: u64 = 0x20000;
    const STACK: u64 = 0x80000;
    /// R15 before a test: an exception handler stub overwrites it with the vector.
    const NO_EXC: u64 = 0xdead;

    struct TestBus {
        ram: Vec<u8>,
    }

    impl Bus for TestBus {
        fn read(&mut self, a: Access) -> u64 {
            (0..a.size as usize).fold(0, |v, k| v | (*self.ram.get(a.addr as usize + k).unwrap_or(&0xff) as u64) << (8 * k))
        }
        fn write(&mut self, a: Access, v: u64) {
            for k in 0..a.size as usize {
                if let Some(b) = self.ram.get_mut(a.addr as usize + k) {
                    *b = (v >> (8 * k)) as u8;
                }
            }
        }
        fn io_in(&mut self, _a: Access) -> u32 {
            u32::MAX
        }
        fn io_out(&mut self, _a: Access, _v: u32) {}
        fn host_page(&mut self, page: u64, _k: AccessKind, _smm: bool) -> Option<NonNull<u8>> {
            let p = page as usize;
            if p + 4096 <= self.ram.len() {
                NonNull::new(self.ram[p..].as_mut_ptr())
            } else {
                None
            }
        }
    }

    impl TestBus {
        fn w64(&mut self, a: u64, v: u64) {
            self.ram[a as usize..a as usize + 8].copy_from_slice(&v.to_le_bytes());
        }
        fn r64(&self, a: u64) -> u64 {
            u64::from_le_bytes(self.ram[a as usize..a as usize + 8].try_into().unwrap())
        }
        fn w128(&mut self, a: u64, v: u128) {
            self.ram[a as usize..a as usize + 16].copy_from_slice(&v.to_le_bytes());
        }
        fn r128(&self, a: u64) -> u128 {
            u128::from_le_bytes(self.ram[a as usize..a as usize + 16].try_into().unwrap())
        }
    }

    /// A 64-bit guest: flat GDT, identity-mapped 4 MiB, an IDT whose every vector runs
    /// `mov r15, vector; hlt`.
    fn machine() -> (Cpu, TestBus) {
        let mut bus = TestBus { ram: vec![0; RAM] };
        bus.w64(GDT + 8, 0x00af_9b00_0000_ffff);
        bus.w64(GDT + 16, 0x00cf_9300_0000_ffff);
        bus.w64(PML4, (PML4 + 0x1000) | 3);
        bus.w64(PML4 + 0x1000, (PML4 + 0x2000) | 3);
        bus.w64(PML4 + 0x2000, 0x83);
        bus.w64(PML4 + 0x2008, 0x20_0000 | 0x83);
        for v in 0..256u64 {
            let stub = STUBS + v * 16;
            // mov r15, imm32; hlt
            let b = &mut bus.ram[stub as usize..stub as usize + 8];
            b[..3].copy_from_slice(&[0x49, 0xc7, 0xc7]);
            b[3..7].copy_from_slice(&(v as u32).to_le_bytes());
            b[7] = 0xf4;
            let lo = (stub & 0xffff) | (8 << 16) | (0x8e << 40) | ((stub >> 16) & 0xffff) << 48;
            bus.w64(IDT + v * 16, lo);
            bus.w64(IDT + v * 16 + 8, stub >> 32);
        }
        let mut cpu = Cpu::new(CpuModel::default());
        cpu.cr0 = CR0_PE | CR0_ET | CR0_PG | CR0_MP | CR0_NE;
        cpu.cr4 = CR4_PAE | CR4_OSFXSR;
        cpu.efer = EFER_LME | EFER_LMA;
        cpu.cr3 = PML4;
        cpu.gdtr = crate::TableReg { base: GDT, limit: 23 };
        cpu.idtr = crate::TableReg { base: IDT, limit: 0xfff };
        for s in 0..6 {
            cpu.seg[s] = Segment { selector: 0x10, base: 0, limit: 0xffff_ffff, attr: 0xc93 };
        }
        cpu.seg[sreg::CS] = Segment { selector: 8, base: 0, limit: 0xffff_ffff, attr: 0xa9b };
        cpu.flush_tlb();
        (cpu, bus)
    }

    /// Loads `code` (followed by HLT) at CODE and runs it to the HLT; returns R15 (NO_EXC or
    /// the vector of the exception raised).
    fn run_bytes(cpu: &mut Cpu, bus: &mut TestBus, code: &[u8]) -> u64 {
        bus.ram[CODE as usize..CODE as usize + code.len()].copy_from_slice(code);
        bus.ram[CODE as usize + code.len()] = 0xf4;
        cpu.flush_code();
        cpu.rip = CODE;
        cpu.regs[4] = STACK;
        cpu.regs[15] = NO_EXC;
        cpu.halted = false;
        assert_eq!(cpu.run(bus, 10_000), Exit::Halted);
        cpu.regs[15]
    }

    fn run_asm(cpu: &mut Cpu, bus: &mut TestBus, f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> u64 {
        let mut a = CodeAssembler::new(64).unwrap();
        f(&mut a).unwrap();
        let bytes = a.assemble(CODE).unwrap();
        run_bytes(cpu, bus, &bytes)
    }

    type HostOp = fn(u128, u128) -> u128;

    /// A guest instruction on XMM1 (and XMM2) paired with the same instruction run on the host.
    macro_rules! oracle {
        (rr $code:ident $m:literal) => {
            (Instruction::with2(Code::$code, Register::XMM1, Register::XMM2).unwrap(), (|a: u128, b: u128| -> u128 {
                // SAFETY: a register-only SSE2 instruction; the host is x86-64 (SSE2 baseline).
                unsafe {
                    let mut x: __m128i = transmute(a);
                    asm!(concat!($m, " {x}, {y}"), x = inout(xmm_reg) x, y = in(xmm_reg) transmute::<u128, __m128i>(b));
                    transmute(x)
                }
            }) as HostOp)
        };
        (ri $code:ident $m:literal $imm:literal) => {
            (Instruction::with2(Code::$code, Register::XMM1, $imm as u32).unwrap(), (|a: u128, _b: u128| -> u128 {
                // SAFETY: a register-only SSE2 instruction with an immediate; the host is x86-64
                // (SSE2 baseline).
                unsafe {
                    let mut x: __m128i = transmute(a);
                    asm!(concat!($m, " {x}, ", stringify!($imm)), x = inout(xmm_reg) x);
                    transmute(x)
                }
            }) as HostOp)
        };
        (rri $code:ident $m:literal $imm:literal) => {
            (Instruction::with3(Code::$code, Register::XMM1, Register::XMM2, $imm as u32).unwrap(), (|a: u128, b: u128| -> u128 {
                // SAFETY: a register-only SSE2 instruction with an immediate; the host is x86-64
                // (SSE2 baseline).
                unsafe {
                    let mut x: __m128i = transmute(a);
                    asm!(concat!($m, " {x}, {y}, ", stringify!($imm)), x = inout(xmm_reg) x, y = in(xmm_reg) transmute::<u128, __m128i>(b));
                    transmute(x)
                }
            }) as HostOp)
        };
    }

    /// A random 128-bit value whose lanes often sit on saturation and sign edges; with `count`,
    /// the low quadword is sometimes a small shift count.
    fn edgy(rng: &mut rand::rngs::StdRng) -> u128 {
        const EDGES: [u8; 8] = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x81, 0x7e];
        let mut b = [0u8; 16];
        for x in b.iter_mut() {
            *x = if rng.gen_bool(0.5) { EDGES[rng.gen_range(0..EDGES.len())] } else { rng.gen() };
        }
        let mut v = u128::from_le_bytes(b);
        if rng.gen_bool(0.3) {
            v = (v & !(u64::MAX as u128)) | rng.gen_range(0u128..70);
        }
        v
    }

    #[test]
    fn lane_ops_match_host() {
        let table = [
            oracle!(rr Pxor_xmm_xmmm128 "pxor"),
            oracle!(rr Pand_xmm_xmmm128 "pand"),
            oracle!(rr Pandn_xmm_xmmm128 "pandn"),
            oracle!(rr Por_xmm_xmmm128 "por"),
            oracle!(rr Xorps_xmm_xmmm128 "xorps"),
            oracle!(rr Xorpd_xmm_xmmm128 "xorpd"),
            oracle!(rr Andps_xmm_xmmm128 "andps"),
            oracle!(rr Andpd_xmm_xmmm128 "andpd"),
            oracle!(rr Andnps_xmm_xmmm128 "andnps"),
            oracle!(rr Andnpd_xmm_xmmm128 "andnpd"),
            oracle!(rr Orps_xmm_xmmm128 "orps"),
            oracle!(rr Orpd_xmm_xmmm128 "orpd"),
            oracle!(rr Paddb_xmm_xmmm128 "paddb"),
            oracle!(rr Paddw_xmm_xmmm128 "paddw"),
            oracle!(rr Paddd_xmm_xmmm128 "paddd"),
            oracle!(rr Paddq_xmm_xmmm128 "paddq"),
            oracle!(rr Psubb_xmm_xmmm128 "psubb"),
            oracle!(rr Psubw_xmm_xmmm128 "psubw"),
            oracle!(rr Psubd_xmm_xmmm128 "psubd"),
            oracle!(rr Psubq_xmm_xmmm128 "psubq"),
            oracle!(rr Paddusb_xmm_xmmm128 "paddusb"),
            oracle!(rr Paddusw_xmm_xmmm128 "paddusw"),
            oracle!(rr Psubusb_xmm_xmmm128 "psubusb"),
            oracle!(rr Psubusw_xmm_xmmm128 "psubusw"),
            oracle!(rr Paddsb_xmm_xmmm128 "paddsb"),
            oracle!(rr Paddsw_xmm_xmmm128 "paddsw"),
            oracle!(rr Psubsb_xmm_xmmm128 "psubsb"),
            oracle!(rr Psubsw_xmm_xmmm128 "psubsw"),
            oracle!(rr Pcmpeqb_xmm_xmmm128 "pcmpeqb"),
            oracle!(rr Pcmpeqw_xmm_xmmm128 "pcmpeqw"),
            oracle!(rr Pcmpeqd_xmm_xmmm128 "pcmpeqd"),
            oracle!(rr Pcmpgtb_xmm_xmmm128 "pcmpgtb"),
            oracle!(rr Pcmpgtw_xmm_xmmm128 "pcmpgtw"),
            oracle!(rr Pcmpgtd_xmm_xmmm128 "pcmpgtd"),
            oracle!(rr Pminub_xmm_xmmm128 "pminub"),
            oracle!(rr Pmaxub_xmm_xmmm128 "pmaxub"),
            oracle!(rr Pminsw_xmm_xmmm128 "pminsw"),
            oracle!(rr Pmaxsw_xmm_xmmm128 "pmaxsw"),
            oracle!(rr Pmullw_xmm_xmmm128 "pmullw"),
            oracle!(rr Pmulhw_xmm_xmmm128 "pmulhw"),
            oracle!(rr Pmulhuw_xmm_xmmm128 "pmulhuw"),
            oracle!(rr Pmuludq_xmm_xmmm128 "pmuludq"),
            oracle!(rr Pavgb_xmm_xmmm128 "pavgb"),
            oracle!(rr Pavgw_xmm_xmmm128 "pavgw"),
            oracle!(rr Psadbw_xmm_xmmm128 "psadbw"),
            oracle!(rr Pmaddwd_xmm_xmmm128 "pmaddwd"),
            oracle!(rr Punpcklbw_xmm_xmmm128 "punpcklbw"),
            oracle!(rr Punpcklwd_xmm_xmmm128 "punpcklwd"),
            oracle!(rr Punpckldq_xmm_xmmm128 "punpckldq"),
            oracle!(rr Punpcklqdq_xmm_xmmm128 "punpcklqdq"),
            oracle!(rr Punpckhbw_xmm_xmmm128 "punpckhbw"),
            oracle!(rr Punpckhwd_xmm_xmmm128 "punpckhwd"),
            oracle!(rr Punpckhdq_xmm_xmmm128 "punpckhdq"),
            oracle!(rr Punpckhqdq_xmm_xmmm128 "punpckhqdq"),
            oracle!(rr Unpcklps_xmm_xmmm128 "unpcklps"),
            oracle!(rr Unpckhps_xmm_xmmm128 "unpckhps"),
            oracle!(rr Unpcklpd_xmm_xmmm128 "unpcklpd"),
            oracle!(rr Unpckhpd_xmm_xmmm128 "unpckhpd"),
            oracle!(rr Packsswb_xmm_xmmm128 "packsswb"),
            oracle!(rr Packssdw_xmm_xmmm128 "packssdw"),
            oracle!(rr Packuswb_xmm_xmmm128 "packuswb"),
            oracle!(rr Psllw_xmm_xmmm128 "psllw"),
            oracle!(rr Pslld_xmm_xmmm128 "pslld"),
            oracle!(rr Psllq_xmm_xmmm128 "psllq"),
            oracle!(rr Psrlw_xmm_xmmm128 "psrlw"),
            oracle!(rr Psrld_xmm_xmmm128 "psrld"),
            oracle!(rr Psrlq_xmm_xmmm128 "psrlq"),
            oracle!(rr Psraw_xmm_xmmm128 "psraw"),
            oracle!(rr Psrad_xmm_xmmm128 "psrad"),
            oracle!(ri Psllw_xmm_imm8 "psllw" 3),
            oracle!(ri Psllw_xmm_imm8 "psllw" 16),
            oracle!(ri Pslld_xmm_imm8 "pslld" 31),
            oracle!(ri Psllq_xmm_imm8 "psllq" 63),
            oracle!(ri Psllq_xmm_imm8 "psllq" 200),
            oracle!(ri Psrlw_xmm_imm8 "psrlw" 15),
            oracle!(ri Psrld_xmm_imm8 "psrld" 1),
            oracle!(ri Psrld_xmm_imm8 "psrld" 32),
            oracle!(ri Psrlq_xmm_imm8 "psrlq" 33),
            oracle!(ri Psraw_xmm_imm8 "psraw" 4),
            oracle!(ri Psraw_xmm_imm8 "psraw" 16),
            oracle!(ri Psrad_xmm_imm8 "psrad" 0),
            oracle!(ri Psrad_xmm_imm8 "psrad" 255),
            oracle!(ri Pslldq_xmm_imm8 "pslldq" 1),
            oracle!(ri Pslldq_xmm_imm8 "pslldq" 15),
            oracle!(ri Pslldq_xmm_imm8 "pslldq" 16),
            oracle!(ri Psrldq_xmm_imm8 "psrldq" 7),
            oracle!(ri Psrldq_xmm_imm8 "psrldq" 0),
            oracle!(ri Psrldq_xmm_imm8 "psrldq" 17),
            oracle!(rri Pshufd_xmm_xmmm128_imm8 "pshufd" 0x1b),
            oracle!(rri Pshufd_xmm_xmmm128_imm8 "pshufd" 0xe4),
            oracle!(rri Pshuflw_xmm_xmmm128_imm8 "pshuflw" 0x9c),
            oracle!(rri Pshufhw_xmm_xmmm128_imm8 "pshufhw" 0x27),
            oracle!(rri Shufps_xmm_xmmm128_imm8 "shufps" 0xb1),
            oracle!(rri Shufps_xmm_xmmm128_imm8 "shufps" 0x4e),
            oracle!(rri Shufpd_xmm_xmmm128_imm8 "shufpd" 1),
            oracle!(rri Shufpd_xmm_xmmm128_imm8 "shufpd" 2),
        ];
        let (mut cpu, mut bus) = machine();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x55e2);
        for (insn, host) in table.iter() {
            let mut enc = Encoder::new(64);
            enc.encode(insn, CODE).unwrap();
            let bytes = enc.take_buffer();
            for _ in 0..40 {
                let (a, b) = (edgy(&mut rng), edgy(&mut rng));
                cpu.xmm[1] = a;
                cpu.xmm[2] = b;
                assert_eq!(run_bytes(&mut cpu, &mut bus, &bytes), NO_EXC, "{:?}", insn.code());
                assert_eq!(cpu.xmm[1], host(a, b), "{:?} a={a:#034x} b={b:#034x}", insn.code());
                assert_eq!(cpu.xmm[2], b);
            }
        }
        assert!(cpu.unimplemented.is_empty(), "{:?}", cpu.unimplemented);
    }

    #[test]
    fn saturation_edges() {
        let (mut cpu, mut bus) = machine();
        cpu.xmm[0] = 0x7fff_8000_0001_ffff_0000_7fff_8000_0100u128;
        cpu.xmm[1] = 0x0001_ffff_7fff_8000_0000_0001_8000_ff00u128;
        cpu.xmm[2] = cpu.xmm[0];
        cpu.xmm[3] = cpu.xmm[0];
        run_asm(&mut cpu, &mut bus, |a| {
            a.paddsw(xmm0, xmm1)?;
            a.psubusw(xmm2, xmm1)?;
            a.packsswb(xmm3, xmm1)
        });
        // Lanes from low: 0x0100+0xff00 = 0; 0x8000+0x8000 -> -32768; 0x7fff+1 -> 0x7fff;
        // 0+0; 0xffff+0x8000 -> -32768 (sat); 1+0x7fff -> 0x7fff; 0x8000+0xffff -> 0x8000;
        // 0x7fff+1 -> 0x7fff.
        assert_eq!(cpu.xmm[0], 0x7fff_8000_7fff_8000_0000_7fff_8000_0000u128);
        assert_eq!(cpu.xmm[2], 0x7ffe_0000_0000_7fff_0000_7ffe_0000_0000u128);
        // Words 0x0100 0x8000 0x7fff 0 0xffff 1 0x8000 0x7fff, then xmm1's 0xff00 0x8000 1 0 0x8000
        // 0x7fff 0xffff 1, each saturated to a signed byte.
        assert_eq!(cpu.xmm[3], 0x01ff_7f80_0001_8080_7f80_01ff_007f_807fu128);
    }

    #[test]
    fn moves() {
        let (mut cpu, mut bus) = machine();
        let v1 = 0x0f0e_0d0c_0b0a_0908_0706_0504_0302_0100u128;
        let v2 = 0xf0e0_d0c0_b0a0_9080_7060_5040_3020_1000u128;
        bus.w128(DATA, v1);
        bus.w128(DATA + 0x40, v2);
        cpu.regs[3] = DATA; // rbx
        cpu.regs[0] = 0xdead_beef_cafe_f00d; // rax
        cpu.xmm[9] = u128::MAX;
        let r = run_asm(&mut cpu, &mut bus, |a| {
            a.movdqa(xmm0, xmmword_ptr(rbx))?;
            a.movdqu(xmm1, xmmword_ptr(rbx + 0x41))?;
            a.movaps(xmmword_ptr(rbx + 0x80), xmm0)?;
            a.movups(xmmword_ptr(rbx + 0x93), xmm0)?;
            a.movapd(xmm2, xmm0)?;
            a.movupd(xmm3, xmmword_ptr(rbx + 0x40))?;
            a.movdqu(xmmword_ptr(rbx + 0xf1), xmm3)?;
            a.movd(xmm4, eax)?;
            a.movq(xmm5, rax)?;
            a.movd(ecx, xmm3)?;
            a.movq(rdx, xmm3)?;
            a.movd(xmm6, dword_ptr(rbx + 4))?;
            a.movq(xmm7, qword_ptr(rbx + 4))?;
            a.movq(xmm8, xmm3)?;
            a.movq(qword_ptr(rbx + 0xc0), xmm3)?;
            a.movd(dword_ptr(rbx + 0xc8), xmm0)?;
            a.movntdq(xmmword_ptr(rbx + 0xd0), xmm3)?;
            a.movnti(qword_ptr(rbx + 0xe0), rax)?;
            a.movnti(dword_ptr(rbx + 0xe8), eax)?;
            a.movq(xmm9, xmm9)
        });
        assert_eq!(r, NO_EXC);
        assert_eq!(cpu.xmm[0], v1);
        assert_eq!(cpu.xmm[1], u128::from_le_bytes(bus.ram[DATA as usize + 0x41..DATA as usize + 0x51].try_into().unwrap()));
        assert_eq!(bus.r128(DATA + 0x80), v1);
        assert_eq!(bus.r128(DATA + 0x93), v1);
        assert_eq!(cpu.xmm[2], v1);
        assert_eq!(cpu.xmm[3], v2);
        assert_eq!(bus.r128(DATA + 0xf1), v2);
        assert_eq!(cpu.xmm[4], 0xcafe_f00d);
        assert_eq!(cpu.xmm[5], 0xdead_beef_cafe_f00d);
        assert_eq!(cpu.regs[1], 0x3020_1000);
        assert_eq!(cpu.regs[2], 0x7060_5040_3020_1000);
        assert_eq!(cpu.xmm[6], 0x0706_0504);
        assert_eq!(cpu.xmm[7], 0x0b0a_0908_0706_0504);
        assert_eq!(cpu.xmm[8], 0x7060_5040_3020_1000);
        assert_eq!(bus.r64(DATA + 0xc0), 0x7060_5040_3020_1000);
        assert_eq!(bus.r64(DATA + 0xc8), 0x0302_0100);
        assert_eq!(bus.r128(DATA + 0xd0), v2);
        assert_eq!(bus.r64(DATA + 0xe0), 0xdead_beef_cafe_f00d);
        assert_eq!(bus.r64(DATA + 0xe8), 0xcafe_f00d);
        assert_eq!(cpu.xmm[9], u64::MAX as u128);
    }

    #[test]
    fn scalar_and_half_moves() {
        let (mut cpu, mut bus) = machine();
        let x = 0x1111_1111_2222_2222_3333_3333_4444_4444u128;
        let y = 0xaaaa_aaaa_bbbb_bbbb_cccc_cccc_dddd_ddddu128;
        bus.w128(DATA, y);
        cpu.regs[3] = DATA;
        for r in 0..10 {
            cpu.xmm[r] = x;
        }
        cpu.xmm[15] = y;
        let r = run_asm(&mut cpu, &mut bus, |a| {
            a.movss(xmm0, xmm15)?;
            a.movsd_2(xmm1, xmm15)?;
            a.movss(xmm2, dword_ptr(rbx))?;
            a.movsd_2(xmm3, qword_ptr(rbx))?;
            a.movss(dword_ptr(rbx + 0x20), xmm0)?;
            a.movsd_2(qword_ptr(rbx + 0x28), xmm1)?;
            a.movlps(xmm4, qword_ptr(rbx + 8))?;
            a.movhps(xmm5, qword_ptr(rbx))?;
            a.movlpd(xmm6, qword_ptr(rbx + 8))?;
            a.movhpd(xmm7, qword_ptr(rbx))?;
            a.movhlps(xmm8, xmm15)?;
            a.movlhps(xmm9, xmm15)?;
            a.movlps(qword_ptr(rbx + 0x30), xmm15)?;
            a.movhps(qword_ptr(rbx + 0x38), xmm15)?;
            a.movhpd(qword_ptr(rbx + 0x40), xmm15)?;
            a.movlpd(qword_ptr(rbx + 0x48), xmm15)
        });
        assert_eq!(r, NO_EXC);
        assert_eq!(cpu.xmm[0], 0x1111_1111_2222_2222_3333_3333_dddd_ddddu128);
        assert_eq!(cpu.xmm[1], 0x1111_1111_2222_2222_cccc_cccc_dddd_ddddu128);
        assert_eq!(cpu.xmm[2], 0xdddd_ddddu128);
        assert_eq!(cpu.xmm[3], 0xcccc_cccc_dddd_ddddu128);
        assert_eq!(bus.r64(DATA + 0x20), 0xdddd_dddd);
        assert_eq!(bus.r64(DATA + 0x28), 0xcccc_cccc_dddd_dddd);
        assert_eq!(cpu.xmm[4], 0x1111_1111_2222_2222_aaaa_aaaa_bbbb_bbbbu128);
        assert_eq!(cpu.xmm[5], 0xcccc_cccc_dddd_dddd_3333_3333_4444_4444u128);
        assert_eq!(cpu.xmm[6], cpu.xmm[4]);
        assert_eq!(cpu.xmm[7], cpu.xmm[5]);
        assert_eq!(cpu.xmm[8], 0x1111_1111_2222_2222_aaaa_aaaa_bbbb_bbbbu128);
        assert_eq!(cpu.xmm[9], 0xcccc_cccc_dddd_dddd_3333_3333_4444_4444u128);
        assert_eq!(bus.r64(DATA + 0x30), 0xcccc_cccc_dddd_dddd);
        assert_eq!(bus.r64(DATA + 0x38), 0xaaaa_aaaa_bbbb_bbbb);
        assert_eq!(bus.r64(DATA + 0x40), 0xaaaa_aaaa_bbbb_bbbb);
        assert_eq!(bus.r64(DATA + 0x48), 0xcccc_cccc_dddd_dddd);
    }

    #[test]
    fn masks_and_words() {
        let (mut cpu, mut bus) = machine();
        cpu.xmm[1] = 0x8000_0000_0000_0001_0000_0000_8000_0000u128 | 0x80 << 40 | 0x80 << 8;
        cpu.regs[2] = 0xffff_ffff_ffff_ffff;
        cpu.regs[0] = 0x1234_abcd;
        bus.w64(DATA, 0x5678);
        cpu.regs[3] = DATA;
        cpu.xmm[2] = 0x0007_0006_0005_0004_0003_0002_0001_0000u128;
        let r = run_asm(&mut cpu, &mut bus, |a| {
            a.pmovmskb(edx, xmm1)?;
            a.movmskps(esi, xmm1)?;
            a.movmskpd(rdi, xmm1)?;
            a.pextrw(ecx, xmm2, 5)?;
            a.pextrw(r8, xmm2, 15)?;
            a.pinsrw(xmm2, eax, 2)?;
            a.pinsrw(xmm2, word_ptr(rbx), 9)
        });
        assert_eq!(r, NO_EXC);
        assert_eq!(cpu.regs[2], 0x8000 | 1 << 5 | 1 << 3 | 1 << 1);
        assert_eq!(cpu.regs[6], 0b1001);
        assert_eq!(cpu.regs[7], 0b10);
        assert_eq!(cpu.regs[1], 5);
        assert_eq!(cpu.regs[8], 7);
        assert_eq!(cpu.xmm[2], 0x0007_0006_0005_0004_0003_abcd_5678_0000u128);
    }

    #[test]
    fn memory_source_and_alignment() {
        let (mut cpu, mut bus) = machine();
        bus.w128(DATA, 0xff00);
        bus.w128(DATA + 0x21, 0xff00);
        cpu.regs[3] = DATA;
        cpu.xmm[0] = 0x0f0f;
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.pxor(xmm0, xmmword_ptr(rbx))), NO_EXC);
        assert_eq!(cpu.xmm[0], 0xf00f);
        // A misaligned m128 on an aligned-only instruction: #GP(0), nothing done.
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.pxor(xmm0, xmmword_ptr(rbx + 0x21))), GP as u64);
        assert_eq!(cpu.xmm[0], 0xf00f);
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.movdqa(xmm0, xmmword_ptr(rbx + 0x21))), GP as u64);
        assert_eq!(cpu.xmm[0], 0xf00f);
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.movaps(xmmword_ptr(rbx + 8), xmm0)), GP as u64);
        assert_eq!(bus.r64(DATA + 8), 0);
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.movdqu(xmm0, xmmword_ptr(rbx + 0x21))), NO_EXC);
        assert_eq!(cpu.xmm[0], 0xff00);
    }

    #[test]
    fn gating() {
        let (mut cpu, mut bus) = machine();
        cpu.xmm[0] = 1;
        cpu.xmm[1] = 2;
        cpu.cr4 &= !CR4_OSFXSR;
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.paddq(xmm0, xmm1)), UD as u64);
        cpu.cr4 |= CR4_OSFXSR;
        cpu.cr0 |= CR0_TS;
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.paddq(xmm0, xmm1)), NM as u64);
        // #UD for EM takes priority over #NM for TS.
        cpu.cr0 |= CR0_EM;
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.movdqa(xmm0, xmm1)), UD as u64);
        assert_eq!(cpu.xmm[0], 1);
        // FXSAVE: #NM for EM or TS.
        cpu.cr0 &= !CR0_TS;
        cpu.regs[3] = DATA;
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.fxsave(ptr(rbx))), NM as u64);
        cpu.cr0 &= !CR0_EM;
        // MOVNTI does not touch XMM state and is not gated.
        cpu.cr4 &= !CR4_OSFXSR;
        cpu.regs[0] = 0x77;
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.movnti(dword_ptr(rbx), eax)), NO_EXC);
        assert_eq!(bus.r64(DATA), 0x77);
        cpu.cr4 |= CR4_OSFXSR;
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.paddq(xmm0, xmm1)), NO_EXC);
        assert_eq!(cpu.xmm[0], 3);
        assert!(cpu.unimplemented.is_empty());
    }

    #[test]
    fn mxcsr() {
        let (mut cpu, mut bus) = machine();
        cpu.regs[3] = DATA;
        bus.w64(DATA, 0x9fc0);
        bus.w64(DATA + 8, 0x1_1f80);
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| {
            a.ldmxcsr(dword_ptr(rbx))?;
            a.stmxcsr(dword_ptr(rbx + 4))
        }), NO_EXC);
        assert_eq!(cpu.mxcsr, 0x9fc0);
        assert_eq!(bus.r64(DATA), 0x9fc0_0000_9fc0);
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.ldmxcsr(dword_ptr(rbx + 8))), GP as u64);
        assert_eq!(cpu.mxcsr, 0x9fc0);
    }

    #[test]
    fn fxsave_fxrstor() {
        let (mut cpu, mut bus) = machine();
        let area = DATA + 0x200;
        cpu.regs[3] = area;
        for k in 0..16 {
            cpu.xmm[k] = (0x0101_0101_0101_0101_0101_0101_0101_0101u128 * (k as u128 + 1)) ^ ((k as u128) << 100);
        }
        let saved = cpu.xmm;
        cpu.fpu.fcw = 0x27f;
        cpu.fpu.fsw = 0x0020;
        cpu.fpu.ftw = 0xfff0; // R0 and R1 valid
        cpu.fpu.regs[0] = 0x3fff_8000_0000_0000_0000; // 1.0
        cpu.fpu.regs[1] = 0; // +0: FXRSTOR tags it zero
        cpu.mxcsr = 0x1fa0;
        bus.ram[area as usize + 500] = 0x5a;
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.fxsave64(ptr(rbx))), NO_EXC);
        let r16 = |o: u64| bus.r64(area + o) & 0xffff;
        assert_eq!(r16(0), 0x27f);
        assert_eq!(r16(2), 0x20);
        assert_eq!(bus.ram[area as usize + 4], 0b11);
        assert_eq!(bus.r64(area + 24), 0xffff_0000_1fa0);
        assert_eq!(bus.r128(area + 32), 0x3fff_8000_0000_0000_0000, "ST0 = R0 (TOP 0)");
        for (k, v) in saved.iter().enumerate() {
            assert_eq!(bus.r128(area + 160 + 16 * k as u64), *v, "xmm{k}");
        }
        assert_eq!(bus.ram[area as usize + 500], 0x5a);
        cpu.xmm = [0; 16];
        cpu.fpu.fcw = 0x37f;
        cpu.fpu.fsw = 0;
        cpu.fpu.ftw = 0xffff;
        cpu.fpu.regs = [0; 8];
        cpu.mxcsr = 0x1f80;
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.fxrstor(ptr(rbx))), NO_EXC);
        assert_eq!(cpu.xmm, saved);
        assert_eq!((cpu.fpu.fcw, cpu.fpu.fsw, cpu.fpu.ftw, cpu.mxcsr), (0x27f, 0x20, 0xfff4, 0x1fa0));
        assert_eq!(cpu.fpu.regs[0], 0x3fff_8000_0000_0000_0000);
        // Misaligned area: #GP(0).
        cpu.regs[3] = area + 8;
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.fxsave(ptr(rbx))), GP as u64);
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.fxrstor(ptr(rbx))), GP as u64);
        // Reserved MXCSR bits in the image: #GP(0), nothing loaded.
        cpu.regs[3] = area;
        bus.w64(area + 24, 0xffff_0001_0000);
        cpu.xmm = [0; 16];
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.fxrstor64(ptr(rbx))), GP as u64);
        assert_eq!(cpu.xmm, [0; 16]);
        assert_eq!(cpu.mxcsr, 0x1fa0);
    }

    #[test]
    fn fxsave_compat_mode_saves_xmm0_7() {
        let (mut cpu, mut bus) = machine();
        cpu.seg[sreg::CS].attr = 0xc9b; // 32-bit code in IA-32e mode
        let area = DATA + 0x400;
        cpu.regs[3] = area;
        for k in 0..16 {
            cpu.xmm[k] = k as u128 + 1;
        }
        for b in &mut bus.ram[area as usize..area as usize + 512] {
            *b = 0xcc;
        }
        let mut a = CodeAssembler::new(32).unwrap();
        a.fxsave(ptr(ebx)).unwrap();
        let bytes = a.assemble(CODE).unwrap();
        assert_eq!(run_bytes(&mut cpu, &mut bus, &bytes), NO_EXC);
        for k in 0..8 {
            assert_eq!(bus.r128(area + 160 + 16 * k), k as u128 + 1);
        }
        assert!(bus.ram[area as usize + 288..area as usize + 512].iter().all(|&b| b == 0xcc));
    }

    #[test]
    fn an_unmasked_float_exception_is_xm_and_leaves_the_destination() {
        use crate::exception::XM;
        let (mut cpu, mut bus) = machine();
        cpu.cr4 |= crate::cr::CR4_OSXMMEXCPT;
        let one = 0x3f80_0000u128;
        cpu.xmm[0] = one;
        cpu.xmm[1] = 0;
        // Masked: 1/0 = +inf, ZE recorded.
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.divss(xmm0, xmm1)), NO_EXC);
        assert_eq!((cpu.xmm[0] as u32, cpu.mxcsr & 0x3f), (0x7f80_0000, 0x04));
        // ZE unmasked: #XM, the destination kept, the flag set.
        cpu.xmm[0] = one;
        cpu.mxcsr = 0x1f80 & !(0x04 << 7);
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.divss(xmm0, xmm1)), XM as u64);
        assert_eq!((cpu.xmm[0], cpu.mxcsr & 0x3f), (one, 0x04));
        // Without CR4.OSXMMEXCPT the same is #UD.
        cpu.cr4 &= !crate::cr::CR4_OSXMMEXCPT;
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.divss(xmm0, xmm1)), UD as u64);
    }

    #[test]
    fn unimplemented_forms_are_ud() {
        let (mut cpu, mut bus) = machine();
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.rcpps(xmm0, xmm1)), UD as u64);
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.cvtpi2ps(xmm0, mm1)), UD as u64);
        assert_eq!(cpu.unimplemented.get("rcpps"), Some(&1));
        assert_eq!(cpu.unimplemented.get("cvtpi2ps"), Some(&1));
        // MMX forms are implemented (exec/mmx.rs).
        assert_eq!(run_asm(&mut cpu, &mut bus, |a| a.paddb(mm0, mm1)), NO_EXC);
    }
}
