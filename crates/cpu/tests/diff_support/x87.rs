//! The x87 suite: a random FPU state (TOP, stack depth, rounding and precision control, values
//! of every class in the registers) loaded with FXRSTOR64 on the host and set directly in
//! smmlab, x87 instructions in every operand form, and the FXSAVE64 image compared after
//! (control, status and tag words, MXCSR, ST0-ST7; not the last-instruction pointers, whose
//! addresses differ between the two sides).

use super::*;

const F1: u128 = 0x3fff_8000_0000_0000_0000;

/// FCW, FSW, tags and MXCSR of FNINIT's state, no registers in use.
pub fn clean_image() -> Vec<u8> {
    let mut fx = vec![0u8; FX_BYTES];
    fx[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
    fx[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
    fx
}

/// An interesting 80-bit value: integers, random normals near 1 and at the ends of the range,
/// zeros, denormals, infinities, NaNs, and now and then an encoding the x87 refuses.
fn value80(g: &mut Gen) -> u128 {
    let sign = (g.rng.gen_bool(0.4) as u128) << 79;
    let sig = |g: &mut Gen| (1u128 << 63) | (g.rng.gen::<u64>() as u128 & ((1 << 63) - 1));
    let v = match g.rng.gen_range(0..20) {
        0 => 0,
        1 => F1,
        2..=4 => float_of_int(g.rng.gen_range(1..1000)),
        5..=8 => ((16383 + g.rng.gen_range(-70i64..70)) as u128) << 64 | sig(g),
        9 => ((16383 + g.rng.gen_range(-16000i64..16000)) as u128) << 64 | sig(g),
        10 => (g.rng.gen_range(0x7ff0u128..0x7fff)) << 64 | sig(g),
        11 => (g.rng.gen_range(1u128..16)) << 64 | sig(g),
        12 => g.rng.gen::<u64>() as u128 >> g.rng.gen_range(1..64),
        13 => 0x7fff_8000_0000_0000_0000,
        14 => 0x7fff_c000_0000_0000_0000 | (g.rng.gen::<u64>() as u128 >> 2),
        15 => 0x7fff_8000_0000_0000_0000 | (g.rng.gen::<u64>() as u128 >> 3) | 1,
        16 => 0xffff_c000_0000_0000_0000,
        17 => {
            // Half-integers and values near them (rounding ties).
            let n = g.rng.gen_range(0..64) as f64 + 0.5;
            let bits = n.to_bits();
            let exp = ((bits >> 52) & 0x7ff) as i64 - 1023 + 16383;
            (exp as u128) << 64 | (1 << 63) | ((bits as u128 & ((1 << 52) - 1)) << 11) | g.rng.gen_range(0u128..3)
        }
        18 if g.rng.gen_bool(0.3) => (g.rng.gen_range(1u128..0x7fff)) << 64 | (g.rng.gen::<u64>() as u128 >> 1),
        _ => ((16383 + g.rng.gen_range(-4i64..4)) as u128) << 64 | sig(g),
    };
    v | if v == 0xffff_c000_0000_0000_0000 { 0 } else { sign }
}

/// `n` as an 80-bit value.
fn float_of_int(n: u64) -> u128 {
    if n == 0 {
        return 0;
    }
    let lz = n.leading_zeros();
    ((16383 + 63 - lz as u128) << 64) | ((n as u128) << lz)
}

/// A random FPU state: masked exceptions, random rounding and precision control, TOP, a stack
/// of 0-8 values (the empty registers hold stale values too) and random condition codes.
pub fn initial_image(g: &mut Gen) -> Vec<u8> {
    let mut fx = clean_image();
    let rc = g.rng.gen_range(0..4u16);
    let pc = *g.pick(&[0u16, 2, 3, 3, 3]);
    let fcw = 0x40 | 0x3f | rc << 10 | pc << 8;
    let top = g.rng.gen_range(0..8u16);
    let depth = g.rng.gen_range(0..=8u8);
    let cc = g.rng.gen::<u16>() & 0x4700;
    let fsw = top << 11 | cc;
    fx[0..2].copy_from_slice(&fcw.to_le_bytes());
    fx[2..4].copy_from_slice(&fsw.to_le_bytes());
    // ST(i) is physical register (TOP + i) & 7; the abridged tags are by physical register.
    let mut tags = 0u8;
    for i in 0..8u8 {
        let v = value80(g);
        fx[32 + 16 * i as usize..42 + 16 * i as usize].copy_from_slice(&v.to_le_bytes()[..10]);
        if i < depth {
            tags |= 1 << ((top as u8 + i) & 7);
        }
    }
    fx[4] = tags;
    fx
}

/// Sets smmlab's FPU from an image, as FXRSTOR64 does.
pub fn load_image(cpu: &mut Cpu, fx: &[u8]) {
    let w = |k: usize| u16::from_le_bytes([fx[k], fx[k + 1]]);
    let x = &mut cpu.fpu;
    x.fcw = w(0);
    x.fsw = w(2);
    for i in 0..8u8 {
        let mut b = [0u8; 16];
        b[..10].copy_from_slice(&fx[32 + 16 * i as usize..42 + 16 * i as usize]);
        let p = x.phys(i);
        x.regs[p] = u128::from_le_bytes(b);
    }
    x.set_abridged_tags(fx[4]);
    cpu.mxcsr = u32::from_le_bytes(fx[24..28].try_into().unwrap());
}

/// smmlab's FPU as an image (the fields the compare looks at).
pub fn store_image(cpu: &Cpu) -> Vec<u8> {
    let mut fx = vec![0u8; FX_BYTES];
    let x = &cpu.fpu;
    fx[0..2].copy_from_slice(&x.fcw.to_le_bytes());
    fx[2..4].copy_from_slice(&x.fsw.to_le_bytes());
    fx[4] = x.abridged_tags();
    fx[24..28].copy_from_slice(&cpu.mxcsr.to_le_bytes());
    for i in 0..8u8 {
        fx[32 + 16 * i as usize..42 + 16 * i as usize].copy_from_slice(&x.st(i).to_le_bytes()[..10]);
    }
    fx
}

fn st_of(fx: &[u8], i: usize) -> u128 {
    let mut b = [0u8; 16];
    b[..10].copy_from_slice(&fx[32 + 16 * i..42 + 16 * i]);
    u128::from_le_bytes(b)
}

/// An image in words, for a failing case's report.
pub fn describe(fx: &[u8]) -> String {
    let w = |k: usize| u16::from_le_bytes([fx[k], fx[k + 1]]);
    let mut out = format!("  fcw {:#06x} fsw {:#06x} (TOP {}) tags {:#010b}\n", w(0), w(2), (w(2) >> 11) & 7, fx[4]);
    for i in 0..8 {
        out += &format!("  st{i} {:#022x}\n", st_of(fx, i));
    }
    out
}

/// The differences between two images: FCW, FSW, abridged tags, MXCSR, ST0-ST7. Where the
/// x87 corners were not measured on this vendor (see `undefined_results_compared`), the
/// condition codes and the denormal flag, which the manuals leave undefined or order
/// differently for some instructions, are not compared.
pub fn compare(native: &[u8], emu: &[u8], init: &[u8]) -> Vec<String> {
    let mut d = Vec::new();
    let unmeasured_bits: u16 = if undefined_results_compared() { 0 } else { 0x4700 | 0x0002 };
    let w = |fx: &[u8], k: usize| u16::from_le_bytes([fx[k], fx[k + 1]]) & if k == 2 { !unmeasured_bits } else { !0 };
    for (name, k) in [("fcw", 0), ("fsw", 2)] {
        if w(native, k) != w(emu, k) {
            d.push(format!("{name:>6}: host {:#06x}  smmlab {:#06x}  (initial {:#06x})", w(native, k), w(emu, k), w(init, k)));
        }
    }
    if native[4] != emu[4] {
        d.push(format!("  tags: host {:#010b}  smmlab {:#010b}  (initial {:#010b})", native[4], emu[4], init[4]));
    }
    if native[24..28] != emu[24..28] {
        d.push(format!(" mxcsr: host {:02x?}  smmlab {:02x?}", &native[24..28], &emu[24..28]));
    }
    for i in 0..8 {
        let (a, b) = (st_of(native, i), st_of(emu, i));
        if a != b {
            d.push(format!("   st{i}: host {a:#022x}  smmlab {b:#022x}"));
        }
    }
    d
}

/// Stores `v` (80 bits) at a fresh scratch location and returns it as an m80 operand.
fn put80(g: &mut Gen, v: u128) -> MemoryOperand {
    let m = g.mem(10, 1, 0);
    put_bytes(g, m, &v.to_le_bytes()[..10]);
    m
}

/// Writes `bytes` at memory operand `m` with immediate moves.
fn put_bytes(g: &mut Gen, m: MemoryOperand, bytes: &[u8]) {
    let mut k = 0;
    while k < bytes.len() {
        let mut at = m;
        at.displacement = m.displacement.wrapping_add(k as i64);
        if at.displ_size == 0 {
            at.displ_size = 1;
        }
        if bytes.len() - k >= 4 {
            let v = u32::from_le_bytes(bytes[k..k + 4].try_into().unwrap());
            g.emit_code(Code::Mov_rm32_imm32, &[Op::M(at), Op::I(v as i32 as i64)]);
            k += 4;
        } else {
            g.emit_code(Code::Mov_rm16_imm16, &[Op::M(at), Op::I(u16::from_le_bytes([bytes[k], *bytes.get(k + 1).unwrap_or(&0)]) as i64)]);
            k += 2;
        }
    }
}

/// A float of the given width with an interesting value (from an 80-bit one, or random bits).
fn memory_float(g: &mut Gen, width: usize) -> Vec<u8> {
    if g.rng.gen_bool(0.3) {
        return (0..width).map(|_| g.rng.gen()).collect();
    }
    let v = value80(g);
    let sign = (v >> 79) & 1;
    let exp = ((v >> 64) & 0x7fff) as i64;
    let frac = v & ((1 << 63) - 1);
    let (eb, fb, bias) = if width == 4 { (8u32, 23u32, 127i64) } else { (11, 52, 1023) };
    let max = (1i64 << eb) - 1;
    let e = match exp {
        0 => 0,
        0x7fff => max,
        e => (e - 16383 + bias).clamp(0, max - 1),
    };
    let f = frac >> (63 - fb);
    let bits = (sign << (eb + fb)) | ((e as u128) << fb) | f;
    bits.to_le_bytes()[..width].to_vec()
}

/// The iced code called `name` (x87 forms such as `Fadd_st0_sti`, which the generic table
/// leaves out).
fn code_named(name: &str) -> Code {
    static BY_NAME: std::sync::OnceLock<HashMap<String, Code>> = std::sync::OnceLock::new();
    let map = BY_NAME.get_or_init(|| Code::values().map(|c| (format!("{c:?}"), c)).collect());
    *map.get(name).unwrap_or_else(|| panic!("no iced Code named {name}"))
}

fn st(i: u8) -> Register {
    Register::try_from(Register::ST0 as usize + i as usize).unwrap()
}

fn emit(g: &mut Gen, code: Code, ops: &[Op]) {
    g.emit_code(code, ops);
}

/// FLD in every form, FILD, FBLD and the constants.
pub fn t_load(g: &mut Gen) {
    match g.rng.gen_range(0..8) {
        0 => {
            let m = g.mem(4, 1, 0);
            let b = memory_float(g, 4);
            put_bytes(g, m, &b);
            emit(g, Code::Fld_m32fp, &[Op::M(m)]);
        }
        1 => {
            let m = g.mem(8, 1, 0);
            let b = memory_float(g, 8);
            put_bytes(g, m, &b);
            emit(g, Code::Fld_m64fp, &[Op::M(m)]);
        }
        2 => {
            let v = value80(g);
            let m = put80(g, v);
            emit(g, Code::Fld_m80fp, &[Op::M(m)]);
        }
        3 => {
            let code = *g.pick(&[Code::Fild_m16int, Code::Fild_m32int, Code::Fild_m64int]);
            let size = match code {
                Code::Fild_m16int => 2,
                Code::Fild_m32int => 4,
                _ => 8,
            };
            let m = g.mem(size, 1, 0);
            emit(g, code, &[Op::M(m)]);
        }
        4 => {
            let i = g.rng.gen_range(0..8);
            emit(g, Code::Fld_sti, &[Op::R(st(i))]);
        }
        5 => {
            // Packed BCD: 18 digits and a sign.
            let mut b = [0u8; 10];
            for byte in b.iter_mut().take(9) {
                *byte = (g.rng.gen_range(0..10) << 4) | g.rng.gen_range(0..10);
            }
            b[9] = if g.rng.gen_bool(0.5) { 0x80 } else { 0 };
            let m = g.mem(10, 1, 0);
            put_bytes(g, m, &b);
            emit(g, Code::Fbld_m80bcd, &[Op::M(m)]);
        }
        _ => {
            let code = *g.pick(&[Code::Fld1, Code::Fldz, Code::Fldpi, Code::Fldl2t, Code::Fldl2e, Code::Fldlg2, Code::Fldln2]);
            emit(g, code, &[]);
        }
    }
}

/// FST/FSTP to memory in every format and to registers, FIST/FISTP/FISTTP, FBSTP.
pub fn t_store(g: &mut Gen) {
    let forms: [(Code, usize); 13] = [
        (Code::Fst_m32fp, 4),
        (Code::Fst_m64fp, 8),
        (Code::Fstp_m32fp, 4),
        (Code::Fstp_m64fp, 8),
        (Code::Fstp_m80fp, 10),
        (Code::Fist_m16int, 2),
        (Code::Fist_m32int, 4),
        (Code::Fistp_m16int, 2),
        (Code::Fistp_m32int, 4),
        (Code::Fistp_m64int, 8),
        (Code::Fisttp_m16int, 2),
        (Code::Fisttp_m32int, 4),
        (Code::Fbstp_m80bcd, 10),
    ];
    if g.rng.gen_bool(0.15) {
        let i = g.rng.gen_range(0..8);
        let code = if g.rng.gen_bool(0.5) { Code::Fst_sti } else { Code::Fstp_sti };
        emit(g, code, &[Op::R(st(i))]);
        return;
    }
    let (code, size) = if g.rng.gen_bool(0.1) { (Code::Fisttp_m64int, 8) } else { *g.pick(&forms) };
    let m = g.mem(size, 1, 0);
    emit(g, code, &[Op::M(m)]);
}

/// The arithmetic: memory (single, double, 16- and 32-bit integer), ST(0) op ST(i), ST(i) op
/// ST(0), and the popping forms.
pub fn t_arith(g: &mut Gen) {
    let op = *g.pick(&["Fadd", "Fsub", "Fsubr", "Fmul", "Fdiv", "Fdivr"]);
    let code = |name: String| code_named(&name);
    match g.rng.gen_range(0..6) {
        0 | 1 => {
            let (form, width) = if g.rng.gen_bool(0.5) { ("m32fp", 4) } else { ("m64fp", 8) };
            let m = g.mem(width, 1, 0);
            if g.rng.gen_bool(0.7) {
                let b = memory_float(g, width);
                put_bytes(g, m, &b);
            }
            emit(g, code(format!("{op}_{form}")), &[Op::M(m)]);
        }
        2 => {
            let (form, width) = if g.rng.gen_bool(0.5) { ("m16int", 2) } else { ("m32int", 4) };
            let m = g.mem(width, 1, 0);
            let iop = format!("Fi{}", &op[1..]);
            emit(g, code(format!("{iop}_{form}")), &[Op::M(m)]);
        }
        3 => {
            let i = g.rng.gen_range(0..8);
            emit(g, code(format!("{op}_st0_sti")), &[Op::R(Register::ST0), Op::R(st(i))]);
        }
        4 => {
            let i = g.rng.gen_range(0..8);
            emit(g, code(format!("{op}_sti_st0")), &[Op::R(st(i)), Op::R(Register::ST0)]);
        }
        _ => {
            let i = g.rng.gen_range(0..8);
            emit(g, code(format!("{op}p_sti_st0")), &[Op::R(st(i)), Op::R(Register::ST0)]);
        }
    }
}

/// Sign, absolute value, square root, rounding, scaling, extraction, remainders, exchange,
/// classification.
pub fn t_unary(g: &mut Gen) {
    // FPREM/FPREM1's partial reduction is implementation-defined: measured on Intel only.
    let codes: &[Code] = if undefined_results_compared() {
        &[Code::Fchs, Code::Fabs, Code::Fsqrt, Code::Frndint, Code::Fscale, Code::Fxtract, Code::Fprem, Code::Fprem1, Code::Fxam, Code::Ftst]
    } else {
        &[Code::Fchs, Code::Fabs, Code::Fsqrt, Code::Frndint, Code::Fscale, Code::Fxtract, Code::Fxam, Code::Ftst]
    };
    if g.rng.gen_bool(0.15) {
        let i = g.rng.gen_range(0..8);
        emit(g, Code::Fxch_st0_sti, &[Op::R(Register::ST0), Op::R(st(i))]);
    } else {
        let c = *g.pick(codes);
        emit(g, c, &[]);
    }
}

/// Comparisons into C3/C2/C0 (then sometimes FNSTSW AX) or into EFLAGS.
pub fn t_compare(g: &mut Gen) {
    let i = g.rng.gen_range(0..8);
    match g.rng.gen_range(0..6) {
        0 => {
            let c = *g.pick(&[Code::Fcomi_st0_sti, Code::Fcomip_st0_sti, Code::Fucomi_st0_sti, Code::Fucomip_st0_sti]);
            emit(g, c, &[Op::R(Register::ST0), Op::R(st(i))]);
        }
        1 => {
            let c = *g.pick(&[Code::Fcom_st0_sti, Code::Fcomp_st0_sti, Code::Fucom_st0_sti, Code::Fucomp_st0_sti]);
            emit(g, c, &[Op::R(Register::ST0), Op::R(st(i))]);
        }
        2 => {
            let c = *g.pick(&[Code::Fcompp, Code::Fucompp]);
            emit(g, c, &[]);
        }
        3 => {
            let (c, width) = *g.pick(&[(Code::Fcom_m32fp, 4), (Code::Fcom_m64fp, 8), (Code::Fcomp_m32fp, 4), (Code::Fcomp_m64fp, 8)]);
            let m = g.mem(width, 1, 0);
            let b = memory_float(g, width);
            put_bytes(g, m, &b);
            emit(g, c, &[Op::M(m)]);
        }
        _ => {
            let (c, width) = *g.pick(&[(Code::Ficom_m16int, 2), (Code::Ficom_m32int, 4), (Code::Ficomp_m16int, 2), (Code::Ficomp_m32int, 4)]);
            let m = g.mem(width, 1, 0);
            emit(g, c, &[Op::M(m)]);
        }
    }
    if g.rng.gen_bool(0.3) {
        emit(g, Code::Fnstsw_AX, &[Op::R(Register::AX)]);
    }
}

/// The stack pointer and tags, FCMOVcc, and the control instructions that keep every exception
/// masked (FLDCW with a random rounding and precision control, FNSTCW, FNSTSW, FNCLEX).
pub fn t_stack_control(g: &mut Gen) {
    let i = g.rng.gen_range(0..8);
    match g.rng.gen_range(0..9) {
        0 => emit(g, Code::Fincstp, &[]),
        1 => emit(g, Code::Fdecstp, &[]),
        2 => emit(g, Code::Ffree_sti, &[Op::R(st(i))]),
        3 => {
            let c = *g.pick(&[Code::Fcmovb_st0_sti, Code::Fcmove_st0_sti, Code::Fcmovbe_st0_sti, Code::Fcmovu_st0_sti, Code::Fcmovnb_st0_sti, Code::Fcmovne_st0_sti, Code::Fcmovnbe_st0_sti, Code::Fcmovnu_st0_sti]);
            emit(g, c, &[Op::R(Register::ST0), Op::R(st(i))]);
        }
        4 => {
            let rc = g.rng.gen_range(0..4u16);
            let pc = *g.pick(&[0u16, 2, 3]);
            let cw = 0x3f | 0x40 | rc << 10 | pc << 8;
            let m = g.mem(2, 1, 0);
            put_bytes(g, m, &cw.to_le_bytes());
            emit(g, Code::Fldcw_m2byte, &[Op::M(m)]);
        }
        5 => {
            let m = g.mem(2, 1, 0);
            emit(g, Code::Fnstcw_m2byte, &[Op::M(m)]);
        }
        6 => {
            let m = g.mem(2, 1, 0);
            emit(g, Code::Fnstsw_m2byte, &[Op::M(m)]);
        }
        7 => emit(g, Code::Fnclex, &[]),
        _ => emit(g, Code::Fnop, &[]),
    }
}

/// MMX instructions on the registers the x87 state holds (random values of every class in
/// their low 64 bits): every lane operation, packs and unpacks, shifts, moves, the SSE
/// additions, EMMS; each sets TOP 0 and the tags valid (EMMS empty), which the compare sees.
pub fn t_mmx(g: &mut Gen) {
    let mnems = [
        "Paddb", "Paddw", "Paddd", "Paddq", "Paddsb", "Paddsw", "Paddusb", "Paddusw", "Psubb", "Psubw", "Psubd", "Psubq", "Psubsb", "Psubsw", "Psubusb", "Psubusw",
        "Pmullw", "Pmulhw", "Pmulhuw", "Pmuludq", "Pmaddwd", "Pand", "Pandn", "Por", "Pxor", "Pcmpeqb", "Pcmpeqw", "Pcmpeqd", "Pcmpgtb", "Pcmpgtw", "Pcmpgtd",
        "Packsswb", "Packssdw", "Packuswb", "Punpcklbw", "Punpcklwd", "Punpckldq", "Punpckhbw", "Punpckhwd", "Punpckhdq", "Psllw", "Pslld", "Psllq", "Psrlw",
        "Psrld", "Psrlq", "Psraw", "Psrad", "Pavgb", "Pavgw", "Pminub", "Pmaxub", "Pminsw", "Pmaxsw", "Psadbw", "Pshufw", "Pmovmskb", "Pextrw", "Pinsrw", "Movq",
        "Movd", "Movntq", "Movq2dq", "Movdq2q",
    ];
    if g.rng.gen_bool(0.05) {
        emit(g, Code::Emms, &[]);
        return;
    }
    // Only the forms with an MMX register.
    for _ in 0..100 {
        let m = *g.pick(&mnems);
        let forms: Vec<(Code, Vec<Tok>)> = g.table.forms(m).iter().filter(|(_, t)| t.iter().any(|t| matches!(t, Tok::Mm | Tok::MmM(_)))).cloned().collect();
        if forms.is_empty() {
            continue;
        }
        let (code, toks) = forms[g.rng.gen_range(0..forms.len())].clone();
        if g.generic_form(code.mnemonic(), code, &toks, 0.3) {
            return;
        }
    }
    panic!("no MMX form could be generated");
}
