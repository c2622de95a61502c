//! Templates only 32-bit code has: BCD adjustments, PUSHA/POPA, segment register loads and
//! stores (MOV, PUSH/POP, LES/LDS) and 16-bit addressing, through the scratch segment
//! ([`SCRATCH_SEL`], an LDT data segment based at the scratch buffer).
//!
//! Every template that loads DS or ES puts the user data selector back before it ends, so the
//! absolute addresses of the other templates stay valid; the compare still checks DS and ES.

use super::*;

/// A BCD adjustment after AL/AX is set to a value with BCD digits, non-BCD nibbles or carries.
pub fn t_bcd(g: &mut Gen) {
    let ax = match g.rng.gen_range(0..4) {
        0 => g.rng.gen::<u16>() as u64,
        1 => (g.rng.gen_range(0..10) << 8 | g.rng.gen_range(0..16) << 4 | g.rng.gen_range(0..16)) as u64,
        2 => *g.pick(&[0x0009u64, 0x000a, 0x000f, 0x0099, 0x009a, 0x00f9, 0x00ff, 0x0205, 0x0100, 0xff0f]),
        _ => g.value(16),
    };
    if g.rng.gen_bool(0.8) {
        g.mov_imm(Register::AX, ax);
    }
    match g.rng.gen_range(0..6) {
        0 => g.emit_code(Code::Aaa, &[]),
        1 => g.emit_code(Code::Aas, &[]),
        2 => g.emit_code(Code::Daa, &[]),
        3 => g.emit_code(Code::Das, &[]),
        4 => {
            // AAM 0 is #DE.
            let base = if g.rng.gen_bool(0.7) { 10 } else { g.rng.gen_range(1..256) };
            g.emit_code(Code::Aam_imm8, &[Op::I(base)]);
        }
        _ => {
            let base = if g.rng.gen_bool(0.7) { 10 } else { g.rng.gen_range(0..256) };
            g.emit_code(Code::Aad_imm8, &[Op::I(base)]);
        }
    }
}

/// PUSHAD/POPAD and PUSHAW/POPAW (POPA skips the stack pointer's slot).
pub fn t_pusha_popa(g: &mut Gen) {
    let o16 = g.rng.gen_bool(0.4);
    let room = if o16 { 16 } else { 32 };
    let push = if g.depth >= STACK_SLACK - room {
        false
    } else if g.depth <= -STACK_SLACK + room {
        true
    } else {
        g.rng.gen_bool(0.5)
    };
    let code = match (push, o16) {
        (true, false) => Code::Pushad,
        (true, true) => Code::Pushaw,
        (false, false) => Code::Popad,
        (false, true) => Code::Popaw,
    };
    g.emit_code(code, &[]);
}

/// A selector for a data segment register: the scratch segment mostly, the user data segment,
/// or null (legal to load, never used before the template reloads it).
fn data_selector(g: &mut Gen) -> u64 {
    *g.pick(&[SCRATCH_SEL as u64, SCRATCH_SEL as u64, USER_DS as u64, 0])
}

/// Loads DS and ES with `sel` through a 16-bit register not in `avoid`.
fn load_ds_es(g: &mut Gen, sel: u64, avoid: u32) {
    let r = gpr(16, g.reg_index(avoid));
    g.mov_imm(r, sel);
    g.emit_code(Code::Mov_Sreg_rm16, &[Op::R(Register::ES), Op::R(r)]);
    g.emit_code(Code::Mov_Sreg_rm16, &[Op::R(Register::DS), Op::R(r)]);
}

/// Puts the user data selector back into DS and ES (PUSH imm8 / POP, or MOV from a register).
fn restore_ds_es(g: &mut Gen) {
    if g.rng.gen_bool(0.5) && g.depth > -STACK_SLACK + 16 {
        for (pop, sreg) in [(Code::Popd_ES, Register::ES), (Code::Popd_DS, Register::DS)] {
            g.emit_code(Code::Pushd_imm8, &[Op::I(USER_DS as i64)]);
            g.emit_code(pop, &[Op::R(sreg)]);
        }
    } else {
        load_ds_es(g, USER_DS as u64, 0);
    }
}

