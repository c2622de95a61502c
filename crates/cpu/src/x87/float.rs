//! 80-bit extended-precision arithmetic as the x87 does it, on `rustc_apfloat`'s
//! `X87DoubleExtended` (bit-exact IEEE arithmetic with every rounding mode and the status
//! flags), plus what is x87's own: the encodings it refuses (unnormals, pseudo-NaNs), its NaN
//! rules (SDM vol. 1, table 4-7), the QNaN indefinite, precision control, C1 as "rounded up",
//! and the conversions to and from memory formats (SDM vol. 1, chapters 4 and 8).
//!
//! Precision control (24 or 53 bits with the extended exponent range) rounds once: the operation
//! is done in a 110-bit format first, truncated and with its last bit set when inexact ("round
//! to odd"), which makes the second rounding, in any mode, give the same result as rounding the
//! exact value (the intermediate has more than p + 1 bits; Boldo and Melquiond, "Emulation of
//! FMA and correctly rounded sums: proved algorithms using rounding to odd", 2008).

use super::fsw;
use super::Tag;
use rustc_apfloat::ieee::{Double, IeeeFloat, Semantics, Single, X87DoubleExtended};
use rustc_apfloat::{Float, FloatConvert, Round, Status, StatusAnd};

/// The 80 bits of a register.
pub const MASK80: u128 = (1 << 80) - 1;
/// The QNaN indefinite: negative, exponent all ones, significand C000...0.
pub const INDEFINITE: u128 = 0xffff_c000_0000_0000_0000;
/// The integer bit of the significand.
const J: u128 = 1 << 63;

/// The 80-bit format.
pub type F = X87DoubleExtended;

/// The intermediate format for precision control: 110-bit significand, a wider exponent.
pub struct WideS;
impl Semantics for WideS {
    const BITS: usize = 1 + 17 + 109;
    const EXP_BITS: usize = 17;
    const PRECISION: usize = 110;
}
/// See [`WideS`].
pub type Wide = IeeeFloat<WideS>;

/// 24-bit significand, extended exponent range (precision control "single").
pub struct Pc24S;
impl Semantics for Pc24S {
    const BITS: usize = 1 + 15 + 23;
    const EXP_BITS: usize = 15;
    const PRECISION: usize = 24;
}

/// 53-bit significand, extended exponent range (precision control "double").
pub struct Pc53S;
impl Semantics for Pc53S {
    const BITS: usize = 1 + 15 + 52;
    const EXP_BITS: usize = 15;
    const PRECISION: usize = 53;
}

/// What an 80-bit value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// +0 or -0.
    Zero,
    /// A denormal or a pseudo-denormal (exponent 0 with the integer bit set).
    Denormal,
    /// A normal finite value.
    Normal,
    /// An infinity.
    Infinity,
    /// A quiet NaN.
    QNan,
    /// A signaling NaN.
    SNan,
    /// An encoding the 387 and later refuse: unnormals, pseudo-NaNs, pseudo-infinities.
    Unsupported,
}

/// Classifies an 80-bit value (SDM vol. 1, table 8-3).
pub fn kind(v: u128) -> Kind {
    let exp = (v >> 64) & 0x7fff;
    let sig = v & ((1 << 64) - 1);
    let j = sig & J != 0;
    match exp {
        0 if sig == 0 => Kind::Zero,
        0 => Kind::Denormal,
        0x7fff if !j => Kind::Unsupported,
        0x7fff if sig == J => Kind::Infinity,
        0x7fff if sig & (1 << 62) != 0 => Kind::QNan,
        0x7fff => Kind::SNan,
        _ if !j => Kind::Unsupported,
        _ => Kind::Normal,
    }
}

/// The tag a value gets.
pub fn tag_of(v: u128) -> Tag {
    match kind(v) {
        Kind::Zero => Tag::Zero,
        Kind::Normal => Tag::Valid,
        _ => Tag::Special,
    }
}

/// The sign bit.
pub fn negative(v: u128) -> bool {
    v & (1 << 79) != 0
}

