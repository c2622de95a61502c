//! Integer arithmetic and logic: ADD..CMP, TEST, INC/DEC/NEG/NOT, MUL/IMUL/DIV/IDIV, shifts and
//! rotates, bit tests and scans, BCD adjustments, sign extensions, XADD/CMPXCHG, flag
//! instructions. Flag results follow the Intel SDM vol. 2 entry of each instruction.

use crate::bus::Bus;
use crate::decode::Insn;
use crate::exception::{Exc, DE};
use crate::flags::{bits, mask, sign_bit, FlagOp};
use crate::regs::{RAX, RDX};
use crate::{undefined, Cpu};
use iced_x86::{Mnemonic, OpKind};

type R = Result<(), Exc>;

/// ADD (the ALU operation numbers follow the opcode's reg field: /0../7).
pub const ADD: u8 = 0;
/// OR.
pub const OR: u8 = 1;
/// ADC.
pub const ADC: u8 = 2;
/// SBB.
pub const SBB: u8 = 3;
/// AND.
pub const AND: u8 = 4;
/// SUB.
pub const SUB: u8 = 5;
/// XOR.
pub const XOR: u8 = 6;
/// CMP: SUB without the write-back.
pub const CMP: u8 = 7;
/// TEST: AND without the write-back.
pub const TEST: u8 = 8;

/// Computes a two-operand ALU operation and records its flags.
#[inline(always)]
fn alu_compute(cpu: &mut Cpu, op: u8, sz: u8, a: u64, b: u64) -> u64 {
    let m = mask(sz);
    match op {
        ADD => {
            let r = a.wrapping_add(b) & m;
            cpu.flags.set_lazy(FlagOp::Add, sz, a, b, r);
            r
        }
        ADC => {
            let c = cpu.flags.cf();
            let r = a.wrapping_add(b).wrapping_add(c as u64) & m;
            cpu.flags.set_lazy(if c { FlagOp::Adc1 } else { FlagOp::Add }, sz, a, b, r);
            r
        }
        SUB | CMP => {
            let r = a.wrapping_sub(b) & m;
            cpu.flags.set_lazy(FlagOp::Sub, sz, a, b, r);
            r
        }
        SBB => {
            let c = cpu.flags.cf();
            let r = a.wrapping_sub(b).wrapping_sub(c as u64) & m;
            cpu.flags.set_lazy(if c { FlagOp::Sbb1 } else { FlagOp::Sub }, sz, a, b, r);
            r
        }
        AND | TEST => {
            let r = a & b;
            cpu.flags.set_lazy(FlagOp::Logic, sz, a, b, r);
            r
        }
        OR => {
            let r = a | b;
            cpu.flags.set_lazy(FlagOp::Logic, sz, a, b, r);
            r
        }
        _ => {
            let r = a ^ b;
            cpu.flags.set_lazy(FlagOp::Logic, sz, a, b, r);
            r
        }
    }
}

/// ADD/OR/ADC/SBB/AND/SUB/XOR/CMP/TEST, any operand form.
pub fn alu<const OP: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = d.osize;
    let a = cpu.read_op(bus, d, 0, sz)?;
    let b = cpu.read_op(bus, d, 1, sz)?;
    let r = alu_compute(cpu, OP, sz, a, b);
    if OP != CMP && OP != TEST {
        cpu.write_op(bus, d, 0, sz, r)?;
    }
    Ok(())
}

/// The register-register form, without operand-kind dispatch.
pub fn alu_rr<const OP: u8>(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = d.osize;
    let a = cpu.get_r(d.r0);
    let b = cpu.get_r(d.r1);
    let r = alu_compute(cpu, OP, sz, a, b);
    if OP != CMP && OP != TEST {
        cpu.set_r(d.r0, r);
    }
    Ok(())
}

/// The register-immediate form.
pub fn alu_ri<const OP: u8>(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = d.osize;
    let a = cpu.get_r(d.r0);
    let b = d.imm & mask(sz);
    let r = alu_compute(cpu, OP, sz, a, b);
    if OP != CMP && OP != TEST {
        cpu.set_r(d.r0, r);
    }
    Ok(())
}

