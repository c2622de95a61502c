//! SSE/SSE2 floating point: the packed and scalar arithmetic on single and double precision
//! (ADD/SUB/MUL/DIV/SQRT/MIN/MAX), the compares (CMPccPS/SS/PD/SD, COMIS/UCOMIS into EFLAGS)
//! and the conversions between the two precisions and to and from integers, on
//! `rustc_apfloat`'s IEEE formats, with MXCSR's rounding control, DAZ and FTZ, the sticky flags
//! and #XM for an unmasked exception (SDM vol. 1, 11.5; vol. 2, each instruction). RCPPS and
//! RSQRTPS, whose approximations are the processor's own tables, are not implemented.
//!
//! NaNs follow the SSE column of SDM vol. 1, table 4-7: the first source operand's NaN wins
//! (made quiet), else the second's; an invalid operation gives the default QNaN (negative, the
//! top fraction bit set). MIN/MAX return the second operand when either is a NaN or both are
//! zeros.

use super::sse::{check, read_src, set_xmm, xmm};
use crate::bus::Bus;
use crate::cr::CR4_OSXMMEXCPT;
use crate::decode::Insn;
use crate::exception::{Exc, XM};
use crate::flags::bits;
use crate::Cpu;
use iced_x86::{Code, Mnemonic as M, OpKind};
use rustc_apfloat::ieee::{DoubleS, IeeeFloat, Semantics, SingleS};
use rustc_apfloat::{Float, FloatConvert, Round, Status, StatusAnd};

type R = Result<(), Exc>;

/// MXCSR bits (SDM vol. 1, 10.2.3).
mod mx {
    pub const IE: u32 = 1 << 0;
    pub const DE: u32 = 1 << 1;
    pub const ZE: u32 = 1 << 2;
    pub const OE: u32 = 1 << 3;
    pub const UE: u32 = 1 << 4;
    pub const PE: u32 = 1 << 5;
    pub const DAZ: u32 = 1 << 6;
    pub const MASK_SHIFT: u32 = 7;
    pub const RC_SHIFT: u32 = 13;
    pub const FTZ: u32 = 1 << 15;
}

/// One floating-point format: its width and the soft-float semantics.
trait Fmt: Copy {
    type S: Semantics;
    const BITS: u32;
    fn from(bits: u64) -> IeeeFloat<Self::S> {
        IeeeFloat::<Self::S>::from_bits(bits as u128)
    }
    fn to(f: IeeeFloat<Self::S>) -> u64 {
        f.to_bits() as u64
    }
}

#[derive(Clone, Copy)]
struct S32;
impl Fmt for S32 {
    type S = SingleS;
    const BITS: u32 = 32;
}
#[derive(Clone, Copy)]
struct D64;
impl Fmt for D64 {
    type S = DoubleS;
    const BITS: u32 = 64;
}

/// The soft-float type of format `T`.
type FloatOf<T> = IeeeFloat<<T as Fmt>::S>;

fn sign_bit<T: Fmt>() -> u64 {
    1 << (T::BITS - 1)
}
fn frac_bits<T: Fmt>() -> u32 {
    if T::BITS == 32 {
        23
    } else {
        52
    }
}
fn lane_mask<T: Fmt>() -> u64 {
    if T::BITS == 64 {
        u64::MAX
    } else {
        (1 << T::BITS) - 1
    }
}
fn exp_of<T: Fmt>(v: u64) -> u64 {
    (v >> frac_bits::<T>()) & ((1 << (T::BITS - 1 - frac_bits::<T>())) - 1)
}
fn is_nan<T: Fmt>(v: u64) -> bool {
    T::from(v).is_nan()
}
fn is_snan<T: Fmt>(v: u64) -> bool {
    T::from(v).is_signaling()
}
fn quiet<T: Fmt>(v: u64) -> u64 {
    v | 1 << (frac_bits::<T>() - 1)
}
/// The default QNaN: negative, exponent all ones, the top fraction bit set.
fn default_nan<T: Fmt>() -> u64 {
    sign_bit::<T>() | ((lane_mask::<T>() >> 1) & !((1u64 << (frac_bits::<T>() - 1)) - 1))
}
fn is_denormal<T: Fmt>(v: u64) -> bool {
    exp_of::<T>(v) == 0 && v & ((1 << frac_bits::<T>()) - 1) != 0
}

/// The environment MXCSR gives.
#[derive(Clone, Copy)]
struct Env {
    round: Round,
    daz: bool,
    ftz: bool,
}