/// Whether `v` is a NaN (quiet or signaling).
pub fn is_nan(v: u128) -> bool {
    matches!(kind(v), Kind::QNan | Kind::SNan)
}

/// Converts a value that is not [`Kind::Unsupported`] to the arithmetic type (a
/// pseudo-denormal is the normal number it equals).
pub fn to_f(v: u128) -> F {
    if kind(v) == Kind::Denormal && v & J != 0 {
        // Exponent 0 with the integer bit: worth 1.f * 2^-16382, i.e. exponent field 1.
        return F::from_bits(v | (1 << 64));
    }
    F::from_bits(v & MASK80)
}

/// The 80-bit encoding of an arithmetic value; NaNs keep their payload.
pub fn from_f(f: F) -> u128 {
    f.to_bits() & MASK80
}

/// `v` made quiet.
pub fn quiet(v: u128) -> u128 {
    v | (1 << 62)
}

/// The x87's choice of NaN for an operation on `a` and `b` (at least one a NaN), made quiet:
/// the NaN operand if only one is; the quiet one of a signaling and a quiet NaN; else the one
/// with the larger significand (SDM vol. 1, table 4-7), the positive one if they are equal.
pub fn propagate_nan(a: u128, b: u128) -> u128 {
    let sig = |v: u128| v & ((1 << 64) - 1);
    match (kind(a), kind(b)) {
        (Kind::QNan | Kind::SNan, kb) if !matches!(kb, Kind::QNan | Kind::SNan) => quiet(a),
        (ka, Kind::QNan | Kind::SNan) if !matches!(ka, Kind::QNan | Kind::SNan) => quiet(b),
        (Kind::SNan, Kind::QNan) => b,
        (Kind::QNan, Kind::SNan) => a,
        _ if sig(b) > sig(a) => quiet(b),
        // Equal significands: the positive one (measured on Intel, every operation).
        _ if sig(b) == sig(a) && negative(a) => quiet(b),
        _ => quiet(a),
    }
}

/// Rounding and precision control, from the control word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Env {
    /// FCW.RC.
    pub round: Round,
    /// FCW.PC: 24, 53 or 64 significand bits (the reserved encoding 01 acts as 64 here).
    pub precision: u8,
}

impl Env {
    /// From a control word.
    pub fn from_fcw(fcw: u16) -> Self {
        let round = match (fcw >> super::fcw::RC_SHIFT) & 3 {
            0 => Round::NearestTiesToEven,
            1 => Round::TowardNegative,
            2 => Round::TowardPositive,
            _ => Round::TowardZero,
        };
        let precision = match (fcw >> super::fcw::PC_SHIFT) & 3 {
            0 => 24,
            2 => 53,
            _ => 64,
        };
        Env { round, precision }
    }

    /// The same rounding at full precision (for operations precision control does not
    /// affect).
    pub fn extended(self) -> Self {
        Env { precision: 64, ..self }
    }
}

/// An operation's outcome: the value, the exception flags it raised (FSW bits 5:0) and whether
/// the inexact result was rounded up in magnitude (C1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Res {
    /// The 80-bit result.
    pub value: u128,
    /// IE/DE/ZE/OE/UE/PE.
    pub flags: u16,
    /// C1: the result was rounded away from zero.
    pub up: bool,
}

impl Res {
    /// A result with no exception.
    pub fn exact(value: u128) -> Self {
        Res { value, flags: 0, up: false }
    }

    /// The masked response to an invalid operation: the QNaN indefinite.
    pub fn invalid() -> Self {
        Res { value: INDEFINITE, flags: fsw::IE, up: false }
    }
}

/// FSW flags for an apfloat status.
fn flags_of(s: Status) -> u16 {
    let mut f = 0;
    if s.contains(Status::INVALID_OP) {
        f |= fsw::IE;
    }
    if s.contains(Status::DIV_BY_ZERO) {
        f |= fsw::ZE;
    }
    if s.contains(Status::OVERFLOW) {
        f |= fsw::OE;
    }
    if s.contains(Status::UNDERFLOW) {
        f |= fsw::UE;
    }
    if s.contains(Status::INEXACT) {
        f |= fsw::PE;
    }
    f
}