/// INC: adds one, keeping CF.
pub fn inc(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = d.osize;
    let a = cpu.read_op(bus, d, 0, sz)?;
    let r = a.wrapping_add(1) & mask(sz);
    cpu.write_op(bus, d, 0, sz, r)?;
    cpu.flags.set_lazy(FlagOp::Inc, sz, a, 1, r);
    Ok(())
}

/// DEC: subtracts one, keeping CF.
pub fn dec(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = d.osize;
    let a = cpu.read_op(bus, d, 0, sz)?;
    let r = a.wrapping_sub(1) & mask(sz);
    cpu.write_op(bus, d, 0, sz, r)?;
    cpu.flags.set_lazy(FlagOp::Dec, sz, a, 1, r);
    Ok(())
}

/// ALU op on full-width registers of SZ (2, 4 or 8) bytes: no register-kind dispatch at all.
pub fn alu_rr_sized<const OP: u8, const SZ: u8>(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    let (x, y) = ((d.r0.0 & 15) as usize, (d.r1.0 & 15) as usize);
    let a = cpu.regs[x] & mask(SZ);
    let b = cpu.regs[y] & mask(SZ);
    let r = alu_compute(cpu, OP, SZ, a, b);
    if OP != CMP && OP != TEST {
        cpu.set_gpr(x, SZ, r);
    }
    Ok(())
}

/// ALU op register-immediate on a full-width register of SZ bytes.
pub fn alu_ri_sized<const OP: u8, const SZ: u8>(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    let x = (d.r0.0 & 15) as usize;
    let a = cpu.regs[x] & mask(SZ);
    let r = alu_compute(cpu, OP, SZ, a, d.imm & mask(SZ));
    if OP != CMP && OP != TEST {
        cpu.set_gpr(x, SZ, r);
    }
    Ok(())
}

/// INC/DEC of a full-width register of SZ bytes.
pub fn incdec_r_sized<const DEC: bool, const SZ: u8>(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    let x = (d.r0.0 & 15) as usize;
    let a = cpu.regs[x] & mask(SZ);
    let res = if DEC { a.wrapping_sub(1) } else { a.wrapping_add(1) } & mask(SZ);
    cpu.set_gpr(x, SZ, res);
    cpu.flags.set_lazy(if DEC { FlagOp::Dec } else { FlagOp::Inc }, SZ, a, 1, res);
    Ok(())
}

/// INC/DEC of a register, without operand-kind dispatch.
pub fn incdec_r<const DEC: bool>(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = d.osize;
    let a = cpu.get_r(d.r0);
    let res = if DEC { a.wrapping_sub(1) } else { a.wrapping_add(1) } & mask(sz);
    cpu.set_r(d.r0, res);
    cpu.flags.set_lazy(if DEC { FlagOp::Dec } else { FlagOp::Inc }, sz, a, 1, res);
    Ok(())
}

/// NEG: two's-complement negation.
pub fn neg(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = d.osize;
    let a = cpu.read_op(bus, d, 0, sz)?;
    let r = 0u64.wrapping_sub(a) & mask(sz);
    cpu.write_op(bus, d, 0, sz, r)?;
    cpu.flags.set_lazy(FlagOp::Sub, sz, 0, a, r);
    Ok(())
}

/// NOT: one's complement; no flags change.
pub fn not(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = d.osize;
    let a = cpu.read_op(bus, d, 0, sz)?;
    cpu.write_op(bus, d, 0, sz, !a & mask(sz))
}

/// Sets SF, ZF and PF from a result and CF/OF as given; AF cleared.
fn set_szp(cpu: &mut Cpu, sz: u8, r: u64, cf: bool, of: bool) {
    let mut f = 0;
    if cf {
        f |= bits::CF;
    }
    if of {
        f |= bits::OF;
    }
    if r & mask(sz) == 0 {
        f |= bits::ZF;
    }
    if r & sign_bit(sz) != 0 {
        f |= bits::SF;
    }
    if (r as u8).count_ones().is_multiple_of(2) {
        f |= bits::PF;
    }
    cpu.flags.set_arith(f);
}

/// MUL/IMUL flags: CF = OF = the product did not fit the low half; SF, PF and AF from the low
/// half as [`set_szp`] gives them, ZF as the CPU model says ([`undefined::mul_zf`]).
fn set_mul_flags(cpu: &mut Cpu, sz: u8, lo: u64, overflow: bool) {
    set_szp(cpu, sz, lo, overflow, overflow);
    let zf = undefined::mul_zf(cpu.model.vendor, lo & mask(sz) == 0);
    cpu.flags.set_bit(bits::ZF, zf);
}

