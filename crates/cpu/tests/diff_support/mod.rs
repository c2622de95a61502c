//! Support for the differential tests: random instruction sequences from templates, a native
//! runner that executes them on the host CPU in a child process, an emulated runner that
//! executes them in smmlab's CPU in 64-bit mode, and the comparison of the two final states.
//!
//! Both sides see the same guest-linear layout: the 4 KiB scratch buffer at [`SCRATCH`] (R15
//! points at it; every memory operand lands inside it) and the case's stack inside it (RSP
//! starts at [`STACK_TOP`]).

#![allow(dead_code)]

mod compat32;
mod x87;

use cpu::cpuid::Vendor;
use cpu::{Access, AccessKind, Bus, Cpu, CpuModel, Exit, Segment};
use iced_x86::{
    Code, Decoder, DecoderOptions, Encoder, Formatter, Instruction, IntelFormatter, MemoryOperand, Mnemonic, Register,
    RepPrefixKind, RflagsBits,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::ptr::NonNull;

/// Guest-linear (and native) address of the scratch buffer.
pub const SCRATCH: u64 = 0x1000_0000;
pub const SCRATCH_SIZE: usize = 4096;
/// Initial RSP of every case: a stack inside the scratch buffer.
pub const STACK_TOP: u64 = SCRATCH + 0xf00;
/// How far PUSH/POP templates may move RSP away from STACK_TOP.
const STACK_SLACK: i64 = 0x80;
/// Native only: the state block the prologue loads from and the epilogue stores to.
const STATE_ADDR: u64 = 0x2000_0000;
/// Emulated only: where the case's code is placed.
const CODE_ADDR: u64 = 0x10000;
/// Emulated only: the GDT, LDT, TSS and IDT of 32-bit cases, the ring-0 stack and the HLT that
/// the #GP of the final (CPL 3) HLT reaches.
const GDT32: u64 = 0x5000;
const LDT32: u64 = 0x6000;
const TSS32: u64 = 0x6100;
const IDT32: u64 = 0x7000;
const RING0_STACK: u64 = 0x9000;
const HALT_HANDLER: u64 = 0x8000;
const LOW_RAM: usize = 0x20000;

const RSP: usize = 4;
const R15: usize = 15;

/// 32-bit cases run where a 64-bit Linux process's 32-bit code runs: CS = 0x23 (GDT entry 4,
/// DPL 3), SS = DS = ES = 0x2B (entry 5), CPL 3 in compatibility mode.
pub const USER_CS32: u16 = 0x23;
pub const USER_DS: u16 = 0x2b;
/// The 64-bit user code segment (to return to).
const USER_CS64: u16 = 0x33;
/// LDT entry 0, RPL 3: a 64 KiB data segment based at [`SCRATCH`], so 16-bit addresses reach
/// the scratch buffer (installed with `modify_ldt` natively).
pub const SCRATCH_SEL: u16 = 0x7;

/// RFLAGS bits.
pub const CF: u64 = 1;
pub const PF: u64 = 1 << 2;
pub const AF: u64 = 1 << 4;
pub const ZF: u64 = 1 << 6;
pub const SF: u64 = 1 << 7;
pub const DF: u64 = 1 << 10;
pub const OF: u64 = 1 << 11;
pub const ARITH: u64 = CF | PF | AF | ZF | SF | OF;
/// The RFLAGS bits the harness compares (minus the ones a sequence leaves undefined).
pub const COMPARED_FLAGS: u64 = ARITH | DF;

const GPR_NAMES: [&str; 16] = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

// ---------------------------------------------------------------------------------------------
// Machine state
// ---------------------------------------------------------------------------------------------

/// The architectural state the harness sets up and compares.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct State {
    pub regs: [u64; 16],
    pub rflags: u64,
    pub xmm: [u128; 16],
    /// DS and ES selectors (32-bit cases; 0 in 64-bit ones).
    pub segs: [u16; 2],
    /// The x87 part of an FXSAVE image (bytes 0-159: FCW, FSW, abridged tags, FOP, FIP, FDP,
    /// MXCSR, ST0-ST7); 64-bit cases load and store it with FXRSTOR64/FXSAVE64.
    pub fx: Vec<u8>,
    pub mem: Vec<u8>,
}

/// Bytes of the x87 image in [`State::fx`].
pub const FX_BYTES: usize = 160;
const STATE_BYTES: usize = 16 * 8 + 8 + 16 * 16 + 4 + FX_BYTES + SCRATCH_SIZE;

impl State {
    fn serialize(&self, out: &mut Vec<u8>) {
        for r in self.regs {
            out.extend_from_slice(&r.to_le_bytes());
        }
        out.extend_from_slice(&self.rflags.to_le_bytes());
        for x in self.xmm {
            out.extend_from_slice(&x.to_le_bytes());
        }
        for s in self.segs {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out.extend_from_slice(&self.fx);
        out.extend_from_slice(&self.mem);
    }

    fn deserialize(b: &[u8]) -> State {
        assert!(b.len() >= STATE_BYTES);
        let mut regs = [0u64; 16];
        for (k, r) in regs.iter_mut().enumerate() {
            *r = u64::from_le_bytes(b[k * 8..k * 8 + 8].try_into().unwrap());
        }
        let rflags = u64::from_le_bytes(b[128..136].try_into().unwrap());
        let mut xmm = [0u128; 16];
        for (k, x) in xmm.iter_mut().enumerate() {
            *x = u128::from_le_bytes(b[136 + k * 16..136 + k * 16 + 16].try_into().unwrap());
        }
        let segs = [u16::from_le_bytes([b[392], b[393]]), u16::from_le_bytes([b[394], b[395]])];
        let fx = b[396..396 + FX_BYTES].to_vec();
        let mem = b[396 + FX_BYTES..396 + FX_BYTES + SCRATCH_SIZE].to_vec();
        State { regs, rflags, xmm, segs, fx, mem }
    }
}

/// One generated case.
pub struct Case {
    pub index: u64,
    /// The mode it runs in: 64, or 32 (compatibility mode at CPL 3, as a Linux process's
    /// 32-bit code segment).
    pub bits: u32,
    pub code: Vec<u8>,
    pub init: State,
    /// RFLAGS bits the sequence leaves undefined (not compared).
    pub undefined_flags: u64,
    pub templates: Vec<&'static str>,
}

// ---------------------------------------------------------------------------------------------
// Instruction table: every iced Code whose name we can turn into operands
// ---------------------------------------------------------------------------------------------

/// An operand slot, parsed from iced's `Code` name (`Add_rm32_imm8` -> Rm(32), Imm(8)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Rm(u32),
    R(u32),
    M(u32),
    Imm(u32),
    One,
    Fixed(Register),
    Xmm,
    XmmM(u32),
    /// An MMX register.
    Mm,
    /// An MMX register or memory of the given bits.
    MmM(u32),
}

fn parse_tok(t: &str) -> Option<Tok> {
    let num = |s: &str| s.parse::<u32>().ok();
    Some(match t {
        "1" => Tok::One,
        "CL" => Tok::Fixed(Register::CL),
        "AL" => Tok::Fixed(Register::AL),
        "AX" => Tok::Fixed(Register::AX),
        "EAX" => Tok::Fixed(Register::EAX),
        "RAX" => Tok::Fixed(Register::RAX),
        "xmm" => Tok::Xmm,
        "mm" => Tok::Mm,
        _ if t.starts_with("mmm") => Tok::MmM(num(&t[3..])?),
        "m" => Tok::M(0),
        _ if t.starts_with("xmmm") => Tok::XmmM(num(&t[4..])?),
        _ if t.starts_with("rm") => Tok::Rm(num(&t[2..])?),
        _ if t.starts_with("imm") => Tok::Imm(num(&t[3..])?),
        _ if t.starts_with('r') => Tok::R(num(&t[1..]).filter(|n| [8, 16, 32, 64].contains(n))?),
        _ if t.starts_with('m') => Tok::M(num(&t[1..]).filter(|n| [8, 16, 32, 64, 128].contains(n))?),
        _ => return None,
    })
}

/// Codes by the mnemonic part of their name ("Add", "Cmove", "Pxor"...).
pub struct CodeTable {
    by_mnem: HashMap<String, Vec<(Code, Vec<Tok>)>>,
    by_name: HashMap<String, Code>,
    /// The mode the codes encode in: 64, or 32 (compatibility mode).
    pub bits: u32,
}

impl CodeTable {
    /// The codes that encode in `bits`-bit mode (64, or 32 for compatibility mode).
    pub fn new(bits: u32) -> Self {
        let mut by_mnem: HashMap<String, Vec<(Code, Vec<Tok>)>> = HashMap::new();
        let mut by_name = HashMap::new();
        let mut enc = Encoder::new(bits);
        for code in Code::values() {
            let name = format!("{code:?}");
            let mut parts = name.split('_');
            let mnem = parts.next().unwrap().to_string();
            let toks: Option<Vec<Tok>> = parts.map(parse_tok).collect();
            let Some(toks) = toks else { continue };
            // Forms whose results the SDM leaves undefined, or that are only legal outside
            // 64-bit mode in odd ways.
            if matches!(name.as_str(), "Bswap_r16" | "Movsxd_r16_rm16" | "Movsxd_r32_rm32") {
                continue;
            }
            // Keep only codes that encode in this mode with simple operands.
            let ops: Vec<Op> = toks
                .iter()
                .map(|t| match *t {
                    Tok::Rm(n) | Tok::R(n) => Op::R(gpr(n, 0)),
                    Tok::M(_) | Tok::XmmM(_) | Tok::MmM(_) => Op::M(MemoryOperand::with_base_displ(if bits == 64 { Register::R15 } else { Register::EBX }, 16)),
                    Tok::Imm(_) | Tok::One => Op::I(1),
                    Tok::Fixed(r) => Op::R(r),
                    Tok::Xmm => Op::R(Register::XMM1),
                    Tok::Mm => Op::R(Register::MM1),
                })
                .collect();
            let Some(i) = make(code, &ops) else { continue };
            if enc.encode(&i, 0).is_err() {
                let _ = enc.take_buffer();
                continue;
            }
            let _ = enc.take_buffer();
            by_name.insert(name.clone(), code);
            by_mnem.entry(mnem).or_default().push((code, toks));
        }
        CodeTable { by_mnem, by_name, bits }
    }

    fn code(&self, name: &str) -> Code {
        *self.by_name.get(name).unwrap_or_else(|| panic!("no iced Code named {name}"))
    }

    /// The forms of `mnem` that encode in this mode (none for, say, `Movsxd` in 32-bit mode).
    fn forms(&self, mnem: &str) -> &[(Code, Vec<Tok>)] {
        self.by_mnem.get(mnem).map(|v| v.as_slice()).unwrap_or(&[])
    }
}


#[derive(Clone, Copy, Debug)]
enum Op {
    R(Register),
    M(MemoryOperand),
    I(i64),
}

/// Builds an instruction from a code and operands (None when iced rejects the combination).
fn make(code: Code, ops: &[Op]) -> Option<Instruction> {
    use Op::*;
    let i32_ = |x: i64| x as i32;
    let r = match *ops {
        [] => Ok(Instruction::with(code)),
        [R(a)] => Instruction::with1(code, a),
        [M(m)] => Instruction::with1(code, m),
        [I(x)] => Instruction::with1(code, i32_(x)),
        [R(a), R(b)] => Instruction::with2(code, a, b),
        [R(a), M(m)] => Instruction::with2(code, a, m),
        [M(m), R(b)] => Instruction::with2(code, m, b),
        [R(a), I(x)] if x != x as i32 as i64 => Instruction::with2(code, a, x),
        [R(a), I(x)] => Instruction::with2(code, a, i32_(x)),
        [M(m), I(x)] => Instruction::with2(code, m, i32_(x)),
        [R(a), R(b), R(c)] => Instruction::with3(code, a, b, c),
        [R(a), R(b), I(x)] => Instruction::with3(code, a, b, i32_(x)),
        [R(a), M(m), I(x)] => Instruction::with3(code, a, m, i32_(x)),
        [M(m), R(b), R(c)] => Instruction::with3(code, m, b, c),
        [M(m), R(b), I(x)] => Instruction::with3(code, m, b, i32_(x)),
        _ => return None,
    };
    r.ok()
}