/// Rounds `exact` (given as a function of the rounding mode, computed on extended or wide
/// operands) to the environment's precision and packages flags and C1. C1 compares the result
/// with the same computation rounded toward zero.
fn finish(env: Env, op: impl Fn(Round) -> StatusAnd<Wide>, direct: impl Fn(Round) -> StatusAnd<F>) -> Res {
    // The wide result rounded to odd: exact results as the rounding mode gives them (the sign
    // of an exact zero depends on it), inexact ones truncated with the last bit set.
    let exact_or_odd = |r: Round| {
        let first = op(r);
        if !first.status.contains(Status::INEXACT) {
            return first;
        }
        let StatusAnd { status, value } = op(Round::TowardZero);
        let mut w = value;
        if w.to_bits() & 1 == 0 {
            w = if w.is_negative() { w.next_down().value } else { w.next_up().value };
        }
        status.and(w)
    };
    // Overflow is when the result exceeds the range before rounding; the soft-float reports
    // only "inexact" when the rounding mode gives the largest finite number, the x87 OE.
    let beyond_range = |w: Wide| w.is_finite() && !w.is_zero() && w.ilogb() > 16383;
    let round = |r: Round| -> StatusAnd<F> {
        let StatusAnd { status: s1, value: w } = exact_or_odd(r);
        let StatusAnd { status: s2, value } = match env.precision {
            64 => direct(r),
            p => {
                let mut lossy = false;
                let narrowed = if p == 24 {
                    let v: StatusAnd<IeeeFloat<Pc24S>> = w.convert_r(r, &mut lossy);
                    v.map(|v| v.convert(&mut lossy).value)
                } else {
                    let v: StatusAnd<IeeeFloat<Pc53S>> = w.convert_r(r, &mut lossy);
                    v.map(|v| v.convert(&mut lossy).value)
                };
                // The wide step is exact enough that only its invalid/zero-divide flags count.
                let s1 = s1 & (Status::INVALID_OP | Status::DIV_BY_ZERO);
                StatusAnd { status: narrowed.status | s1, value: narrowed.value }
            }
        };
        let mut status = s2;
        if beyond_range(w) {
            status |= Status::OVERFLOW | Status::INEXACT;
        }
        status.and(value)
    };
    let StatusAnd { status, value } = round(env.round);
    let mut up = false;
    if status.contains(Status::INEXACT) && env.round != Round::TowardZero {
        let t = round(Round::TowardZero).value;
        up = !value.abs().bitwise_eq(t.abs());
    }
    Res { value: from_f(value), flags: flags_of(status), up }
}

/// Widens a supported value exactly.
fn wide(v: u128) -> Wide {
    let mut lossy = false;
    to_f(v).convert(&mut lossy).value
}

/// The four basic operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// a + b.
    Add,
    /// a - b.
    Sub,
    /// a * b.
    Mul,
    /// a / b.
    Div,
}

/// Checks operands of an arithmetic instruction: an unsupported encoding or a signaling NaN
/// is an invalid operation, a NaN propagates; otherwise the denormal-operand flag to raise.
fn screen(a: u128, b: u128) -> Result<u16, Res> {
    let (ka, kb) = (kind(a), kind(b));
    if ka == Kind::Unsupported || kb == Kind::Unsupported {
        return Err(Res::invalid());
    }
    if is_nan(a) || is_nan(b) {
        let ie = if ka == Kind::SNan || kb == Kind::SNan { fsw::IE } else { 0 };
        return Err(Res { value: propagate_nan(a, b), flags: ie, up: false });
    }
    Ok(if ka == Kind::Denormal || kb == Kind::Denormal { fsw::DE } else { 0 })
}