impl Env {
    fn of(mxcsr: u32) -> Self {
        let round = match (mxcsr >> mx::RC_SHIFT) & 3 {
            0 => Round::NearestTiesToEven,
            1 => Round::TowardNegative,
            2 => Round::TowardPositive,
            _ => Round::TowardZero,
        };
        Env { round, daz: mxcsr & mx::DAZ != 0, ftz: mxcsr & mx::FTZ != 0 }
    }
}

/// An input operand after DAZ, and the DE flag it raises.
fn input<T: Fmt>(v: u64, env: Env) -> (u64, u32) {
    if is_denormal::<T>(v) {
        if env.daz {
            return (v & sign_bit::<T>(), 0);
        }
        return (v, mx::DE);
    }
    (v, 0)
}

fn flags_of(s: Status) -> u32 {
    let mut f = 0;
    if s.contains(Status::INVALID_OP) {
        f |= mx::IE;
    }
    if s.contains(Status::DIV_BY_ZERO) {
        f |= mx::ZE;
    }
    if s.contains(Status::OVERFLOW) {
        f |= mx::OE;
    }
    if s.contains(Status::UNDERFLOW) {
        f |= mx::UE;
    }
    if s.contains(Status::INEXACT) {
        f |= mx::PE;
    }
    f
}

/// A result after FTZ (an underflowed result becomes a zero of its sign, with UE and PE; the
/// flush applies when underflow is masked, which the caller checks), and the overflow the
/// soft-float does not report when the rounding mode gives the largest finite number.
fn output<T: Fmt>(r: StatusAnd<FloatOf<T>>, env: Env, ue_masked: bool, exact_big: bool) -> (u64, u32) {
    let mut f = flags_of(r.status);
    let mut v = T::to(r.value);
    if exact_big {
        f |= mx::OE | mx::PE;
    }
    // FTZ: a tiny result (denormal, or flushed by the rounding with the underflow flag) becomes
    // a zero of its sign with UE and PE when underflow is masked.
    if env.ftz && ue_masked && (r.value.is_denormal() || f & mx::UE != 0) {
        v &= sign_bit::<T>();
        f |= mx::UE | mx::PE;
    }
    (v, f)
}

/// The arithmetic operations.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Min,
    Max,
    Sqrt,
}

/// `a op b` in one lane: (result bits, MXCSR flags).
fn lane<T: Fmt>(op: Op, a: u64, b: u64, env: Env, ue_masked: bool) -> (u64, u32) {
    let (a, fa) = input::<T>(a & lane_mask::<T>(), env);
    let (b, fb) = input::<T>(b & lane_mask::<T>(), env);
    match op {
        Op::Min | Op::Max => {
            // The second operand when either is a NaN (IE: a signaling compare) or both are
            // zeros; DE for denormals.
            let (x, y) = (T::from(a), T::from(b));
            if x.is_nan() || y.is_nan() {
                return (b, mx::IE);
            }
            let pick_a = if op == Op::Min { x < y } else { x > y };
            return (if pick_a { a } else { b }, fa | fb);
        }
        Op::Sqrt => {
            if is_nan::<T>(b) {
                return (quiet::<T>(b), if is_snan::<T>(b) { mx::IE } else { 0 });
            }
            let x = T::from(b);
            if x.is_negative() && !x.is_zero() {
                return (default_nan::<T>(), mx::IE);
            }
            let r = sqrt::<T>(x, env.round);
            let (v, f) = output::<T>(r, env, ue_masked, false);
            return (v, f | fb);
        }
        _ => {}
    }
    if is_nan::<T>(a) || is_nan::<T>(b) {
        let ie = if is_snan::<T>(a) || is_snan::<T>(b) { mx::IE } else { 0 };
        let v = if is_nan::<T>(a) { quiet::<T>(a) } else { quiet::<T>(b) };
        return (v, ie);
    }
    let (x, y) = (T::from(a), T::from(b));
    let r = match op {
        Op::Add => x.add_r(y, env.round),
        Op::Sub => x.sub_r(y, env.round),
        Op::Mul => x.mul_r(y, env.round),
        _ => x.div_r(y, env.round),
    };
    if r.status.contains(Status::INVALID_OP) {
        return (default_nan::<T>(), mx::IE);
    }
    if r.status.contains(Status::DIV_BY_ZERO) {
        // Reported alone, as the x87 does (a denormal dividend raises no DE then).
        return (T::to(r.value), mx::ZE);
    }
    // Overflow also when the mode gives the largest finite value: the exact result is at least
    // twice the largest finite exponent's power (in the wider double, or exactly for doubles).
    let exact_big = r.value.is_finite() && r.status.contains(Status::INEXACT) && r.value.bitwise_eq(FloatOf::<T>::largest().copy_sign(r.value)) && beyond_range::<T>(op, x, y);
    let (v, f) = output::<T>(r, env, ue_masked, exact_big);
    (v, f | fa | fb)
}