/// General-purpose register `n` (0-15) of `bits` bits; for 8 bits, 16-19 mean AH..BH.
fn gpr(bits: u32, n: usize) -> Register {
    let base = match bits {
        8 => {
            // iced order: AL CL DL BL AH CH DH BH SPL BPL SIL DIL R8L..R15L.
            return match n {
                16..=19 => Register::try_from(Register::AH as usize + n - 16).unwrap(),
                0..=3 => Register::try_from(Register::AL as usize + n).unwrap(),
                _ => Register::try_from(Register::SPL as usize + n - 4).unwrap(),
            };
        }
        16 => Register::AX,
        32 => Register::EAX,
        _ => Register::RAX,
    };
    Register::try_from(base as usize + n).unwrap()
}


/// Maps iced's RflagsBits to RFLAGS bit positions.
fn rflags_of(bits: u32) -> u64 {
    let mut f = 0;
    for (ib, fb) in [(RflagsBits::OF, OF), (RflagsBits::SF, SF), (RflagsBits::ZF, ZF), (RflagsBits::AF, AF), (RflagsBits::CF, CF), (RflagsBits::PF, PF), (RflagsBits::DF, DF)] {
        if bits & ib != 0 {
            f |= fb;
        }
    }
    f
}

// ---------------------------------------------------------------------------------------------
// The host's vendor, and the CPU model that must match it
// ---------------------------------------------------------------------------------------------

/// The vendor of the CPU the native side runs on, from CPUID leaf 0.
pub fn host_vendor() -> Vendor {
    let r = std::arch::x86_64::__cpuid(0);
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&r.ebx.to_le_bytes());
    id[4..8].copy_from_slice(&r.edx.to_le_bytes());
    id[8..].copy_from_slice(&r.ecx.to_le_bytes());
    match &id {
        b"GenuineIntel" => Vendor::Intel,
        b"AuthenticAMD" => Vendor::Amd,
        other => panic!("the host CPU's vendor {:?} has no smmlab CPU model to compare with", String::from_utf8_lossy(other)),
    }
}

/// The smmlab CPU model the cases run on: the host's vendor (`--cpu intel64` or `--cpu amd64`),
/// unless `SMMLAB_DIFF_MODEL=intel64|amd64` asks for the other one (to see where the models
/// differ: the suite then fails on exactly those cases).
pub fn host_model() -> CpuModel {
    let vendor = match std::env::var("SMMLAB_DIFF_MODEL").as_deref() {
        Ok("intel64") => Vendor::Intel,
        Ok("amd64") => Vendor::Amd,
        Ok(other) => panic!("SMMLAB_DIFF_MODEL={other}: expected intel64 or amd64"),
        Err(_) => host_vendor(),
    };
    CpuModel { vendor, ..CpuModel::default() }
}

/// Whether behaviour that smmlab's model of this vendor has not had measured (see
/// `cpu::undefined`) is compared too: `SMMLAB_DIFF_UNMEASURED=1`, to measure it on such a host.
fn compare_unmeasured() -> bool {
    std::env::var_os("SMMLAB_DIFF_UNMEASURED").is_some_and(|v| v != "0")
}

/// Whether the undefined results of the integer instructions (flags the manuals leave
/// undefined, a 16-bit SHLD/SHRD by more than 16, the upper halves of RSI/RDI after a
/// zero-count REP with a 32-bit address size) are compared on this host: they are where
/// smmlab's model of the vendor was measured (Intel), or when asked to.
fn undefined_results_compared() -> bool {
    static COMPARED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *COMPARED.get_or_init(|| host_model().vendor == Vendor::Intel || compare_unmeasured())
}

/// The CLI name of a model, for the log.
fn model_name(m: &CpuModel) -> &'static str {
    match m.vendor {
        Vendor::Intel => "intel64",
        Vendor::Amd => "amd64",
    }
}

// ---------------------------------------------------------------------------------------------
// Generator
// ---------------------------------------------------------------------------------------------

/// Registers random operands may use in 64-bit mode: everything but RSP (the stack) and R15
/// (the scratch base).
const USABLE: [usize; 14] = [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14];
/// In 32-bit mode: everything but ESP (memory operands there are absolute).
const USABLE32: [usize; 7] = [0, 1, 2, 3, 5, 6, 7];

pub struct Gen<'t> {
    pub rng: StdRng,
    table: &'t CodeTable,
    insns: Vec<Instruction>,
    /// RFLAGS bits currently undefined.
    undefined: u64,
    /// RSP offset from STACK_TOP.
    depth: i64,
}

/// Effect of an instruction on the flags: (modified, left undefined).
type Fx = Option<(u64, u64)>;

impl<'t> Gen<'t> {
    pub fn new(table: &'t CodeTable, seed: u64) -> Self {
        Gen { rng: StdRng::seed_from_u64(seed), table, insns: Vec::new(), undefined: 0, depth: 0 }
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.rng.gen_range(0..v.len())]
    }

    /// The mode the case runs in: 64, or 32 (compatibility mode).
    pub fn bits(&self) -> u32 {
        self.table.bits
    }

    /// A usable register index (never RSP, nor R15 in 64-bit mode) not in `avoid` (a bit mask).
    fn reg_index(&mut self, avoid: u32) -> usize {
        loop {
            let n = if self.bits() == 64 { *self.pick(&USABLE) } else { *self.pick(&USABLE32) };
            if avoid & (1 << n) == 0 {
                return n;
            }
        }
    }

    /// A random usable register of `bits` bits (8-bit includes AH..BH sometimes).
    fn reg(&mut self, bits: u32, avoid: u32) -> Register {
        if bits == 8 && self.bits() == 32 {
            // AL..BL, or AH..BH (the high byte of register n & 3).
            loop {
                let n = self.rng.gen_range(0..8);
                if avoid & (1 << (n & 3)) == 0 {
                    return if n < 4 { gpr(8, n) } else { gpr(8, 16 + n - 4) };
                }
            }
        }
        if bits == 8 && self.rng.gen_bool(0.2) {
            let n = self.rng.gen_range(0..4);
            if avoid & (1 << n) == 0 {
                return gpr(8, 16 + n);
            }
        }
        let n = self.reg_index(avoid);
        gpr(bits, n)
    }

    /// An interesting value of `bits` bits.
    pub fn value(&mut self, bits: u32) -> u64 {
        let m = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
        let sign = 1u64 << (bits - 1);
        let v = match self.rng.gen_range(0..10) {
            0 => 0,
            1 => self.rng.gen_range(1..16),
            2 => m,
            3 => sign,
            4 => sign - 1,
            5 => m - self.rng.gen_range(0..16),
            6 => sign.wrapping_add(self.rng.gen_range(0..4)).wrapping_sub(2),
            _ => self.rng.gen(),
        };
        v & m
    }

    fn imm(&mut self, bits: u32) -> i64 {
        let v = self.value(bits.min(32));
        // Sign-extend from `bits` so the encoder accepts it for sign-extended immediates.
        let sh = 64 - bits.min(32);
        if bits == 64 {
            self.value(64) as i64
        } else {
            ((v << sh) as i64) >> sh
        }
    }

    /// Appends an instruction if it encodes in 64-bit mode; flags read while undefined get
    /// redefined by a CMP first. `fx` overrides iced's flag info (count-dependent shifts).
    fn emit_fx(&mut self, i: Instruction, fx: Fx) -> bool {
        let mut enc = Encoder::new(self.bits());
        if enc.encode(&i, 0).is_err() {
            return false;
        }
        let reads = rflags_of(i.rflags_read());
        if reads & self.undefined != 0 {
            self.define_flags();
        }
        let (m, mut u) = fx.unwrap_or((rflags_of(i.rflags_modified()), rflags_of(i.rflags_undefined())));
        if undefined_results_compared() {
            // The model answers what the manuals leave undefined as this vendor does: the flags
            // are compared like defined ones.
            u = 0;
        }
        self.undefined = (self.undefined & !m) | u;
        self.depth -= i.stack_pointer_increment() as i64;
        self.insns.push(i);
        true
    }

    fn emit(&mut self, i: Instruction) -> bool {
        self.emit_fx(i, None)
    }

    fn emit_code(&mut self, code: Code, ops: &[Op]) {
        let i = make(code, ops).unwrap_or_else(|| panic!("cannot build {code:?} {ops:?}"));
        if !self.emit(i) {
            panic!("cannot encode {code:?} {ops:?}: {:?}", Encoder::new(self.bits()).encode(&i, 0));
        }
    }

    /// `cmp r64, r64` (`cmp r32, r32` in 32-bit mode): defines all six arithmetic flags.
    fn define_flags(&mut self) {
        let w = self.bits();
        let a = gpr(w, self.reg_index(0));
        let b = gpr(w, self.reg_index(0));
        let code = if w == 64 { Code::Cmp_rm64_r64 } else { Code::Cmp_rm32_r32 };
        let i = Instruction::with2(code, a, b).unwrap();
        self.undefined &= !ARITH;
        self.insns.push(i);
    }

    /// `mov reg, value` of the register's size.
    fn mov_imm(&mut self, r: Register, v: u64) {
        let code = match r.size() {
            1 => Code::Mov_r8_imm8,
            2 => Code::Mov_r16_imm16,
            4 => Code::Mov_r32_imm32,
            _ => Code::Mov_r64_imm64,
        };
        let v = match r.size() {
            1 => v as u8 as i8 as i64,
            2 => v as u16 as i16 as i64,
            4 => v as u32 as i32 as i64,
            _ => v as i64,
        };
        let i = if r.size() == 8 { Instruction::with2(code, r, v) } else { Instruction::with2(code, r, v as i32) };
        assert!(self.emit(i.unwrap()));
    }

    /// A memory operand of `size` bytes inside the scratch buffer, aligned to `align`. May emit a
    /// `mov` that sets up an index register (never one in `avoid`).
    fn mem(&mut self, size: usize, align: usize, avoid: u32) -> MemoryOperand {
        let size = size.max(1);
        let align = align.max(1);
        let t = self.rng.gen_range(0..=(SCRATCH_SIZE - size) / align) * align;
        if self.bits() == 32 {
            return self.mem32(t, avoid);
        }
        let a32 = self.rng.gen_bool(0.1);
        let base = if a32 { Register::R15D } else { Register::R15 };
        if self.rng.gen_bool(0.3) {
            let n = self.reg_index(avoid);
            let scale = *self.pick(&[1u32, 2, 4, 8]);
            let k = self.rng.gen_range(0..=t / scale as usize);
            let idx = if a32 { gpr(32, n) } else { gpr(64, n) };
            // Garbage in the upper half of a 32-bit index would be ignored; keep it simple.
            self.mov_imm(gpr(32, n), k as u64);
            let disp = (t - k * scale as usize) as i64;
            memop(base, idx, scale, disp, a32)
        } else {
            let disp = t as i64;
            memop(base, Register::None, 1, disp, a32)
        }
    }

    /// 32-bit mode: scratch offset `t` as an absolute address, or an index register (set up by a
    /// `mov`, never one in `avoid`) scaled plus a displacement.
    fn mem32(&mut self, t: usize, avoid: u32) -> MemoryOperand {
        if self.rng.gen_bool(0.3) {
            let n = self.reg_index(avoid);
            let scale = *self.pick(&[1u32, 2, 4, 8]);
            let k = self.rng.gen_range(0..=t / scale as usize);
            self.mov_imm(gpr(32, n), k as u64);
            let disp = SCRATCH as i64 + (t - k * scale as usize) as i64;
            MemoryOperand::new(Register::None, gpr(32, n), scale, disp, 4, false, Register::None)
        } else {
            MemoryOperand::new(Register::None, Register::None, 1, SCRATCH as i64 + t as i64, 4, false, Register::None)
        }
    }

    /// A memory operand at scratch offset `off`: `[r15 + off]` in 64-bit mode, absolute in
    /// 32-bit mode.
    fn scratch_at(&self, off: i64) -> MemoryOperand {
        if self.bits() == 64 {
            memop(Register::R15, Register::None, 1, off, false)
        } else {
            MemoryOperand::new(Register::None, Register::None, 1, SCRATCH as i64 + off, 4, false, Register::None)
        }
    }

    /// Operand sizes of general instructions in this mode.
    fn sizes(&self) -> &'static [u32] {
        if self.bits() == 64 {
            &[8, 16, 32, 64]
        } else {
            &[8, 16, 32]
        }
    }

    /// Operand sizes of instructions without a byte form.
    fn wide_sizes(&self) -> &'static [u32] {
        if self.bits() == 64 {
            &[16, 32, 64]
        } else {
            &[16, 32]
        }
    }

    /// Builds operands for `toks` (one memory operand at most) and emits the instruction.
    fn generic_form(&mut self, mnem: Mnemonic, code: Code, toks: &[Tok], p_mem: f64) -> bool {
        let use_mem = self.rng.gen_bool(p_mem);
        let unaligned_ok = matches!(mnem, Mnemonic::Movdqu | Mnemonic::Movups | Mnemonic::Movd | Mnemonic::Movq);
        let mut mem_done = false;
        let mut ops = Vec::new();
        for t in toks {
            let op = match *t {
                Tok::Rm(n) if use_mem && !mem_done => {
                    mem_done = true;
                    Op::M(self.mem(n as usize / 8, 1, 0))
                }
                Tok::Rm(n) | Tok::R(n) => Op::R(self.reg(n, 0)),
                Tok::M(n) => {
                    mem_done = true;
                    Op::M(self.mem(n as usize / 8, 1, 0))
                }
                Tok::Imm(n) => Op::I(self.imm(n)),
                Tok::One => Op::I(1),
                Tok::Fixed(r) => Op::R(r),
                Tok::Xmm => Op::R(xmm(self.rng.gen_range(0..16))),
                Tok::XmmM(n) if use_mem && !mem_done => {
                    mem_done = true;
                    let sz = n as usize / 8;
                    Op::M(self.mem(sz, if sz == 16 && !unaligned_ok { 16 } else { 1 }, 0))
                }
                Tok::XmmM(_) => Op::R(xmm(self.rng.gen_range(0..16))),
                Tok::MmM(n) if use_mem && !mem_done => {
                    mem_done = true;
                    Op::M(self.mem(n as usize / 8, 1, 0))
                }
                Tok::Mm | Tok::MmM(_) => Op::R(Register::try_from(Register::MM0 as usize + self.rng.gen_range(0..8)).unwrap()),
            };
            ops.push(op);
        }
        match make(code, &ops) {
            Some(i) => self.emit(i),
            None => false,
        }
    }

    /// Emits one random form of one of `mnems` (iced Code name prefixes).
    fn generic(&mut self, mnems: &[&str], p_mem: f64) {
        for _ in 0..100 {
            let m = *self.pick(mnems);
            let forms = self.table.forms(m);
            if forms.is_empty() {
                continue;
            }
            let (code, toks) = forms[self.rng.gen_range(0..forms.len())].clone();
            if self.generic_form(code.mnemonic(), code, &toks, p_mem) {
                return;
            }
        }
        panic!("could not generate any of {mnems:?}");
    }

    fn size_bits(&mut self) -> u32 {
        let s = self.sizes();
        *self.pick(s)
    }

    fn wide_size_bits(&mut self) -> u32 {
        let s = self.wide_sizes();
        *self.pick(s)
    }

    /// Destination operand of `bits` bits: a register or memory.
    fn rm(&mut self, bits: u32, avoid: u32) -> Op {
        if self.rng.gen_bool(0.35) {
            Op::M(self.mem(bits as usize / 8, 1, avoid))
        } else {
            Op::R(self.reg(bits, avoid))
        }
    }

    /// The instructions and the RFLAGS bits they leave undefined. RSP stays where the sequence
    /// put it: it is compared like any other register.
    fn finish(self) -> (Vec<Instruction>, u64) {
        (self.insns, self.undefined)
    }
}