/// Reads the accumulator pair for MUL/DIV of `sz` bytes: (low, high).
fn acc_pair(cpu: &Cpu, sz: u8) -> (u64, u64) {
    match sz {
        1 => (cpu.regs[RAX] & 0xff, (cpu.regs[RAX] >> 8) & 0xff),
        _ => (cpu.regs[RAX] & mask(sz), cpu.regs[RDX] & mask(sz)),
    }
}

fn set_acc_pair(cpu: &mut Cpu, sz: u8, lo: u64, hi: u64) {
    if sz == 1 {
        cpu.set_gpr(RAX, 2, (lo & 0xff) | ((hi & 0xff) << 8));
    } else {
        cpu.set_gpr(RAX, sz, lo);
        cpu.set_gpr(RDX, sz, hi);
    }
}

fn sext(v: u64, sz: u8) -> i64 {
    let sh = 64 - sz as u32 * 8;
    ((v << sh) as i64) >> sh
}

/// MUL: unsigned multiply of the accumulator into (E/R)DX:(E/R)AX (AX for bytes).
pub fn mul(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = d.osize;
    let src = cpu.read_op(bus, d, 0, sz)?;
    let (a, _) = acc_pair(cpu, sz);
    let p = a as u128 * src as u128;
    let bitsz = sz as u32 * 8;
    let lo = (p as u64) & mask(sz);
    let hi = ((p >> bitsz) as u64) & mask(sz);
    set_acc_pair(cpu, sz, lo, hi);
    set_mul_flags(cpu, sz, lo, hi != 0);
    Ok(())
}

/// IMUL, all three forms: signed multiply, CF and OF set when the result does not fit.
pub fn imul(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = d.osize;
    let bitsz = sz as u32 * 8;
    match d.i.op_count() {
        1 => {
            let src = sext(cpu.read_op(bus, d, 0, sz)?, sz) as i128;
            let (a, _) = acc_pair(cpu, sz);
            let p = sext(a, sz) as i128 * src;
            let lo = (p as u64) & mask(sz);
            let hi = ((p >> bitsz) as u64) & mask(sz);
            set_acc_pair(cpu, sz, lo, hi);
            let ovf = sext(lo, sz) as i128 != p;
            set_mul_flags(cpu, sz, lo, ovf);
        }
        n => {
            let (x, y) = if n == 2 {
                (cpu.read_op(bus, d, 0, sz)?, cpu.read_op(bus, d, 1, sz)?)
            } else {
                (cpu.read_op(bus, d, 1, sz)?, cpu.read_op(bus, d, 2, sz)?)
            };
            let p = sext(x, sz) as i128 * sext(y, sz) as i128;
            let lo = (p as u64) & mask(sz);
            cpu.set_reg(d.i.op0_register(), lo);
            let ovf = sext(lo, sz) as i128 != p;
            set_mul_flags(cpu, sz, lo, ovf);
        }
    }
    Ok(())
}

/// DIV: unsigned divide of the accumulator pair; #DE on zero or overflow.
pub fn div(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = d.osize;
    let src = cpu.read_op(bus, d, 0, sz)? as u128;
    if src == 0 {
        return Err(Exc::new(DE));
    }
    let (lo, hi) = acc_pair(cpu, sz);
    let n = ((hi as u128) << (sz as u32 * 8)) | lo as u128;
    let q = n / src;
    if q > mask(sz) as u128 {
        return Err(Exc::new(DE));
    }
    set_acc_pair(cpu, sz, q as u64, (n % src) as u64);
    Ok(())
}