/// Whether the exact `x op y` is beyond the format's range (its exponent above the largest).
fn beyond_range<T: Fmt>(op: Op, x: FloatOf<T>, y: FloatOf<T>) -> bool {
    let mut lossy = false;
    // In the 80-bit format (exponent range far beyond both) the truncated result keeps the
    // exact result's exponent.
    use rustc_apfloat::ieee::X87DoubleExtended as X;
    let (a, b): (X, X) = (x.convert(&mut lossy).value, y.convert(&mut lossy).value);
    let w = match op {
        Op::Add => a.add_r(b, Round::TowardZero),
        Op::Sub => a.sub_r(b, Round::TowardZero),
        Op::Mul => a.mul_r(b, Round::TowardZero),
        _ => a.div_r(b, Round::TowardZero),
    }
    .value;
    let emax = if T::BITS == 32 { 127 } else { 1023 };
    w.is_finite() && !w.is_zero() && w.ilogb() > emax
}

/// A correctly rounded square root of a positive or zero `x`, through the x87 square root's
/// wide result (exact enough to round once).
fn sqrt<T: Fmt>(x: FloatOf<T>, round: Round) -> StatusAnd<FloatOf<T>> {
    if x.is_zero() || x.is_infinite() {
        return Status::OK.and(x);
    }
    let mut lossy = false;
    let e: rustc_apfloat::ieee::X87DoubleExtended = x.convert(&mut lossy).value;
    let (w, exact) = crate::x87::sqrt::sqrt_wide(e);
    let r: StatusAnd<FloatOf<T>> = w.convert_r(round, &mut lossy);
    if exact {
        return Status::OK.and(r.value);
    }
    r
}

/// The compare predicates of CMPccPS/SS/PD/SD (imm8[2:0]).
fn compare<T: Fmt>(pred: u8, a: u64, b: u64, env: Env) -> (u64, u32) {
    let (a, fa) = input::<T>(a & lane_mask::<T>(), env);
    let (b, fb) = input::<T>(b & lane_mask::<T>(), env);
    let unordered = is_nan::<T>(a) || is_nan::<T>(b);
    // EQ, UNORD, NEQ, ORD are quiet; LT, LE, NLT, NLE signal on any NaN.
    let signaling = matches!(pred & 7, 1 | 2 | 5 | 6);
    let ie = if (unordered && signaling) || is_snan::<T>(a) || is_snan::<T>(b) { mx::IE } else { 0 };
    let (x, y) = (T::from(a), T::from(b));
    let t = match pred & 7 {
        0 => !unordered && x == y,
        1 => !unordered && x < y,
        2 => !unordered && x <= y,
        3 => unordered,
        4 => unordered || x != y,
        5 => unordered || x >= y,
        6 => unordered || x > y,
        _ => !unordered,
    };
    let de = if unordered { 0 } else { fa | fb };
    (if t { lane_mask::<T>() } else { 0 }, ie | de)
}

/// Records `flags` in MXCSR and raises #XM (or #UD without CR4.OSXMMEXCPT) for an unmasked
/// one; `Ok(())` means the destination may be written.
fn raise(cpu: &mut Cpu, flags: u32) -> R {
    cpu.mxcsr |= flags;
    let unmasked = flags & !(cpu.mxcsr >> mx::MASK_SHIFT) & 0x3f;
    if unmasked != 0 {
        return Err(if cpu.cr4 & CR4_OSXMMEXCPT != 0 { Exc::new(XM) } else { Exc::ud() });
    }
    Ok(())
}