/// A memory operand with the displacement size iced wants for its address size.
fn memop(base: Register, index: Register, scale: u32, disp: i64, a32: bool) -> MemoryOperand {
    let dsize = if disp == 0 {
        0
    } else if (-128..128).contains(&disp) {
        1
    } else if a32 {
        4
    } else {
        8
    };
    MemoryOperand::new(base, index, scale, disp, dsize, false, Register::None)
}

fn xmm(n: usize) -> Register {
    Register::try_from(Register::XMM0 as usize + n).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

pub struct Template {
    pub name: &'static str,
    pub suite: Suite,
    emit: fn(&mut Gen),
    available: fn() -> bool,
}

/// Which suite a template belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// Integer instructions, in 64-bit mode and in 32-bit (compatibility) mode.
    Integer,
    /// Only in 32-bit mode (BCD, PUSHA/POPA, segment loads, 16-bit addresses...).
    Integer32,
    /// SSE2 integer instructions, in 64-bit mode.
    Sse,
    /// x87 instructions, in 64-bit mode, from a random FPU state.
    X87,
}

impl Suite {
    /// Whether the suite's cases can run in `bits`-bit mode.
    fn runs_in(self, bits: u32) -> bool {
        match self {
            Suite::Integer => true,
            Suite::Integer32 => bits == 32,
            Suite::Sse | Suite::X87 => bits == 64,
        }
    }
}

fn always() -> bool {
    true
}
fn has_movbe() -> bool {
    std::is_x86_feature_detected!("movbe")
}
fn has_bit_counts() -> bool {
    std::is_x86_feature_detected!("bmi1") && std::is_x86_feature_detected!("lzcnt") && std::is_x86_feature_detected!("popcnt")
}

const CC: [&str; 16] = ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"];

fn t_alu(g: &mut Gen) {
    g.generic(&["Add", "Adc", "Sub", "Sbb", "And", "Or", "Xor", "Cmp", "Test"], 0.35);
}
fn t_unary(g: &mut Gen) {
    g.generic(&["Inc", "Dec", "Neg", "Not"], 0.35);
}
fn t_mov(g: &mut Gen) {
    g.generic(&["Mov"], 0.35);
}
fn t_mul(g: &mut Gen) {
    g.generic(&["Mul", "Imul"], 0.35);
}

/// DIV/IDIV with a divisor and dividend chosen so that the quotient fits.
fn t_div(g: &mut Gen) {
    let bits = g.size_bits();
    let signed = g.rng.gen_bool(0.5);
    let m: u128 = if bits == 64 { u64::MAX as u128 } else { (1u128 << bits) - 1 };
    // Divisor operand (never RAX/RDX, never AL/AH).
    let avoid = 0b101;
    let op = g.rm(bits, avoid);
    let op = match op {
        Op::R(r) if g.bits() == 64 && bits == 8 && matches!(r, Register::AH | Register::CH | Register::DH | Register::BH) => Op::R(g.reg(8, 0b1111)),
        o => o,
    };
    let imm32 = bits == 64 && matches!(op, Op::M(_));
    let (divisor, dividend): (u64, u128) = if !signed {
        let mut d = g.value(bits);
        if d == 0 {
            d = 1 + g.rng.gen_range(0..7);
        }
        if imm32 {
            d &= 0x7fff_ffff; // a qword memory divisor is stored with an imm32
            d = d.max(1);
        }
        let hi = g.rng.gen::<u64>() % d;
        let lo = g.value(bits);
        (d, ((hi as u128) << bits) | lo as u128)
    } else {
        let half = 1i128 << (bits - 1);
        let sx = |v: u64| ((v << (64 - bits)) as i64 >> (64 - bits)) as i128;
        let mut d = sx(g.value(bits));
        if d == 0 {
            d = -3;
        }
        if imm32 {
            d = (d as i32) as i128;
            if d == 0 {
                d = 5;
            }
        }
        let q = match g.rng.gen_range(0..4) {
            0 => g.rng.gen_range(-4i128..4),
            1 => half - 1,
            2 => -half + 1,
            _ => sx(g.rng.gen()) .max(-half + 1),
        };
        let ad = d.unsigned_abs();
        let r_mag = (g.rng.gen::<u64>() as u128 % ad) as i128;
        let qd = q * d;
        let r = if qd > 0 {
            r_mag
        } else if qd < 0 {
            -r_mag
        } else if g.rng.gen_bool(0.5) {
            r_mag
        } else {
            -r_mag
        };
        let n = qd + r;
        (d as u64 & m as u64, (n as u128) & ((m << bits) | m))
    };
    match op {
        Op::R(r) => g.mov_imm(r, divisor),
        Op::M(mo) => {
            let code = match bits {
                8 => Code::Mov_rm8_imm8,
                16 => Code::Mov_rm16_imm16,
                32 => Code::Mov_rm32_imm32,
                _ => Code::Mov_rm64_imm32,
            };
            let v = match bits {
                8 => divisor as u8 as i8 as i64,
                16 => divisor as u16 as i16 as i64,
                _ => divisor as u32 as i32 as i64,
            };
            g.emit_code(code, &[Op::M(mo), Op::I(v)]);
        }
        Op::I(_) => unreachable!(),
    }
    if bits == 8 {
        g.mov_imm(Register::AX, dividend as u64);
    } else {
        g.mov_imm(gpr(bits, 0), dividend as u64);
        g.mov_imm(gpr(bits, 2), (dividend >> bits) as u64);
    }
    let name = format!("{}_rm{bits}", if signed { "Idiv" } else { "Div" });
    let code = g.table.code(&name);
    g.emit_code(code, &[op]);
}

/// The effect of a count-dependent shift/rotate on the flags, from the SDM (iced's static info
/// is not count-exact: it treats `rcl r8, 9` as touching no flags, while the CPU writes OF).
/// `masked` is the count after masking to 5 (6) bits.
fn shift_fx(mn: &str, bits: u32, masked: u32) -> Fx {
    if masked == 0 {
        return Some((0, 0));
    }
    let of_undef = if masked == 1 { 0 } else { OF };
    Some(match mn {
        "Rol" | "Ror" | "Rcl" | "Rcr" => (CF | OF, of_undef),
        // CF is undefined for SHL/SHR counts of at least the operand size (SDM vol. 2, SAL).
        "Shl" | "Shr" if masked >= bits => (ARITH, AF | of_undef | CF),
        _ => (ARITH, AF | of_undef),
    })
}

fn shift_count(g: &mut Gen, bits: u32) -> u8 {
    let v = [0, 1, 2, bits - 1, bits, bits + 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65];
    if g.rng.gen_bool(0.8) {
        *g.pick(&v) as u8
    } else {
        g.rng.gen()
    }
}