/// a `op` b as FADD/FSUB/FMUL/FDIV compute it (precision control applies).
pub fn arith(op: Op, a: u128, b: u128, env: Env) -> Res {
    let de = match screen(a, b) {
        Ok(de) => de,
        Err(r) => return r,
    };
    let (fa, fb) = (to_f(a), to_f(b));
    let (wa, wb) = (wide(a), wide(b));
    let mut r = finish(
        env,
        |rm| match op {
            Op::Add => wa.add_r(wb, rm),
            Op::Sub => wa.sub_r(wb, rm),
            Op::Mul => wa.mul_r(wb, rm),
            Op::Div => wa.div_r(wb, rm),
        },
        |rm| match op {
            Op::Add => fa.add_r(fb, rm),
            Op::Sub => fa.sub_r(fb, rm),
            Op::Mul => fa.mul_r(fb, rm),
            Op::Div => fa.div_r(fb, rm),
        },
    );
    if r.flags & fsw::IE != 0 {
        return Res::invalid();
    }
    // A zero divisor is reported alone (measured: a denormal dividend raises no DE then).
    if r.flags & fsw::ZE == 0 {
        r.flags |= de;
    }
    r
}

/// FSQRT (precision control applies).
pub fn sqrt(a: u128, env: Env) -> Res {
    let de = match screen(a, 0) {
        Ok(de) => de,
        Err(r) => return r,
    };
    match kind(a) {
        Kind::Zero => return Res { value: a, flags: de, up: false },
        Kind::Infinity if !negative(a) => return Res::exact(a),
        // Invalid: reported alone (measured: no DE for a negative denormal).
        _ if negative(a) => return Res::invalid(),
        _ => {}
    }
    let w = super::sqrt::sqrt_wide(to_f(a));
    let mut r = finish(
        env,
        |_| if w.1 { Status::OK } else { Status::INEXACT }.and(w.0),
        |rm| {
            let mut lossy = false;
            let v: StatusAnd<F> = w.0.convert_r(rm, &mut lossy);
            v
        },
    );
    if w.1 {
        // The square root is exact: no precision exception, no rounding.
        r.flags &= !fsw::PE;
        r.up = false;
    }
    r.flags |= de;
    r
}

/// FRNDINT: to an integer in the rounding mode (no precision control).
pub fn round_to_integral(a: u128, env: Env) -> Res {
    let de = match screen(a, 0) {
        Ok(de) => de,
        Err(r) => return r,
    };
    let f = to_f(a);
    let StatusAnd { status, value } = f.round_to_integral(env.round);
    let inexact = !value.bitwise_eq(f);
    let up = inexact && value.abs() > f.abs();
    Res { value: from_f(value), flags: de | if inexact { fsw::PE } else { 0 } | flags_of(status & Status::INVALID_OP), up }
}

/// FSCALE: a * 2^trunc(b).
pub fn scale(a: u128, b: u128, env: Env) -> Res {
    let de = match screen(a, b) {
        Ok(de) => de,
        Err(r) => return r,
    };
    let (ka, kb) = (kind(a), kind(b));
    match (ka, kb) {
        (Kind::Zero, Kind::Infinity) if !negative(b) => return Res::invalid(),
        (Kind::Infinity, Kind::Infinity) if negative(b) => return Res::invalid(),
        (_, Kind::Infinity) if negative(b) => {
            // Scaling down by infinity: a signed zero (an infinite `a` was refused above).
            return Res { value: a & (1 << 79), flags: de, up: false };
        }
        (Kind::Zero | Kind::Infinity, _) => return Res { value: a, flags: de, up: false },
        (_, Kind::Infinity) => return Res { value: (a & (1 << 79)) | (0x7fff << 64) | J, flags: de, up: false },
        _ => {}
    }
    let n = to_f(b).round_to_integral(Round::TowardZero).value;
    let mut exact = true;
    // Beyond +-40000 the result over- or underflows anyway, and the wide format still holds it.
    let n = n.to_i128_r(32, Round::TowardZero, &mut exact).value.clamp(-40_000, 40_000) as i32;
    let w = wide(a).scalbn(n);
    let mut r = finish(env.extended(), |_| Status::OK.and(w), |rm| {
        let mut lossy = false;
        w.convert_r(rm, &mut lossy)
    });
    r.flags |= de;
    r
}