/// The handler for an SSE floating-point instruction, if one is here.
pub fn handler(i: &iced_x86::Instruction) -> Option<crate::exec::Handler> {
    use crate::exec::Handler;
    let h: Handler = match i.mnemonic() {
        M::Addps | M::Subps | M::Mulps | M::Divps | M::Minps | M::Maxps | M::Sqrtps => arith::<S32, false>,
        M::Addss | M::Subss | M::Mulss | M::Divss | M::Minss | M::Maxss | M::Sqrtss => arith::<S32, true>,
        M::Addpd | M::Subpd | M::Mulpd | M::Divpd | M::Minpd | M::Maxpd | M::Sqrtpd => arith::<D64, false>,
        M::Addsd | M::Subsd | M::Mulsd | M::Divsd | M::Minsd | M::Maxsd | M::Sqrtsd => arith::<D64, true>,
        M::Cmpps => cmp::<S32, false>,
        M::Cmpss => cmp::<S32, true>,
        M::Cmppd => cmp::<D64, false>,
        M::Cmpsd if i.op_count() == 3 => cmp::<D64, true>,
        M::Comiss | M::Ucomiss => comis::<S32>,
        M::Comisd | M::Ucomisd => comis::<D64>,
        M::Cvtsi2ss | M::Cvtsi2sd | M::Cvtss2si | M::Cvttss2si | M::Cvtsd2si | M::Cvttsd2si | M::Cvtss2sd | M::Cvtsd2ss => convert_scalar,
        M::Cvtps2pd | M::Cvtpd2ps | M::Cvtdq2ps | M::Cvtps2dq | M::Cvttps2dq | M::Cvtdq2pd | M::Cvtpd2dq | M::Cvttpd2dq => convert_packed,
        _ => return None,
    };
    (i.op0_kind() == OpKind::Register && i.op0_register().is_xmm() || matches!(i.mnemonic(), M::Cvtss2si | M::Cvttss2si | M::Cvtsd2si | M::Cvttsd2si)).then_some(h)
}

fn op_of(mn: M) -> Op {
    match mn {
        M::Addps | M::Addss | M::Addpd | M::Addsd => Op::Add,
        M::Subps | M::Subss | M::Subpd | M::Subsd => Op::Sub,
        M::Mulps | M::Mulss | M::Mulpd | M::Mulsd => Op::Mul,
        M::Divps | M::Divss | M::Divpd | M::Divsd => Op::Div,
        M::Minps | M::Minss | M::Minpd | M::Minsd => Op::Min,
        M::Maxps | M::Maxss | M::Maxpd | M::Maxsd => Op::Max,
        _ => Op::Sqrt,
    }
}

/// The lanes an instruction works on: all of them, or the low one (the rest of the
/// destination kept).
fn lanes<T: Fmt>(scalar: bool) -> u32 {
    if scalar {
        1
    } else {
        128 / T::BITS
    }
}

fn get(v: u128, bits: u32, k: u32) -> u64 {
    (v >> (bits * k)) as u64 & if bits == 64 { u64::MAX } else { (1 << bits) - 1 }
}

fn put(v: &mut u128, bits: u32, k: u32, x: u64) {
    let m = (if bits == 64 { u64::MAX as u128 } else { (1u128 << bits) - 1 }) << (bits * k);
    *v = (*v & !m) | ((x as u128) << (bits * k) & m);
}

fn arith<T: Fmt, const SCALAR: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu, d)?;
    let dst = d.i.op0_register();
    let a = xmm(cpu, dst);
    let b = read_src(cpu, bus, d, 1, !SCALAR)?;
    let env = Env::of(cpu.mxcsr);
    let ue_masked = cpu.mxcsr & (mx::UE << mx::MASK_SHIFT) != 0;
    let op = op_of(d.i.mnemonic());
    let mut r = a;
    let mut flags = 0;
    for k in 0..lanes::<T>(SCALAR) {
        let (v, f) = lane::<T>(op, get(a, T::BITS, k), get(b, T::BITS, k), env, ue_masked);
        put(&mut r, T::BITS, k, v);
        flags |= f;
    }
    raise(cpu, flags)?;
    set_xmm(cpu, dst, r);
    Ok(())
}

fn cmp<T: Fmt, const SCALAR: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu, d)?;
    let dst = d.i.op0_register();
    let a = xmm(cpu, dst);
    let b = read_src(cpu, bus, d, 1, !SCALAR)?;
    let pred = d.i.immediate(2) as u8;
    let env = Env::of(cpu.mxcsr);
    let mut r = a;
    let mut flags = 0;
    for k in 0..lanes::<T>(SCALAR) {
        let (v, f) = compare::<T>(pred, get(a, T::BITS, k), get(b, T::BITS, k), env);
        put(&mut r, T::BITS, k, v);
        flags |= f;
    }
    raise(cpu, flags)?;
    set_xmm(cpu, dst, r);
    Ok(())
}