/// IDIV: signed divide of the accumulator pair; #DE on zero or overflow.
pub fn idiv(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = d.osize;
    let bitsz = sz as u32 * 8;
    let src = sext(cpu.read_op(bus, d, 0, sz)?, sz) as i128;
    if src == 0 {
        return Err(Exc::new(DE));
    }
    let (lo, hi) = acc_pair(cpu, sz);
    let n = (((hi as u128) << bitsz) | lo as u128) as i128;
    // Sign-extend the 2*bitsz-bit dividend.
    let n = (n << (128 - 2 * bitsz)) >> (128 - 2 * bitsz);
    if n == i128::MIN && src == -1 {
        return Err(Exc::new(DE));
    }
    let q = n / src;
    let r = n % src;
    let min = -(1i128 << (bitsz - 1));
    let max = (1i128 << (bitsz - 1)) - 1;
    if q < min || q > max {
        return Err(Exc::new(DE));
    }
    set_acc_pair(cpu, sz, q as u64 & mask(sz), r as u64 & mask(sz));
    Ok(())
}

/// Shift and rotate count from operand 1 (1, CL or imm8), masked as the SDM says.
fn shift_count(cpu: &mut Cpu, d: &Insn, sz: u8, n: u32) -> u32 {
    let raw = match d.i.op_kind(n) {
        OpKind::Register => cpu.reg(d.i.op_register(n)),
        _ => d.i.immediate(n),
    } as u32;
    if sz == 8 {
        raw & 63
    } else {
        raw & 31
    }
}

/// SHL/SAL, SHR, SAR, ROL, ROR, RCL, RCR.
pub fn shift(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = d.osize;
    let c = shift_count(cpu, d, sz, 1);
    if c == 0 {
        // Operand is still read (and a memory fault still happens); a 32-bit register is
        // still written, so its upper half is cleared.
        let a = cpu.read_op(bus, d, 0, sz)?;
        if d.i.op0_kind() == OpKind::Register {
            cpu.set_reg(d.i.op0_register(), a);
        }
        return Ok(());
    }
    let a = cpu.read_op(bus, d, 0, sz)?;
    let m = mask(sz);
    let nb = sz as u32 * 8;
    let msb = |v: u64| v & sign_bit(sz) != 0;
    let old = cpu.flags.get();
    // OF as the first one-bit step gives it (what Intel reports for every count, and the SDM's
    // formula for a count of 1): `of` below is the formula applied to the final result.
    let below_msb = |v: u64| v & (sign_bit(sz) >> 1) != 0;
    let first_step_of = match d.i.mnemonic() {
        Mnemonic::Shl | Mnemonic::Sal | Mnemonic::Rol | Mnemonic::Rcl => msb(a) ^ below_msb(a),
        Mnemonic::Ror => msb(a) ^ (a & 1 != 0),
        _ => false,
    };
    let (r, cf, of) = match d.i.mnemonic() {
        Mnemonic::Shl | Mnemonic::Sal => {
            let wide = (a as u128) << c;
            let r = wide as u64 & m;
            let cf = (wide >> nb) & 1 != 0;
            (r, cf, msb(r) ^ cf)
        }
        Mnemonic::Shr => {
            let r = if c >= 64 { 0 } else { a >> c };
            let cf = if c > 64 { false } else { (a >> (c - 1)) & 1 != 0 };
            (r, cf, msb(a))
        }
        Mnemonic::Sar => {
            let s = sext(a, sz);
            let r = (s >> c.min(63)) as u64 & m;
            let cf = (s >> (c - 1).min(63)) & 1 != 0;
            (r, cf, false)
        }
        Mnemonic::Rol => {
            let k = c % nb;
            let r = if k == 0 { a } else { ((a << k) | (a >> (nb - k))) & m };
            let cf = r & 1 != 0;
            (r, cf, msb(r) ^ cf)
        }
        Mnemonic::Ror => {
            let k = c % nb;
            let r = if k == 0 { a } else { ((a >> k) | (a << (nb - k))) & m };
            let cf = msb(r);
            (r, cf, msb(r) ^ (r & (sign_bit(sz) >> 1) != 0))
        }
        Mnemonic::Rcl => {
            let k = c % (nb + 1);
            let mut r = a;
            let mut cf = old & bits::CF != 0;
            for _ in 0..k {
                let out = msb(r);
                r = ((r << 1) | cf as u64) & m;
                cf = out;
            }
            if k == 0 {
                cpu.write_op(bus, d, 0, sz, r)?;
                return Ok(());
            }
            (r, cf, msb(r) ^ cf)
        }
        _ => {
            // RCR
            let k = c % (nb + 1);
            let mut r = a;
            let cf0 = old & bits::CF != 0;
            let mut cf = cf0;
            for _ in 0..k {
                let out = r & 1 != 0;
                r = (r >> 1) | if cf { sign_bit(sz) } else { 0 };
                cf = out;
            }
            if k == 0 {
                cpu.write_op(bus, d, 0, sz, r)?;
                return Ok(());
            }
            (r, cf, msb(a) ^ cf0)
        }
    };
    cpu.write_op(bus, d, 0, sz, r)?;
    let rol_or_ror = matches!(d.i.mnemonic(), Mnemonic::Rol | Mnemonic::Ror);
    let of = match undefined::multi_bit_of(cpu.model.vendor, rol_or_ror, d.i.op0_kind() == OpKind::Register && d.i.op1_kind() != OpKind::Register) {
        _ if c == 1 => of,
        undefined::MultiBitOf::FirstStep if matches!(d.i.mnemonic(), Mnemonic::Shl | Mnemonic::Sal | Mnemonic::Rol | Mnemonic::Ror | Mnemonic::Rcl) => first_step_of,
        undefined::MultiBitOf::Unchanged => old & bits::OF != 0,
        _ => of,
    };
    match d.i.mnemonic() {
        Mnemonic::Rol | Mnemonic::Ror | Mnemonic::Rcl | Mnemonic::Rcr => {
            // Rotates change only CF and OF.
            let mut f = old & bits::ARITH & !(bits::CF | bits::OF);
            if cf {
                f |= bits::CF;
            }
            if of {
                f |= bits::OF;
            }
            cpu.flags.set_arith(f);
        }
        _ => set_szp(cpu, sz, r, cf, of),
    }
    Ok(())
}