/// An 80-bit integer value, exactly.
pub fn from_int(v: i64) -> u128 {
    from_f(F::from_i128(v as i128).value)
}

/// FIST/FISTP/FISTTP of `width` bits (16, 32, 64): the integer, or the masked response
/// (the integer indefinite, 100..0) with IE. A denormal raises no DE (SDM vol. 2, FIST; measured).
pub fn to_int(a: u128, width: usize, round: Round) -> (i64, u16, bool) {
    let indefinite = i64::MIN >> (64 - width);
    let k = kind(a);
    if matches!(k, Kind::Unsupported | Kind::QNan | Kind::SNan | Kind::Infinity) {
        return (indefinite, fsw::IE, false);
    }
    let f = to_f(a);
    let mut exact = true;
    let StatusAnd { status, value } = f.to_i128_r(width, round, &mut exact);
    if status.contains(Status::INVALID_OP) {
        return (indefinite, fsw::IE, false);
    }
    let inexact = !exact && !f.is_zero();
    let up = inexact && value.unsigned_abs() > f.abs().to_u128(128).value;
    (value as i64, if inexact { fsw::PE } else { 0 }, up)
}

/// A m32fp operand: exact; a NaN keeps its payload and stays signaling if it was (with IE;
/// FLD makes it quiet, an arithmetic operation chooses between it and the other operand first,
/// SDM vol. 1, table 4-7), a denormal raises DE.
pub fn from_single(bits: u32) -> Res {
    let exp = (bits >> 23) & 0xff;
    let frac = (bits & 0x7f_ffff) as u128;
    let sign = ((bits >> 31) as u128) << 79;
    if exp == 0xff && frac != 0 {
        let ie = if frac & (1 << 22) == 0 { fsw::IE } else { 0 };
        return Res { value: sign | (0x7fff << 64) | J | (frac << 40), flags: ie, up: false };
    }
    let mut lossy = false;
    let v: F = Single::from_bits(bits as u128).convert(&mut lossy).value;
    let de = if exp == 0 && frac != 0 { fsw::DE } else { 0 };
    Res { value: from_f(v), flags: de, up: false }
}

/// A m64fp operand: as [`from_single`].
pub fn from_double(bits: u64) -> Res {
    let exp = (bits >> 52) & 0x7ff;
    let frac = (bits & ((1 << 52) - 1)) as u128;
    let sign = ((bits >> 63) as u128) << 79;
    if exp == 0x7ff && frac != 0 {
        let ie = if frac & (1 << 51) == 0 { fsw::IE } else { 0 };
        return Res { value: sign | (0x7fff << 64) | J | (frac << 11), flags: ie, up: false };
    }
    let mut lossy = false;
    let v: F = Double::from_bits(bits as u128).convert(&mut lossy).value;
    let de = if exp == 0 && frac != 0 { fsw::DE } else { 0 };
    Res { value: from_f(v), flags: de, up: false }
}