/// COMISS/UCOMISS/COMISD/UCOMISD: ZF, PF, CF as unordered 111, greater 000, less 001, equal
/// 100; OF, SF, AF cleared. COMIS signals on any NaN, UCOMIS on a signaling one.
fn comis<T: Fmt>(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu, d)?;
    let a = get(xmm(cpu, d.i.op0_register()), T::BITS, 0);
    let b = get(read_src(cpu, bus, d, 1, false)?, T::BITS, 0);
    let env = Env::of(cpu.mxcsr);
    let (a, fa) = input::<T>(a, env);
    let (b, fb) = input::<T>(b, env);
    let unordered = is_nan::<T>(a) || is_nan::<T>(b);
    let signaling = matches!(d.i.mnemonic(), M::Comiss | M::Comisd);
    let ie = if (unordered && signaling) || is_snan::<T>(a) || is_snan::<T>(b) { mx::IE } else { 0 };
    raise(cpu, ie | if unordered { 0 } else { fa | fb })?;
    let (x, y) = (T::from(a), T::from(b));
    let f = if unordered {
        bits::ZF | bits::PF | bits::CF
    } else if x < y {
        bits::CF
    } else if x == y {
        bits::ZF
    } else {
        0
    };
    cpu.flags.set_arith(f);
    Ok(())
}

/// Float to integer of `width` bits in `round`: the integer indefinite (100..0) and IE for a
/// NaN or a value out of range, PE when inexact.
fn to_int<T: Fmt>(v: u64, width: usize, round: Round, env: Env) -> (u64, u32) {
    let (v, de) = input::<T>(v, env);
    let f = T::from(v);
    let indefinite = 1u64 << (width - 1);
    if f.is_nan() {
        return (indefinite, mx::IE);
    }
    let mut exact = true;
    let r = f.to_i128_r(width, round, &mut exact);
    if r.status.contains(Status::INVALID_OP) {
        return (indefinite, mx::IE);
    }
    let m = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
    // DE is not reported by these conversions (as for the x87's FIST).
    let _ = de;
    (r.value as u64 & m, if !exact && !f.is_zero() { mx::PE } else { 0 })
}

fn from_int<T: Fmt>(v: i64, round: Round) -> (u64, u32) {
    let r: StatusAnd<FloatOf<T>> = FloatOf::<T>::from_i128_r(v as i128, round);
    (T::to(r.value), flags_of(r.status))
}

/// Between the precisions: (bits, flags). A NaN keeps its payload's top (made quiet).
fn narrow_or_widen<From: Fmt, To: Fmt>(v: u64, env: Env, ue_masked: bool) -> (u64, u32) {
    let (v, de) = input::<From>(v, env);
    if is_nan::<From>(v) {
        let ie = if is_snan::<From>(v) { mx::IE } else { 0 };
        let frac = v & ((1 << frac_bits::<From>()) - 1);
        let frac = if frac_bits::<To>() > frac_bits::<From>() { frac << (frac_bits::<To>() - frac_bits::<From>()) } else { frac >> (frac_bits::<From>() - frac_bits::<To>()) };
        let sign = if v & sign_bit::<From>() != 0 { sign_bit::<To>() } else { 0 };
        let exp = (lane_mask::<To>() >> 1) & !((1u64 << frac_bits::<To>()) - 1);
        return (quiet::<To>(sign | exp | frac), ie);
    }
    let mut lossy = false;
    let r: StatusAnd<FloatOf<To>> = From::from(v).convert_r(env.round, &mut lossy);
    let big = From::BITS > To::BITS && From::from(v).is_finite() && !From::from(v).is_zero() && From::from(v).ilogb() > 127;
    let (out, f) = output::<To>(r, env, ue_masked, big && r.value.is_finite());
    (out, f | de)
}