/// SHLD and SHRD.
pub fn shift_double(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = d.osize;
    let c = shift_count(cpu, d, sz, 2);
    let a = cpu.read_op(bus, d, 0, sz)?;
    if c == 0 {
        // A 32-bit register destination is still written (upper half cleared).
        if d.i.op0_kind() == OpKind::Register {
            cpu.set_reg(d.i.op0_register(), a);
        }
        return Ok(());
    }
    let b = cpu.read_op(bus, d, 1, sz)?;
    let nb = sz as u32 * 8;
    let m = mask(sz);
    let left = d.i.mnemonic() == Mnemonic::Shld;
    let (r, cf) = if c > nb {
        // Only a 16-bit operand can be shifted by more than its width: the SDM leaves the
        // result undefined, the CPU model answers.
        undefined::double_shift16_over(cpu.model.vendor, left, a, b, c)
    } else if left {
        let wide = ((a as u128) << nb) | b as u128;
        let r = ((wide << c) >> nb) as u64 & m;
        (r, (a >> (nb - c)) & 1 != 0)
    } else {
        let wide = ((b as u128) << nb) | a as u128;
        ((wide >> c) as u64 & m, (wide >> (c - 1)) & 1 != 0)
    };
    cpu.write_op(bus, d, 0, sz, r)?;
    let of = if c > 1 && undefined::multi_bit_of(cpu.model.vendor, false, false) == undefined::MultiBitOf::FirstStep {
        // The first one-bit step: the sign of the destination against the bit shifted into it.
        let incoming = if left { a & (sign_bit(sz) >> 1) != 0 } else { b & 1 != 0 };
        (a & sign_bit(sz) != 0) ^ incoming
    } else {
        (r ^ a) & sign_bit(sz) != 0
    };
    set_szp(cpu, sz, r, cf, of);
    Ok(())
}

