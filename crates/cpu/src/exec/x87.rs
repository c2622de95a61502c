//! x87 FPU instructions (Intel SDM vol. 1, chapter 8; vol. 2 for each instruction): loads and
//! stores in every memory format, the arithmetic with its reversed, popping and integer forms,
//! comparisons (into the condition codes or EFLAGS), the stack and register operations, the
//! control instructions and the environment and state images. The numbers are in
//! [`crate::x87::float`].
//!
//! Exceptions: a flag the control word masks gets the masked response (the QNaN indefinite,
//! the rounded result...). An unmasked one sets ES and B and, for the invalid-operation,
//! denormal and zero-divide exceptions, leaves the destination and the stack unchanged; the
//! next waiting x87 instruction then raises #MF when CR0.NE is set (with NE clear the PC's
//! FERR#/IGNNE# path is not modelled: the exception stays pending in ES). An unmasked overflow
//! or underflow stores the masked result (the x87's exponent-rebiased result is not modelled).
//! The transcendental instructions (FSIN, FCOS, FSINCOS, FPTAN, FPATAN, F2XM1, FYL2X, FYL2XP1)
//! are not implemented: they raise #UD and are counted.

use crate::bus::Bus;
use crate::cr::*;
use crate::decode::Insn;
use crate::exception::{Exc, MF, NM};
use crate::flags::bits;
use crate::regs::RAX;
use crate::x87::float::{self, Env, Op, Res, INDEFINITE};
use crate::x87::{fsw, Tag};
use crate::Cpu;
use iced_x86::{MemorySize, Mnemonic as M, OpKind, Register};

type R = Result<(), Exc>;

/// The instructions that do not first check for a pending unmasked exception.
fn non_waiting(mn: M) -> bool {
    matches!(mn, M::Fninit | M::Fnclex | M::Fnstsw | M::Fnstcw | M::Fnstenv | M::Fnsave | M::Fneni | M::Fndisi | M::Fnsetpm)
}

/// The control instructions, which leave the last-instruction pointers alone.
fn control(mn: M) -> bool {
    non_waiting(mn) || matches!(mn, M::Fldcw | M::Fldenv | M::Frstor | M::Wait)
}

/// The ST register number of operand `n`.
fn sti(d: &Insn, n: u32) -> u8 {
    (d.i.op_register(n) as u32 - Register::ST0 as u32) as u8
}

/// The x87 instructions.
pub fn fpu(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let mn = d.i.mnemonic();
    if mn == M::Wait {
        if cpu.cr0 & CR0_MP != 0 && cpu.cr0 & CR0_TS != 0 {
            return Err(Exc::new(NM));
        }
        return pending_exception(cpu);
    }
    if cpu.cr0 & (CR0_EM | CR0_TS) != 0 {
        return Err(Exc::new(NM));
    }
    if !non_waiting(mn) {
        pending_exception(cpu)?;
    }
    let result = execute(cpu, bus, d);
    if result.is_ok() && !control(mn) {
        cpu.fpu.fip = cpu.cur_rip;
        cpu.fpu.fcs = cpu.seg[crate::sreg::CS].selector;
        if d.i.op_kind(0) == OpKind::Memory || d.i.op_kind(1) == OpKind::Memory {
            cpu.fpu.fdp = cpu.ea(d);
            cpu.fpu.fds = cpu.seg[cpu.mem_seg(d)].selector;
        }
    }
    result
}

/// #MF for an unmasked exception left pending by an earlier instruction (CR0.NE = 1).
fn pending_exception(cpu: &mut Cpu) -> R {
    if cpu.fpu.fsw & fsw::ES != 0 && cpu.cr0 & CR0_NE != 0 {
        return Err(Exc::new(MF));
    }
    Ok(())
}

/// Records exception flags: sets them in FSW, and ES/B if any is unmasked. Returns whether the
/// result may be written (no unmasked invalid-operation, denormal or zero-divide exception).
fn raise(cpu: &mut Cpu, flags: u16) -> bool {
    let x = &mut cpu.fpu;
    x.fsw |= flags & (fsw::EXCEPTIONS | fsw::SF);
    let unmasked = flags & fsw::EXCEPTIONS & !(x.fcw & crate::x87::fcw::MASKS);
    if unmasked != 0 {
        x.fsw |= fsw::ES | fsw::B;
    }
    unmasked & (fsw::IE | fsw::DE | fsw::ZE) == 0
}