fn t_shift(g: &mut Gen) {
    let mn = *g.pick(&["Shl", "Shr", "Sar", "Rol", "Ror", "Rcl", "Rcr"]);
    let bits = g.size_bits();
    let form = g.rng.gen_range(0..3);
    let count = if form == 0 { 1 } else { shift_count(g, bits) };
    let dst = g.rm(bits, if form == 1 { 0b10 } else { 0 });
    let (name, ops) = match form {
        0 => (format!("{mn}_rm{bits}_1"), vec![dst, Op::I(1)]),
        1 => {
            let junk = g.rng.gen::<u32>() as u64 & 0xffff_ff00;
            g.mov_imm(Register::ECX, count as u64 | junk);
            (format!("{mn}_rm{bits}_CL"), vec![dst, Op::R(Register::CL)])
        }
        _ => (format!("{mn}_rm{bits}_imm8"), vec![dst, Op::I(count as i8 as i64)]),
    };
    // The destination may be CL itself: the count is read before the destination is written.
    let code = g.table.code(&name);
    let i = make(code, &ops).unwrap();
    let masked = count as u32 & if bits == 64 { 63 } else { 31 };
    let fx = shift_fx(mn, bits, masked);
    // RCL/RCR read CF whenever the masked count is not zero (iced's count-exact info says they
    // do not when the count is a multiple of 9 or 17).
    if matches!(mn, "Rcl" | "Rcr") && masked != 0 && g.undefined & CF != 0 {
        g.define_flags();
    }
    assert!(g.emit_fx(i, fx));
}

fn t_shift_double(g: &mut Gen) {
    let mn = *g.pick(&["Shld", "Shrd"]);
    let bits = g.wide_size_bits();
    let by_cl = g.rng.gen_bool(0.5);
    let mut count = shift_count(g, bits) as u32;
    if bits == 16 && !undefined_results_compared() {
        // Counts above the operand size leave the result undefined.
        count &= 31;
        if count > 16 {
            count -= 16;
        }
    }
    let dst = g.rm(bits, if by_cl { 0b10 } else { 0 });
    let src = Op::R(g.reg(bits, if by_cl { 0b10 } else { 0 }));
    let (name, ops) = if by_cl {
        g.mov_imm(Register::ECX, count as u64);
        (format!("{mn}_rm{bits}_r{bits}_CL"), vec![dst, src, Op::R(Register::CL)])
    } else {
        (format!("{mn}_rm{bits}_r{bits}_imm8"), vec![dst, src, Op::I(count as u8 as i8 as i64)])
    };
    let code = g.table.code(&name);
    let i = make(code, &ops).unwrap();
    let masked = count & if bits == 64 { 63 } else { 31 };
    let fx = shift_fx(mn, bits, masked);
    assert!(g.emit_fx(i, fx));
}

fn t_bit_test(g: &mut Gen) {
    let mn = *g.pick(&["Bt", "Bts", "Btr", "Btc"]);
    if g.rng.gen_bool(0.4) {
        // Memory operand with a register bit offset that reaches outside the operand.
        let bits = g.wide_size_bits();
        let n = g.reg_index(0);
        let off: i64 = g.rng.gen_range(-7000..7000);
        let upper = if bits == 64 { 0 } else { g.rng.gen::<u64>() << bits };
        let v = (off as u64 & if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 }) | upper;
        g.mov_imm(gpr(g.bits(), n), v);
        let disp = 2048 + g.rng.gen_range(-8i64..8) * (bits as i64 / 8);
        let m = g.scratch_at(disp);
        let code = g.table.code(&format!("{mn}_rm{bits}_r{bits}"));
        g.emit_code(code, &[Op::M(m), Op::R(gpr(bits, n))]);
    } else if g.rng.gen_bool(0.5) {
        // Memory with an immediate bit offset (taken modulo the operand size).
        let bits = g.wide_size_bits();
        let m = g.mem(bits as usize / 8, 1, 0);
        let k = g.imm(8);
        let code = g.table.code(&format!("{mn}_rm{bits}_imm8"));
        g.emit_code(code, &[Op::M(m), Op::I(k)]);
    } else {
        // Register forms only: a random register bit offset would leave the scratch buffer.
        g.generic(&[mn], 0.0);
    }
}

fn t_bit_scan(g: &mut Gen) {
    let mn = *g.pick(&["Bsf", "Bsr", "Tzcnt", "Lzcnt", "Popcnt"]);
    let bits = g.wide_size_bits();
    let dst = g.reg(bits, 0);
    let src = g.rm(bits, 0);
    if matches!(mn, "Bsf" | "Bsr") && g.rng.gen_bool(0.7) {
        // A zero source leaves the destination unchanged (documented by AMD, undefined in the
        // SDM and measured on Intel); mostly scan a source with a bit set.
        let k = g.rng.gen_range(0..bits) as i64;
        let code = g.table.code(&format!("Bts_rm{bits}_imm8"));
        g.emit_code(code, &[src, Op::I(k)]);
    } else if matches!(mn, "Bsf" | "Bsr") && g.rng.gen_bool(0.5) {
        // A zero source, for sure.
        let code = g.table.code(&format!("And_rm{bits}_imm8"));
        g.emit_code(code, &[src, Op::I(0)]);
    }
    let code = g.table.code(&format!("{mn}_r{bits}_rm{bits}"));
    g.emit_code(code, &[Op::R(dst), src]);
}

fn t_bswap(g: &mut Gen) {
    g.generic(&["Bswap"], 0.0);
}
fn t_movbe(g: &mut Gen) {
    g.generic(&["Movbe"], 1.0);
}

fn t_exchange(g: &mut Gen) {
    let which = g.rng.gen_range(0..3);
    if which < 2 {
        g.generic(&[["Xchg", "Xadd"][which]], 0.4);
        return;
    }
    // CMPXCHG, half of the time with the accumulator equal to the destination.
    let bits = g.size_bits();
    let dst = g.rm(bits, 1);
    let dst = match dst {
        Op::R(r) if g.bits() == 64 && bits == 8 && matches!(r, Register::AH | Register::CH | Register::DH | Register::BH) => Op::R(g.reg(8, 0b1111)),
        o => o,
    };
    let src = g.reg(bits, 0);
    if g.rng.gen_bool(0.5) {
        let acc = gpr(bits, 0);
        let code = g.table.code(&format!("Mov_r{bits}_rm{bits}"));
        g.emit_code(code, &[Op::R(acc), dst]);
    }
    let code = g.table.code(&format!("Cmpxchg_rm{bits}_r{bits}"));
    let i = make(code, &[dst, Op::R(src)]).unwrap();
    if !g.emit(i) {
        // AH..BH with a REX register: use a plain low register instead.
        let src = g.reg_index(0);
        g.emit_code(code, &[dst, Op::R(gpr(bits, src))]);
    }
}

fn t_cmov_setcc(g: &mut Gen) {
    let cc = *g.pick(&CC);
    let mn = if g.rng.gen_bool(0.5) { format!("Cmov{cc}") } else { format!("Set{cc}") };
    g.generic(&[mn.as_str()], 0.35);
}

fn t_extend(g: &mut Gen) {
    g.generic(&["Movzx", "Movsx", "Movsxd"], 0.35);
}

fn t_lea(g: &mut Gen) {
    let bits = g.wide_size_bits();
    let dst = g.reg(bits, 0);
    if g.bits() == 32 {
        return t_lea32(g, bits, dst);
    }
    let a32 = g.rng.gen_bool(0.3);
    let abits = if a32 { 32 } else { 64 };
    let base = if g.rng.gen_bool(0.85) { gpr(abits, g.rng.gen_range(0..16)) } else { Register::None };
    let index = if g.rng.gen_bool(0.6) {
        let mut n = g.rng.gen_range(0..16);
        if n == RSP {
            n = 0;
        }
        gpr(abits, n)
    } else {
        Register::None
    };
    let scale = *g.pick(&[1u32, 2, 4, 8]);
    let disp: i64 = match g.rng.gen_range(0..4) {
        0 => 0,
        1 => g.rng.gen_range(-128..128),
        _ => g.rng.gen::<i32>() as i64,
    };
    let disp = if a32 && base == Register::None && index == Register::None { disp & 0x7fff_ffff } else { disp };
    let m = memop(base, index, if index == Register::None { 1 } else { scale }, disp, a32);
    let code = g.table.code(&format!("Lea_r{bits}_m"));
    let i = make(code, &[Op::R(dst), Op::M(m)]).unwrap();
    if !g.emit(i) {
        let m = MemoryOperand::new(Register::RBX, Register::RSI, 2, 0x10, 1, false, Register::None);
        g.emit_code(code, &[Op::R(dst), Op::M(m)]);
    }
}

/// LEA in 32-bit mode: a 32-bit address (any base, any index but ESP) or a 16-bit one
/// (`[bx|bp + si|di + disp]`).
fn t_lea32(g: &mut Gen, bits: u32, dst: Register) {
    let m = if g.rng.gen_bool(0.7) {
        let base = if g.rng.gen_bool(0.85) { gpr(32, g.rng.gen_range(0..8)) } else { Register::None };
        let index = if g.rng.gen_bool(0.6) { gpr(32, [0, 1, 2, 3, 5, 6, 7][g.rng.gen_range(0..7)]) } else { Register::None };
        let scale = if index == Register::None { 1 } else { *g.pick(&[1u32, 2, 4, 8]) };
        let disp: i64 = match g.rng.gen_range(0..3) {
            0 => 0,
            1 => g.rng.gen_range(-128..128),
            _ => g.rng.gen::<i32>() as i64,
        };
        let dsize = if disp == 0 { 0 } else if (-128..128).contains(&disp) { 1 } else { 4 };
        MemoryOperand::new(base, index, scale, disp, dsize, false, Register::None)
    } else {
        let base = *g.pick(&[Register::BX, Register::BP, Register::None]);
        let index = *g.pick(&[Register::SI, Register::DI, Register::None]);
        // A lone SI or DI is a base to the encoder.
        let (base, index) = if base == Register::None { (index, Register::None) } else { (base, index) };
        let disp: i64 = if base == Register::None && index == Register::None { g.rng.gen_range(0..0x10000) } else { *g.pick(&[0i64, 1, -1, 0x7f, -0x80, 0x1234, 0x7fff]) };
        let dsize = if disp == 0 && base != Register::BP { 0 } else if (-128..128).contains(&disp) && base != Register::None { 1 } else { 2 };
        MemoryOperand::new(base, index, 1, disp, dsize, false, Register::None)
    };
    let code = g.table.code(&format!("Lea_r{bits}_m"));
    g.emit_code(code, &[Op::R(dst), Op::M(m)]);
}

fn t_flags(g: &mut Gen) {
    g.generic(&["Lahf", "Sahf", "Clc", "Stc", "Cmc"], 0.0);
}
fn t_sign_extend(g: &mut Gen) {
    g.generic(&["Cbw", "Cwde", "Cdqe", "Cwd", "Cdq", "Cqo"], 0.0);
}