/// BT, BTS, BTR, BTC.
pub fn bit_test(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = d.osize;
    let nb = sz as u64 * 8;
    let mn = d.i.mnemonic();
    let (val, bit, mem_lin) = if d.i.op0_kind() == OpKind::Memory && d.i.op1_kind() == OpKind::Register {
        // The bit offset is a signed index that can reach outside the operand.
        let off = sext(cpu.reg(d.i.op1_register()), sz);
        let byte_off = (off >> (if sz == 8 { 6 } else if sz == 4 { 5 } else { 4 })) * sz as i64;
        let ea = cpu.ea(d).wrapping_add(byte_off as u64);
        let ea = match d.asize {
            2 => ea & 0xffff,
            4 => ea & 0xffff_ffff,
            _ => ea,
        };
        let lin = cpu.seg_linear(cpu.mem_seg(d), ea, sz, mn != Mnemonic::Bt)?;
        let v = cpu.read_lin(bus, lin, sz)?;
        (v, (off as u64) & (nb - 1), Some(lin))
    } else {
        let v = cpu.read_op(bus, d, 0, sz)?;
        let b = cpu.read_op(bus, d, 1, sz)? & (nb - 1);
        (v, b, None)
    };
    let cf = (val >> bit) & 1 != 0;
    let nv = match mn {
        Mnemonic::Bts => val | (1 << bit),
        Mnemonic::Btr => val & !(1 << bit),
        Mnemonic::Btc => val ^ (1 << bit),
        _ => val,
    };
    if mn != Mnemonic::Bt {
        match mem_lin {
            Some(lin) => cpu.write_lin(bus, lin, sz, nv)?,
            None => cpu.write_op(bus, d, 0, sz, nv)?,
        }
    }
    cpu.flags.set_bit(bits::CF, cf);
    Ok(())
}

/// BSF, BSR, TZCNT, LZCNT, POPCNT.
pub fn bit_scan(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = d.osize;
    let src = cpu.read_op(bus, d, 1, sz)?;
    let nb = sz as u32 * 8;
    let old = cpu.flags.get() & bits::ARITH;
    match d.i.mnemonic() {
        Mnemonic::Bsf | Mnemonic::Bsr => {
            // A zero source leaves the destination unchanged, all 64 bits of it (AMD APM vol. 3
            // BSF/BSR; the SDM says undefined, Intel hardware leaves it too).
            let mut index = 0;
            if src != 0 {
                index = if d.i.mnemonic() == Mnemonic::Bsf { src.trailing_zeros() } else { 63 - src.leading_zeros() } as u64;
                cpu.set_reg(d.i.op0_register(), index);
            }
            cpu.flags.set_arith(undefined::bit_scan_flags(cpu.model.vendor, old, src == 0, index));
        }
        Mnemonic::Tzcnt | Mnemonic::Lzcnt => {
            let r = if d.i.mnemonic() == Mnemonic::Tzcnt {
                if src == 0 { nb } else { src.trailing_zeros() }
            } else {
                src.leading_zeros() - (64 - nb)
            };
            cpu.set_reg(d.i.op0_register(), r as u64);
            let mut f = undefined::count_zeros_kept_flags(cpu.model.vendor, old);
            if src == 0 {
                f |= bits::CF;
            }
            if r == 0 {
                f |= bits::ZF;
            }
            cpu.flags.set_arith(f);
        }
        _ => {
            let r = src.count_ones() as u64;
            cpu.set_reg(d.i.op0_register(), r);
            cpu.flags.set_arith(if src == 0 { bits::ZF } else { 0 });
        }
    }
    Ok(())
}