/// FST m32fp/m64fp: rounded in the rounding mode; NaNs keep the top of their payload (made
/// quiet, IE for a signaling one); an unsupported encoding stores the format's indefinite.
/// `single` selects the 32-bit format. The value is in the low bits of [`Res::value`].
pub fn to_memory_float(a: u128, single: bool, round: Round) -> Res {
    let sign = (a >> 79) & 1;
    let (exp_all, frac_bits, indefinite) = if single { (0xffu128, 23u32, 0xffc0_0000u128) } else { (0x7ff, 52, 0xfff8_0000_0000_0000) };
    let top = frac_bits + 1 + if single { 8 } else { 11 } - 1;
    match kind(a) {
        Kind::Unsupported => return Res { value: indefinite, flags: fsw::IE, up: false },
        Kind::QNan | Kind::SNan => {
            let ie = if kind(a) == Kind::SNan { fsw::IE } else { 0 };
            let frac = ((a & ((1 << 63) - 1)) >> (63 - frac_bits)) | (1 << (frac_bits - 1));
            return Res { value: (sign << top) | (exp_all << frac_bits) | frac, flags: ie, up: false };
        }
        _ => {}
    }
    // A denormal raises no DE here (SDM vol. 2, FST; measured), only the underflow.
    let f = to_f(a);
    let conv = |rm: Round| -> (u128, Status) {
        let mut lossy = false;
        if single {
            let v: StatusAnd<Single> = f.convert_r(rm, &mut lossy);
            (v.value.to_bits(), v.status)
        } else {
            let v: StatusAnd<Double> = f.convert_r(rm, &mut lossy);
            (v.value.to_bits(), v.status)
        }
    };
    let (bits, mut status) = conv(round);
    // A finite value beyond the format's range overflows in every rounding mode, also when the
    // mode gives the largest finite number.
    let emax = if single { 127 } else { 1023 };
    if f.is_finite() && !f.is_zero() && f.ilogb() > emax {
        status |= Status::OVERFLOW | Status::INEXACT;
    }
    let mut up = false;
    if status.contains(Status::INEXACT) && round != Round::TowardZero {
        let mag = (1u128 << top) - 1;
        up = bits & mag != conv(Round::TowardZero).0 & mag;
    }
    Res { value: bits, flags: flags_of(status), up }
}

/// The result of comparing ST(0) with an operand: condition codes C3, C2, C0 (greater 000,
/// less 001, equal 100, unordered 111) and the flags (IE for any NaN when `signaling`, for a
/// signaling NaN or unsupported encoding otherwise; DE for a denormal).
pub fn compare(a: u128, b: u128, signaling: bool) -> (u16, u16) {
    let (ka, kb) = (kind(a), kind(b));
    let unsupported = ka == Kind::Unsupported || kb == Kind::Unsupported;
    let nan = is_nan(a) || is_nan(b);
    if unsupported || nan {
        let ie = unsupported || ka == Kind::SNan || kb == Kind::SNan || signaling;
        return (fsw::C3 | fsw::C2 | fsw::C0, if ie { fsw::IE } else { 0 });
    }
    let de = if ka == Kind::Denormal || kb == Kind::Denormal { fsw::DE } else { 0 };
    let cc = match to_f(a).partial_cmp(&to_f(b)) {
        Some(std::cmp::Ordering::Greater) => 0,
        Some(std::cmp::Ordering::Less) => fsw::C0,
        Some(std::cmp::Ordering::Equal) => fsw::C3,
        None => fsw::C3 | fsw::C2 | fsw::C0,
    };
    (cc, de)
}

/// FXAM's class in C3, C2, C0 (C1 is the sign; an empty register is 101 and handled by the
/// caller).
pub fn examine(a: u128) -> u16 {
    match kind(a) {
        Kind::Unsupported => 0,
        Kind::QNan | Kind::SNan => fsw::C0,
        Kind::Normal => fsw::C2,
        Kind::Infinity => fsw::C2 | fsw::C0,
        Kind::Zero => fsw::C3,
        Kind::Denormal => fsw::C3 | fsw::C2,
    }
}

/// FXTRACT: (exponent as a value, significand with exponent 0), or the zero-divide response
/// for a zero (exponent -infinity, significand the zero).
pub fn extract(a: u128) -> (u128, u128, u16) {
    match kind(a) {
        Kind::Unsupported => (INDEFINITE, INDEFINITE, fsw::IE),
        Kind::QNan | Kind::SNan => {
            let ie = if kind(a) == Kind::SNan { fsw::IE } else { 0 };
            (quiet(a), quiet(a), ie)
        }
        Kind::Zero => ((1 << 79) | (0x7fff << 64) | J, a, fsw::ZE),
        Kind::Infinity => ((0x7fff << 64) | J, a, 0),
        k => {
            let de = if k == Kind::Denormal { fsw::DE } else { 0 };
            let f = to_f(a);
            let e = f.ilogb();
            let sig = f.scalbn(-e);
            (from_int(e as i64), from_f(sig), de)
        }
    }
}