/// Segment register traffic: MOV to and from ES/DS (register and memory forms, 16- and 32-bit
/// destinations), PUSH/POP of ES and DS with both operand sizes, LES/LDS from a far pointer
/// written to the scratch buffer, and a read through ES while it holds the scratch segment.
pub fn t_segment_loads(g: &mut Gen) {
    match g.rng.gen_range(0..4) {
        0 => {
            // MOV Sreg, r16, then the selector back out: to a 16- or 32-bit register or memory.
            let sel = data_selector(g);
            load_ds_es(g, sel, 0);
            let sreg = *g.pick(&[Register::ES, Register::DS, Register::SS, Register::CS]);
            match g.rng.gen_range(0..3) {
                0 => {
                    let r = g.reg(32, 0);
                    g.emit_code(Code::Mov_r32m16_Sreg, &[Op::R(r), Op::R(sreg)]);
                }
                1 => {
                    let r = g.reg(16, 0);
                    g.emit_code(Code::Mov_rm16_Sreg, &[Op::R(r), Op::R(sreg)]);
                }
                _ => {
                    restore_ds_es(g);
                    let m = g.mem(2, 1, 0);
                    g.emit_code(Code::Mov_rm16_Sreg, &[Op::M(m), Op::R(sreg)]);
                }
            }
        }
        1 => {
            // PUSH ES/DS (16- or 32-bit operand: how much of the slot a selector write covers
            // is a CPU property), then POP into the other.
            if g.depth <= -STACK_SLACK + 16 {
                g.emit_code(Code::Popd_ES, &[Op::R(Register::ES)]);
            } else {
                let sel = data_selector(g);
                load_ds_es(g, sel, 0);
                let o16 = g.rng.gen_bool(0.4);
                g.emit_code(if o16 { Code::Pushw_ES } else { Code::Pushd_ES }, &[Op::R(Register::ES)]);
                g.emit_code(if o16 { Code::Popw_DS } else { Code::Popd_DS }, &[Op::R(Register::DS)]);
            }
        }
        2 => {
            // LES/LDS r, m16:32 (or m16:16) from a far pointer in the scratch buffer.
            let o16 = g.rng.gen_bool(0.3);
            let len = if o16 { 4 } else { 6 };
            let t = g.rng.gen_range(0..=SCRATCH_SIZE - len) as i64;
            let sel = data_selector(g);
            let off = g.rng.gen::<u32>() as i64;
            if o16 {
                g.emit_code(Code::Mov_rm16_imm16, &[Op::M(g.scratch_at(t)), Op::I(off & 0xffff)]);
                g.emit_code(Code::Mov_rm16_imm16, &[Op::M(g.scratch_at(t + 2)), Op::I(sel as i64)]);
            } else {
                g.emit_code(Code::Mov_rm32_imm32, &[Op::M(g.scratch_at(t)), Op::I(off as i32 as i64)]);
                g.emit_code(Code::Mov_rm16_imm16, &[Op::M(g.scratch_at(t + 4)), Op::I(sel as i64)]);
            }
            let r = g.reg(if o16 { 16 } else { 32 }, 0);
            let code = match (g.rng.gen_bool(0.5), o16) {
                (true, false) => Code::Les_r32_m1632,
                (true, true) => Code::Les_r16_m1616,
                (false, false) => Code::Lds_r32_m1632,
                (false, true) => Code::Lds_r16_m1616,
            };
            g.emit_code(code, &[Op::R(r), Op::M(g.scratch_at(t))]);
        }
        _ => {
            // Through ES = the scratch segment: a read and a write at small offsets.
            load_ds_es(g, SCRATCH_SEL as u64, 0);
            let t = g.rng.gen_range(0..=SCRATCH_SIZE - 4) as i64;
            let es = |t: i64| MemoryOperand::new(Register::None, Register::None, 1, t, 4, false, Register::ES);
            let r = g.reg(32, 0);
            g.emit_code(Code::Mov_r32_rm32, &[Op::R(r), Op::M(es(t))]);
            let u = g.rng.gen_range(0..=SCRATCH_SIZE - 4) as i64;
            g.emit_code(Code::Add_rm32_r32, &[Op::M(es(u)), Op::R(r)]);
        }
    }
    restore_ds_es(g);
}

