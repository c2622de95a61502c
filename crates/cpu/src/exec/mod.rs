//! Execution: iced-x86's decoded instruction to a handler, chosen once when a block is decoded.
//! One file per instruction family.

pub mod alu;
pub mod branch;
pub mod call_gate;
pub mod data;
pub mod mmx;
pub mod operand;
pub mod sse;
pub mod sse_float;
pub mod string;
pub mod system;
pub mod task_switch;
pub mod x87;

use crate::bus::Bus;
use crate::decode::Insn;
use crate::exception::Exc;
use crate::Cpu;
use iced_x86::{Code, Instruction, Mnemonic as M, OpKind};

/// An instruction handler.
pub type Handler = fn(&mut Cpu, &mut dyn Bus, &Insn) -> Result<(), Exc>;

/// Raises #UD and counts the mnemonic: an instruction smmlab does not implement is never
/// silently mis-executed.
pub fn unimplemented(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> Result<(), Exc> {
    let name = if d.i.is_invalid() { "(invalid encoding)".to_string() } else { format!("{:?}", d.i.mnemonic()).to_lowercase() };
    if !d.i.is_invalid() {
        *cpu.unimplemented.entry(name).or_default() += 1;
    }
    Err(Exc::ud())
}

/// Whether `m` is an x87 instruction ([`x87::fpu`] implements them, or counts and refuses the
/// transcendental ones).
fn is_x87(m: M) -> bool {
    matches!(
        m,
        M::F2xm1 | M::Fabs | M::Fadd | M::Faddp | M::Fbld | M::Fbstp | M::Fchs | M::Fclex | M::Fcmovb | M::Fcmovbe | M::Fcmove | M::Fcmovnb | M::Fcmovnbe
            | M::Fcmovne | M::Fcmovnu | M::Fcmovu | M::Fcom | M::Fcomi | M::Fcomip | M::Fcomp | M::Fcompp | M::Fcos | M::Fdecstp | M::Fdisi | M::Fdiv
            | M::Fdivp | M::Fdivr | M::Fdivrp | M::Feni | M::Ffree | M::Ffreep | M::Fiadd | M::Ficom | M::Ficomp | M::Fidiv | M::Fidivr | M::Fild
            | M::Fimul | M::Fincstp | M::Finit | M::Fist | M::Fistp | M::Fisttp | M::Fisub | M::Fisubr | M::Fld | M::Fld1 | M::Fldcw | M::Fldenv
            | M::Fldl2e | M::Fldl2t | M::Fldlg2 | M::Fldln2 | M::Fldpi | M::Fldz | M::Fmul | M::Fmulp | M::Fnclex | M::Fndisi | M::Fneni | M::Fninit
            | M::Fnop | M::Fnsave | M::Fnsetpm | M::Fnstcw | M::Fnstenv | M::Fnstsw | M::Fpatan | M::Fprem | M::Fprem1 | M::Fptan | M::Frndint
            | M::Frstor | M::Fsave | M::Fscale | M::Fsetpm | M::Fsin | M::Fsincos | M::Fsqrt | M::Fst | M::Fstcw | M::Fstenv | M::Fstp | M::Fstsw
            | M::Fsub | M::Fsubp | M::Fsubr | M::Fsubrp | M::Ftst | M::Fucom | M::Fucomi | M::Fucomip | M::Fucomp | M::Fucompp | M::Fxam | M::Fxch
            | M::Fxtract | M::Fyl2x | M::Fyl2xp1
    )
}

/// Size in bytes when every register operand is a full 16/32/64-bit GPR, else 0.
fn full_gpr_size(i: &Instruction) -> u8 {
    let mut size = 0;
    for n in 0..i.op_count() {
        if i.op_kind(n) == OpKind::Register {
            let s = crate::regs::gpr_size(i.op_register(n));
            if s < 2 || (size != 0 && s != size) {
                return 0;
            }
            size = s;
        }
    }
    size
}

macro_rules! by_size {
    ($i:expr, $f:ident :: <$c:tt>, $fallback:expr) => {
        match full_gpr_size($i) {
            2 => alu::$f::<$c, 2>,
            4 => alu::$f::<$c, 4>,
            8 => alu::$f::<$c, 8>,
            _ => $fallback,
        }
    };
}

fn alu_handler<const OP: u8>(i: &Instruction) -> Handler {
    let rr = i.op0_kind() == OpKind::Register && i.op1_kind() == OpKind::Register;
    let ri = i.op0_kind() == OpKind::Register && !matches!(i.op1_kind(), OpKind::Register | OpKind::Memory);
    if rr {
        by_size!(i, alu_rr_sized::<OP>, alu::alu_rr::<OP>)
    } else if ri {
        by_size!(i, alu_ri_sized::<OP>, alu::alu_ri::<OP>)
    } else {
        alu::alu::<OP>
    }
}

/// Picks the handler for a decoded instruction.
pub fn handler(i: &Instruction) -> Handler {
    if i.is_invalid() {
        return unimplemented;
    }
    if let Some(h) = mmx::handler(i) {
        return h;
    }
    if let Some(h) = sse::handler(i) {
        return h;
    }
    let r = OpKind::Register;
    match i.mnemonic() {
        M::Add => alu_handler::<{ alu::ADD }>(i),
        M::Or => alu_handler::<{ alu::OR }>(i),
        M::Adc => alu_handler::<{ alu::ADC }>(i),
        M::Sbb => alu_handler::<{ alu::SBB }>(i),
        M::And => alu_handler::<{ alu::AND }>(i),
        M::Sub => alu_handler::<{ alu::SUB }>(i),
        M::Xor => alu_handler::<{ alu::XOR }>(i),
        M::Cmp => alu_handler::<{ alu::CMP }>(i),
        M::Test => alu_handler::<{ alu::TEST }>(i),
        M::Inc if i.op0_kind() == r => by_size!(i, incdec_r_sized::<false>, alu::incdec_r::<false>),
        M::Dec if i.op0_kind() == r => by_size!(i, incdec_r_sized::<true>, alu::incdec_r::<true>),
        M::Inc => alu::inc,
        M::Dec => alu::dec,
        M::Neg => alu::neg,
        M::Not => alu::not,
        M::Mul => alu::mul,
        M::Imul => alu::imul,
        M::Div => alu::div,
        M::Idiv => alu::idiv,
        M::Shl | M::Sal | M::Shr | M::Sar | M::Rol | M::Ror | M::Rcl | M::Rcr => alu::shift,
        M::Shld | M::Shrd => alu::shift_double,
        M::Bt | M::Bts | M::Btr | M::Btc => alu::bit_test,
        M::Bsf | M::Bsr | M::Tzcnt | M::Lzcnt | M::Popcnt => alu::bit_scan,
        M::Daa | M::Das | M::Aaa | M::Aas | M::Aam | M::Aad => alu::bcd,
        M::Cbw | M::Cwde | M::Cdqe | M::Cwd | M::Cdq | M::Cqo => alu::sign_extend,
        M::Xadd => alu::xadd,
        M::Cmpxchg => alu::cmpxchg,
        M::Cmpxchg8b | M::Cmpxchg16b => alu::cmpxchg_wide,
        M::Clc | M::Stc | M::Cmc | M::Cld | M::Std | M::Lahf | M::Sahf | M::Salc => alu::flag_op,
        M::Seta | M::Setae | M::Setb | M::Setbe | M::Sete | M::Setg | M::Setge | M::Setl | M::Setle | M::Setne | M::Setno | M::Setnp | M::Setns | M::Seto | M::Setp | M::Sets => alu::setcc,
        M::Cmova | M::Cmovae | M::Cmovb | M::Cmovbe | M::Cmove | M::Cmovg | M::Cmovge | M::Cmovl | M::Cmovle | M::Cmovne | M::Cmovno | M::Cmovnp | M::Cmovns | M::Cmovo | M::Cmovp | M::Cmovs => alu::cmovcc,
        M::Bswap => alu::bswap,
        M::Mov => {
            let seg = (i.op0_kind() == r && i.op0_register().is_segment_register()) || (i.op1_kind() == r && i.op1_register().is_segment_register());
            let crdr = (i.op0_kind() == r && (i.op0_register().is_cr() || i.op0_register().is_dr())) || (i.op1_kind() == r && (i.op1_register().is_cr() || i.op1_register().is_dr()));
            if crdr {
                system::mov_cr_dr
            } else if seg {
                data::mov
            } else if i.op0_kind() == r && i.op1_kind() == r {
                data::mov_rr
            } else if i.op0_kind() == r && i.op1_kind() == OpKind::Memory {
                data::mov_rm
            } else if i.op0_kind() == OpKind::Memory && i.op1_kind() == r {
                data::mov_mr
            } else if i.op0_kind() == r {
                data::mov_ri
            } else {
                data::mov
            }
        }
        M::Movzx | M::Movsx | M::Movsxd => data::movx,
        M::Lea => data::lea,
        M::Xchg => data::xchg,
        M::Push => data::push,
        M::Pop => data::pop,
        M::Pusha | M::Pushad => data::pusha,
        M::Popa | M::Popad => data::popa,
        M::Pushf | M::Pushfd | M::Pushfq => data::pushf,
        M::Popf | M::Popfd | M::Popfq => data::popf,
        M::Enter => data::enter,
        M::Leave => data::leave,
        M::Lds | M::Les | M::Lfs | M::Lgs | M::Lss => data::load_far_pointer,
        M::Xlatb => data::xlat,
        M::Movbe => data::movbe,
        M::Nop | M::Pause | M::Lfence | M::Mfence | M::Sfence | M::Clflush | M::Clflushopt | M::Prefetchnta | M::Prefetcht0 | M::Prefetcht1 | M::Prefetcht2 | M::Prefetchw | M::Endbr32 | M::Endbr64 => data::nop,
        M::Jmp => match i.op0_kind() {
            OpKind::FarBranch16 | OpKind::FarBranch32 => branch::far_jmp_call,
            OpKind::Memory if matches!(i.code(), Code::Jmp_m1616 | Code::Jmp_m1632 | Code::Jmp_m1664) => branch::far_jmp_call,
            _ => branch::jmp,
        },
        M::Call => match i.op0_kind() {
            OpKind::FarBranch16 | OpKind::FarBranch32 => branch::far_jmp_call,
            OpKind::Memory if matches!(i.code(), Code::Call_m1616 | Code::Call_m1632 | Code::Call_m1664) => branch::far_jmp_call,
            _ => branch::call,
        },
        M::Ja | M::Jae | M::Jb | M::Jbe | M::Je | M::Jg | M::Jge | M::Jl | M::Jle | M::Jne | M::Jno | M::Jnp | M::Jns | M::Jo | M::Jp | M::Js => branch::jcc,
        M::Loop | M::Loope | M::Loopne | M::Jcxz | M::Jecxz | M::Jrcxz => branch::loop_,
        M::Ret => branch::ret,
        M::Retf => branch::retf,
        M::Int | M::Int3 | M::Into | M::Int1 => branch::int,
        M::Iret | M::Iretd | M::Iretq => branch::iret,
        M::Bound => branch::bound,
        M::Syscall => branch::syscall,
        M::Sysret | M::Sysretq => branch::sysret,
        M::Sysenter | M::Sysexit | M::Sysexitq => branch::sysenter,
        M::Movsb | M::Movsw | M::Movsd if i.op_count() == 2 && i.op0_kind() != r => string::string,
        M::Movsq | M::Cmpsb | M::Cmpsw | M::Cmpsq | M::Scasb | M::Scasw | M::Scasd | M::Scasq | M::Lodsb | M::Lodsw | M::Lodsd | M::Lodsq | M::Stosb | M::Stosw | M::Stosd | M::Stosq | M::Insb | M::Insw | M::Insd | M::Outsb | M::Outsw | M::Outsd => string::string,
        M::Cmpsd if i.op_count() == 2 && i.op0_kind() != r => string::string,
        M::In => system::in_,
        M::Out => system::out,
        M::Hlt => system::hlt,
        M::Cli | M::Sti => system::cli_sti,
        M::Lgdt | M::Lidt | M::Sgdt | M::Sidt => system::table_reg,
        M::Lldt | M::Ltr | M::Sldt | M::Str => system::ldt_tr,
        M::Lmsw | M::Smsw | M::Clts => system::msw,
        M::Cpuid => system::cpuid,
        M::Rdtsc | M::Rdtscp => system::rdtsc,
        M::Rdmsr | M::Wrmsr => system::msr_access,
        M::Lar | M::Lsl | M::Verr | M::Verw => system::descriptor_query,
        M::Arpl => system::arpl,
        M::Swapgs => system::swapgs,
        M::Invlpg => system::invlpg,
        M::Wbinvd | M::Invd => system::cache_control,
        M::Ud0 | M::Ud1 | M::Ud2 => system::ud,
        M::Rsm => crate::smm::rsm,
        M::Wait => x87::fpu,
        m if is_x87(m) => x87::fpu,
        _ => unimplemented,
    }
}