/// Sets C1 and clears the other condition codes the arithmetic leaves undefined (C0, C2, C3).
fn set_c1(cpu: &mut Cpu, c1: bool) {
    cpu.fpu.fsw &= !fsw::C1;
    if c1 {
        cpu.fpu.fsw |= fsw::C1;
    }
}

/// Stack underflow: reading an empty register (IE and SF, C1 = 0).
fn underflow(cpu: &mut Cpu) -> bool {
    set_c1(cpu, false);
    raise(cpu, fsw::IE | fsw::SF)
}

/// Stack overflow: pushing onto a full register (IE and SF, C1 = 1).
fn overflow(cpu: &mut Cpu) -> bool {
    set_c1(cpu, true);
    raise(cpu, fsw::IE | fsw::SF)
}

/// Pushes `v` (the masked response to a stack overflow pushes the indefinite).
fn push(cpu: &mut Cpu, r: Res) {
    if !cpu.fpu.is_empty(7) {
        if overflow(cpu) {
            cpu.fpu.push(INDEFINITE);
        }
        return;
    }
    if raise(cpu, r.flags) {
        set_c1(cpu, r.up);
        cpu.fpu.push(r.value);
    }
}

/// Reads ST(i), or None after recording a stack underflow.
fn read_st(cpu: &mut Cpu, i: u8) -> Option<u128> {
    if cpu.fpu.is_empty(i) {
        None
    } else {
        Some(cpu.fpu.st(i))
    }
}

/// Writes an arithmetic result to ST(i) unless an unmasked pre-computation exception stops
/// it; pops after when `pop`.
fn store(cpu: &mut Cpu, i: u8, r: Res, pop: bool) {
    if raise(cpu, r.flags) {
        set_c1(cpu, r.up);
        cpu.fpu.set_st(i, r.value);
        if pop {
            cpu.fpu.pop();
        }
    }
}

/// A stack underflow on an instruction that writes ST(i) (and maybe pops): the masked response
/// writes the indefinite.
fn store_underflow(cpu: &mut Cpu, i: u8, pop: bool) {
    if underflow(cpu) {
        cpu.fpu.set_st(i, INDEFINITE);
        if pop {
            cpu.fpu.pop();
        }
    }
}