/// 16-bit addresses (`[bx|bp + si|di + disp16]`, wrapping at 64 KiB) through ES = the scratch
/// segment, with ALU, MOV, INC and NEG forms of every operand size.
pub fn t_address16(g: &mut Gen) {
    let es = gpr(16, g.reg_index(0b1110_1000)); // not BX, BP, SI, DI
    g.mov_imm(es, SCRATCH_SEL as u64);
    g.emit_code(Code::Mov_Sreg_rm16, &[Op::R(Register::ES), Op::R(es)]);
    for _ in 0..g.rng.gen_range(1..=3) {
        let bits = g.size_bits();
        let size = bits as usize / 8;
        let base = *g.pick(&[Register::BX, Register::BP, Register::None]);
        let index = *g.pick(&[Register::SI, Register::DI, Register::None]);
        // A lone SI or DI is a base to the encoder.
        let (base, index) = if base == Register::None { (index, Register::None) } else { (base, index) };
        let t = g.rng.gen_range(0..=SCRATCH_SIZE - size) as u64;
        let mut sum = 0u64;
        for r in [base, index] {
            if r != Register::None {
                let v = g.rng.gen::<u16>() as u64;
                g.mov_imm(r, v);
                sum += v;
            }
        }
        let disp = t.wrapping_sub(sum) & 0xffff;
        let m = MemoryOperand::new(base, index, 1, disp as u16 as i16 as i64, 2, false, Register::ES);
        // Operand registers never hold the address (BX, BP, SI, DI are avoided).
        let r = g.reg(bits, 0b1110_1000);
        let op = *g.pick(&["Add", "Adc", "Sub", "Sbb", "And", "Or", "Xor", "Cmp", "Mov"]);
        match g.rng.gen_range(0..4) {
            0 => g.emit_code(g.table.code(&format!("{op}_rm{bits}_r{bits}")), &[Op::M(m), Op::R(r)]),
            1 => g.emit_code(g.table.code(&format!("{op}_r{bits}_rm{bits}")), &[Op::R(r), Op::M(m)]),
            2 => g.emit_code(g.table.code(&format!("Inc_rm{bits}")), &[Op::M(m)]),
            _ => g.emit_code(g.table.code(&format!("Neg_rm{bits}")), &[Op::M(m)]),
        }
    }
    restore_ds_es(g);
}

/// String instructions with a 16-bit address size: CX counts, SI and DI index DS and ES (both
/// the scratch segment); the upper halves of ECX, ESI and EDI must stay as they were.
pub fn t_string16(g: &mut Gen) {
    load_ds_es(g, SCRATCH_SEL as u64, 0b1100_0010); // not CX, SI, DI
    let kind = g.rng.gen_range(0..5);
    let sz = *g.pick(&[1usize, 2, 4]);
    let rep_kind = match g.rng.gen_range(0..3) {
        0 => RepPrefixKind::None,
        1 => RepPrefixKind::Repe,
        _ => RepPrefixKind::Repne,
    };
    let rep_kind = if kind < 3 && rep_kind == RepPrefixKind::Repne { RepPrefixKind::Repe } else { rep_kind };
    let count: u64 = g.rng.gen_range(0..9);
    let df = if g.rng.gen_bool(0.5) { Code::Std } else { Code::Cld };
    g.emit_code(df, &[]);
    let s = g.rng.gen_range(72..SCRATCH_SIZE - 72) as u64;
    let d = if g.rng.gen_bool(0.3) { (s as i64 + g.rng.gen_range(-16i64..16)).clamp(72, SCRATCH_SIZE as i64 - 72) as u64 } else { g.rng.gen_range(72..SCRATCH_SIZE - 72) as u64 };
    g.mov_imm(Register::SI, s);
    g.mov_imm(Register::DI, d);
    g.mov_imm(Register::CX, count);
    let seg = Register::None;
    let i = match (kind, sz) {
        (0, 1) => Instruction::with_movsb(16, seg, rep_kind),
        (0, 2) => Instruction::with_movsw(16, seg, rep_kind),
        (0, _) => Instruction::with_movsd(16, seg, rep_kind),
        (1, 1) => Instruction::with_stosb(16, rep_kind),
        (1, 2) => Instruction::with_stosw(16, rep_kind),
        (1, _) => Instruction::with_stosd(16, rep_kind),
        (2, 1) => Instruction::with_lodsb(16, seg, rep_kind),
        (2, 2) => Instruction::with_lodsw(16, seg, rep_kind),
        (2, _) => Instruction::with_lodsd(16, seg, rep_kind),
        (3, 1) => Instruction::with_scasb(16, rep_kind),
        (3, 2) => Instruction::with_scasw(16, rep_kind),
        (3, _) => Instruction::with_scasd(16, rep_kind),
        (_, 1) => Instruction::with_cmpsb(16, seg, rep_kind),
        (_, 2) => Instruction::with_cmpsw(16, seg, rep_kind),
        (_, _) => Instruction::with_cmpsd(16, seg, rep_kind),
    }
    .unwrap();
    let fx = if rep_kind != RepPrefixKind::None && count == 0 { Some((0, 0)) } else { None };
    assert!(g.emit_fx(i, fx));
    restore_ds_es(g);
}