/// The outcome of FPREM/FPREM1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remainder {
    /// The remainder and the low three bits of the quotient (Q2, Q1, Q0 for C0, C3, C1).
    Complete(Res, u8),
    /// Only a part was removed (the exponent difference was 64 or more): C2 set.
    Partial(Res),
    /// No remainder was computed (invalid operation or a NaN): the value to store; C1 and C2
    /// are cleared, C0 and C3 kept.
    Refused(Res),
}

/// The 64-bit integer significand and the exponent of a finite nonzero value: v = m * 2^e.
fn split(f: F) -> (u128, i32) {
    let e = f.ilogb() - 63;
    let mut exact = true;
    (f.abs().scalbn(-e).to_u128_r(64, Round::TowardZero, &mut exact).value, e)
}

/// FPREM (`ieee` false: the quotient truncated) and FPREM1 (`ieee` true: rounded to nearest
/// even), in exact integer arithmetic. With an exponent difference d of 64 or more only a part
/// is removed: b * QQ * 2^(d - n) with n = 32 + (d mod 32) and QQ truncated, as measured on
/// Intel (the SDM lets n be any number from 32 to 63).
pub fn remainder(a: u128, b: u128, ieee: bool) -> Remainder {
    let de = match screen(a, b) {
        Ok(de) => de,
        Err(r) => return Remainder::Refused(r),
    };
    let (ka, kb) = (kind(a), kind(b));
    if ka == Kind::Infinity || kb == Kind::Zero {
        return Remainder::Refused(Res::invalid());
    }
    if ka == Kind::Zero || kb == Kind::Infinity {
        return Remainder::Complete(Res { value: a, flags: de, up: false }, 0);
    }
    let (fa, fb) = (to_f(a), to_f(b));
    let (ma, ea) = split(fa);
    let (mb, eb) = split(fb);
    let d = ea - eb;
    let value = |r: u128, e: i32, neg: bool| -> u128 {
        let v = F::from_u128(r).value.scalbn(e);
        from_f(if neg { -v } else { v })
    };
    if d >= 64 {
        let n = 32 + (d & 31);
        let num = ma << n;
        let r = num % mb;
        return Remainder::Partial(Res { value: value(r, ea - n, negative(a)), flags: de, up: false });
    }
    if d < 0 && !ieee {
        // |a| < |b|: the quotient is 0.
        return Remainder::Complete(Res { value: a, flags: de, up: false }, 0);
    }
    // a = ma * 2^d * 2^eb, b = mb * 2^eb; for d < 0 shift b instead.
    let (num, den, e) = if d >= 0 { (ma << d, mb, eb) } else { (ma, mb << (-d).min(2), ea) };
    let mut q = num / den;
    let mut r = num % den;
    let mut neg = negative(a);
    if ieee && (2 * r > den || (2 * r == den && q & 1 != 0)) {
        // Round the quotient to nearest: the remainder becomes den - r, of the other sign.
        q += 1;
        r = den - r;
        neg = !neg;
    }
    if r == 0 {
        neg = negative(a);
    }
    Remainder::Complete(Res { value: value(r, e, neg), flags: de, up: false }, (q & 7) as u8)
}