/// Reads a memory operand of the instruction's memory size as an 80-bit value.
fn load_memory(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> Result<Res, Exc> {
    Ok(match d.i.memory_size() {
        MemorySize::Float32 => float::from_single(cpu.read_mem(bus, d, 4)? as u32),
        MemorySize::Float64 => float::from_double(cpu.read_mem(bus, d, 8)?),
        MemorySize::Float80 => Res::exact(read80(cpu, bus, d)?),
        MemorySize::Int16 => Res::exact(float::from_int(cpu.read_mem(bus, d, 2)? as i16 as i64)),
        MemorySize::Int32 => Res::exact(float::from_int(cpu.read_mem(bus, d, 4)? as i32 as i64)),
        MemorySize::Int64 => Res::exact(float::from_int(cpu.read_mem(bus, d, 8)? as i64)),
        MemorySize::Bcd => Res::exact(from_bcd(read80(cpu, bus, d)?)),
        _ => return Err(Exc::ud()),
    })
}

fn read80(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> Result<u128, Exc> {
    let lin = cpu.mem_linear(d, 10, false)?;
    let lo = cpu.read_lin(bus, lin, 8)?;
    let hi = cpu.read_lin(bus, lin.wrapping_add(8), 2)?;
    Ok((hi as u128) << 64 | lo as u128)
}

fn write80(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn, v: u128) -> R {
    let lin = cpu.mem_linear(d, 10, true)?;
    // Check both parts before writing either, so a fault leaves memory unchanged.
    let hi_old = cpu.read_lin(bus, lin.wrapping_add(8), 2)?;
    cpu.write_lin(bus, lin.wrapping_add(8), 2, hi_old)?;
    cpu.write_lin(bus, lin, 8, v as u64)?;
    cpu.write_lin(bus, lin.wrapping_add(8), 2, (v >> 64) as u64)
}

/// FBLD: 18 packed BCD digits and a sign byte.
fn from_bcd(v: u128) -> u128 {
    let mut n: i64 = 0;
    for k in (0..18).rev() {
        n = n * 10 + ((v >> (4 * k)) & 0xf) as i64;
    }
    let r = float::from_int(n);
    if v & (1 << 79) != 0 {
        r | (1 << 79)
    } else {
        r
    }
}

/// FBSTP: the value rounded to an integer as packed BCD, or the BCD indefinite with IE when it
/// does not fit 18 digits.
fn to_bcd(v: u128, env: Env) -> (u128, u16, bool) {
    const BCD_INDEFINITE: u128 = 0xffff_c000_0000_0000_0000;
    let (n, flags, up) = float::to_int(v, 64, env.round);
    if flags & fsw::IE != 0 || n.unsigned_abs() > 999_999_999_999_999_999 {
        return (BCD_INDEFINITE, fsw::IE, false);
    }
    let mut m = n.unsigned_abs();
    let mut out: u128 = 0;
    for k in 0..18 {
        out |= ((m % 10) as u128) << (4 * k);
        m /= 10;
    }
    if float::negative(v) {
        out |= 1 << 79;
    }
    (out, flags, up)
}

fn execute(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let mn = d.i.mnemonic();
    let env = Env::from_fcw(cpu.fpu.fcw);
    match mn {
        M::Fninit => cpu.fpu.init(),
        M::Fnclex => cpu.fpu.fsw &= !(fsw::EXCEPTIONS | fsw::SF | fsw::ES | fsw::B),
        M::Fnstsw => {
            if d.i.op0_kind() == OpKind::Register {
                cpu.set_gpr(RAX, 2, cpu.fpu.fsw as u64);
            } else {
                cpu.write_mem(bus, d, 2, cpu.fpu.fsw as u64)?;
            }
        }
        M::Fnstcw => cpu.write_mem(bus, d, 2, cpu.fpu.fcw as u64)?,
        M::Fldcw => {
            cpu.fpu.fcw = cpu.read_mem(bus, d, 2)? as u16 | 0x40;
            update_summary(cpu);
        }
        M::Fneni | M::Fndisi | M::Fnsetpm | M::Fnop => {}
        M::Fnstenv | M::Fnsave => {
            store_env(cpu, bus, d)?;
            if mn == M::Fnsave {
                let base = cpu.ea(d).wrapping_add(env_len(cpu, d));
                for k in 0..8u8 {
                    let v = cpu.fpu.st(k);
                    write_at(cpu, bus, d, base + 10 * k as u64, v)?;
                }
                cpu.fpu.init();
            } else {
                // FNSTENV masks every exception after storing (SDM vol. 2, FSTENV).
                cpu.fpu.fcw |= crate::x87::fcw::MASKS;
            }
        }
        M::Fldenv | M::Frstor => {
            load_env(cpu, bus, d)?;
            if mn == M::Frstor {
                let base = cpu.ea(d).wrapping_add(env_len(cpu, d));
                for k in 0..8u8 {
                    let v = read_at(cpu, bus, d, base + 10 * k as u64)?;
                    let p = cpu.fpu.phys(k);
                    cpu.fpu.regs[p] = v & float::MASK80;
                }
                // The tags follow the registers just loaded.
                let x = &mut cpu.fpu;
                for p in 0..8 {
                    if x.tag(p) != Tag::Empty {
                        x.set_tag(p, float::tag_of(x.regs[p]));
                    }
                }
            }
            update_summary(cpu);
        }
        M::Fld | M::Fild | M::Fbld => {
            if d.i.op0_kind() == OpKind::Memory {
                // A signaling NaN from m32fp/m64fp is pushed quiet (with IE); m80fp loads as is.
                let mut r = load_memory(cpu, bus, d)?;
                if r.flags & fsw::IE != 0 {
                    r.value = float::quiet(r.value);
                }
                push(cpu, r);
            } else {
                let i = sti(d, 0);
                match read_st(cpu, i) {
                    Some(v) => push(cpu, Res::exact(v)),
                    // An empty source is reported first (C1 = 0); the masked response pushes
                    // the indefinite even over a full ST(7) (measured).
                    None => {
                        if underflow(cpu) {
                            cpu.fpu.push(INDEFINITE);
                        }
                    }
                }
            }
        }
        M::Fld1 | M::Fldz | M::Fldpi | M::Fldl2t | M::Fldl2e | M::Fldlg2 | M::Fldln2 => {
            // The significands to 128 bits and the exponents; rounded to 64 bits as RC says
            // (SDM vol. 1, 8.3.8).
            let v = match mn {
                M::Fld1 => 0x3fff_8000_0000_0000_0000,
                M::Fldz => 0,
                M::Fldpi => float::constant(0xc90f_daa2_2168_c234_c4c6_628b_80dc_1cd1, 1, env.round),
                M::Fldl2t => float::constant(0xd49a_784b_cd1b_8afe_492b_f6ff_4daf_db4c, 1, env.round),
                M::Fldl2e => float::constant(0xb8aa_3b29_5c17_f0bb_be87_fed0_691d_3e88, 0, env.round),
                M::Fldlg2 => float::constant(0x9a20_9a84_fbcf_f798_8f89_59ac_0b7c_9178, -2, env.round),
                _ => float::constant(0xb172_17f7_d1cf_79ab_c9e3_b398_03f2_f6af, -1, env.round),
            };
            push(cpu, Res::exact(v));
        }
        M::Fst | M::Fstp | M::Fist | M::Fistp | M::Fisttp | M::Fbstp => store_st0(cpu, bus, d, env)?,
        M::Fxch => {
            let i = sti(d, 1);
            let (a, b) = (read_st(cpu, 0), read_st(cpu, i));
            if a.is_none() || b.is_none() {
                if !underflow(cpu) {
                    return Ok(());
                }
            } else {
                set_c1(cpu, false);
            }
            let (a, b) = (a.unwrap_or(INDEFINITE), b.unwrap_or(INDEFINITE));
            cpu.fpu.set_st(0, b);
            cpu.fpu.set_st(i, a);
        }
        M::Fcmovb | M::Fcmove | M::Fcmovbe | M::Fcmovu | M::Fcmovnb | M::Fcmovne | M::Fcmovnbe | M::Fcmovnu => {
            let i = sti(d, 1);
            let f = &cpu.flags;
            let cond = match mn {
                M::Fcmovb => f.cf(),
                M::Fcmove => f.zf(),
                M::Fcmovbe => f.cf() || f.zf(),
                M::Fcmovu => f.pf(),
                M::Fcmovnb => !f.cf(),
                M::Fcmovne => !f.zf(),
                M::Fcmovnbe => !f.cf() && !f.zf(),
                _ => !f.pf(),
            };
            match (read_st(cpu, 0), read_st(cpu, i)) {
                // C1 stays as it was (measured).
                (Some(_), Some(v)) => {
                    if cond {
                        cpu.fpu.set_st(0, v);
                    }
                }
                _ => store_underflow(cpu, 0, false),
            }
        }
        M::Fadd | M::Faddp | M::Fiadd | M::Fsub | M::Fsubp | M::Fisub | M::Fsubr | M::Fsubrp | M::Fisubr | M::Fmul | M::Fmulp | M::Fimul | M::Fdiv | M::Fdivp | M::Fidiv | M::Fdivr | M::Fdivrp | M::Fidivr => {
            arithmetic(cpu, bus, d, env)?
        }
        M::Fchs | M::Fabs => match read_st(cpu, 0) {
            Some(v) => {
                set_c1(cpu, false);
                let v = if mn == M::Fchs { v ^ (1 << 79) } else { v & !(1 << 79) };
                cpu.fpu.set_st(0, v);
            }
            None => store_underflow(cpu, 0, false),
        },
        M::Fsqrt | M::Frndint => match read_st(cpu, 0) {
            Some(v) => {
                let r = if mn == M::Fsqrt { float::sqrt(v, env) } else { float::round_to_integral(v, env) };
                store(cpu, 0, r, false);
            }
            None => store_underflow(cpu, 0, false),
        },
        M::Fscale => match (read_st(cpu, 0), read_st(cpu, 1)) {
            (Some(a), Some(b)) => store(cpu, 0, float::scale(a, b, env), false),
            _ => store_underflow(cpu, 0, false),
        },
        M::Fxtract => match read_st(cpu, 0) {
            Some(v) => {
                if !cpu.fpu.is_empty(7) {
                    if overflow(cpu) {
                        cpu.fpu.set_st(0, INDEFINITE);
                        cpu.fpu.push(INDEFINITE);
                    }
                    return Ok(());
                }
                let (e, s, flags) = float::extract(v);
                if raise(cpu, flags) {
                    set_c1(cpu, false);
                    cpu.fpu.set_st(0, e);
                    cpu.fpu.push(s);
                }
            }
            None => {
                if underflow(cpu) {
                    cpu.fpu.set_st(0, INDEFINITE);
                    cpu.fpu.push(INDEFINITE);
                }
            }
        },
        M::Fprem | M::Fprem1 => match (read_st(cpu, 0), read_st(cpu, 1)) {
            (Some(a), Some(b)) => {
                use float::Remainder;
                let outcome = float::remainder(a, b, mn == M::Fprem1);
                let r = match outcome {
                    Remainder::Complete(r, _) | Remainder::Partial(r) | Remainder::Refused(r) => r,
                };
                if !raise(cpu, r.flags) {
                    return Ok(());
                }
                cpu.fpu.set_st(0, r.value);
                let x = &mut cpu.fpu;
                match outcome {
                    Remainder::Complete(_, q) => {
                        // C0 = Q2, C3 = Q1, C1 = Q0; C2 = 0.
                        x.fsw &= !fsw::CC;
                        for (bit, flag) in [(4, fsw::C0), (2, fsw::C3), (1, fsw::C1)] {
                            if q & bit != 0 {
                                x.fsw |= flag;
                            }
                        }
                    }
                    Remainder::Partial(_) => x.fsw = (x.fsw & !fsw::CC) | fsw::C2,
                    Remainder::Refused(_) => x.fsw &= !(fsw::C1 | fsw::C2),
                }
            }
            _ => {
                cpu.fpu.fsw &= !fsw::C2;
                store_underflow(cpu, 0, false);
            }
        },
        M::Fcom | M::Fcomp | M::Fcompp | M::Fucom | M::Fucomp | M::Fucompp | M::Ficom | M::Ficomp | M::Ftst => compare(cpu, bus, d)?,
        M::Fcomi | M::Fcomip | M::Fucomi | M::Fucomip => {
            let i = sti(d, 1);
            let pop = matches!(mn, M::Fcomip | M::Fucomip);
            let (cc, flags) = match (read_st(cpu, 0), read_st(cpu, i)) {
                (Some(a), Some(b)) => float::compare(a, b, matches!(mn, M::Fcomi | M::Fcomip)),
                _ => {
                    if !underflow(cpu) {
                        return Ok(());
                    }
                    (fsw::C3 | fsw::C2 | fsw::C0, 0)
                }
            };
            if !raise(cpu, flags) {
                return Ok(());
            }
            // ZF, PF, CF from C3, C2, C0; OF, SF, AF cleared. The condition codes stay as they
            // were (C1 too, measured on Intel) unless the stack underflowed.
            let mut f = 0;
            if cc & fsw::C3 != 0 {
                f |= bits::ZF;
            }
            if cc & fsw::C2 != 0 {
                f |= bits::PF;
            }
            if cc & fsw::C0 != 0 {
                f |= bits::CF;
            }
            cpu.flags.set_arith(f);
            if pop {
                cpu.fpu.pop();
            }
        }
        M::Fxam => {
            let x = &mut cpu.fpu;
            x.fsw &= !fsw::CC;
            let v = x.st(0);
            if float::negative(v) {
                x.fsw |= fsw::C1;
            }
            x.fsw |= if x.is_empty(0) { fsw::C3 | fsw::C0 } else { float::examine(v) };
        }
        M::Fincstp | M::Fdecstp => {
            let x = &mut cpu.fpu;
            let top = if mn == M::Fincstp { x.top().wrapping_add(1) } else { x.top().wrapping_sub(1) };
            x.set_top(top);
            set_c1(cpu, false);
        }
        M::Ffree | M::Ffreep => {
            // C1 cleared (measured; the SDM leaves C0-C3 undefined).
            set_c1(cpu, false);
            let p = cpu.fpu.phys(sti(d, 0));
            cpu.fpu.set_tag(p, Tag::Empty);
            if mn == M::Ffreep {
                cpu.fpu.pop();
            }
        }
        _ => {
            *cpu.unimplemented.entry(format!("{mn:?}").to_lowercase()).or_default() += 1;
            return Err(Exc::ud());
        }
    }
    Ok(())
}

/// ES and B follow the exception flags against the (new) masks after FLDCW/FLDENV/FRSTOR.
fn update_summary(cpu: &mut Cpu) {
    let x = &mut cpu.fpu;
    if x.fsw & fsw::EXCEPTIONS & !(x.fcw & crate::x87::fcw::MASKS) != 0 {
        x.fsw |= fsw::ES | fsw::B;
    } else {
        x.fsw &= !(fsw::ES | fsw::B);
    }
}

/// FST/FSTP/FIST/FISTP/FISTTP/FBSTP.
fn store_st0(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn, env: Env) -> R {
    let mn = d.i.mnemonic();
    let pop = matches!(mn, M::Fstp | M::Fistp | M::Fisttp | M::Fbstp);
    if d.i.op0_kind() == OpKind::Register {
        // FST/FSTP ST(i).
        let i = sti(d, 0);
        match read_st(cpu, 0) {
            Some(v) => {
                set_c1(cpu, false);
                cpu.fpu.set_st(i, v);
                if pop {
                    cpu.fpu.pop();
                }
            }
            None => store_underflow(cpu, i, pop),
        }
        return Ok(());
    }
    let size = d.i.memory_size();
    let v = match read_st(cpu, 0) {
        Some(v) => Some(v),
        None => {
            if !underflow(cpu) {
                return Ok(());
            }
            None
        }
    };
    // The value and width to write, and the flags and C1 of the conversion.
    let (bits, width, flags, up): (u128, u8, u16, bool) = match (size, v) {
        (MemorySize::Float32, None) => (0xffc0_0000, 4, 0, false),
        (MemorySize::Float64, None) => (0xfff8_0000_0000_0000, 8, 0, false),
        (MemorySize::Float80, None) => (INDEFINITE, 10, 0, false),
        (MemorySize::Int16, None) => (0x8000, 2, 0, false),
        (MemorySize::Int32, None) => (0x8000_0000, 4, 0, false),
        (MemorySize::Int64, None) => (1 << 63, 8, 0, false),
        (MemorySize::Bcd, None) => (0xffff_c000_0000_0000_0000, 10, 0, false),
        (MemorySize::Float32 | MemorySize::Float64, Some(v)) => {
            let r = float::to_memory_float(v, size == MemorySize::Float32, env.round);
            (r.value, if size == MemorySize::Float32 { 4 } else { 8 }, r.flags, r.up)
        }
        (MemorySize::Float80, Some(v)) => (v, 10, 0, false),
        (MemorySize::Int16 | MemorySize::Int32 | MemorySize::Int64, Some(v)) => {
            let width = match size {
                MemorySize::Int16 => 16,
                MemorySize::Int32 => 32,
                _ => 64,
            };
            let round = if mn == M::Fisttp { rustc_apfloat::Round::TowardZero } else { env.round };
            let (n, flags, up) = float::to_int(v, width, round);
            (n as u64 as u128 & ((1u128 << width) - 1), (width / 8) as u8, flags, up)
        }
        (_, Some(v)) => {
            let (b, flags, up) = to_bcd(v, env);
            (b, 10, flags, up)
        }
        _ => return Err(Exc::ud()),
    };
    // An unmasked invalid-operation or denormal exception stores nothing.
    if v.is_some() && !raise(cpu, flags) {
        return Ok(());
    }
    if v.is_some() {
        set_c1(cpu, up);
    }
    if width == 10 {
        write80(cpu, bus, d, bits)?;
    } else {
        cpu.write_mem(bus, d, width, bits as u64)?;
    }
    if pop {
        cpu.fpu.pop();
    }
    Ok(())
}

/// FADD/FSUB/FSUBR/FMUL/FDIV/FDIVR with their popping (P) and integer (I) forms.
fn arithmetic(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn, env: Env) -> R {
    let mn = d.i.mnemonic();
    let (op, reverse) = match mn {
        M::Fadd | M::Faddp | M::Fiadd => (Op::Add, false),
        M::Fsub | M::Fsubp | M::Fisub => (Op::Sub, false),
        M::Fsubr | M::Fsubrp | M::Fisubr => (Op::Sub, true),
        M::Fmul | M::Fmulp | M::Fimul => (Op::Mul, false),
        M::Fdiv | M::Fdivp | M::Fidiv => (Op::Div, false),
        _ => (Op::Div, true),
    };
    let pop = matches!(mn, M::Faddp | M::Fsubp | M::Fsubrp | M::Fmulp | M::Fdivp | M::Fdivrp);
    // Destination register and the two source values (destination first).
    let (dst, a, b, load_flags) = if d.i.op0_kind() == OpKind::Memory || d.i.op_count() == 1 && d.i.op0_kind() == OpKind::Memory {
        let m = load_memory(cpu, bus, d)?;
        (0, read_st(cpu, 0), Some(m.value), m.flags)
    } else if d.i.op_count() == 0 {
        // FADDP with no operands is FADDP ST(1), ST(0).
        (1, read_st(cpu, 1), read_st(cpu, 0), 0)
    } else {
        let (i, j) = (sti(d, 0), sti(d, 1));
        (i, read_st(cpu, i), read_st(cpu, j), 0)
    };
    let (Some(a), Some(b)) = (a, b) else {
        store_underflow(cpu, dst, pop);
        return Ok(());
    };
    let (x, y) = if reverse { (b, a) } else { (a, b) };
    let mut r = float::arith(op, x, y, env);
    // A memory operand's DE counts unless a NaN (or an invalid or zero-divide outcome) takes
    // over, as for register operands (its signaling NaN is the operation's to report).
    if !float::is_nan(a) && r.flags & (fsw::IE | fsw::ZE) == 0 {
        r.flags |= load_flags & fsw::DE;
    }
    store(cpu, dst, r, pop);
    Ok(())
}

/// FCOM/FCOMP/FCOMPP/FUCOM/FUCOMP/FUCOMPP/FICOM/FICOMP/FTST into C3, C2, C0.
fn compare(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let mn = d.i.mnemonic();
    let pops = match mn {
        M::Fcomp | M::Fucomp | M::Ficomp => 1,
        M::Fcompp | M::Fucompp => 2,
        _ => 0,
    };
    let signaling = !matches!(mn, M::Fucom | M::Fucomp | M::Fucompp);
    let (b, load_flags) = if mn == M::Ftst {
        (Some(0), 0)
    } else if d.i.op0_kind() == OpKind::Memory {
        let m = load_memory(cpu, bus, d)?;
        (Some(m.value), m.flags & fsw::DE)
    } else if d.i.op_count() == 0 {
        (read_st(cpu, 1), 0)
    } else {
        let j = if d.i.op_count() == 2 { sti(d, 1) } else { sti(d, 0) };
        (read_st(cpu, j), 0)
    };
    let (cc, flags) = match (read_st(cpu, 0), b) {
        (Some(a), Some(b)) => {
            let (cc, f) = float::compare(a, b, signaling);
            // An invalid operand or a NaN in the register hides the memory operand's DE.
            (cc, if float::is_nan(a) || f & fsw::IE != 0 { f } else { f | load_flags })
        }
        _ => {
            if !underflow(cpu) {
                return Ok(());
            }
            (fsw::C3 | fsw::C2 | fsw::C0, 0)
        }
    };
    if !raise(cpu, flags) {
        return Ok(());
    }
    let x = &mut cpu.fpu;
    x.fsw = (x.fsw & !fsw::CC) | cc;
    for _ in 0..pops {
        cpu.fpu.pop();
    }
    Ok(())
}

/// Bytes of the environment image: 14 with a 16-bit operand size, else 28 (SDM vol. 1,
/// figures 8-9 to 8-12).
fn env_len(_cpu: &Cpu, d: &Insn) -> u64 {
    if matches!(d.i.memory_size(), MemorySize::FpuEnv14 | MemorySize::FpuState94) {
        14
    } else {
        28
    }
}

fn write_at(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn, off: u64, v: u128) -> R {
    let seg = cpu.mem_seg(d);
    cpu.write_seg(bus, seg, off, 8, v as u64)?;
    cpu.write_seg(bus, seg, off + 8, 2, (v >> 64) as u64)
}

fn read_at(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn, off: u64) -> Result<u128, Exc> {
    let seg = cpu.mem_seg(d);
    let lo = cpu.read_seg(bus, seg, off, 8)?;
    let hi = cpu.read_seg(bus, seg, off + 8, 2)?;
    Ok((hi as u128) << 64 | lo as u128)
}

/// FNSTENV and the first part of FNSAVE: control, status and (full) tag words and the
/// instruction and operand pointers, in the protected-mode layout (real and virtual-8086 mode
/// store the 20-bit pointers in their own layout).
fn store_env(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let base = cpu.ea(d);
    let seg = cpu.mem_seg(d);
    let x = &cpu.fpu;
    let real = cpu.cr0 & CR0_PE == 0 || cpu.flags.sys(bits::VM);
    let (fip, fdp, fop) = (x.fip, x.fdp, x.fop as u64);
    let (fcs, fds) = (x.fcs as u64, x.fds as u64);
    let words: [u64; 7] = if real {
        [x.fcw as u64, x.fsw as u64, x.full_tags() as u64, fip & 0xffff, ((fip >> 4) & 0xf000) | fop, fdp & 0xffff, (fdp >> 4) & 0xf000]
    } else {
        [x.fcw as u64, x.fsw as u64, x.full_tags() as u64, fip, fcs | fop << 16, fdp, fds]
    };
    let wide = env_len(cpu, d) == 28;
    let step = if wide { 4 } else { 2 };
    for (k, w) in words.iter().enumerate() {
        cpu.write_seg(bus, seg, base.wrapping_add(step * k as u64), step as u8, *w)?;
    }
    Ok(())
}

/// FLDENV and the first part of FRSTOR.
fn load_env(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let base = cpu.ea(d);
    let seg = cpu.mem_seg(d);
    let wide = env_len(cpu, d) == 28;
    let step = if wide { 4 } else { 2 };
    let mut w = [0u64; 7];
    for (k, v) in w.iter_mut().enumerate() {
        *v = cpu.read_seg(bus, seg, base.wrapping_add(step * k as u64), step as u8)?;
    }
    let real = cpu.cr0 & CR0_PE == 0 || cpu.flags.sys(bits::VM);
    let x = &mut cpu.fpu;
    x.fcw = w[0] as u16;
    x.fsw = w[1] as u16;
    // Only "empty" survives from the image's tags; the rest follow the contents.
    let tags = w[2] as u16;
    for p in 0..8 {
        let t = if (tags >> (2 * p)) & 3 == 3 { Tag::Empty } else { float::tag_of(x.regs[p]) };
        x.set_tag(p, t);
    }
    if real {
        x.fip = (w[3] & 0xffff) | ((w[4] & 0xf000) << 4);
        x.fop = (w[4] & 0x7ff) as u16;
        x.fdp = (w[5] & 0xffff) | ((w[6] & 0xf000) << 4);
    } else {
        x.fip = w[3];
        x.fcs = w[4] as u16;
        x.fop = ((w[4] >> 16) & 0x7ff) as u16;
        x.fdp = w[5];
        x.fds = w[6] as u16;
    }
    Ok(())
}