fn t_string(g: &mut Gen) {
    let kind = g.rng.gen_range(0..5);
    let sizes: &[usize] = if g.bits() == 64 { &[1, 2, 4, 8] } else { &[1, 2, 4] };
    let sz = *g.pick(sizes);
    // In 32-bit mode the 16-bit address size needs segments based at the scratch buffer:
    // `t_string16` has it.
    let asz: u32 = if g.bits() == 32 || g.rng.gen_bool(0.15) { 32 } else { 64 };
    let rep_kind = match g.rng.gen_range(0..3) {
        0 => RepPrefixKind::None,
        1 => RepPrefixKind::Repe,
        _ => RepPrefixKind::Repne,
    };
    let rep_kind = if kind < 3 && rep_kind == RepPrefixKind::Repne { RepPrefixKind::Repe } else { rep_kind };
    let count: u64 = g.rng.gen_range(0..9);
    // Direction flag.
    let down = g.rng.gen_bool(0.5);
    g.emit_code(if down { Code::Std } else { Code::Cld }, &[]);
    let lo = 72usize;
    let hi = SCRATCH_SIZE - 72;
    let s = g.rng.gen_range(lo..hi) as i64;
    let d = if g.rng.gen_bool(0.3) { (s + g.rng.gen_range(-16i64..16)).clamp(lo as i64, hi as i64) } else { g.rng.gen_range(lo..hi) as i64 };
    let lea = |g: &mut Gen, r: Register, off: i64| {
        let m = memop(Register::R15, Register::None, 1, off, false);
        g.emit_code(Code::Lea_r64_m, &[Op::R(r), Op::M(m)]);
    };
    if g.bits() == 32 {
        g.mov_imm(Register::ESI, (SCRATCH as i64 + s) as u64);
        g.mov_imm(Register::EDI, (SCRATCH as i64 + d) as u64);
    } else if asz == 32 && undefined_results_compared() {
        // Garbage in the upper halves of RSI and RDI: a 32-bit address size ignores it, and a
        // zero count shows which registers the model still writes.
        for (r, off) in [(Register::RSI, s), (Register::RDI, d)] {
            let junk = if g.rng.gen_bool(0.5) { g.rng.gen::<u64>() << 32 } else { 0 };
            g.mov_imm(r, junk | (SCRATCH as i64 + off) as u64);
        }
    } else {
        lea(g, Register::RSI, s);
        lea(g, Register::RDI, d);
    }
    if g.bits() == 32 {
        g.mov_imm(Register::ECX, count);
    } else {
        let rcx = if asz == 32 { count | (g.rng.gen::<u64>() << 32) } else { count };
        g.mov_imm(Register::RCX, rcx);
    }
    let seg = Register::None;
    let i = match (kind, sz) {
        (0, 1) => Instruction::with_movsb(asz, seg, rep_kind),
        (0, 2) => Instruction::with_movsw(asz, seg, rep_kind),
        (0, 4) => Instruction::with_movsd(asz, seg, rep_kind),
        (0, _) => Instruction::with_movsq(asz, seg, rep_kind),
        (1, 1) => Instruction::with_stosb(asz, rep_kind),
        (1, 2) => Instruction::with_stosw(asz, rep_kind),
        (1, 4) => Instruction::with_stosd(asz, rep_kind),
        (1, _) => Instruction::with_stosq(asz, rep_kind),
        (2, 1) => Instruction::with_lodsb(asz, seg, rep_kind),
        (2, 2) => Instruction::with_lodsw(asz, seg, rep_kind),
        (2, 4) => Instruction::with_lodsd(asz, seg, rep_kind),
        (2, _) => Instruction::with_lodsq(asz, seg, rep_kind),
        (3, 1) => Instruction::with_scasb(asz, rep_kind),
        (3, 2) => Instruction::with_scasw(asz, rep_kind),
        (3, 4) => Instruction::with_scasd(asz, rep_kind),
        (3, _) => Instruction::with_scasq(asz, rep_kind),
        (_, 1) => Instruction::with_cmpsb(asz, seg, rep_kind),
        (_, 2) => Instruction::with_cmpsw(asz, seg, rep_kind),
        (_, 4) => Instruction::with_cmpsd(asz, seg, rep_kind),
        (_, _) => Instruction::with_cmpsq(asz, seg, rep_kind),
    }
    .unwrap();
    // A repeated compare with a zero count leaves the flags alone.
    let fx = if rep_kind != RepPrefixKind::None && count == 0 { Some((0, 0)) } else { None };
    assert!(g.emit_fx(i, fx));
}

fn t_push_pop(g: &mut Gen) {
    let push = if g.depth >= STACK_SLACK - 16 {
        false
    } else if g.depth <= -STACK_SLACK + 16 {
        true
    } else {
        g.rng.gen_bool(0.5)
    };
    if push {
        g.generic(&["Push", "Pushq", "Pushw", "Pushd"], 0.3);
    } else {
        g.generic(&["Pop"], 0.3);
    }
}

// SSE2 integer templates.
fn t_sse_move(g: &mut Gen) {
    g.generic(&["Movdqa", "Movdqu", "Movd", "Movq"], 0.4);
}
fn t_sse_logic(g: &mut Gen) {
    g.generic(&["Pxor", "Pand", "Por", "Pandn", "Xorps", "Andps", "Orps"], 0.35);
}
fn t_sse_compare(g: &mut Gen) {
    g.generic(&["Pcmpeqb", "Pcmpeqw", "Pcmpeqd", "Pmovmskb"], 0.35);
}
fn t_sse_shuffle(g: &mut Gen) {
    g.generic(
        &["Pshufd", "Shufps", "Punpcklbw", "Punpcklwd", "Punpckldq", "Punpcklqdq", "Punpckhbw", "Punpckhwd", "Punpckhdq", "Punpckhqdq"],
        0.35,
    );
}
fn t_sse_add_sub(g: &mut Gen) {
    g.generic(
        &["Paddb", "Paddw", "Paddd", "Paddq", "Paddsb", "Paddsw", "Paddusb", "Paddusw", "Psubb", "Psubw", "Psubd", "Psubq", "Psubsb", "Psubsw", "Psubusb", "Psubusw"],
        0.35,
    );
}
fn t_sse_shift(g: &mut Gen) {
    g.generic(&["Psllw", "Pslld", "Psllq", "Psrlw", "Psrld", "Psrlq", "Psraw", "Psrad", "Pslldq", "Psrldq"], 0.35);
}
fn t_sse_pack_minmax(g: &mut Gen) {
    g.generic(&["Packsswb", "Packssdw", "Packuswb", "Pminub", "Pminsw", "Pmaxub", "Pmaxsw"], 0.35);
}

// SSE/SSE2 floating-point templates (on float-structured XMM values, random MXCSR rounding,
// DAZ and FTZ, every exception masked).
fn t_sse_float_arith(g: &mut Gen) {
    g.generic(
        &[
            "Addps", "Subps", "Mulps", "Divps", "Minps", "Maxps", "Sqrtps", "Addss", "Subss", "Mulss", "Divss", "Minss", "Maxss", "Sqrtss", "Addpd", "Subpd", "Mulpd",
            "Divpd", "Minpd", "Maxpd", "Sqrtpd", "Addsd", "Subsd", "Mulsd", "Divsd", "Minsd", "Maxsd", "Sqrtsd",
        ],
        0.35,
    );
}
fn t_sse_float_compare(g: &mut Gen) {
    g.generic(&["Cmpps", "Cmpss", "Cmppd", "Cmpsd", "Comiss", "Ucomiss", "Comisd", "Ucomisd"], 0.35);
}
fn t_sse_float_convert(g: &mut Gen) {
    g.generic(
        &[
            "Cvtsi2ss", "Cvtsi2sd", "Cvtss2si", "Cvttss2si", "Cvtsd2si", "Cvttsd2si", "Cvtss2sd", "Cvtsd2ss", "Cvtps2pd", "Cvtpd2ps", "Cvtdq2ps", "Cvtps2dq", "Cvttps2dq",
            "Cvtdq2pd", "Cvtpd2dq", "Cvttpd2dq",
        ],
        0.35,
    );
}

pub fn templates() -> Vec<Template> {
    let t = |name, emit, available| Template { name, suite: Suite::Integer, emit, available };
    let s = |name, emit| Template { name, suite: Suite::Sse, emit, available: always };
    let f = |name, emit| Template { name, suite: Suite::X87, emit, available: always };
    let t32 = |name, emit| Template { name, suite: Suite::Integer32, emit, available: always };
    vec![
        t32("bcd", compat32::t_bcd as fn(&mut Gen)),
        t32("pusha_popa", compat32::t_pusha_popa),
        t32("segment_loads", compat32::t_segment_loads),
        t32("address16", compat32::t_address16),
        t32("string_ops16", compat32::t_string16),
        t("alu", t_alu as fn(&mut Gen), always as fn() -> bool),
        t("inc_dec_neg_not", t_unary, always),
        t("mov", t_mov, always),
        t("mul_imul", t_mul, always),
        t("div_idiv", t_div, always),
        t("shift_rotate", t_shift, always),
        t("shld_shrd", t_shift_double, always),
        t("bt_bts_btr_btc", t_bit_test, always),
        t("bsf_bsr_tzcnt_lzcnt_popcnt", t_bit_scan, has_bit_counts),
        t("bswap", t_bswap, always),
        t("movbe", t_movbe, has_movbe),
        t("xchg_xadd_cmpxchg", t_exchange, always),
        t("cmovcc_setcc", t_cmov_setcc, always),
        t("movzx_movsx_movsxd", t_extend, always),
        t("lea", t_lea, always),
        t("lahf_sahf_clc_stc_cmc", t_flags, always),
        t("cbw_cwde_cdqe_cwd_cdq_cqo", t_sign_extend, always),
        t("string_ops", t_string, always),
        t("push_pop", t_push_pop, always),
        s("sse_moves", t_sse_move),
        s("sse_logic", t_sse_logic),
        s("sse_compare_movmsk", t_sse_compare),
        s("sse_shuffle_unpack", t_sse_shuffle),
        s("sse_add_sub", t_sse_add_sub),
        s("sse_shifts", t_sse_shift),
        s("sse_pack_min_max", t_sse_pack_minmax),
        s("sse_float_arith", t_sse_float_arith),
        s("sse_float_compare", t_sse_float_compare),
        s("sse_float_convert", t_sse_float_convert),
        f("x87_load", x87::t_load),
        f("x87_store", x87::t_store),
        f("x87_arith", x87::t_arith),
        f("x87_unary", x87::t_unary),
        f("x87_compare", x87::t_compare),
        f("x87_stack_control", x87::t_stack_control),
        f("x87_mmx", x87::t_mmx),
    ]
}

/// A random initial state.
fn initial_state(g: &mut Gen, sse: bool, x87: bool) -> State {
    let mut regs = [0u64; 16];
    for r in regs.iter_mut() {
        let bits = *g.pick(&[8u32, 16, 32, 64, 64, 64]);
        *r = g.value(bits);
        if g.rng.gen_bool(0.3) {
            *r |= g.rng.gen::<u64>() << bits.min(63);
        }
    }
    regs[RSP] = STACK_TOP;
    regs[R15] = SCRATCH;
    let rflags = 2 | (g.rng.gen::<u64>() & ARITH);
    let mut xmm = [0u128; 16];
    for x in xmm.iter_mut() {
        *x = if sse && g.rng.gen_bool(0.5) {
            // Lane-structured edge values for saturation and compares.
            let mut v = 0u128;
            for k in 0..8 {
                let lane = *g.pick(&[0u16, 1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x8080]) as u128;
                let lane = if g.rng.gen_bool(0.3) { g.rng.gen::<u16>() as u128 } else { lane };
                v |= lane << (16 * k);
            }
            v
        } else {
            g.rng.gen()
        };
    }
    let mut mem = vec![0u8; SCRATCH_SIZE];
    if g.rng.gen_bool(0.5) {
        g.rng.fill(&mut mem[..]);
    } else {
        for b in mem.iter_mut() {
            *b = *g.pick(&[0u8, 0, 1, 0xff, 0x80, 0x7f]);
        }
    }
    let segs = if g.bits() == 32 { [USER_DS, USER_DS] } else { [0, 0] };
    let mut fx = if x87 { x87::initial_image(g) } else { x87::clean_image() };
    if sse {
        // MXCSR: every exception masked, a random rounding mode, DAZ and FTZ, sticky flags.
        let rc = g.rng.gen_range(0..4u32) << 13;
        let daz = (g.rng.gen_bool(0.25) as u32) << 6;
        let ftz = (g.rng.gen_bool(0.25) as u32) << 15;
        let sticky = g.rng.gen::<u32>() & 0x3f;
        let sticky = if g.rng.gen_bool(0.2) { sticky } else { 0 };
        let mxcsr = 0x1f80 | rc | daz | ftz | sticky;
        fx[24..28].copy_from_slice(&mxcsr.to_le_bytes());
        // Half the XMM registers hold floats of every class, lane by lane.
        for x in xmm.iter_mut() {
            if g.rng.gen_bool(0.5) {
                *x = float_lanes(g);
            }
        }
    }
    State { regs, rflags, xmm, segs, fx, mem }
}