/// A positive constant given by the top 128 bits of its significand (the integer bit first)
/// and its binary exponent, rounded to 64 bits as the rounding mode says (FLDPI and the others,
/// SDM vol. 1, 8.3.8).
pub fn constant(sig128: u128, exp: i32, round: Round) -> u128 {
    let sig64 = sig128 >> 64;
    let rest = sig128 as u64;
    let up = match round {
        Round::NearestTiesToEven => rest > 1 << 63 || (rest == 1 << 63 && sig64 & 1 != 0),
        Round::TowardPositive => rest != 0,
        _ => false,
    };
    (((exp + 16383) as u128) << 64) | (sig64 + up as u128)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: u128 = 0x3fff_8000_0000_0000_0000;
    const TWO: u128 = 0x4000_8000_0000_0000_0000;
    const THREE: u128 = 0x4000_c000_0000_0000_0000;

    fn env() -> Env {
        Env::from_fcw(0x37f)
    }

    #[test]
    fn basic_arithmetic_is_exact_when_it_can_be() {
        assert_eq!(arith(Op::Add, ONE, TWO, env()), Res::exact(THREE));
        assert_eq!(arith(Op::Mul, THREE, ONE, env()), Res::exact(THREE));
        let third = arith(Op::Div, ONE, THREE, env());
        assert_eq!(third.flags, fsw::PE);
        assert_eq!(third.value, 0x3ffd_aaaa_aaaa_aaaa_aaab, "1/3 rounds up to nearest");
        assert!(third.up);
        let down = arith(Op::Div, ONE, THREE, Env::from_fcw(0x37f | 1 << 10));
        assert_eq!(down.value, 0x3ffd_aaaa_aaaa_aaaa_aaaa);
        assert!(!down.up);
    }

    #[test]
    fn precision_control_rounds_the_significand() {
        let third53 = arith(Op::Div, ONE, THREE, Env::from_fcw(0x27f));
        // 1/3 to 53 bits: 0x15555555555555 (53 bits) then zeros.
        assert_eq!(third53.value, 0x3ffd_aaaa_aaaa_aaaa_a800);
        let third24 = arith(Op::Div, ONE, THREE, Env::from_fcw(0x07f));
        assert_eq!(third24.value, 0x3ffd_aaaa_ab00_0000_0000);
    }

    #[test]
    fn invalid_operations_give_the_indefinite() {
        let inf = 0x7fff_8000_0000_0000_0000;
        assert_eq!(arith(Op::Sub, inf, inf, env()), Res::invalid());
        assert_eq!(arith(Op::Div, 0, 0, env()), Res::invalid());
        let unnormal = 0x3fff_0000_0000_0000_0001;
        assert_eq!(arith(Op::Add, unnormal, ONE, env()), Res::invalid());
        let z = arith(Op::Div, ONE, 0, env());
        assert_eq!((z.value, z.flags), (inf, fsw::ZE));
    }

    #[test]
    fn nans_propagate_quietly() {
        let snan = 0x7fff_a000_0000_0000_0000;
        let r = arith(Op::Add, snan, ONE, env());
        assert_eq!((r.value, r.flags), (0x7fff_e000_0000_0000_0000, fsw::IE));
        let qnan = 0xffff_c000_0000_0000_1234;
        assert_eq!(arith(Op::Mul, ONE, qnan, env()).value, qnan);
    }

    #[test]
    fn memory_formats_round_trip() {
        assert_eq!(from_single(0x3f80_0000).value, ONE);
        // A signaling NaN stays signaling (with IE) for the operation to choose from.
        assert_eq!(from_single(0x7f80_0001), Res { value: 0x7fff_8000_0100_0000_0000, flags: fsw::IE, up: false });
        assert_eq!(from_double(0x4008_0000_0000_0000).value, THREE);
        assert_eq!(to_memory_float(THREE, true, Round::NearestTiesToEven).value, 0x4040_0000);
        assert_eq!(to_memory_float(INDEFINITE, false, Round::NearestTiesToEven).value, 0xfff8_0000_0000_0000);
        assert_eq!(to_int(THREE, 16, Round::NearestTiesToEven), (3, 0, false));
        let half = 0x3ffe_8000_0000_0000_0000;
        assert_eq!(to_int(half, 32, Round::NearestTiesToEven), (0, fsw::PE, false));
        assert_eq!(to_int(half, 32, Round::TowardPositive), (1, fsw::PE, true));
        assert_eq!(to_int(0x7fff_8000_0000_0000_0000, 16, Round::TowardZero).0, -32768);
    }

    #[test]
    fn constants_round_in_the_rounding_mode() {
        let pi = 0xc90f_daa2_2168_c234_c4c6_628b_80dc_1cd1;
        assert_eq!(constant(pi, 1, Round::NearestTiesToEven), 0x4000_c90f_daa2_2168_c235);
        assert_eq!(constant(pi, 1, Round::TowardZero), 0x4000_c90f_daa2_2168_c234);
    }
}