/// DAA, DAS, AAA, AAS, AAM, AAD (SDM vol. 2 pseudocode).
pub fn bcd(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    let f = cpu.flags.get();
    let mut cf = f & bits::CF != 0;
    let mut af = f & bits::AF != 0;
    let al = cpu.regs[RAX] & 0xff;
    let of;
    match d.i.mnemonic() {
        Mnemonic::Daa | Mnemonic::Das => {
            let old_al = al;
            let old_cf = cf;
            let mut al = al;
            let das = d.i.mnemonic() == Mnemonic::Das;
            cf = false;
            if al & 0xf > 9 || af {
                if das {
                    cf = old_cf || al < 6;
                    al = al.wrapping_sub(6) & 0xff;
                } else {
                    cf = old_cf || al + 6 > 0xff;
                    al = (al + 6) & 0xff;
                }
                af = true;
            } else {
                af = false;
            }
            if old_al > 0x99 || old_cf {
                al = if das { al.wrapping_sub(0x60) & 0xff } else { (al + 0x60) & 0xff };
                cf = true;
            }
            let sign_flip = if !das { (old_al & 0x80 == 0) && (al & 0x80 != 0) } else { (old_al & 0x80 != 0) && (al & 0x80 == 0) };
            of = undefined::decimal_adjust_of(cpu.model.vendor, sign_flip);
            cpu.set_gpr(RAX, 1, al);
            let mut nf = 0;
            if cf {
                nf |= bits::CF;
            }
            if af {
                nf |= bits::AF;
            }
            if of {
                nf |= bits::OF;
            }
            if al == 0 {
                nf |= bits::ZF;
            }
            if al & 0x80 != 0 {
                nf |= bits::SF;
            }
            if (al as u8).count_ones().is_multiple_of(2) {
                nf |= bits::PF;
            }
            cpu.flags.set_arith(nf);
        }
        Mnemonic::Aaa | Mnemonic::Aas => {
            let mut ax = cpu.regs[RAX] & 0xffff;
            if al & 0xf > 9 || af {
                // The SDM's AX + 106h and AX - 6 then AH - 1: the borrow of AL - 6 reaches AH
                // (AAS of 0x0205 with AF gives 0x000F, as hardware does).
                if d.i.mnemonic() == Mnemonic::Aaa {
                    ax = ax.wrapping_add(0x106);
                } else {
                    ax = ax.wrapping_sub(6).wrapping_sub(0x100);
                }
                cf = true;
            } else {
                cf = false;
            }
            ax &= 0xff0f;
            cpu.set_gpr(RAX, 2, ax);
            let mut nf = undefined::ascii_adjust_flags(cpu.model.vendor, f, ax & 0xff);
            if cf {
                nf |= bits::CF | bits::AF;
            }
            cpu.flags.set_arith(nf);
        }
        Mnemonic::Aam => {
            let base = d.i.immediate(0) & 0xff;
            if base == 0 {
                return Err(Exc::new(DE));
            }
            let ah = al / base;
            let nal = al % base;
            cpu.set_gpr(RAX, 2, (ah << 8) | nal);
            set_szp(cpu, 1, nal, false, false);
        }
        _ => {
            // AAD
            let base = d.i.immediate(0) & 0xff;
            let ah = (cpu.regs[RAX] >> 8) & 0xff;
            let nal = (al + ah * base) & 0xff;
            cpu.set_gpr(RAX, 2, nal);
            set_szp(cpu, 1, nal, false, false);
            let extra = undefined::aad_flags(cpu.model.vendor, al, ah * base);
            cpu.flags.set_arith((cpu.flags.get() & bits::ARITH) | extra);
        }
    }
    Ok(())
}

/// CBW/CWDE/CDQE and CWD/CDQ/CQO.
pub fn sign_extend(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    let a = cpu.regs[RAX];
    match d.i.mnemonic() {
        Mnemonic::Cbw => cpu.set_gpr(RAX, 2, sext(a, 1) as u64),
        Mnemonic::Cwde => cpu.set_gpr(RAX, 4, sext(a, 2) as u64),
        Mnemonic::Cdqe => cpu.set_gpr(RAX, 8, sext(a, 4) as u64),
        Mnemonic::Cwd => cpu.set_gpr(RDX, 2, if a & 0x8000 != 0 { 0xffff } else { 0 }),
        Mnemonic::Cdq => cpu.set_gpr(RDX, 4, if a & 0x8000_0000 != 0 { 0xffff_ffff } else { 0 }),
        _ => cpu.set_gpr(RDX, 8, if a & (1 << 63) != 0 { u64::MAX } else { 0 }),
    }
    Ok(())
}

/// XADD: exchanges and adds.
pub fn xadd(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = d.osize;
    let a = cpu.read_op(bus, d, 0, sz)?;
    let b = cpu.reg(d.i.op1_register());
    let r = a.wrapping_add(b) & mask(sz);
    // The destination is written last: `xadd r, r` leaves the sum.
    if d.i.op0_kind() == OpKind::Memory {
        cpu.write_op(bus, d, 0, sz, r)?;
        cpu.set_reg(d.i.op1_register(), a);
    } else {
        cpu.set_reg(d.i.op1_register(), a);
        cpu.set_reg(d.i.op0_register(), r);
    }
    cpu.flags.set_lazy(FlagOp::Add, sz, a, b, r);
    Ok(())
}