/// An XMM value of four singles or two doubles of every class: small integers, values near 1,
/// the ends of the range, denormals, zeros, infinities and NaNs.
fn float_lanes(g: &mut Gen) -> u128 {
    let double = g.rng.gen_bool(0.5);
    let (bits, frac, bias, emax) = if double { (64u32, 52u32, 1023i64, 2047u64) } else { (32, 23, 127, 255) };
    let mut v = 0u128;
    for k in 0..128 / bits {
        let sign = (g.rng.gen_bool(0.4) as u64) << (bits - 1);
        let f = g.rng.gen::<u64>() & ((1 << frac) - 1);
        let lane = match g.rng.gen_range(0..12) {
            0 => 0,
            1 => ((bias as u64) << frac) | f >> g.rng.gen_range(0..frac),
            2 => (((bias + g.rng.gen_range(0..20)) as u64) << frac) | (f & !((1 << (frac - 4)) - 1)),
            3 => ((emax - 1 - g.rng.gen_range(0..3)) << frac) | f,
            4 => (g.rng.gen_range(1..4) << frac) | f,
            5 => f >> g.rng.gen_range(0..frac),
            6 => emax << frac,
            7 => (emax << frac) | (1 << (frac - 1)) | (f >> 2),
            8 => (emax << frac) | (f >> 2) | 1,
            _ => (((bias + g.rng.gen_range(-30i64..30)) as u64) << frac) | f,
        };
        v |= ((lane | sign) as u128) << (bits * k);
    }
    v
}

/// Per-case seed from the run seed and the case index.
pub fn case_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Generates case `index` of the run `seed` from `templates`.
pub fn generate(table: &CodeTable, templates: &[&Template], seed: u64, index: u64) -> Case {
    let mut g = Gen::new(table, case_seed(seed, index));
    let sse = templates.iter().any(|t| t.suite == Suite::Sse);
    let x87 = templates.iter().any(|t| t.suite == Suite::X87);
    let init = initial_state(&mut g, sse, x87);
    let n = g.rng.gen_range(1..=5);
    let mut used = Vec::new();
    for k in 0..n {
        // Cycle through the templates on the first pick so every template is used early.
        let t = if k == 0 { templates[(index % templates.len() as u64) as usize] } else { templates[g.rng.gen_range(0..templates.len())] };
        (t.emit)(&mut g);
        used.push(t.name);
    }
    let (insns, undefined) = g.finish();
    let mut enc = Encoder::new(table.bits);
    let mut code = Vec::new();
    for i in &insns {
        enc.encode(i, CODE_ADDR + code.len() as u64).expect("encodes");
        code.extend_from_slice(&enc.take_buffer());
    }
    Case { index, bits: table.bits, code, init, undefined_flags: undefined, templates: used }
}

/// The templates for one suite, filtered by host support.
/// The templates of suite `which` (Integer covers Integer32 in 32-bit mode) in `bits`-bit mode,
/// filtered by host support and `SMMLAB_DIFF_TEMPLATES`.
pub fn suite(which: Suite, bits: u32) -> Vec<Template> {
    let only = std::env::var("SMMLAB_DIFF_TEMPLATES").ok();
    let belongs = |t: Suite| t == which || (which == Suite::Integer && t == Suite::Integer32);
    templates()
        .into_iter()
        .filter(|t| belongs(t.suite) && t.suite.runs_in(bits) && (t.available)())
        .filter(|t| only.as_ref().is_none_or(|o| o.split(',').any(|n| n == t.name)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Native side (runs in a child process)
// ---------------------------------------------------------------------------------------------

/// Env var that puts the test binary into native-runner mode.
pub const NATIVE_ENV: &str = "SMMLAB_DIFF_NATIVE_RUNNER";
const RESULTS_MARKER: &[u8] = b"\n=== smmlab differential native results ===\n";

const ST_REGS: u64 = STATE_ADDR;
const ST_RFLAGS: u64 = STATE_ADDR + 128;
const ST_XMM: u64 = STATE_ADDR + 136;
const ST_HOST_RSP: u64 = STATE_ADDR + 136 + 256;
const ST_SEGS: u64 = ST_HOST_RSP + 8;
/// 32-bit cases: the far pointer (offset, selector) the epilogue jumps through back to 64-bit
/// code, and the top of the stack the trampolines use (the case's own stack is in the scratch
/// buffer).
const ST_FARPTR: u64 = ST_SEGS + 8;
const ST_PRIVATE_STACK: u64 = STATE_ADDR + 4096 - 64;
/// The 512-byte FXSAVE area of 64-bit cases (16-byte aligned).
const ST_FX: u64 = STATE_ADDR + 0x400;

/// Prologue: save the host's callee-saved registers and stack pointer, load XMM0-15, RFLAGS and
/// all sixteen GPRs from the state block. Epilogue: the reverse.
fn prologue_epilogue() -> (Vec<u8>, Vec<u8>) {
    use iced_x86::code_asm::*;
    let gprs = [rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15];
    let xmms = [xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13, xmm14, xmm15];
    let saved = [rbx, rbp, r12, r13, r14, r15];
    let mut a = CodeAssembler::new(64).unwrap();
    for r in saved {
        a.push(r).unwrap();
    }
    a.mov(qword_ptr(ST_HOST_RSP), rsp).unwrap();
    a.fxrstor64(ptr(ST_FX)).unwrap();
    for (k, x) in xmms.iter().enumerate() {
        a.movdqu(*x, xmmword_ptr(ST_XMM + 16 * k as u64)).unwrap();
    }
    a.push(qword_ptr(ST_RFLAGS)).unwrap();
    a.popfq().unwrap();
    for (k, r) in gprs.iter().enumerate() {
        a.mov(*r, qword_ptr(ST_REGS + 8 * k as u64)).unwrap();
    }
    let pro = a.assemble(0).unwrap();

    let mut a = CodeAssembler::new(64).unwrap();
    for (k, r) in gprs.iter().enumerate() {
        a.mov(qword_ptr(ST_REGS + 8 * k as u64), *r).unwrap();
    }
    a.mov(rsp, qword_ptr(ST_HOST_RSP)).unwrap();
    a.pushfq().unwrap();
    a.pop(qword_ptr(ST_RFLAGS)).unwrap();
    for (k, x) in xmms.iter().enumerate() {
        a.movdqu(xmmword_ptr(ST_XMM + 16 * k as u64), *x).unwrap();
    }
    a.fxsave64(ptr(ST_FX)).unwrap();
    // Leave the host's x87 as the ABI expects it (empty stack, default control word).
    a.fninit().unwrap();
    a.cld().unwrap();
    for r in saved.iter().rev() {
        a.pop(*r).unwrap();
    }
    a.ret().unwrap();
    let epi = a.assemble(0).unwrap();
    (pro, epi)
}

/// The native code for a 32-bit case placed at `buf` (below 2 GiB): 64-bit entry (saves the
/// host's registers, loads DS/ES with the user data selector, far-returns into the 32-bit code
/// segment), the 32-bit prologue (EFLAGS and the eight GPRs from the state block), the case,
/// the 32-bit epilogue (GPRs, DS/ES and EFLAGS to the state block, all through SS since the
/// case may have changed DS), a far jump back to the 64-bit code segment, and the 64-bit exit.
fn native32_code(buf: u64, case: &[u8]) -> Vec<u8> {
    use iced_x86::code_asm::*;
    let saved = [rbx, rbp, r12, r13, r14, r15];
    // The 32-bit part starts at a fixed offset after the entry, the exit after it.
    const PRO32: u64 = 0x80;
    let gprs = [eax, ecx, edx, ebx, esp, ebp, esi, edi];
    let mut a = CodeAssembler::new(32).unwrap();
    a.push(dword_ptr(ST_RFLAGS as u32)).unwrap();
    a.popfd().unwrap();
    for (k, r) in gprs.iter().enumerate() {
        a.mov(*r, dword_ptr(ST_REGS as u32 + 8 * k as u32)).unwrap();
    }
    let pro = a.assemble(buf + PRO32).unwrap();
    let mut a = CodeAssembler::new(32).unwrap();
    for (k, r) in gprs.iter().enumerate() {
        a.mov(dword_ptr(ST_REGS as u32 + 8 * k as u32).ss(), *r).unwrap();
    }
    a.mov(word_ptr(ST_SEGS as u32).ss(), ds).unwrap();
    a.mov(word_ptr(ST_SEGS as u32 + 2).ss(), es).unwrap();
    a.mov(esp, ST_PRIVATE_STACK as u32).unwrap();
    a.pushfd().unwrap();
    a.pop(dword_ptr(ST_RFLAGS as u32).ss()).unwrap();
    a.jmp(fword_ptr(ST_FARPTR as u32).ss()).unwrap();
    let body_end = buf + PRO32 + pro.len() as u64 + case.len() as u64;
    let epi = a.assemble(body_end).unwrap();
    let back = (body_end + epi.len() as u64 + 15) & !15;

    let mut a = CodeAssembler::new(64).unwrap();
    for r in saved {
        a.push(r).unwrap();
    }
    a.mov(qword_ptr(ST_HOST_RSP), rsp).unwrap();
    a.mov(eax, USER_DS as u32).unwrap();
    a.mov(ds, ax).unwrap();
    a.mov(es, ax).unwrap();
    a.mov(rsp, ST_PRIVATE_STACK).unwrap();
    a.push(USER_CS32 as i32).unwrap();
    a.push((buf + PRO32) as i32).unwrap();
    a.db(&[0x48, 0xcb]).unwrap(); // retfq: pops RIP and CS as qwords
    let entry = a.assemble(buf).unwrap();
    assert!(entry.len() as u64 <= PRO32);

    let mut a = CodeAssembler::new(64).unwrap();
    a.mov(rsp, qword_ptr(ST_HOST_RSP)).unwrap();
    a.mov(eax, USER_DS as u32).unwrap();
    a.mov(ds, ax).unwrap();
    a.mov(es, ax).unwrap();
    a.cld().unwrap();
    for r in saved.iter().rev() {
        a.pop(*r).unwrap();
    }
    a.ret().unwrap();
    let exit = a.assemble(back).unwrap();

    // SAFETY: the state page is mapped by the runner before any case runs.
    unsafe {
        (ST_FARPTR as *mut u32).write_unaligned(back as u32);
        ((ST_FARPTR + 4) as *mut u16).write_unaligned(USER_CS64);
    }
    let mut out = entry;
    out.resize(PRO32 as usize, 0xcc);
    out.extend_from_slice(&pro);
    out.extend_from_slice(case);
    out.extend_from_slice(&epi);
    out.resize((back - buf) as usize, 0xcc);
    out.extend_from_slice(&exit);
    out
}

/// Installs LDT entry 0 ([`SCRATCH_SEL`]): data, read/write, 32-bit, base [`SCRATCH`], limit
/// 64 KiB, so that 32-bit cases can use 16-bit addresses into the scratch buffer.
fn install_scratch_ldt_entry() {
    // struct user_desc (asm/ldt.h): entry_number, base_addr, limit, then the flag bits
    // seg_32bit:1 contents:2 read_exec_only:1 limit_in_pages:1 seg_not_present:1 useable:1.
    let mut desc = [0u32; 4];
    desc[0] = 0;
    desc[1] = SCRATCH as u32;
    desc[2] = 0xffff;
    desc[3] = 1 | (1 << 6);
    // SAFETY: modify_ldt(1, ptr, 16) reads 16 bytes from `desc`, which lives across the call.
    let r = unsafe { libc::syscall(libc::SYS_modify_ldt, 1, desc.as_ptr(), std::mem::size_of_val(&desc)) };
    assert_eq!(r, 0, "modify_ldt: {}", std::io::Error::last_os_error());
}

/// Maps `len` bytes of fresh anonymous memory at exactly `addr`, panicking if that fails.
///
/// # Safety
/// Nothing else in the process may rely on `addr .. addr + len` staying unmapped.
unsafe fn map_fixed(addr: u64, len: usize, prot: i32) -> *mut u8 {
    // SAFETY: an anonymous private mapping with MAP_FIXED_NOREPLACE never replaces an existing
    // one (it fails instead, and the assertion below reports it).
    let p = unsafe { libc::mmap(addr as *mut libc::c_void, len, prot, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE, -1, 0) };
    assert!(p != libc::MAP_FAILED && p as u64 == addr, "mmap at {addr:#x} failed: {}", std::io::Error::last_os_error());
    p as *mut u8
}

/// The child's main loop: reads cases from stdin, runs each on the host CPU, writes the final
/// states to stdout after a marker line.
pub fn native_runner_main() {
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).unwrap();
    let (pro, epi) = prologue_epilogue();
    const CODE_LEN: usize = 64 * 1024;
    install_scratch_ldt_entry();
    // SAFETY: this is the child process, which only runs generated cases: the scratch and state
    // pages are mapped at addresses nothing else uses, the RWX code buffer holds the prologue,
    // one case and the epilogue, or a 32-bit case with its trampolines (asserted to fit), and every pointer written or read below lies
    // inside one of those three mappings. The prologue/epilogue save and restore every
    // callee-saved register around the case, so calling the buffer as an `extern "sysv64" fn()`
    // returns normally (a case that faults kills the child, which the parent reports); a
    // 32-bit case's trampolines do the same around the switch to the 32-bit code segment.
    unsafe {
        let scratch = map_fixed(SCRATCH, SCRATCH_SIZE, libc::PROT_READ | libc::PROT_WRITE);
        let state = map_fixed(STATE_ADDR, 4096, libc::PROT_READ | libc::PROT_WRITE);
        // Below 2 GiB, so 32-bit code can run there.
        let code = libc::mmap(std::ptr::null_mut(), CODE_LEN, libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT, -1, 0);
        assert!(code != libc::MAP_FAILED, "mmap RWX failed");
        let code = code as *mut u8;
        let mut out = std::io::stdout().lock();
        out.write_all(RESULTS_MARKER).unwrap();
        let mut pos = 0;
        let mut buf = Vec::with_capacity(STATE_BYTES);
        while pos < input.len() {
            let bits = u32::from_le_bytes(input[pos..pos + 4].try_into().unwrap());
            let len = u32::from_le_bytes(input[pos + 4..pos + 8].try_into().unwrap()) as usize;
            pos += 8;
            let case_code = &input[pos..pos + len];
            pos += len;
            let st = State::deserialize(&input[pos..pos + STATE_BYTES]);
            pos += STATE_BYTES;
            let bytes = if bits == 32 { native32_code(code as u64, case_code) } else { [&pro[..], case_code, &epi[..]].concat() };
            assert!(bytes.len() <= CODE_LEN);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), code, bytes.len());
            std::ptr::copy_nonoverlapping(st.mem.as_ptr(), scratch, SCRATCH_SIZE);
            let sp = state as *mut u64;
            for k in 0..16 {
                sp.add(k).write(st.regs[k]);
            }
            sp.add(16).write(st.rflags);
            for k in 0..16 {
                (state.add(136 + 16 * k) as *mut u128).write_unaligned(st.xmm[k]);
            }
            let fx = state.add((ST_FX - STATE_ADDR) as usize);
            std::ptr::write_bytes(fx, 0, 512);
            std::ptr::copy_nonoverlapping(st.fx.as_ptr(), fx, FX_BYTES);
            let f: extern "sysv64" fn() = std::mem::transmute(code);
            f();
            let mut regs = [0u64; 16];
            for (k, r) in regs.iter_mut().enumerate() {
                *r = sp.add(k).read();
            }
            let rflags = sp.add(16).read();
            let mut xmm = [0u128; 16];
            for (k, x) in xmm.iter_mut().enumerate() {
                *x = (state.add(136 + 16 * k) as *const u128).read_unaligned();
            }
            let segs = if bits == 32 { [(ST_SEGS as *const u16).read_unaligned(), ((ST_SEGS + 2) as *const u16).read_unaligned()] } else { [0, 0] };
            let fx = if bits == 64 { std::slice::from_raw_parts(state.add((ST_FX - STATE_ADDR) as usize), FX_BYTES).to_vec() } else { st.fx.clone() };
            let mem = std::slice::from_raw_parts(scratch, SCRATCH_SIZE).to_vec();
            buf.clear();
            State { regs, rflags, xmm, segs, fx, mem }.serialize(&mut buf);
            out.write_all(&buf).unwrap();
            out.flush().unwrap();
        }
    }
}