fn convert_scalar(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu, d)?;
    let env = Env::of(cpu.mxcsr);
    let ue_masked = cpu.mxcsr & (mx::UE << mx::MASK_SHIFT) != 0;
    let mn = d.i.mnemonic();
    match mn {
        M::Cvtsi2ss | M::Cvtsi2sd => {
            let wide = matches!(d.i.code(), Code::Cvtsi2ss_xmm_rm64 | Code::Cvtsi2sd_xmm_rm64);
            let v = if d.i.op1_kind() == OpKind::Register { cpu.reg(d.i.op1_register()) } else { cpu.read_mem(bus, d, if wide { 8 } else { 4 })? };
            let v = if wide { v as i64 } else { v as u32 as i32 as i64 };
            let (bits, f) = if mn == M::Cvtsi2ss { from_int::<S32>(v, env.round) } else { from_int::<D64>(v, env.round) };
            raise(cpu, f)?;
            let dst = d.i.op0_register();
            let mut r = xmm(cpu, dst);
            put(&mut r, if mn == M::Cvtsi2ss { 32 } else { 64 }, 0, bits);
            set_xmm(cpu, dst, r);
        }
        M::Cvtss2si | M::Cvttss2si | M::Cvtsd2si | M::Cvttsd2si => {
            let width = if d.i.op0_register().size() == 8 { 64 } else { 32 };
            let src = read_src(cpu, bus, d, 1, false)?;
            let round = if matches!(mn, M::Cvttss2si | M::Cvttsd2si) { Round::TowardZero } else { env.round };
            let (v, f) = if matches!(mn, M::Cvtss2si | M::Cvttss2si) { to_int::<S32>(get(src, 32, 0), width, round, env) } else { to_int::<D64>(get(src, 64, 0), width, round, env) };
            raise(cpu, f)?;
            cpu.set_reg(d.i.op0_register(), v);
        }
        M::Cvtss2sd => {
            let src = read_src(cpu, bus, d, 1, false)?;
            let (v, f) = narrow_or_widen::<S32, D64>(get(src, 32, 0), env, ue_masked);
            raise(cpu, f)?;
            let dst = d.i.op0_register();
            let mut r = xmm(cpu, dst);
            put(&mut r, 64, 0, v);
            set_xmm(cpu, dst, r);
        }
        _ => {
            let src = read_src(cpu, bus, d, 1, false)?;
            let (v, f) = narrow_or_widen::<D64, S32>(get(src, 64, 0), env, ue_masked);
            raise(cpu, f)?;
            let dst = d.i.op0_register();
            let mut r = xmm(cpu, dst);
            put(&mut r, 32, 0, v);
            set_xmm(cpu, dst, r);
        }
    }
    Ok(())
}

fn convert_packed(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    check(cpu, d)?;
    let env = Env::of(cpu.mxcsr);
    let ue_masked = cpu.mxcsr & (mx::UE << mx::MASK_SHIFT) != 0;
    let mn = d.i.mnemonic();
    // The 64-bit source forms (CVTPS2PD, CVTDQ2PD) read m64; the rest m128 (aligned).
    let src = read_src(cpu, bus, d, 1, !matches!(mn, M::Cvtps2pd | M::Cvtdq2pd))?;
    let mut r = 0u128;
    let mut flags = 0;
    match mn {
        M::Cvtps2pd => {
            for k in 0..2 {
                let (v, f) = narrow_or_widen::<S32, D64>(get(src, 32, k), env, ue_masked);
                put(&mut r, 64, k, v);
                flags |= f;
            }
        }
        M::Cvtpd2ps => {
            for k in 0..2 {
                let (v, f) = narrow_or_widen::<D64, S32>(get(src, 64, k), env, ue_masked);
                put(&mut r, 32, k, v);
                flags |= f;
            }
        }
        M::Cvtdq2ps => {
            for k in 0..4 {
                let (v, f) = from_int::<S32>(get(src, 32, k) as u32 as i32 as i64, env.round);
                put(&mut r, 32, k, v);
                flags |= f;
            }
        }
        M::Cvtdq2pd => {
            for k in 0..2 {
                let (v, f) = from_int::<D64>(get(src, 32, k) as u32 as i32 as i64, env.round);
                put(&mut r, 64, k, v);
                flags |= f;
            }
        }
        M::Cvtps2dq | M::Cvttps2dq => {
            let round = if mn == M::Cvttps2dq { Round::TowardZero } else { env.round };
            for k in 0..4 {
                let (v, f) = to_int::<S32>(get(src, 32, k), 32, round, env);
                put(&mut r, 32, k, v);
                flags |= f;
            }
        }
        _ => {
            // CVTPD2DQ/CVTTPD2DQ: two dwords, the upper half zeroed.
            let round = if mn == M::Cvttpd2dq { Round::TowardZero } else { env.round };
            for k in 0..2 {
                let (v, f) = to_int::<D64>(get(src, 64, k), 32, round, env);
                put(&mut r, 32, k, v);
                flags |= f;
            }
        }
    }
    raise(cpu, flags)?;
    set_xmm(cpu, d.i.op0_register(), r);
    Ok(())
}