/// CMPXCHG: compares with the accumulator and stores the source on equality, else loads the
/// destination into the accumulator.
pub fn cmpxchg(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = d.osize;
    let dst = cpu.read_op(bus, d, 0, sz)?;
    let acc = cpu.regs[RAX] & mask(sz);
    let r = acc.wrapping_sub(dst) & mask(sz);
    if acc == dst {
        let src = cpu.reg(d.i.op1_register());
        cpu.write_op(bus, d, 0, sz, src)?;
    } else {
        if d.i.op0_kind() == OpKind::Memory {
            cpu.write_op(bus, d, 0, sz, dst)?;
        }
        cpu.set_gpr(RAX, sz, dst);
    }
    cpu.flags.set_lazy(FlagOp::Sub, sz, acc, dst, r);
    Ok(())
}

/// CMPXCHG8B and CMPXCHG16B.
pub fn cmpxchg_wide(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    if d.i.op0_kind() != OpKind::Memory {
        return Err(Exc::ud());
    }
    let wide = d.i.mnemonic() == Mnemonic::Cmpxchg16b;
    let h = if wide { 8 } else { 4 };
    let lin = cpu.mem_linear(d, h * 2, true)?;
    if wide && lin & 15 != 0 {
        return Err(Exc::gp0());
    }
    let lo = cpu.read_lin(bus, lin, h)?;
    let hi = cpu.read_lin(bus, lin.wrapping_add(h as u64), h)?;
    let m = mask(h);
    let eq = lo == cpu.regs[RAX] & m && hi == cpu.regs[RDX] & m;
    if eq {
        cpu.write_lin(bus, lin, h, cpu.regs[crate::regs::RBX] & m)?;
        cpu.write_lin(bus, lin.wrapping_add(h as u64), h, cpu.regs[crate::regs::RCX] & m)?;
    } else {
        cpu.write_lin(bus, lin, h, lo)?;
        cpu.write_lin(bus, lin.wrapping_add(h as u64), h, hi)?;
        cpu.set_gpr(RAX, h, lo);
        cpu.set_gpr(RDX, h, hi);
    }
    cpu.flags.set_bit(bits::ZF, eq);
    Ok(())
}

/// CLC, STC, CMC, CLD, STD, LAHF, SAHF, SALC.
pub fn flag_op(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    match d.i.mnemonic() {
        Mnemonic::Clc => cpu.flags.set_bit(bits::CF, false),
        Mnemonic::Stc => cpu.flags.set_bit(bits::CF, true),
        Mnemonic::Cmc => {
            let c = cpu.flags.cf();
            cpu.flags.set_bit(bits::CF, !c)
        }
        Mnemonic::Cld => cpu.flags.set_bit(bits::DF, false),
        Mnemonic::Std => cpu.flags.set_bit(bits::DF, true),
        Mnemonic::Lahf => {
            let f = cpu.flags.get() & 0xd7 | 2;
            let x = &mut cpu.regs[RAX];
            *x = (*x & !0xff00) | (f << 8);
        }
        Mnemonic::Sahf => {
            let ah = (cpu.regs[RAX] >> 8) & 0xd5;
            let f = cpu.flags.get();
            cpu.flags.set_arith((f & bits::OF) | ah);
        }
        _ => {
            // SALC (undocumented): AL = CF ? 0xFF : 0.
            let v = if cpu.flags.cf() { 0xff } else { 0 };
            cpu.set_gpr(RAX, 1, v);
        }
    }
    Ok(())
}

/// SETcc.
pub fn setcc(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let cc = d.i.condition_code() as u8 - 1;
    let v = cpu.flags.cond(cc) as u64;
    cpu.write_op(bus, d, 0, 1, v)
}

/// CMOVcc. The 32-bit form zero-extends the destination even when the condition is false.
pub fn cmovcc(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = d.osize;
    let cc = d.i.condition_code() as u8 - 1;
    let src = cpu.read_op(bus, d, 1, sz)?;
    let v = if cpu.flags.cond(cc) { src } else { cpu.reg(d.i.op0_register()) };
    cpu.set_reg(d.i.op0_register(), v);
    Ok(())
}

/// BSWAP: reverses the register's byte order.
pub fn bswap(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    let r = d.i.op0_register();
    let v = cpu.reg(r);
    let nv = match d.osize {
        8 => v.swap_bytes(),
        4 => (v as u32).swap_bytes() as u64,
        _ => 0, // BSWAP r16 is undefined; hardware gives zero.
    };
    cpu.set_reg(r, nv);
    Ok(())
}