/// Runs `cases` natively in a child process (this test binary re-executed in runner mode).
/// Returns the final states, or an error naming the case the child died on.
pub fn run_native(runner_test: &str, cases: &[Case]) -> Result<Vec<State>, (usize, String)> {
    use std::process::{Command, Stdio};
    let mut input = Vec::with_capacity(cases.len() * (STATE_BYTES + 64));
    for c in cases {
        input.extend_from_slice(&c.bits.to_le_bytes());
        input.extend_from_slice(&(c.code.len() as u32).to_le_bytes());
        input.extend_from_slice(&c.code);
        c.init.serialize(&mut input);
    }
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", runner_test, "--nocapture", "--test-threads=1", "--include-ignored"])
        .env(NATIVE_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn native runner");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let stdout = out.stdout;
    let start = stdout.windows(RESULTS_MARKER.len()).position(|w| w == RESULTS_MARKER).map(|p| p + RESULTS_MARKER.len());
    let body = match start {
        Some(s) => &stdout[s..],
        None => &stdout[stdout.len()..],
    };
    let n = (body.len() / STATE_BYTES).min(cases.len());
    let states: Vec<State> = (0..n).map(|k| State::deserialize(&body[k * STATE_BYTES..])).collect();
    if n < cases.len() {
        return Err((n, format!("native runner stopped after {n} of {} cases ({}); stderr:\n{}", cases.len(), out.status, String::from_utf8_lossy(&out.stderr))));
    }
    Ok(states)
}

// ---------------------------------------------------------------------------------------------
// Emulated side
// ---------------------------------------------------------------------------------------------

/// Plain RAM: low memory (page tables, code) and the scratch page at its guest address.
struct RamBus {
    low: Vec<u8>,
    scratch: Vec<u8>,
    stray: Vec<String>,
}

impl RamBus {
    fn slot(&mut self, addr: u64) -> Option<&mut u8> {
        if (addr as usize) < LOW_RAM {
            Some(&mut self.low[addr as usize])
        } else if (SCRATCH..SCRATCH + SCRATCH_SIZE as u64).contains(&addr) {
            Some(&mut self.scratch[(addr - SCRATCH) as usize])
        } else {
            None
        }
    }
}

impl Bus for RamBus {
    fn read(&mut self, a: Access) -> u64 {
        let mut v = 0;
        for k in 0..a.size as u64 {
            match self.slot(a.addr + k) {
                Some(b) => v |= (*b as u64) << (8 * k),
                None => self.stray.push(format!("{:?} of unmapped {:#x}", a.kind, a.addr + k)),
            }
        }
        v
    }
    fn write(&mut self, a: Access, value: u64) {
        for k in 0..a.size as u64 {
            match self.slot(a.addr + k) {
                Some(b) => *b = (value >> (8 * k)) as u8,
                None => self.stray.push(format!("write of unmapped {:#x}", a.addr + k)),
            }
        }
    }
    fn io_in(&mut self, a: Access) -> u32 {
        self.stray.push(format!("IN from port {:#x}", a.addr));
        u32::MAX
    }
    fn io_out(&mut self, a: Access, _value: u32) {
        self.stray.push(format!("OUT to port {:#x}", a.addr));
    }
    fn host_page(&mut self, page: u64, _kind: AccessKind, _smm: bool) -> Option<NonNull<u8>> {
        if (page as usize) < LOW_RAM {
            NonNull::new(self.low[page as usize..].as_mut_ptr())
        } else if page == SCRATCH {
            NonNull::new(self.scratch.as_mut_ptr())
        } else {
            None
        }
    }
}

pub struct Emulator {
    bus: RamBus,
}

/// The outcome of one emulated case.
pub struct EmuResult {
    pub state: State,
    pub problem: Option<String>,
}

impl Emulator {
    pub fn new() -> Self {
        let mut low = vec![0u8; LOW_RAM];
        // Identity map of the low 1 GiB with 2 MiB pages: PML4 at 0x1000, PDPT at 0x2000,
        // PD at 0x3000.
        let put = |m: &mut Vec<u8>, at: usize, v: u64| m[at..at + 8].copy_from_slice(&v.to_le_bytes());
        // User-accessible, for the 32-bit cases' CPL 3.
        put(&mut low, 0x1000, 0x2000 | 7);
        put(&mut low, 0x2000, 0x3000 | 7);
        for k in 0..512u64 {
            put(&mut low, 0x3000 + 8 * k as usize, (k << 21) | 0x87);
        }
        // For 32-bit cases, the descriptors a Linux process sees: the GDT at 0x5000 with the
        // 32-bit user code (0x23) and data (0x2B) segments and an LDT descriptor (0x30), the
        // LDT at 0x6000 with the scratch segment (0x7).
        let desc = |base: u64, limit: u64, access: u64, flags: u64| {
            (limit & 0xffff) | (base & 0xff_ffff) << 16 | access << 40 | ((limit >> 16) & 0xf) << 48 | flags << 52 | (base >> 24) << 56
        };
        put(&mut low, GDT32 as usize + 0x20, desc(0, 0xfffff, 0xfb, 0xc));
        put(&mut low, GDT32 as usize + 0x28, desc(0, 0xfffff, 0xf3, 0xc));
        put(&mut low, GDT32 as usize + 0x30, desc(LDT32, 7, 0x82, 0));
        put(&mut low, LDT32 as usize, desc(SCRATCH, 0xffff, 0xf3, 0x4));
        // The HLT that ends a case faults at CPL 3: the #GP goes through a 64-bit interrupt
        // gate to a HLT in the 64-bit kernel code segment (0x08) on the TSS's RSP0 stack.
        put(&mut low, GDT32 as usize + 0x08, desc(0, 0xfffff, 0x9b, 0xa));
        put(&mut low, GDT32 as usize + 0x40, desc(TSS32, 0x67, 0x89, 0));
        put(&mut low, TSS32 as usize + 4, RING0_STACK);
        let gate = HALT_HANDLER & 0xffff | 0x08 << 16 | 0x8e00 << 32 | (HALT_HANDLER >> 16 & 0xffff) << 48;
        put(&mut low, IDT32 as usize + 16 * 13, gate);
        low[HALT_HANDLER as usize] = 0xf4;
        Emulator { bus: RamBus { low, scratch: vec![0; SCRATCH_SIZE], stray: Vec::new() } }
    }

    pub fn run(&mut self, case: &Case) -> EmuResult {
        use cpu::cr::*;
        let at = CODE_ADDR as usize;
        self.bus.low[at..at + case.code.len()].copy_from_slice(&case.code);
        self.bus.low[at + case.code.len()] = 0xf4; // HLT
        self.bus.scratch.copy_from_slice(&case.init.mem);
        self.bus.stray.clear();
        let mut cpu = Cpu::new(host_model());
        cpu.cr0 = CR0_PE | CR0_PG | CR0_ET;
        cpu.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
        cpu.efer = EFER_LME | EFER_LMA;
        cpu.cr3 = 0x1000;
        if case.bits == 32 {
            // Compatibility mode at CPL 3, as the native side runs.
            cpu.cpl = 3;
            cpu.gdtr = cpu::TableReg { base: GDT32, limit: 0x4f };
            cpu.ldtr = Segment { selector: 0x30, base: LDT32, limit: 7, attr: 0x82 };
            cpu.tr = Segment { selector: 0x40, base: TSS32, limit: 0x67, attr: 0x8b };
            cpu.idtr = cpu::TableReg { base: IDT32, limit: 16 * 14 - 1 };
            cpu.seg[cpu::sreg::CS] = Segment { selector: USER_CS32, base: 0, limit: 0xffff_ffff, attr: 0xcfb };
            for s in [cpu::sreg::SS, cpu::sreg::DS, cpu::sreg::ES, cpu::sreg::FS, cpu::sreg::GS] {
                cpu.seg[s] = Segment { selector: USER_DS, base: 0, limit: 0xffff_ffff, attr: 0xcf3 };
            }
        } else {
            cpu.cpl = 0;
            // An empty IDT: any exception escalates to a shutdown at once.
            cpu.idtr = cpu::TableReg { base: 0, limit: 0 };
            cpu.seg[cpu::sreg::CS] = Segment { selector: 8, base: 0, limit: 0xffff_ffff, attr: 0xa9b };
            for s in [cpu::sreg::SS, cpu::sreg::DS, cpu::sreg::ES, cpu::sreg::FS, cpu::sreg::GS] {
                cpu.seg[s] = Segment { selector: 0x10, base: 0, limit: 0xffff_ffff, attr: 0xc93 };
            }
        }
        cpu.regs = case.init.regs;
        cpu.flags.set(case.init.rflags);
        cpu.xmm = case.init.xmm;
        x87::load_image(&mut cpu, &case.init.fx);
        cpu.rip = CODE_ADDR;
        cpu.flush_code();
        let exit = cpu.run(&mut self.bus, 100_000);
        let mut problem = None;
        let mut end = CODE_ADDR + case.code.len() as u64 + 1;
        if case.bits == 32 {
            // Halted in the #GP handler: the frame on the ring-0 stack has the state at the
            // final HLT (RIP, CS, RFLAGS, RSP, SS above the error code).
            let frame = |k: u64| u64::from_le_bytes(self.bus.low[(RING0_STACK - 48 + 8 * k) as usize..][..8].try_into().unwrap());
            let (rip, rflags, rsp) = (frame(1), frame(3), frame(4));
            if cpu.rip == HALT_HANDLER + 1 && rip == end - 1 {
                cpu.rip = end;
                cpu.regs[RSP] = rsp;
                cpu.flags.set(rflags);
            } else {
                end = HALT_HANDLER + 1;
            }
        }
        if exit != Exit::Halted || cpu.rip != end {
            problem = Some(format!(
                "emulator exit {exit:?} at rip {:#x} (expected Halted at {end:#x}); unimplemented: {:?}",
                cpu.rip, cpu.unimplemented
            ));
        } else if !cpu.unimplemented.is_empty() {
            problem = Some(format!("unimplemented: {:?}", cpu.unimplemented));
        }
        if !self.bus.stray.is_empty() {
            let s = format!("stray bus accesses: {:?}", &self.bus.stray[..self.bus.stray.len().min(8)]);
            problem = Some(problem.map_or(s.clone(), |p| format!("{p}; {s}")));
        }
        let segs = if case.bits == 32 { [cpu.seg[cpu::sreg::DS].selector, cpu.seg[cpu::sreg::ES].selector] } else { [0, 0] };
        let fx = if case.bits == 64 { x87::store_image(&cpu) } else { case.init.fx.clone() };
        let state = State { regs: cpu.regs, rflags: cpu.flags.get(), xmm: cpu.xmm, segs, fx, mem: self.bus.scratch.clone() };
        EmuResult { state, problem }
    }
}

impl Default for Emulator {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------------
// Comparison and reporting
// ---------------------------------------------------------------------------------------------

fn flag_names(f: u64) -> String {
    let mut s = Vec::new();
    for (b, n) in [(CF, "CF"), (PF, "PF"), (AF, "AF"), (ZF, "ZF"), (SF, "SF"), (DF, "DF"), (OF, "OF")] {
        if f & b != 0 {
            s.push(n);
        }
    }
    s.join("|")
}

/// The differences between the native and emulated final states, one per line (empty: equal).
pub fn compare(case: &Case, native: &State, emu: &State) -> Vec<String> {
    let mut d = Vec::new();
    // A 32-bit case sees the low halves of the eight legacy registers (what compatibility mode
    // leaves in the upper halves and in R8-R15 is not architectural).
    let (n, low) = if case.bits == 32 { (8, 0xffff_ffff) } else { (16, u64::MAX) };
    for (k, name) in GPR_NAMES.iter().enumerate().take(n) {
        if native.regs[k] & low != emu.regs[k] & low {
            d.push(format!("{name:>6}: host {:#018x}  smmlab {:#018x}  (initial {:#018x})", native.regs[k] & low, emu.regs[k] & low, case.init.regs[k] & low));
        }
    }
    for (k, name) in ["ds", "es"].iter().enumerate() {
        if native.segs[k] != emu.segs[k] {
            d.push(format!("{name:>6}: host {:#06x}  smmlab {:#06x}", native.segs[k], emu.segs[k]));
        }
    }
    let mask = if std::env::var_os("SMMLAB_DIFF_ALL_FLAGS").is_some() { COMPARED_FLAGS } else { COMPARED_FLAGS & !case.undefined_flags };
    let (nf, ef) = (native.rflags & mask, emu.rflags & mask);
    if nf != ef {
        d.push(format!(
            "rflags: host {:#x} [{}]  smmlab {:#x} [{}]  differ in [{}] (compared [{}], initial {:#x})",
            nf,
            flag_names(nf),
            ef,
            flag_names(ef),
            flag_names(nf ^ ef),
            flag_names(mask),
            case.init.rflags
        ));
    }
    d.extend(x87::compare(&native.fx, &emu.fx, &case.init.fx));
    for k in 0..16 {
        if native.xmm[k] != emu.xmm[k] {
            d.push(format!("{:>6}: host {:#034x}  smmlab {:#034x}  (initial {:#034x})", format!("xmm{k}"), native.xmm[k], emu.xmm[k], case.init.xmm[k]));
        }
    }
    let diffs: Vec<usize> = (0..SCRATCH_SIZE).filter(|&k| native.mem[k] != emu.mem[k]).collect();
    if !diffs.is_empty() {
        let shown: Vec<String> = diffs
            .iter()
            .take(16)
            .map(|&k| format!("+{k:#05x}: host {:02x} smmlab {:02x} (initial {:02x})", native.mem[k], emu.mem[k], case.init.mem[k]))
            .collect();
        d.push(format!("scratch: {} bytes differ: {}", diffs.len(), shown.join(", ")));
    }
    d
}

/// The case's code, disassembled.
pub fn disassemble(bits: u32, code: &[u8]) -> String {
    let mut dec = Decoder::with_ip(bits, code, CODE_ADDR, DecoderOptions::NONE);
    let mut fmt = IntelFormatter::new();
    let mut s = String::new();
    for i in &mut dec {
        let mut text = String::new();
        fmt.format(&i, &mut text);
        let start = (i.ip() - CODE_ADDR) as usize;
        let bytes: String = code[start..start + i.len()].iter().map(|b| format!("{b:02x}")).collect();
        s.push_str(&format!("    {:#07x}  {:<32} {}\n", i.ip(), bytes, text));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------------------------

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| {
        let v = v.trim();
        if let Some(h) = v.strip_prefix("0x") {
            u64::from_str_radix(h, 16).ok()
        } else {
            v.parse().ok()
        }
    })
}

/// Runs a suite: `SMMLAB_DIFF_CASES` cases (default `default_cases`) from `SMMLAB_DIFF_SEED`
/// (a number, or `random`; default `default_seed`); `SMMLAB_DIFF_CASE=<index>` runs one case.
/// Panics with a report of the first mismatches.
pub fn run_suite(suite_name: &str, runner_test: &str, which: Suite, bits: u32, default_cases: u64, default_seed: u64) {
    let templates = suite(which, bits);
    assert!(!templates.is_empty());
    let tref: Vec<&Template> = templates.iter().collect();
    let cases = env_u64("SMMLAB_DIFF_CASES").unwrap_or(default_cases);
    let seed = match std::env::var("SMMLAB_DIFF_SEED") {
        Ok(s) if s.trim() == "random" => {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
            case_seed(t, std::process::id() as u64)
        }
        Ok(_) => env_u64("SMMLAB_DIFF_SEED").expect("SMMLAB_DIFF_SEED: a number or `random`"),
        Err(_) => default_seed,
    };
    let only = env_u64("SMMLAB_DIFF_CASE");
    let indices: Vec<u64> = match only {
        Some(i) => vec![i],
        None => (0..cases).collect(),
    };
    let model = host_model();
    eprintln!(
        "{suite_name}: host CPU {:?}: smmlab runs as --cpu {}; undefined results {}",
        host_vendor(),
        model_name(&model),
        if undefined_results_compared() { "compared" } else { "not compared (unmeasured on this vendor; SMMLAB_DIFF_UNMEASURED=1 compares them)" }
    );
    let started = std::time::Instant::now();
    let table = CodeTable::new(bits);
    let mut emu = Emulator::new();
    let mut used: BTreeMap<&'static str, u64> = templates.iter().map(|t| (t.name, 0)).collect();
    let mut failures: Vec<String> = Vec::new();
    let mut failed_cases = 0u64;
    const BATCH: usize = 4000;
    for chunk in indices.chunks(BATCH) {
        let batch: Vec<Case> = chunk.iter().map(|&i| generate(&table, &tref, seed, i)).collect();
        if only.is_some() {
            // One case: show it before it runs (it may hang or kill a side).
            eprintln!("case {}:\n{}", batch[0].index, disassemble(batch[0].bits, &batch[0].code));
            if batch[0].templates.iter().any(|t| t.starts_with("x87")) {
                eprintln!("initial x87 state:\n{}", x87::describe(&batch[0].init.fx));
            }
        }
        for c in &batch {
            for t in &c.templates {
                *used.get_mut(t).unwrap() += 1;
            }
        }
        let native = run_native(runner_test, &batch);
        let (native, crashed) = match native {
            Ok(n) => (n, None),
            Err((n, msg)) => (Vec::new(), Some((n, msg))),
        };
        if let Some((n, msg)) = crashed {
            let c = &batch[n];
            failures.push(format!(
                "case {} (SMMLAB_DIFF_SEED={seed:#x} SMMLAB_DIFF_CASE={}), templates {:?}: {msg}\n{}",
                c.index,
                c.index,
                c.templates,
                disassemble(c.bits, &c.code)
            ));
            failed_cases += 1;
            break;
        }
        for (c, n) in batch.iter().zip(&native) {
            let r = emu.run(c);
            let mut diffs = compare(c, n, &r.state);
            if let Some(p) = r.problem {
                diffs.insert(0, p);
            }
            if !diffs.is_empty() {
                failed_cases += 1;
                if failures.len() < 10 {
                    failures.push(format!(
                        "case {} (reproduce: SMMLAB_DIFF_SEED={seed:#x} SMMLAB_DIFF_CASE={}), templates {:?}\n{}  differences:\n    {}",
                        c.index,
                        c.index,
                        c.templates,
                        disassemble(c.bits, &c.code),
                        diffs.join("\n    ")
                    ));
                }
            }
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{suite_name}: {} cases, seed {seed:#x}, {failed_cases} mismatching, {:.1} s; template use: {used:?}",
        indices.len(),
        elapsed.as_secs_f64()
    );
    if !failures.is_empty() {
        panic!(
            "{suite_name}: {failed_cases} of {} cases differ from the host CPU (seed {seed:#x}). First ones:\n\n{}",
            indices.len(),
            failures.join("\n")
        );
    }
    if only.is_none() {
        let unused: Vec<_> = used.iter().filter(|(_, &n)| n == 0).map(|(t, _)| *t).collect();
        assert!(unused.is_empty(), "{suite_name}: templates never used: {unused:?}");
    }
}
