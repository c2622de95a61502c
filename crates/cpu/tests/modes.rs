//! 16-, 32- and 64-bit mode semantics that the host cannot run natively, checked with small
//! guest programs assembled here and run on the emulated CPU (see `guest` for the test
//! machine and the shared memory layout).

mod guest;

use cpu::flags::bits;
use cpu::regs::{RAX, RBX, RCX, RDI, RDX, RSI, RSP};
use cpu::sreg::{CS, DS, SS};
use cpu::exception::{DF, GP, NP, PF, UD};
use cpu::{cr, Exit, ShutdownReason};
use guest::*;
use iced_x86::code_asm::*;

type T = Result<(), Box<dyn std::error::Error>>;

/// Assembles straight-line code for `bits`-bit mode at `ip`.
fn code(bits: u32, ip: u64, f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(bits).expect("bitness");
    f(&mut a).expect("emit");
    a.assemble(ip).expect("assemble")
}

/// Emits kernel code that loads TR and IRETDs to 32-bit user code at USER_CODE with
/// ESP = USER_STACK_TOP and IF set.
fn to_user32(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.mov(ax, TSS_SEL as u32)?;
    a.ltr(ax)?;
    a.push(UDATA as u32)?;
    a.push(USER_STACK_TOP as u32)?;
    a.push(0x202u32)?;
    a.push(UCODE32 as u32)?;
    a.push(USER_CODE as u32)?;
    a.iretd()
}

// ---------------------------------------------------------------------------------------
// 1. Real mode
// ---------------------------------------------------------------------------------------

#[test]
fn reset_starts_at_f000_fff0_and_far_jmp_reaches_real_mode_code() -> T {
    let prog = code(16, REAL_CODE, |a| {
        a.mov(ax, 0x1234)?;
        a.hlt()
    });
    let mut m = Machine::boot(&prog);
    assert_eq!((m.cpu.seg[CS].selector, m.cpu.seg[CS].base, m.cpu.rip), (0xf000, 0xffff_0000, 0xfff0));
    m.run_to_halt();
    assert_eq!(m.cpu.mode_name(), "real");
    assert_eq!((m.cpu.seg[CS].selector, m.cpu.seg[CS].base), (0, 0));
    assert_eq!(m.cpu.rip, REAL_CODE + prog.len() as u64);
    assert_eq!(m.cpu.regs[RAX] & 0xffff, 0x1234);
    Ok(())
}

#[test]
fn real_mode_segment_base_is_selector_times_16() -> T {
    let prog = code(16, REAL_CODE, |a| {
        a.mov(ax, 0x1234)?;
        a.mov(ds, ax)?;
        a.mov(byte_ptr(0x10), 0xAB)?;
        a.mov(bx, word_ptr(0x20))?;
        a.hlt()
    });
    let mut m = Machine::real(&prog);
    m.w16(0x12360, 0x3456);
    m.run_to_halt();
    assert_eq!(m.cpu.seg[DS].base, 0x12340);
    assert_eq!(m.r8(0x12350), 0xAB);
    assert_eq!(m.cpu.regs[RBX] & 0xffff, 0x3456);
    Ok(())
}

#[test]
fn real_mode_offsets_wrap_at_64k() -> T {
    let prog = code(16, REAL_CODE, |a| {
        a.mov(ax, 0x2000)?;
        a.mov(ds, ax)?;
        a.mov(bx, 0xFFF0)?;
        a.mov(si, 0x20)?;
        a.mov(byte_ptr(bx + si), 0x77)?; // offset (0xFFF0 + 0x20) & 0xFFFF = 0x10
        a.mov(ax, 0x3000)?;
        a.mov(ss, ax)?;
        a.mov(sp, 0)?;
        a.push(0xBEEFu32)?; // SP wraps from 0 to 0xFFFE
        a.hlt()
    });
    let mut m = Machine::real(&prog);
    m.run_to_halt();
    assert_eq!(m.r8(0x20010), 0x77);
    assert_eq!(m.r8(0x30010), 0, "no carry into the next 64 KiB");
    assert_eq!(m.cpu.regs[RSP] & 0xffff, 0xFFFE);
    assert_eq!(m.r16(0x3FFFE), 0xBEEF);
    Ok(())
}

#[test]
fn real_mode_int_pushes_flags_cs_ip_and_clears_if() -> T {
    let mut a = CodeAssembler::new(16)?;
    let mut after = a.create_label();
    a.sti()?;
    a.int(0x21)?;
    a.set_label(&mut after)?;
    a.hlt()?;
    let (prog, l) = assemble(&mut a, REAL_CODE, &[after]);
    let mut m = Machine::real(&prog);
    m.set_ivt(0x21, 0x0800, 0x0010);
    m.load(0x8010, &[0xF4]); // hlt
    m.run_to_halt();
    assert_eq!((m.cpu.seg[CS].selector, m.cpu.rip), (0x0800, 0x0011), "{}", m.describe());
    assert!(!m.cpu.flags.sys(bits::IF), "INT clears IF");
    assert_eq!(m.cpu.regs[RSP] & 0xffff, REAL_CODE - 6);
    assert_eq!(m.stack16(0) as u64, l[0], "IP of the next instruction");
    assert_eq!(m.stack16(1), 0, "CS");
    assert_ne!(m.stack16(2) as u64 & bits::IF, 0, "FLAGS as before the INT");
    Ok(())
}

#[test]
fn real_mode_iret_restores_flags_cs_ip_and_sp() -> T {
    let prog = code(16, REAL_CODE, |a| {
        a.sti()?;
        a.stc()?;
        a.int(0x21)?;
        a.mov(cx, 0x2222)?;
        a.hlt()
    });
    let mut m = Machine::real(&prog);
    m.set_ivt(0x21, 0x0800, 0x0010);
    m.load(0x8010, &code(16, 0x10, |a| {
        a.mov(bx, 0x1111)?;
        a.clc()?;
        a.iret()
    }));
    m.run_to_halt();
    assert_eq!(m.cpu.regs[RBX] & 0xffff, 0x1111, "handler ran");
    assert_eq!(m.cpu.regs[RCX] & 0xffff, 0x2222, "returned after the INT");
    assert!(m.cpu.flags.cf(), "CF restored from the stack");
    assert!(m.cpu.flags.sys(bits::IF), "IF restored from the stack");
    assert_eq!(m.cpu.regs[RSP] & 0xffff, REAL_CODE);
    Ok(())
}

#[test]
fn real_mode_pushf_popf_round_trip_arithmetic_flags() -> T {
    let prog = code(16, REAL_CODE, |a| {
        a.push(0x08D5u32)?; // OF SF ZF AF PF CF
        a.popf()?;
        a.pushf()?;
        a.pop(bx)?;
        a.hlt()
    });
    let mut m = Machine::real(&prog);
    m.run_to_halt();
    assert_eq!(m.cpu.regs[RBX] & 0xffff, 0x08D7, "bit 1 always reads as 1");
    assert!(m.cpu.flags.cf() && m.cpu.flags.zf() && m.cpu.flags.sf() && m.cpu.flags.of());
    Ok(())
}

#[test]
fn real_mode_far_call_pushes_cs_ip_and_retf_returns() -> T {
    let mut a = CodeAssembler::new(16)?;
    let mut ret = a.create_label();
    a.call_far(0x0900, 0x0000)?;
    a.set_label(&mut ret)?;
    a.mov(cx, 1)?;
    a.hlt()?;
    let (prog, l) = assemble(&mut a, REAL_CODE, &[ret]);
    let mut m = Machine::real(&prog);
    m.load(0x9000, &code(16, 0, |a| {
        a.mov(dx, cs)?;
        a.mov(bp, sp)?;
        a.mov(di, word_ptr(bp))?;
        a.mov(si, word_ptr(bp + 2))?;
        a.retf()
    }));
    m.run_to_halt();
    assert_eq!(m.cpu.regs[RDX] & 0xffff, 0x0900, "CS inside the callee");
    assert_eq!(m.cpu.regs[RDI] & 0xffff, l[0], "pushed IP");
    assert_eq!(m.cpu.regs[RSI] & 0xffff, 0, "pushed CS");
    assert_eq!(m.cpu.regs[RCX] & 0xffff, 1, "RETF came back");
    assert_eq!(m.cpu.regs[RSP] & 0xffff, REAL_CODE);
    Ok(())
}

#[test]
fn real_mode_divide_error_goes_through_ivt_0_and_returns_to_the_faulting_div() -> T {
    let mut a = CodeAssembler::new(16)?;
    let mut div_insn = a.create_label();
    a.xor(si, si)?;
    a.mov(ax, 100)?;
    a.xor(cl, cl)?;
    a.set_label(&mut div_insn)?;
    a.div(cl)?;
    a.hlt()?;
    let (prog, l) = assemble(&mut a, REAL_CODE, &[div_insn]);
    let mut m = Machine::real(&prog);
    m.set_ivt(0, 0x0800, 0);
    // Handler: note the pushed IP, count, fix the divisor, and return to retry the DIV.
    m.load(0x8000, &code(16, 0, |a| {
        a.mov(bp, sp)?;
        a.mov(di, word_ptr(bp))?;
        a.inc(si)?;
        a.mov(cl, 4)?;
        a.iret()
    }));
    m.run_to_halt();
    assert_eq!(m.cpu.regs[RSI] & 0xffff, 1, "one #DE");
    assert_eq!(m.cpu.regs[RDI] & 0xffff, l[0], "#DE is a fault: IP points at the DIV");
    assert_eq!(m.cpu.regs[RAX] & 0xffff, 25, "the retried DIV: AL = 100 / 4, AH = 0");
    Ok(())
}

#[test]
fn real_mode_offset_above_64k_raises_gp_without_big_real_mode() -> T {
    let prog = code(16, REAL_CODE, |a| {
        a.xor(ax, ax)?;
        a.mov(ds, ax)?;
        a.mov(esi, 0x300000)?;
        a.mov(dword_ptr(esi), 0x12345678)?;
        a.hlt()
    });
    let mut m = Machine::real(&prog);
    m.real_ivt_to_stubs();
    assert_eq!(m.run_to_exception(), 13);
    assert_eq!(m.r32(0x300000), 0);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. Entering and leaving protected mode; segment checks
// ---------------------------------------------------------------------------------------

/// Writes a GDTR pseudo-descriptor for the GDT at GDT (limit 0xFFF) at `at`.
fn gdtr_at(m: &mut Machine, at: u64) {
    m.w16(at, 0xfff);
    m.w32(at + 2, GDT as u32);
}

#[test]
fn lgdt_cr0_pe_and_far_jmp_enter_32bit_protected_mode() -> T {
    let real = code(16, REAL_CODE, |a| {
        a.cli()?;
        a.lgdt(ptr(0x7e00))?;
        a.mov(eax, cr0)?;
        a.or(eax, 1)?;
        a.mov(cr0, eax)?;
        a.jmp_far(KCODE32, 0x8000)
    });
    let pm = code(32, 0x8000, |a| {
        a.mov(ax, KDATA as u32)?;
        a.mov(ds, ax)?;
        a.mov(es, ax)?;
        a.mov(ss, ax)?;
        a.mov(esp, 0x90000)?;
        a.mov(dword_ptr(DATA), 0xCAFEBABEu32)?; // above 1 MiB
        a.mov(ebx, dword_ptr(DATA))?;
        a.push(ebx)?; // 32-bit stack
        a.hlt()
    });
    let mut m = Machine::boot(&real);
    m.load(0x8000, &pm);
    gdtr_at(&mut m, 0x7e00);
    m.set_gdt_entry(KCODE32, flat(ACC_CODE, FLAGS_32));
    m.set_gdt_entry(KDATA, flat(ACC_DATA, FLAGS_32));
    m.run_to_halt();
    assert_eq!(m.cpu.mode_name(), "protected32", "{}", m.describe());
    assert_eq!(m.cpu.gdtr.base, GDT);
    assert_eq!(m.cpu.seg[CS].selector, KCODE32);
    assert_eq!(m.r32(DATA), 0xCAFEBABE);
    assert_eq!(m.cpu.regs[RBX], 0xCAFEBABE);
    assert_eq!(m.cpu.regs[RSP], 0x90000 - 4);
    assert_eq!(m.r32(0x90000 - 4), 0xCAFEBABE);
    assert_ne!(m.r8(GDT + KDATA as u64 + 5) & 1, 0, "descriptor accessed bit set by the load");
    Ok(())
}

#[test]
fn big_real_mode_data_limit_survives_return_to_real_mode() -> T {
    let mut m = Machine::real(&code(16, REAL_CODE, |a| {
        a.cli()?;
        a.lgdt(ptr(0x7e00))?;
        a.mov(eax, cr0)?;
        a.or(eax, 1)?;
        a.mov(cr0, eax)?;
        a.jmp_far(CODE16, 0x8000)
    }));
    // 16-bit protected mode: load DS with a 4 GiB data segment and drop back to real mode.
    m.load(0x8000, &code(16, 0x8000, |a| {
        a.mov(ax, KDATA as u32)?;
        a.mov(ds, ax)?;
        a.mov(eax, cr0)?;
        a.and(eax, !1)?;
        a.mov(cr0, eax)?;
        a.jmp_far(0, 0x8100)
    }));
    m.load(0x8100, &code(16, 0x8100, |a| {
        a.xor(ax, ax)?;
        a.mov(ds, ax)?; // a real-mode load changes base, keeps the 4 GiB limit
        a.mov(esi, 0x300000)?;
        a.mov(dword_ptr(esi), 0x12345678)?;
        a.mov(ebx, dword_ptr(esi))?;
        a.hlt()
    }));
    gdtr_at(&mut m, 0x7e00);
    m.set_gdt_entry(KDATA, flat(ACC_DATA, FLAGS_32));
    m.set_gdt_entry(CODE16, seg_desc(0, 0xffff, ACC_CODE, FLAGS_16));
    m.run_to_halt();
    assert_eq!(m.cpu.mode_name(), "real", "{}", m.describe());
    assert_eq!((m.cpu.seg[DS].selector, m.cpu.seg[DS].base, m.cpu.seg[DS].limit), (0, 0, 0xffff_ffff));
    assert_eq!(m.r32(0x300000), 0x12345678);
    assert_eq!(m.cpu.regs[RBX], 0x12345678);
    Ok(())
}

#[test]
fn protected_mode_limit_violation_raises_gp0_at_the_faulting_instruction() -> T {
    let mut a = CodeAssembler::new(32)?;
    let mut fault = a.create_label();
    a.mov(ax, FREE_SEL as u32)?;
    a.mov(ds, ax)?;
    a.mov(eax, dword_ptr(0xffc))?; // last dword inside the 4 KiB limit
    a.mov(ebx, 1)?;
    a.set_label(&mut fault)?;
    a.mov(eax, dword_ptr(0xffd))?; // its last byte is past the limit
    a.hlt()?;
    let (prog, l) = assemble(&mut a, CODE, &[fault]);
    let mut m = Machine::protected32(&prog);
    m.set_gdt_entry(FREE_SEL, seg_desc(DATA as u32, 0xfff, ACC_DATA, 0x4));
    assert_eq!(m.run_to_exception(), 13);
    assert_eq!(m.cpu.regs[RBX], 1, "the access inside the limit worked");
    assert_eq!(m.cpu.regs[RSP], STACK_TOP - 16, "error code, EIP, CS, EFLAGS");
    assert_eq!(m.stack32(0), 0, "error code");
    assert_eq!(m.stack32(1) as u64, l[0], "EIP of the faulting MOV");
    assert_eq!(m.stack32(2), KCODE32 as u32);
    Ok(())
}

#[test]
fn expand_down_segment_accepts_offsets_above_limit_and_faults_below() -> T {
    let mut a = CodeAssembler::new(32)?;
    let mut fault = a.create_label();
    a.mov(ax, FREE_SEL as u32)?;
    a.mov(ds, ax)?;
    a.mov(dword_ptr(0x2000), 0x11223344)?;
    a.mov(ebx, 1)?;
    a.set_label(&mut fault)?;
    a.mov(eax, dword_ptr(0x800))?;
    a.hlt()?;
    let (prog, l) = assemble(&mut a, CODE, &[fault]);
    let mut m = Machine::protected32(&prog);
    // Expand-down, B=1: valid offsets are 0x1000..=0xFFFFFFFF.
    m.set_gdt_entry(FREE_SEL, seg_desc(DATA as u32, 0xfff, ACC_DATA_EXPAND_DOWN, 0x4));
    assert_eq!(m.run_to_exception(), 13);
    assert_eq!(m.r32(DATA + 0x2000), 0x11223344);
    assert_eq!(m.cpu.regs[RBX], 1);
    assert_eq!((m.stack32(0), m.stack32(1) as u64), (0, l[0]));
    Ok(())
}

#[test]
fn null_selector_loads_into_ds_but_using_it_raises_gp0() -> T {
    let mut a = CodeAssembler::new(32)?;
    let mut fault = a.create_label();
    a.xor(eax, eax)?;
    a.mov(ds, ax)?;
    a.mov(ebx, 1)?;
    a.set_label(&mut fault)?;
    a.mov(eax, dword_ptr(0x100))?;
    a.hlt()?;
    let (prog, l) = assemble(&mut a, CODE, &[fault]);
    let mut m = Machine::protected32(&prog);
    assert_eq!(m.run_to_exception(), 13);
    assert_eq!(m.cpu.regs[RBX], 1, "loading the null selector itself is allowed");
    assert_eq!((m.stack32(0), m.stack32(1) as u64), (0, l[0]));
    Ok(())
}

#[test]
fn loading_ss_with_wrong_dpl_raises_gp_with_the_selector() -> T {
    let mut a = CodeAssembler::new(32)?;
    let mut fault = a.create_label();
    a.mov(ax, (UDATA & !3) as u32)?; // RPL 0 = CPL, but DPL 3
    a.set_label(&mut fault)?;
    a.mov(ss, ax)?;
    a.hlt()?;
    let (prog, l) = assemble(&mut a, CODE, &[fault]);
    let mut m = Machine::protected32(&prog);
    assert_eq!(m.run_to_exception(), 13);
    assert_eq!((m.stack32(0), m.stack32(1) as u64), ((UDATA & !3) as u32, l[0]));
    assert_eq!(m.cpu.seg[SS].selector, KDATA, "SS unchanged");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 3. IDT delivery in 32-bit protected mode
// ---------------------------------------------------------------------------------------

fn int40_with_gate(typ: u8) -> (Machine, u64) {
    let mut a = CodeAssembler::new(32).unwrap();
    let mut after = a.create_label();
    a.sti().unwrap();
    a.int(0x40).unwrap();
    a.set_label(&mut after).unwrap();
    a.hlt().unwrap();
    let (prog, l) = assemble(&mut a, CODE, &[after]);
    let mut m = Machine::protected32(&prog);
    m.set_gate32(0x40, gate32(KCODE32, handler_addr(0x40) as u32, typ, 0, true));
    (m, l[0])
}

#[test]
fn int_through_interrupt_gate_clears_if() -> T {
    let (mut m, after) = int40_with_gate(INT_GATE);
    assert_eq!(m.run_to_exception(), 0x40);
    assert!(!m.cpu.flags.sys(bits::IF));
    assert_eq!(m.cpu.regs[RSP], STACK_TOP - 12, "EIP, CS, EFLAGS; no error code");
    assert_eq!(m.stack32(0) as u64, after);
    assert_ne!(m.stack32(2) as u64 & bits::IF, 0);
    Ok(())
}

#[test]
fn int_through_trap_gate_keeps_if() -> T {
    let (mut m, after) = int40_with_gate(TRAP_GATE);
    assert_eq!(m.run_to_exception(), 0x40);
    assert!(m.cpu.flags.sys(bits::IF));
    assert_eq!(m.stack32(0) as u64, after);
    Ok(())
}

#[test]
fn ud_pushes_no_error_code() -> T {
    let mut m = Machine::protected32(&code(32, CODE, |a| a.ud2()));
    assert_eq!(m.run_to_exception(), 6);
    assert_eq!(m.cpu.regs[RSP], STACK_TOP - 12);
    assert_eq!((m.stack32(0) as u64, m.stack32(1)), (CODE, KCODE32 as u32));
    Ok(())
}

#[test]
fn divide_error_pushes_no_error_code() -> T {
    let mut a = CodeAssembler::new(32)?;
    let mut fault = a.create_label();
    a.xor(ecx, ecx)?;
    a.set_label(&mut fault)?;
    a.div(ecx)?;
    a.hlt()?;
    let (prog, l) = assemble(&mut a, CODE, &[fault]);
    let mut m = Machine::protected32(&prog);
    assert_eq!(m.run_to_exception(), 0);
    assert_eq!(m.cpu.regs[RSP], STACK_TOP - 12);
    assert_eq!((m.stack32(0) as u64, m.stack32(1)), (l[0], KCODE32 as u32));
    Ok(())
}

/// A machine that drops to CPL 3 and runs `user` there (gate 0x40 is a DPL-3 interrupt gate).
fn user32(user: &[u8]) -> Machine {
    let mut m = Machine::protected32(&code(32, CODE, to_user32));
    m.load(USER_CODE, user);
    m.set_gate32(0x40, gate32(KCODE32, handler_addr(0x40) as u32, INT_GATE, 3, true));
    m
}

#[test]
fn interrupt_from_cpl3_switches_to_the_tss_ring0_stack() -> T {
    let mut a = CodeAssembler::new(32)?;
    let mut after = a.create_label();
    a.mov(eax, 0x1234)?;
    a.int(0x40)?;
    a.set_label(&mut after)?;
    a.jmp(after)?;
    let (user, l) = assemble(&mut a, USER_CODE, &[after]);
    let mut m = user32(&user);
    assert_eq!(m.run_to_exception(), 0x40);
    assert_eq!(m.cpu.tr.selector, TSS_SEL);
    assert_eq!(m.r8(GDT + TSS_SEL as u64 + 5) & 0xf, 0xB, "LTR marks the TSS busy");
    assert_eq!(m.cpu.cpl, 0);
    assert_eq!(m.cpu.seg[SS].selector, KDATA, "SS0 from the TSS");
    assert_eq!(m.cpu.regs[RSP], KERNEL_STACK_TOP - 20, "ESP0 from the TSS, 5 dwords pushed");
    assert_eq!(m.stack32(0) as u64, l[0], "user EIP");
    assert_eq!(m.stack32(1), UCODE32 as u32, "user CS");
    assert_ne!(m.stack32(2) as u64 & bits::IF, 0, "user EFLAGS");
    assert_eq!(m.stack32(3) as u64, USER_STACK_TOP, "user ESP");
    assert_eq!(m.stack32(4), UDATA as u32, "user SS");
    Ok(())
}

#[test]
fn int_n_from_cpl3_to_dpl0_gate_raises_gp_with_vector_error_code() -> T {
    let mut a = CodeAssembler::new(32)?;
    let mut int_insn = a.create_label();
    a.set_label(&mut int_insn)?;
    a.int(0x41)?; // gate 0x41 has DPL 0
    a.jmp(int_insn)?;
    let (user, l) = assemble(&mut a, USER_CODE, &[int_insn]);
    let mut m = user32(&user);
    assert_eq!(m.run_to_exception(), 13, "{}", m.describe());
    assert_eq!(m.vectors(), [13], "gate 0x41 never entered");
    assert_eq!(m.stack32(0), 0x41 * 8 + 2, "error code: IDT bit + vector");
    assert_eq!(m.stack32(1) as u64, l[0], "#GP is a fault: EIP points at the INT");
    assert_eq!(m.stack32(2), UCODE32 as u32);
    assert_eq!(m.stack32(4) as u64, USER_STACK_TOP);
    Ok(())
}

#[test]
fn iretd_from_ring0_handler_returns_to_cpl3_and_its_stack() -> T {
    let mut a = CodeAssembler::new(32)?;
    let mut done = a.create_label();
    a.xor(ebx, ebx)?;
    a.int(0x40)?;
    a.int(0x40)?;
    a.mov(ecx, esp)?;
    a.mov(edx, cs)?;
    a.mov(esi, ss)?;
    a.set_label(&mut done)?;
    a.int(0x42)?;
    let (user, l) = assemble(&mut a, USER_CODE, &[done]);
    let mut m = user32(&user);
    // Gate 0x40: a handler that counts in EBX and returns; gate 0x42: the halting stub.
    m.load(0x5000, &code(32, 0x5000, |a| {
        a.inc(ebx)?;
        a.iretd()
    }));
    m.set_gate32(0x40, gate32(KCODE32, 0x5000, INT_GATE, 3, true));
    m.set_gate32(0x42, gate32(KCODE32, handler_addr(0x42) as u32, INT_GATE, 3, true));
    assert_eq!(m.run_to_exception(), 0x42, "{}", m.describe());
    assert_eq!(m.cpu.regs[RBX], 2, "both INTs handled");
    assert_eq!(m.cpu.regs[RCX], USER_STACK_TOP, "user ESP back after each IRETD");
    assert_eq!(m.cpu.regs[RDX] & 0xffff, UCODE32 as u64);
    assert_eq!(m.cpu.regs[RSI] & 0xffff, UDATA as u64);
    assert_eq!(m.cpu.regs[RSP], KERNEL_STACK_TOP - 20, "ESP0 again for the third INT");
    assert_eq!(m.stack32(0) as u64, l[0] + 2);
    Ok(())
}

#[test]
fn user_stack_limit_violation_raises_ss_not_gp() -> T {
    let mut a = CodeAssembler::new(32)?;
    let mut fault = a.create_label();
    a.mov(ax, (FREE_SEL | 3) as u32)?;
    a.mov(ss, ax)?;
    a.mov(esp, 0x2000)?;
    a.set_label(&mut fault)?;
    a.push(eax)?; // offset 0x1FFC is past the 4 KiB limit
    a.jmp(fault)?;
    let (user, l) = assemble(&mut a, USER_CODE, &[fault]);
    let mut m = user32(&user);
    m.set_gdt_entry(FREE_SEL, seg_desc(DATA as u32, 0xfff, ACC_USER_DATA, 0x4));
    assert_eq!(m.run_to_exception(), 12, "{}", m.describe());
    assert_eq!(m.stack32(0), 0, "#SS(0)");
    assert_eq!(m.stack32(1) as u64, l[0]);
    assert_eq!((m.stack32(4), m.stack32(5)), (0x2000, (FREE_SEL | 3) as u32), "user SS:ESP");
    Ok(())
}

#[test]
fn int_through_16bit_interrupt_gate_pushes_a_16bit_frame() -> T {
    let mut a = CodeAssembler::new(32)?;
    let mut after = a.create_label();
    a.int(0x40)?;
    a.set_label(&mut after)?;
    a.hlt()?;
    let (prog, l) = assemble(&mut a, CODE, &[after]);
    let mut m = Machine::protected32(&prog);
    // A 286 interrupt gate (type 6) into the 16-bit code segment (base 0).
    m.set_gate32(0x40, gate32(CODE16, handler_addr(0x40) as u32, 0x6, 0, true));
    assert_eq!(m.run_to_exception(), 0x40);
    assert_eq!(m.cpu.mode_name(), "protected16");
    assert_eq!(m.cpu.regs[RSP], STACK_TOP - 6, "IP, CS, FLAGS as words");
    assert_eq!(m.r16(STACK_TOP - 6) as u64, l[0] & 0xffff, "EIP truncated to 16 bits");
    assert_eq!(m.r16(STACK_TOP - 4), KCODE32);
    Ok(())
}

#[test]
fn ltr_of_a_busy_tss_raises_gp() -> T {
    let mut a = CodeAssembler::new(32)?;
    let mut second = a.create_label();
    a.mov(ax, TSS_SEL as u32)?;
    a.ltr(ax)?;
    a.set_label(&mut second)?;
    a.ltr(ax)?;
    a.hlt()?;
    let (prog, l) = assemble(&mut a, CODE, &[second]);
    let mut m = Machine::protected32(&prog);
    assert_eq!(m.run_to_exception(), 13);
    assert_eq!((m.stack32(0), m.stack32(1) as u64), (TSS_SEL as u32, l[0]));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 4. Paging
// ---------------------------------------------------------------------------------------

#[test]
fn paging_4k_pages_translate_and_set_accessed_and_dirty_bits() -> T {
    let prog = code(32, CODE, |a| {
        a.mov(dword_ptr(0x400010), 0xDEADBEEFu32)?;
        a.mov(eax, dword_ptr(0x401020))?;
        a.hlt()
    });
    let mut m = Machine::protected32(&prog);
    m.enable_paging32();
    m.map4k_32(0x400000, 0x600000, PTE_P | PTE_W);
    m.map4k_32(0x401000, 0x601000, PTE_P | PTE_W);
    m.w32(0x601020, 0x55667788);
    m.run_to_halt();
    assert_eq!(m.r32(0x600010), 0xDEADBEEF);
    assert_eq!(m.cpu.regs[RAX], 0x55667788);
    let (w, r) = (m.pte32_addr(0x400000), m.pte32_addr(0x401000));
    assert_eq!(m.r32(w) as u64 & (PTE_A | PTE_D), PTE_A | PTE_D, "written page: accessed and dirty");
    assert_eq!(m.r32(r) as u64 & (PTE_A | PTE_D), PTE_A, "read page: accessed only");
    assert_ne!(m.r32(PAGE_TABLES + 4) as u64 & PTE_A, 0, "directory entry accessed");
    Ok(())
}

#[test]
fn a_debugger_probe_translates_without_touching_accessed_bits_tlb_or_cr2() -> T {
    let mut m = Machine::protected32(&code(32, CODE, |a| a.hlt()));
    m.enable_paging32();
    m.map4k_32(0x400000, 0x600000, PTE_P | PTE_W);
    m.cpu.cr2 = 0x1234;
    assert_eq!(m.cpu.probe_translate(&mut m.bus, 0x400ab0), Some(0x600ab0), "mapped page");
    assert_eq!(m.cpu.probe_translate(&mut m.bus, 0x0000_5000), Some(0x5000), "identity-mapped page");
    let absent = m.pte32_addr(0x401000);
    m.w32(absent, 0); // not present
    assert_eq!(m.cpu.probe_translate(&mut m.bus, 0x401000), None, "a fault is None, not an exception");
    assert_eq!(m.cpu.cr2, 0x1234, "CR2 untouched");
    let pte = m.pte32_addr(0x400000);
    assert_eq!(m.r32(pte) as u64 & PTE_A, 0, "no accessed bit set");
    assert_eq!(m.r32(PAGE_TABLES) as u64 & PTE_A, 0, "directory entry untouched");
    Ok(())
}

#[test]
fn paging_4m_page_with_cr4_pse_translates() -> T {
    let prog = code(32, CODE, |a| {
        a.mov(dword_ptr(0x923456), 0x11u32)?;
        a.mov(ebx, dword_ptr(0x800000))?;
        a.hlt()
    });
    let mut m = Machine::protected32(&prog);
    m.enable_paging32();
    m.cpu.cr4 |= cr::CR4_PSE;
    m.w32(PAGE_TABLES + 4 * 2, (0xC00000 | PTE_P | PTE_W | PTE_PS) as u32);
    m.w32(0xC00000, 0xABCD);
    m.run_to_halt();
    assert_eq!(m.r32(0xD23456), 0x11);
    assert_eq!(m.cpu.regs[RBX], 0xABCD);
    assert_eq!(m.r32(PAGE_TABLES + 8) as u64 & (PTE_A | PTE_D), PTE_A | PTE_D);
    Ok(())
}

#[test]
fn not_present_page_raises_pf_with_cr2_and_error_code() -> T {
    for (write, want) in [(false, 0u32), (true, 2)] {
        let mut a = CodeAssembler::new(32)?;
        let mut fault = a.create_label();
        a.set_label(&mut fault)?;
        if write {
            a.mov(dword_ptr(0x500123), eax)?;
        } else {
            a.mov(eax, dword_ptr(0x500123))?;
        }
        a.hlt()?;
        let (prog, l) = assemble(&mut a, CODE, &[fault]);
        let mut m = Machine::protected32(&prog);
        m.enable_paging32();
        m.pte32_addr(0x500000); // page table present, entry not
        assert_eq!(m.run_to_exception(), 14);
        assert_eq!(m.cpu.cr2, 0x500123);
        assert_eq!(m.stack32(0), want, "error code for write={write}");
        assert_eq!(m.stack32(1) as u64, l[0]);
    }
    Ok(())
}

#[test]
fn user_write_to_supervisor_page_raises_pf_with_p_w_u_bits() -> T {
    let user = code(32, USER_CODE, |a| {
        a.mov(ax, UDATA as u32)?;
        a.mov(ds, ax)?;
        a.mov(dword_ptr(0x402000), eax)?;
        a.ud2()
    });
    let mut m = user32(&user);
    m.enable_paging32();
    m.map4k_32(0x402000, 0x602000, PTE_P | PTE_W); // supervisor-only
    assert_eq!(m.run_to_exception(), 14, "{}", m.describe());
    assert_eq!(m.cpu.cr2, 0x402000);
    assert_eq!(m.stack32(0), 7, "P | W | U");
    assert_eq!(m.r32(0x602000), 0);
    Ok(())
}

#[test]
fn instruction_fetch_pf_under_32bit_paging_has_no_id_bit() -> T {
    // SDM vol. 3, 4.7: I/D is reported only with SMEP or with PAE/4-level paging and NXE.
    let mut m = Machine::protected32(&code(32, CODE, |a| {
        a.mov(ebx, 0x500000)?;
        a.jmp(ebx)
    }));
    m.enable_paging32();
    m.pte32_addr(0x500000);
    assert_eq!(m.run_to_exception(), 14);
    assert_eq!((m.cpu.cr2, m.stack32(0), m.stack32(1)), (0x500000, 0, 0x500000));
    Ok(())
}

#[test]
fn page_crossing_write_that_faults_on_the_second_page_writes_nothing() -> T {
    let mut m = Machine::protected32(&code(32, CODE, |a| {
        a.mov(dword_ptr(0x400FFE), 0x11223344u32)?;
        a.hlt()
    }));
    m.enable_paging32();
    m.map4k_32(0x400000, 0x600000, PTE_P | PTE_W);
    m.pte32_addr(0x401000); // not present
    assert_eq!(m.run_to_exception(), 14);
    assert_eq!((m.cpu.cr2, m.stack32(0)), (0x401000, 2));
    assert_eq!(m.r16(0x600FFE), 0, "first page untouched");
    Ok(())
}

#[test]
fn supervisor_write_to_read_only_page_faults_only_with_cr0_wp() -> T {
    for wp in [true, false] {
        let mut m = Machine::protected32(&code(32, CODE, |a| {
            a.mov(dword_ptr(0x403000), 5u32)?;
            a.hlt()
        }));
        m.enable_paging32();
        m.map4k_32(0x403000, 0x603000, PTE_P);
        if !wp {
            m.cpu.cr0 &= !cr::CR0_WP;
        }
        m.run_to_halt();
        if wp {
            assert_eq!(m.vectors(), [14]);
            assert_eq!((m.cpu.cr2, m.stack32(0)), (0x403000, 3), "P | W");
            assert_eq!(m.r32(0x603000), 0);
        } else {
            assert_eq!(m.vectors(), [], "{}", m.describe());
            assert_eq!(m.r32(0x603000), 5);
        }
    }
    Ok(())
}

#[test]
fn pae_nx_page_allows_reads_but_fetch_raises_pf_with_id_bit() -> T {
    let prog = code(32, CODE, |a| {
        a.mov(edx, dword_ptr(0x400000))?;
        a.mov(ebx, 0x400000)?;
        a.jmp(ebx)
    });
    let mut m = Machine::protected32(&prog);
    let (pdpt, pd, pt) = (PAGE_TABLES, PAGE_TABLES + 0x1000, PAGE_TABLES + 0x2000);
    m.w64(pdpt, pd | PTE_P); // PDPTEs have no R/W or U/S bits
    m.w64(pd, PTE_P | PTE_W | PTE_U | PTE_PS); // 0-2 MiB identity
    m.w64(pd + 8 * 2, pt | PTE_P | PTE_W | PTE_U);
    m.w64(pt, 0x600000 | PTE_P | PTE_W | PTE_NX);
    m.w32(0x600000, 0x90909090);
    m.cpu.cr4 |= cr::CR4_PAE;
    m.cpu.efer |= cr::EFER_NXE;
    m.cpu.cr3 = pdpt;
    m.cpu.cr0 |= cr::CR0_PG;
    assert_eq!(m.run_to_exception(), 14, "{}", m.describe());
    assert_eq!(m.cpu.regs[RDX], 0x90909090, "data read from the NX page");
    assert_eq!(m.cpu.cr2, 0x400000);
    assert_eq!(m.stack32(0), 0x11, "P | I/D");
    assert_eq!(m.stack32(1), 0x400000, "EIP is the target");
    Ok(())
}

#[test]
fn invlpg_after_changing_a_pte_makes_the_new_mapping_visible() -> T {
    let mut m = Machine::protected32(&[]);
    m.enable_paging32();
    m.map4k_32(0x400000, 0x600000, PTE_P | PTE_W);
    let pte = m.pte32_addr(0x400000);
    m.load(CODE, &code(32, CODE, |a| {
        a.mov(eax, dword_ptr(0x400000))?; // caches the translation
        a.mov(dword_ptr(pte), (0x601000 | PTE_P | PTE_W) as u32)?;
        a.invlpg(ptr(0x400000))?;
        a.mov(ebx, dword_ptr(0x400000))?;
        a.hlt()
    }));
    m.w32(0x600000, 0x1111);
    m.w32(0x601000, 0x2222);
    m.run_to_halt();
    assert_eq!(m.cpu.regs[RAX], 0x1111);
    assert_eq!(m.cpu.regs[RBX], 0x2222);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 5. Long mode
// ---------------------------------------------------------------------------------------

#[test]
fn firmware_style_long_mode_entry_runs_64bit_code() -> T {
    let real = code(16, REAL_CODE, |a| {
        a.cli()?;
        a.lgdt(ptr(0x7e00))?;
        a.mov(eax, cr0)?;
        a.or(eax, 1)?;
        a.mov(cr0, eax)?;
        a.jmp_far(L_KCODE32, 0x8000)
    });
    let pm = code(32, 0x8000, |a| {
        a.mov(ax, L_KDATA as u32)?;
        a.mov(ds, ax)?;
        a.mov(es, ax)?;
        a.mov(ss, ax)?;
        a.mov(esp, STACK_TOP as u32)?;
        a.mov(eax, cr4)?;
        a.or(eax, cr::CR4_PAE as u32)?;
        a.mov(cr4, eax)?;
        a.mov(eax, PAGE_TABLES as u32)?;
        a.mov(cr3, eax)?;
        a.mov(ecx, 0xC000_0080u32)?;
        a.rdmsr()?;
        a.or(eax, cr::EFER_LME as u32)?;
        a.wrmsr()?;
        a.mov(eax, cr0)?;
        a.or(eax, cr::CR0_PG as u32)?;
        a.mov(cr0, eax)?;
        a.jmp_far(L_KCODE64, 0x9000)
    });
    let mut a = CodeAssembler::new(64)?;
    let mut data = a.create_label();
    let mut result = a.create_label();
    let mut msg = a.create_label();
    let mut print = a.create_label();
    a.mov(r8, 0x1122_3344_5566_7788u64)?;
    a.mov(r15, r8)?;
    a.add(r15, 1)?;
    a.mov(rbx, qword_ptr(data))?; // RIP-relative
    a.mov(qword_ptr(result), r15)?;
    a.lea(rsi, ptr(msg))?;
    a.mov(ecx, 3)?;
    a.mov(dx, DEBUGCON as u32)?;
    a.set_label(&mut print)?;
    a.lodsb()?;
    a.out(dx, al)?;
    a.loop_(print)?;
    a.mov(dx, EXIT_PORT as u32)?;
    a.out(dx, al)?;
    a.hlt()?;
    a.set_label(&mut data)?;
    a.dq(&[0xAABB_CCDD_EEFF_0011])?;
    a.set_label(&mut result)?;
    a.dq(&[0])?;
    a.set_label(&mut msg)?;
    a.db(b"OK\n")?;
    let (long, l) = assemble(&mut a, 0x9000, &[result]);

    let mut m = Machine::boot(&real);
    m.load(0x8000, &pm);
    m.load(0x9000, &long);
    gdtr_at(&mut m, 0x7e00);
    m.build_long_gdt();
    m.build_long_page_tables();
    assert_eq!(m.run(10_000), Exit::Stopped, "{}", m.describe());
    assert_eq!(m.cpu.mode_name(), "long");
    assert_ne!(m.cpu.efer & cr::EFER_LMA, 0);
    assert_eq!(m.cpu.regs[8], 0x1122_3344_5566_7788);
    assert_eq!(m.cpu.regs[15], 0x1122_3344_5566_7789);
    assert_eq!(m.cpu.regs[RBX], 0xAABB_CCDD_EEFF_0011);
    assert_eq!(m.r64(l[0]), 0x1122_3344_5566_7789);
    assert_eq!(m.bus.debugcon, b"OK\n");
    Ok(())
}

#[test]
fn long_mode_fault_uses_16_byte_gate_and_ist_stack() -> T {
    let mut a = CodeAssembler::new(64)?;
    let mut fault = a.create_label();
    a.mov(ax, L_TSS as u32)?;
    a.ltr(ax)?;
    a.set_label(&mut fault)?;
    a.ud2()?;
    let (prog, l) = assemble(&mut a, CODE, &[fault]);
    let mut m = Machine::long64(&prog);
    m.set_gate64(6, gate64(L_KCODE64, handler_addr(6), INT_GATE, 0, 1));
    assert_eq!(m.run_to_exception(), 6, "{}", m.describe());
    assert_eq!(m.cpu.regs[RSP], IST_STACK_TOP - 40, "IST1, five qwords, no error code");
    assert_eq!(m.stack64(0), l[0]);
    assert_eq!(m.stack64(1), L_KCODE64 as u64);
    assert_eq!(m.stack64(3), STACK_TOP, "old RSP");
    assert_eq!(m.stack64(4), L_KDATA as u64, "old SS");
    Ok(())
}

#[test]
fn long_mode_gp_pushes_error_code_on_16_byte_aligned_stack() -> T {
    let mut a = CodeAssembler::new(64)?;
    let mut fault = a.create_label();
    a.mov(rsp, STACK_TOP - 8)?;
    a.mov(rax, 0x0000_8000_0000_0000u64)?;
    a.set_label(&mut fault)?;
    a.mov(rbx, qword_ptr(rax))?; // non-canonical
    a.hlt()?;
    let (prog, l) = assemble(&mut a, CODE, &[fault]);
    let mut m = Machine::long64(&prog);
    assert_eq!(m.run_to_exception(), 13);
    assert_eq!(m.cpu.regs[RSP], STACK_TOP - 16 - 48, "aligned down, then six qwords");
    assert_eq!((m.stack64(0), m.stack64(1)), (0, l[0]));
    assert_eq!(m.stack64(4), STACK_TOP - 8);
    Ok(())
}

#[test]
fn compatibility_mode_runs_32bit_code_under_long_mode() -> T {
    let mut m = Machine::long64(&code(64, CODE, |a| {
        a.push(L_KCODE32 as i32)?;
        a.push(0x11000i32)?;
        a.retf() // RETFQ
    }));
    m.load(0x11000, &code(32, 0x11000, |a| {
        a.mov(eax, 5)?;
        a.db(&[0x40])?; // INC EAX here; a REX prefix in 64-bit code
        a.mov(dword_ptr(DATA), eax)?;
        a.hlt()?;
        a.jmp_far(L_KCODE64, 0x12000)
    }));
    m.load(0x12000, &code(64, 0x12000, |a| {
        a.mov(rax, 0x1_0000_0000u64)?;
        a.hlt()
    }));
    m.run_to_halt();
    assert_eq!(m.cpu.mode_name(), "compat", "{}", m.describe());
    assert_eq!(m.cpu.bitness(), 32);
    assert_eq!(m.r32(DATA), 6);
    m.cpu.halted = false; // resume after the HLT
    m.run_to_halt();
    assert_eq!(m.cpu.mode_name(), "long");
    assert_eq!(m.cpu.regs[RAX], 0x1_0000_0000);
    Ok(())
}

#[test]
fn syscall_sysret_round_trip_between_cpl0_and_cpl3() -> T {
    const ENTRY: u64 = 0x12000;
    let kernel = code(64, CODE, |a| {
        a.mov(ecx, cpu::msr::IA32_STAR)?;
        a.xor(eax, eax)?;
        a.mov(edx, ((L_UCODE32 as u32 & !3) << 16) | L_KCODE64 as u32)?;
        a.wrmsr()?;
        a.mov(ecx, cpu::msr::IA32_LSTAR)?;
        a.mov(eax, ENTRY as u32)?;
        a.xor(edx, edx)?;
        a.wrmsr()?;
        a.mov(ecx, cpu::msr::IA32_FMASK)?;
        a.mov(eax, bits::IF as u32)?;
        a.wrmsr()?;
        a.mov(ecx, cpu::msr::IA32_EFER)?;
        a.rdmsr()?;
        a.or(eax, cr::EFER_SCE as u32)?;
        a.wrmsr()?;
        a.mov(rcx, USER_CODE)?;
        a.mov(r11, 0x202u64)?;
        a.mov(rsp, USER_STACK_TOP)?;
        a.sysretq()
    });
    let mut a = CodeAssembler::new(64)?;
    let mut after = a.create_label();
    a.mov(eax, cs)?;
    a.mov(r12, rsp)?;
    a.syscall()?;
    a.set_label(&mut after)?;
    a.ud2()?;
    let (user, l) = assemble(&mut a, USER_CODE, &[after]);
    let mut m = Machine::long64(&kernel);
    m.load(USER_CODE, &user);
    m.load(ENTRY, &code(64, ENTRY, |a| {
        a.mov(rbx, rcx)?;
        a.mov(rdx, r11)?;
        a.hlt()
    }));
    m.run_to_halt();
    assert_eq!(m.vectors(), [], "{}", m.describe());
    assert_eq!(m.cpu.regs[RAX], L_UCODE64 as u64, "user code ran with SYSRET's CS");
    assert_eq!(m.cpu.regs[12], USER_STACK_TOP);
    assert_eq!(m.cpu.cpl, 0, "{}", m.describe());
    assert_eq!(m.cpu.rip, ENTRY + 7, "stopped in the LSTAR entry after mov, mov, hlt");
    assert_eq!((m.cpu.seg[CS].selector, m.cpu.seg[SS].selector), (L_KCODE64, L_KDATA));
    assert_eq!(m.cpu.regs[RBX], l[0], "RCX = return RIP");
    assert_ne!(m.cpu.regs[RDX] & bits::IF, 0, "R11 = user RFLAGS");
    assert!(!m.cpu.flags.sys(bits::IF), "FMASK cleared IF");
    Ok(())
}

#[test]
fn long_mode_interrupt_from_cpl3_uses_rsp0_and_null_ss() -> T {
    let kernel = code(64, CODE, |a| {
        a.mov(ax, L_TSS as u32)?;
        a.ltr(ax)?;
        a.push(L_UDATA as i32)?;
        a.push(USER_STACK_TOP as i32)?;
        a.push(0x202)?;
        a.push(L_UCODE64 as i32)?;
        a.push(USER_CODE as i32)?;
        a.iretq()
    });
    let mut a = CodeAssembler::new(64)?;
    let mut after = a.create_label();
    a.mov(r9, 0x1234_5678_9abc_def0u64)?;
    a.int(0x40)?;
    a.set_label(&mut after)?;
    a.ud2()?;
    let (user, l) = assemble(&mut a, USER_CODE, &[after]);
    let mut m = Machine::long64(&kernel);
    m.load(USER_CODE, &user);
    m.set_gate64(0x40, gate64(L_KCODE64, handler_addr(0x40), INT_GATE, 3, 0));
    assert_eq!(m.run_to_exception(), 0x40, "{}", m.describe());
    assert_eq!(m.cpu.regs[9], 0x1234_5678_9abc_def0, "user code ran");
    assert_eq!(m.cpu.cpl, 0);
    assert_eq!(m.cpu.seg[SS].selector, 0, "SS is the null selector with RPL = new CPL");
    assert_eq!(m.cpu.regs[RSP], KERNEL_STACK_TOP - 40, "RSP0 from the 64-bit TSS");
    assert_eq!(m.stack64(0), l[0]);
    assert_eq!(m.stack64(1), L_UCODE64 as u64);
    assert_ne!(m.stack64(2) & bits::IF, 0);
    assert_eq!((m.stack64(3), m.stack64(4)), (USER_STACK_TOP, L_UDATA as u64));
    Ok(())
}

#[test]
fn long_mode_not_present_pde_raises_pf_from_the_4_level_walk() -> T {
    let mut a = CodeAssembler::new(64)?;
    let mut fault = a.create_label();
    a.set_label(&mut fault)?;
    a.mov(rbx, qword_ptr(0x100_0008))?; // PD entry 8 (16-18 MiB) is not present
    a.hlt()?;
    let (prog, l) = assemble(&mut a, CODE, &[fault]);
    let mut m = Machine::long64(&prog);
    assert_eq!(m.run_to_exception(), 14);
    assert_eq!((m.cpu.cr2, m.stack64(0), m.stack64(1)), (0x100_0008, 0, l[0]));
    assert_ne!(m.r64(PAGE_TABLES) & PTE_A, 0, "PML4 entry accessed");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 6. Double and triple fault
// ---------------------------------------------------------------------------------------

#[test]
fn np_while_delivering_gp_becomes_double_fault() -> T {
    let mut m = Machine::protected32(&code(32, CODE, |a| {
        a.xor(eax, eax)?;
        a.mov(ds, ax)?;
        a.mov(eax, dword_ptr(0))?; // #GP(0)
        a.hlt()
    }));
    m.set_gate32(13, gate32(KCODE32, handler_addr(13) as u32, INT_GATE, 0, false));
    assert_eq!(m.run_to_exception(), 8);
    assert_eq!(m.vectors(), [8]);
    assert_eq!(m.stack32(0), 0, "#DF error code");
    Ok(())
}

#[test]
fn protected_mode_without_idt_triple_faults_to_shutdown() -> T {
    let mut m = Machine::protected32(&code(32, CODE, |a| a.ud2()));
    m.cpu.idtr.limit = 0;
    // #UD cannot be delivered (#GP: past the IDT limit), nor that #GP (#DF), nor the #DF.
    match m.run(1000) {
        Exit::Shutdown(ShutdownReason::TripleFault { chain, fault, .. }) => assert_eq!((chain, fault), (vec![UD, GP, DF], GP)),
        e => panic!("expected a triple fault, got {e:?}: {}", m.describe()),
    }
    assert_eq!(m.run(1000), m.run(1000), "stays shut down");
    Ok(())
}

#[test]
fn np_then_page_faults_on_the_stack_end_in_triple_fault() -> T {
    // #UD through a not-present gate -> #NP; pushing its frame -> #PF; pushing that -> #PF
    // -> #DF; pushing that -> #PF -> shutdown.
    let mut m = Machine::protected32(&code(32, CODE, |a| {
        a.mov(esp, 0x500000)?; // unmapped
        a.ud2()
    }));
    m.enable_paging32();
    m.set_gate32(6, gate32(KCODE32, handler_addr(6) as u32, INT_GATE, 0, false));
    match m.run(1000) {
        Exit::Shutdown(ShutdownReason::TripleFault { chain, fault, .. }) => assert_eq!((chain, fault), (vec![UD, NP, PF, DF], PF)),
        e => panic!("expected a triple fault, got {e:?}: {}", m.describe()),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 7. Self-modifying code
// ---------------------------------------------------------------------------------------

#[test]
fn overwriting_an_earlier_executed_instruction_runs_the_new_code() -> T {
    let mut a = CodeAssembler::new(32)?;
    let mut again = a.create_label();
    let mut done = a.create_label();
    a.xor(ebx, ebx)?;
    a.xor(ecx, ecx)?;
    a.set_label(&mut again)?;
    a.mov(eax, 1)?; // B8 imm32: the immediate is patched to 2
    a.add(ebx, eax)?;
    a.inc(ecx)?;
    a.cmp(ecx, 2)?;
    a.je(done)?;
    a.mov(dword_ptr(CODE + 4 + 1), 2)?; // the imm32 of the MOV at `again`
    a.jmp(again)?;
    a.set_label(&mut done)?;
    a.hlt()?;
    let (prog, l) = assemble(&mut a, CODE, &[again]);
    assert_eq!(l[0], CODE + 4, "layout assumed by the patch address");
    let mut m = Machine::protected32(&prog);
    m.run_to_halt();
    assert_eq!(m.cpu.regs[RBX], 3, "1 from the original, 2 from the patched MOV");
    Ok(())
}

#[test]
fn overwriting_the_next_instruction_in_the_same_block_runs_the_new_code() -> T {
    let mut a = CodeAssembler::new(32)?;
    let mut next = a.create_label();
    a.mov(al, 0)?;
    a.mov(byte_ptr(CODE + 2 + 7 + 1), 0x22)?; // the imm8 of the MOV right after this one
    a.set_label(&mut next)?;
    a.mov(al, 0x11)?;
    a.hlt()?;
    let (prog, l) = assemble(&mut a, CODE, &[next]);
    assert_eq!(l[0], CODE + 2 + 7, "layout assumed by the patch address");
    let mut m = Machine::protected32(&prog);
    m.run_to_halt();
    assert_eq!(m.cpu.regs[RAX] & 0xff, 0x22);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 8. A20
// ---------------------------------------------------------------------------------------

#[test]
fn a20_disabled_wraps_real_mode_addresses_at_1mib() -> T {
    for a20 in [false, true] {
        let mut m = Machine::real(&code(16, REAL_CODE, |a| {
            a.mov(ax, 0xFFFF)?;
            a.mov(ds, ax)?;
            a.mov(byte_ptr(0x10), 0x5A)?; // linear 0x100000
            a.mov(bl, byte_ptr(0x30))?; // linear 0x100020
            a.hlt()
        }));
        m.cpu.a20 = a20;
        m.cpu.flush_tlb();
        m.w16(0x20, 0x44);
        m.w16(0x100020, 0x99);
        m.run_to_halt();
        if a20 {
            assert_eq!((m.r8(0x100000), m.r8(0), m.cpu.regs[RBX] & 0xff), (0x5A, 0, 0x99));
        } else {
            assert_eq!((m.r8(0x100000), m.r8(0), m.cpu.regs[RBX] & 0xff), (0, 0x5A, 0x44));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 9. HLT and unimplemented instructions
// ---------------------------------------------------------------------------------------

#[test]
fn hlt_with_if_clear_returns_exit_halted() -> T {
    let prog = code(16, REAL_CODE, |a| {
        a.cli()?;
        a.hlt()?;
        a.mov(ax, 1)
    });
    let mut m = Machine::real(&prog);
    assert_eq!(m.run(1000), Exit::Halted);
    assert!(m.cpu.halted);
    assert_eq!(m.cpu.rip, REAL_CODE + 2, "after the HLT");
    assert_eq!(m.run(1000), Exit::Halted, "nothing wakes it");
    assert_eq!(m.cpu.regs[RAX] & 0xffff, 0);
    Ok(())
}

#[test]
fn hlt_at_cpl3_raises_gp() -> T {
    let mut m = user32(&code(32, USER_CODE, |a| a.hlt()));
    assert_eq!(m.run_to_exception(), 13);
    assert_eq!((m.stack32(0), m.stack32(1) as u64), (0, USER_CODE));
    Ok(())
}

#[test]
fn unimplemented_fpu_instruction_raises_ud_and_is_counted() -> T {
    let mut m = Machine::real(&code(16, REAL_CODE, |a| {
        a.fninit()?;
        a.fsin()?;
        a.hlt()
    }));
    m.real_ivt_to_stubs();
    assert_eq!(m.run_to_exception(), 6);
    assert_eq!(m.stack16(0) as u64, REAL_CODE + 2, "IP of the FSIN");
    assert_eq!(m.cpu.unimplemented.get("fsin"), Some(&1));
    Ok(())
}

#[test]
fn avx_instruction_raises_ud_and_is_counted() -> T {
    let mut m = Machine::protected32(&code(32, CODE, |a| a.vaddps(ymm0, ymm1, ymm2)));
    assert_eq!(m.run_to_exception(), 6);
    assert_eq!(m.stack32(0) as u64, CODE);
    assert_eq!(m.cpu.unimplemented.get("vaddps"), Some(&1), "{:?}", m.cpu.unimplemented);
    Ok(())
}


// ---------------------------------------------------------------------------------------
// 10. Stack-size corners (SDM vol. 2, POP, PUSH and ENTER; vol. 1, 6.2.3)
// ---------------------------------------------------------------------------------------

/// 32-bit code on the 16-bit stack segment DATA16 (base 0, B = 0) with ESP = `esp`.
fn on_16bit_stack(stack_pointer: u32, body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Machine {
    Machine::protected32(&code(32, CODE, |a| {
        a.mov(ax, DATA16 as u32)?;
        a.mov(ss, ax)?;
        a.mov(esp, stack_pointer)?;
        body(a)?;
        a.hlt()
    }))
}

#[test]
fn o32_pop_ss_from_a_16bit_stack_wraps_sp_and_keeps_the_upper_half_of_esp() -> T {
    // SP = 0xFFFC: the 4-byte pop wraps SP to 0 on the 16-bit stack it pops from, although
    // the selector popped (KDATA) is a 32-bit stack.
    let mut m = on_16bit_stack(0x0002_FFFC, |a| a.pop(ss));
    m.w32(0xFFFC, KDATA as u32);
    m.run_to_halt();
    assert_eq!(m.cpu.seg[SS].selector, KDATA, "{}", m.describe());
    assert!(m.cpu.seg[SS].big());
    assert_eq!(m.cpu.regs[RSP], 0x0002_0000, "SP wraps within 16 bits, ESP's upper half kept");
    Ok(())
}

#[test]
fn o32_pop_of_a_data_segment_register_from_a_16bit_stack_wraps_sp() -> T {
    let mut m = on_16bit_stack(0x0005_FFFC, |a| a.pop(ds));
    m.w32(0xFFFC, KDATA as u32);
    m.run_to_halt();
    assert_eq!((m.cpu.seg[DS].selector, m.cpu.regs[RSP]), (KDATA, 0x0005_0000));
    Ok(())
}

#[test]
fn o32_enter_with_nesting_on_a_16bit_stack_uses_esp_as_frame_temp() -> T {
    // enter 8, 36: nesting level 36 mod 32 = 4, so three display copies read through BP
    // (stepping BP by 4 within 16 bits) and FrameTemp pushed; FrameTemp is ESP whole.
    let mut m = on_16bit_stack(0x0001_0000, |a| {
        a.mov(ebp, 0x0007_0100u32)?;
        a.enter(8u32, 36u32)
    });
    for (k, v) in [(0xFCu64, 0x1111_1111u32), (0xF8, 0x2222_2222), (0xF4, 0x3333_3333)] {
        m.w32(k, v);
    }
    m.run_to_halt();
    assert_eq!(m.cpu.regs[5], 0x0001_FFFC, "EBP = FrameTemp = ESP after the push of EBP: {}", m.describe());
    assert_eq!(m.cpu.regs[RSP], 0x0001_FFE4, "4 + 3 * 4 + 4 pushed, 8 allocated, within 16 bits");
    assert_eq!(m.r32(0xFFFC), 0x0007_0100, "old EBP");
    assert_eq!((m.r32(0xFFF8), m.r32(0xFFF4), m.r32(0xFFF0)), (0x1111_1111, 0x2222_2222, 0x3333_3333), "the display");
    assert_eq!(m.r32(0xFFEC), 0x0001_FFFC, "FrameTemp");
    Ok(())
}

#[test]
fn o16_enter_on_a_32bit_stack_pushes_words_and_replaces_bp_only() -> T {
    // o16 enter 4, 2: BP is pushed as a word, FrameTemp is SP, the display copy is read at
    // EBP - 2 (a 32-bit stack steps EBP whole), and only BP takes FrameTemp.
    let mut m = Machine::protected32(&code(32, CODE, |a| {
        a.mov(ebp, 0x0009_1000u32)?;
        a.db(&[0x66, 0xC8, 0x04, 0x00, 0x02])?; // o16 enter 4, 2
        a.hlt()
    }));
    m.w16(0x90FFE, 0x5555);
    m.run_to_halt();
    assert_eq!(m.cpu.regs[5], 0x0009_FFFE, "BP = FrameTemp (SP), EBP's upper half kept: {}", m.describe());
    assert_eq!(m.cpu.regs[RSP], STACK_TOP - 6 - 4, "three words pushed, 4 allocated");
    assert_eq!((m.r16(STACK_TOP - 2), m.r16(STACK_TOP - 4), m.r16(STACK_TOP - 6)), (0x1000, 0x5555, 0xFFFE));
    Ok(())
}

#[test]
fn enter_at_cpl3_raises_pf_when_the_stack_page_is_supervisor_only() -> T {
    let mut a = CodeAssembler::new(32)?;
    let mut fault = a.create_label();
    a.mov(esp, 0x5F004u32)?;
    a.set_label(&mut fault)?;
    a.enter(1u32, 0u32)?;
    a.jmp(fault)?;
    let (user, l) = assemble(&mut a, USER_CODE, &[fault]);
    let mut m = user32(&user);
    m.enable_paging32();
    m.map4k_32(0x5F000, 0x5F000, PTE_P | PTE_W);
    m.w32(0x5F000, 0xAAAA_AAAA);
    assert_eq!(m.run_to_exception(), PF, "{}", m.describe());
    assert_eq!(m.stack32(0), 7, "present, write, user");
    assert_eq!(m.stack32(1) as u64, l[0], "#PF is a fault: EIP points at the ENTER");
    assert_eq!(m.stack32(4), 0x5F004, "user ESP unchanged");
    assert_eq!(m.r32(0x5F000), 0xAAAA_AAAA, "nothing written");
    Ok(())
}

#[test]
fn enter_raises_pf_when_only_the_final_stack_pointer_is_not_writable() -> T {
    // The pushes land on a writable page; the allocation moves ESP into a read-only one.
    let mut a = CodeAssembler::new(32)?;
    let mut fault = a.create_label();
    a.mov(esp, 0x5F010u32)?;
    a.mov(ebp, 0x1234u32)?;
    a.set_label(&mut fault)?;
    a.enter(0x20u32, 0u32)?;
    a.jmp(fault)?;
    let (user, l) = assemble(&mut a, USER_CODE, &[fault]);
    let mut m = user32(&user);
    m.enable_paging32();
    m.map4k_32(0x5E000, 0x5E000, PTE_P | PTE_U);
    assert_eq!(m.run_to_exception(), PF, "{}", m.describe());
    assert_eq!(m.stack32(0), 7, "present, write, user");
    assert_eq!(m.stack32(1) as u64, l[0]);
    assert_eq!(m.stack32(4), 0x5F010, "user ESP unchanged");
    assert_eq!(m.cpu.cr2, 0x5F010 - 4 - 0x20, "the final ESP");
    assert_eq!(m.r32(0x5F00C), 0, "EBP not pushed");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 11. Call gates (SDM vol. 3, 5.8; vol. 2, CALL, JMP and RET)
// ---------------------------------------------------------------------------------------

/// Call-gate types.
const CALL_GATE16: u8 = 0x4;
const CALL_GATE32: u8 = 0xC;
/// GDT slots for the gate tests.
const GATE_SEL: u16 = FREE_SEL;
const RING1_CODE: u16 = (FREE_SEL + 8) | 1;
const RING1_DATA: u16 = (FREE_SEL + 16) | 1;
/// Where the gates lead.
const GATE_TARGET: u64 = 0x5000;

/// A legacy call gate to `sel:off` copying `params` stack entries.
fn call_gate(sel: u16, off: u32, typ: u8, dpl: u8, params: u8) -> u64 {
    gate32(sel, off, typ, dpl, true) | ((params & 0x1f) as u64) << 32
}

/// User code (CPL 3, DS = ES = UDATA) that pushes two parameters and calls through `GATE_SEL`,
/// then, once back, saves DS, ES, ESP and CS in ESI, EDI, EBP, EDX and halts through gate 0x40.
fn user_calls_gate(m_gate: u64) -> (Machine, u64) {
    let mut a = CodeAssembler::new(32).unwrap();
    let mut ret = a.create_label();
    a.mov(ax, UDATA as u32).unwrap();
    a.mov(ds, ax).unwrap();
    a.mov(es, ax).unwrap();
    a.push(0x1111_1111u32).unwrap();
    a.push(0x2222_2222u32).unwrap();
    a.call_far(GATE_SEL | 3, 0xdead_beef).unwrap(); // the offset is ignored
    a.set_label(&mut ret).unwrap();
    a.mov(esi, ds).unwrap();
    a.mov(edi, es).unwrap();
    a.mov(ebp, esp).unwrap();
    a.mov(edx, cs).unwrap();
    a.int(0x40).unwrap();
    let (user, l) = assemble(&mut a, USER_CODE, &[ret]);
    let mut m = user32(&user);
    m.set_gdt_entry(GATE_SEL, m_gate);
    (m, l[0])
}

#[test]
fn call_through_a_32bit_gate_to_ring0_switches_to_the_tss_stack_and_copies_parameters() -> T {
    let (mut m, ret) = user_calls_gate(call_gate(KCODE32, GATE_TARGET as u32, CALL_GATE32, 3, 2));
    m.load(GATE_TARGET, &code(32, GATE_TARGET, |a| {
        a.mov(ebx, cs)?;
        a.mov(ecx, ss)?;
        a.hlt()
    }));
    m.run_to_halt();
    assert_eq!(m.vectors(), [], "{}", m.describe());
    assert_eq!((m.cpu.cpl, m.cpu.regs[RBX], m.cpu.regs[RCX]), (0, KCODE32 as u64, KDATA as u64), "CS and SS0 of ring 0");
    assert_eq!(m.cpu.regs[RSP], KERNEL_STACK_TOP - 24, "ESP0 less SS, ESP, 2 parameters, CS, EIP");
    assert_eq!(m.stack32(0) as u64, ret, "return EIP");
    assert_eq!(m.stack32(1), UCODE32 as u32, "return CS");
    assert_eq!((m.stack32(2), m.stack32(3)), (0x2222_2222, 0x1111_1111), "parameters in the caller's order");
    assert_eq!(m.stack32(4) as u64, USER_STACK_TOP - 8, "caller's ESP");
    assert_eq!(m.stack32(5), UDATA as u32, "caller's SS");
    assert!(m.cpu.unimplemented.is_empty() && m.cpu.missing_features.is_empty(), "{}", m.describe());
    Ok(())
}

#[test]
fn far_return_to_ring3_releases_parameters_on_both_stacks_and_nulls_ring0_data_segments() -> T {
    let (mut m, _) = user_calls_gate(call_gate(KCODE32, GATE_TARGET as u32, CALL_GATE32, 3, 2));
    m.load(GATE_TARGET, &code(32, GATE_TARGET, |a| {
        a.mov(ax, KDATA as u32)?;
        a.mov(ds, ax)?; // DPL 0: not usable at CPL 3
        a.retf_1(8)
    }));
    assert_eq!(m.run_to_exception(), 0x40, "{}", m.describe());
    assert_eq!(m.cpu.regs[RSI] & 0xffff, 0, "DS (DPL 0) nulled on the return to CPL 3");
    assert_eq!(m.cpu.regs[RDI] & 0xffff, UDATA as u64, "ES (DPL 3) kept");
    assert_eq!(m.cpu.regs[5], USER_STACK_TOP, "RETF 8 released the parameters on the caller's stack too");
    assert_eq!(m.cpu.regs[RDX] & 0xffff, UCODE32 as u64);
    Ok(())
}

#[test]
fn call_through_a_16bit_gate_pushes_words_and_copies_word_parameters() -> T {
    let (mut m, ret) = user_calls_gate(call_gate(CODE16, GATE_TARGET as u32, CALL_GATE16, 3, 3));
    m.load(GATE_TARGET, &code(16, GATE_TARGET, |a| a.hlt()));
    m.run_to_halt();
    assert_eq!(m.vectors(), [], "{}", m.describe());
    assert_eq!(m.cpu.mode_name(), "protected16");
    let new_sp = KERNEL_STACK_TOP - 2 * 7;
    assert_eq!(m.cpu.regs[RSP], new_sp, "SS, SP, 3 word parameters, CS, IP");
    let w = |k: u64| m.r16(new_sp + 2 * k);
    assert_eq!((w(0) as u64, w(1)), (ret & 0xffff, UCODE32));
    assert_eq!((w(2), w(3), w(4)), (0x2222, 0x2222, 0x1111), "the lowest 3 words of the caller's stack, in its order");
    assert_eq!((w(5) as u64, w(6)), ((USER_STACK_TOP - 8) & 0xffff, UDATA));
    Ok(())
}

#[test]
fn call_through_a_gate_to_ring1_takes_ss1_esp1_and_bad_ss1_raises_ts_with_nothing_changed() -> T {
    for good in [true, false] {
        let (mut m, ret) = user_calls_gate(call_gate(RING1_CODE & !3, GATE_TARGET as u32, CALL_GATE32, 3, 0));
        m.set_gdt_entry(RING1_CODE, flat(0xBA, FLAGS_32)); // DPL 1 code
        m.set_gdt_entry(RING1_DATA, flat(0xB2, FLAGS_32)); // DPL 1 data
        m.w32(TSS + 0x0C, 0x4_0000);
        // SS1 with RPL 1, or (bad) RPL 0.
        m.w32(TSS + 0x10, if good { RING1_DATA } else { RING1_DATA & !3 } as u32);
        m.load(GATE_TARGET, &code(32, GATE_TARGET, |a| a.int(0x40)));
        m.set_gate32(0x40, gate32(KCODE32, handler_addr(0x40) as u32, INT_GATE, 3, true));
        let v = m.run_to_exception();
        if good {
            assert_eq!(v, 0x40, "{}", m.describe());
            assert_eq!(m.stack32(1), RING1_CODE as u32, "the gate's handler ran at CPL 1");
            assert_eq!((m.stack32(3), m.stack32(4)), (0x4_0000 - 16, RING1_DATA as u32), "on SS1:ESP1");
            assert_eq!(m.r32(0x4_0000 - 16) as u64, ret);
        } else {
            assert_eq!(v, 10, "#TS: {}", m.describe());
            assert_eq!(m.stack32(0), (RING1_DATA & !3) as u32 & 0xfffc, "error code: the SS1 selector");
            assert_eq!(m.stack32(2), UCODE32 as u32, "raised in ring 3: CS unchanged");
            assert_eq!((m.stack32(4) as u64, m.stack32(5)), (USER_STACK_TOP - 8, UDATA as u32), "the caller's stack unchanged");
        }
    }
    Ok(())
}

#[test]
fn call_gate_privilege_and_presence_checks_fault_with_the_gate_selector() -> T {
    // Gate DPL 0 < CPL 3: #GP(gate). Not present: #NP(gate). Target DPL 3 > ... fine; a data
    // segment as target: #GP(target). Null target: #GP(0).
    let cases: [(u64, u8, u32); 4] = [
        (call_gate(KCODE32, GATE_TARGET as u32, CALL_GATE32, 0, 0), 13, GATE_SEL as u32),
        (call_gate(KCODE32, GATE_TARGET as u32, CALL_GATE32, 3, 0) & !(1 << 47), 11, GATE_SEL as u32),
        (call_gate(KDATA, GATE_TARGET as u32, CALL_GATE32, 3, 0), 13, KDATA as u32),
        (call_gate(0, GATE_TARGET as u32, CALL_GATE32, 3, 0), 13, 0),
    ];
    for (gate, vector, code) in cases {
        let (mut m, _) = user_calls_gate(gate);
        assert_eq!(m.run_to_exception(), vector, "{gate:#x}: {}", m.describe());
        assert_eq!(m.stack32(0), code, "{gate:#x}");
        assert_eq!(m.stack32(2), UCODE32 as u32, "a fault of the CALL at CPL 3");
    }
    Ok(())
}

#[test]
fn jmp_through_a_call_gate_keeps_the_privilege_level() -> T {
    // JMP to a same-level (CPL 0) target through a gate works and pushes nothing; JMP from
    // CPL 3 through a gate to ring-0 code is #GP(target).
    let mut m = Machine::protected32(&code(32, CODE, |a| a.jmp_far(GATE_SEL, 0)));
    m.set_gdt_entry(GATE_SEL, call_gate(KCODE32, GATE_TARGET as u32, CALL_GATE32, 0, 0));
    m.load(GATE_TARGET, &code(32, GATE_TARGET, |a| a.hlt()));
    m.run_to_halt();
    assert_eq!((m.cpu.rip, m.cpu.regs[RSP]), (GATE_TARGET + 1, STACK_TOP), "{}", m.describe());

    let mut m = user32(&code(32, USER_CODE, |a| a.jmp_far(GATE_SEL | 3, 0)));
    m.set_gdt_entry(GATE_SEL, call_gate(KCODE32, GATE_TARGET as u32, CALL_GATE32, 3, 0));
    assert_eq!(m.run_to_exception(), 13, "{}", m.describe());
    assert_eq!(m.stack32(0), KCODE32 as u32);
    Ok(())
}

#[test]
fn far_return_to_an_outer_level_checks_ss_before_changing_cs_or_the_cpl() -> T {
    // A ring-0 RETF to ring 3 whose SS has RPL 0: #GP(SS) raised at CPL 0, CS unchanged.
    let mut m = Machine::protected32(&code(32, CODE, |a| {
        a.mov(ax, TSS_SEL as u32)?;
        a.ltr(ax)?;
        a.push((UDATA & !3) as u32)?;
        a.push(USER_STACK_TOP as u32)?;
        a.push(UCODE32 as u32)?;
        a.push(USER_CODE as u32)?;
        a.retf()
    }));
    assert_eq!(m.run_to_exception(), 13, "{}", m.describe());
    assert_eq!(m.stack32(0), (UDATA & !3) as u32, "#GP(SS selector)");
    assert_eq!(m.stack32(2), KCODE32 as u32, "a fault of the ring-0 RETF");
    assert_eq!(m.cpu.regs[RSP], STACK_TOP - 16 - 16, "the RETF's frame still under the #GP frame");
    Ok(())
}

#[test]
fn far_return_past_the_code_segment_limit_raises_gp0() -> T {
    let mut m = Machine::protected32(&code(32, CODE, |a| {
        a.push(CODE16 as u32)?;
        a.push(0x1_0000u32)?; // CODE16's limit is 0xFFFF
        a.retf()
    }));
    assert_eq!(m.run_to_exception(), 13, "{}", m.describe());
    assert_eq!((m.stack32(0), m.stack32(2)), (0, KCODE32 as u32));
    Ok(())
}

#[test]
fn call_through_a_64bit_gate_from_ring3_uses_rsp0_and_a_null_ss() -> T {
    let kernel = code(64, CODE, |a| {
        a.mov(ax, L_TSS as u32)?;
        a.ltr(ax)?;
        a.push(L_UDATA as i32)?;
        a.push(USER_STACK_TOP as i32)?;
        a.push(0x202)?;
        a.push(L_UCODE64 as i32)?;
        a.push(USER_CODE as i32)?;
        a.iretq()
    });
    let mut a = CodeAssembler::new(64)?;
    let mut ret = a.create_label();
    let mut ptr = a.create_label();
    a.call(qword_ptr(ptr))?; // placeholder, patched below into call far [rip+ptr]
    a.set_label(&mut ret)?;
    a.ud2()?;
    a.set_label(&mut ptr)?;
    a.dd(&[0, (0x50 | 3) as u32])?;
    let (mut user, l) = assemble(&mut a, USER_CODE, &[ret, ptr]);
    // FF /3 with a RIP-relative m16:32 operand: call far dword [rip + disp32].
    user[1] = 0x1d;
    let mut m = Machine::long64(&kernel);
    m.load(USER_CODE, &user);
    let g = gate64(L_KCODE64, GATE_TARGET, CALL_GATE32, 3, 0);
    // Past the 16-byte TSS descriptor at L_TSS.
    m.set_gdt_entry(0x50, g.0 & !(0xff << 32));
    m.w64(GDT + 0x58, g.1);
    m.load(GATE_TARGET, &code(64, GATE_TARGET, |a| a.hlt()));
    m.run_to_halt();
    assert_eq!(m.vectors(), [], "{}", m.describe());
    assert_eq!((m.cpu.cpl, m.cpu.seg[SS].selector), (0, 0), "SS is null at the new CPL");
    assert_eq!(m.cpu.regs[RSP], KERNEL_STACK_TOP - 32, "RSP0 less SS, RSP, CS, RIP as quadwords");
    assert_eq!((m.stack64(0), m.stack64(1)), (l[0], L_UCODE64 as u64));
    assert_eq!((m.stack64(2), m.stack64(3)), (USER_STACK_TOP, L_UDATA as u64));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 12. Hardware task switching (SDM vol. 3, chapter 8)
// ---------------------------------------------------------------------------------------

const TASK_GATE: u8 = 0x5;
const ACC_TSS16: u8 = 0x81;
/// A second task's TSS and descriptor, and a third one's (an exception handler task).
const TSS2: u64 = 0x3400;
const TSS2_SEL: u16 = FREE_SEL + 0x20;
const TSS3: u64 = 0x3800;
const TSS3_SEL: u16 = FREE_SEL + 0x28;
const TASK2_CODE: u64 = 0x5000;
const TASK3_CODE: u64 = 0x5800;
const TASK2_STACK: u32 = 0x48000;
const TASK3_STACK: u32 = 0x44000;

/// A 32-bit TSS at `base` for a ring-0 task with flat segments, starting at `eip` on `esp`
/// with EFLAGS = 2 and EAX..EDI = 0xA0..0xA7.
fn write_tss32(m: &mut Machine, base: u64, eip: u32, stack_pointer: u32) {
    for k in 0..0x68 {
        m.write(base + k, 1, 0);
    }
    m.w32(base + 0x20, eip);
    m.w32(base + 0x24, 2);
    for k in 0..8 {
        m.w32(base + 0x28 + 4 * k, 0xA0 + k as u32);
    }
    m.w32(base + 0x38, stack_pointer);
    for (k, sel) in [KDATA, KCODE32, KDATA, KDATA, KDATA, KDATA].into_iter().enumerate() {
        m.w16(base + 0x48 + 4 * k as u64, sel);
    }
    m.w16(base + 0x66, 0x68);
}

/// A task-gate descriptor (GDT, LDT or IDT) for TSS selector `tss`.
fn task_gate(tss: u16, dpl: u8) -> u64 {
    gate32(tss, 0, TASK_GATE, dpl, true)
}

/// Ring-0 code that loads TR with TSS_SEL, then runs `body`.
fn tasking(body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Machine {
    let mut m = Machine::protected32(&code(32, CODE, |a| {
        a.mov(ax, TSS_SEL as u32)?;
        a.ltr(ax)?;
        body(a)
    }));
    write_tss32(&mut m, TSS2, TASK2_CODE as u32, TASK2_STACK);
    m.set_gdt_entry(TSS2_SEL, seg_desc(TSS2 as u32, 0x67, ACC_TSS32, 0));
    write_tss32(&mut m, TSS3, TASK3_CODE as u32, TASK3_STACK);
    m.set_gdt_entry(TSS3_SEL, seg_desc(TSS3 as u32, 0x67, ACC_TSS32, 0));
    m
}

fn descriptor_type(m: &Machine, sel: u16) -> u8 {
    m.r8(GDT + (sel & !7) as u64 + 5) & 0xf
}

#[test]
fn jmp_to_a_tss_saves_the_old_task_loads_the_new_one_and_moves_the_busy_bit() -> T {
    let mut a = CodeAssembler::new(32)?;
    let mut after = a.create_label();
    a.mov(ax, TSS_SEL as u32)?;
    a.ltr(ax)?;
    a.mov(ebx, 0x1234u32)?;
    a.jmp_far(TSS2_SEL, 0)?;
    a.set_label(&mut after)?;
    a.hlt()?;
    let (prog, l) = assemble(&mut a, CODE, &[after]);
    let mut m = tasking(|_| Ok(()));
    m.load(CODE, &prog);
    m.load(TASK2_CODE, &code(32, TASK2_CODE, |a| {
        a.mov(ecx, 0x5678u32)?;
        a.hlt()
    }));
    m.run_to_halt();
    assert_eq!(m.cpu.tr.selector, TSS2_SEL, "{}", m.describe());
    assert_eq!(m.cpu.rip, TASK2_CODE + 6, "the new task ran");
    assert_eq!((m.cpu.regs[RCX], m.cpu.regs[RBX], m.cpu.regs[RSP]), (0x5678, 0xA3, TASK2_STACK as u64), "registers from the new TSS");
    assert_eq!(m.r32(TSS + 0x20) as u64, l[0], "old EIP saved: after the JMP");
    assert_eq!((m.r32(TSS + 0x34), m.r32(TSS + 0x38) as u64), (0x1234, STACK_TOP), "old EBX and ESP saved");
    assert_eq!((m.r16(TSS + 0x4C), m.r16(TSS + 0x50)), (KCODE32, KDATA), "old CS and SS saved");
    assert_eq!((descriptor_type(&m, TSS_SEL), descriptor_type(&m, TSS2_SEL)), (0x9, 0xB), "JMP: old available, new busy");
    assert_ne!(m.cpu.cr0 & cr::CR0_TS, 0, "CR0.TS set by the switch");
    assert!(!m.cpu.flags.sys(bits::NT), "JMP does not nest");
    assert_eq!(m.r16(TSS2), 0, "no back link");
    Ok(())
}

#[test]
fn call_to_a_tss_nests_and_iret_returns_to_the_caller() -> T {
    let mut a = CodeAssembler::new(32)?;
    let mut after = a.create_label();
    a.mov(ax, TSS_SEL as u32)?;
    a.ltr(ax)?;
    a.mov(ebx, 0x1111u32)?;
    a.call_far(TSS2_SEL, 0)?;
    a.set_label(&mut after)?;
    a.mov(edx, ebx)?;
    a.pushfd()?;
    a.pop(esi)?;
    a.hlt()?;
    let (prog, l) = assemble(&mut a, CODE, &[after]);
    let mut m = tasking(|_| Ok(()));
    m.load(CODE, &prog);
    let mut t = CodeAssembler::new(32)?;
    let mut task_after_iret = t.create_label();
    t.mov(ebx, 0x2222u32)?;
    t.pushfd()?;
    t.pop(edi)?;
    t.mov(dword_ptr(DATA), edi)?;
    t.mov(dword_ptr(DATA + 4), ebx)?;
    t.iretd()?;
    t.set_label(&mut task_after_iret)?;
    t.hlt()?;
    let (task, tl) = assemble(&mut t, TASK2_CODE, &[task_after_iret]);
    m.load(TASK2_CODE, &task);
    m.run_to_halt();
    assert_eq!(m.r32(DATA + 4), 0x2222, "the called task ran: {}", m.describe());
    assert_ne!(m.r32(DATA) as u64 & bits::NT, 0, "the called task runs with NT set");
    assert_eq!(m.r16(TSS2), TSS_SEL, "back link to the caller");
    assert_eq!(m.cpu.tr.selector, TSS_SEL, "IRET went back along the link");
    assert_eq!(m.cpu.rip, l[0] + 2 + 1 + 1 + 1, "the caller continued after the CALL");
    assert_eq!(m.cpu.regs[RDX], 0x1111, "the caller's EBX from its TSS");
    assert_eq!(m.cpu.regs[RSI] & bits::NT, 0, "the caller's NT as saved");
    assert_eq!(m.r32(TSS2 + 0x20) as u64, tl[0], "the called task saved at its IRET");
    assert_eq!(m.r32(TSS2 + 0x24) as u64 & bits::NT, 0, "IRET clears NT in the saved image");
    assert_eq!((descriptor_type(&m, TSS_SEL), descriptor_type(&m, TSS2_SEL)), (0xB, 0x9), "IRET: the called task available again");
    Ok(())
}

#[test]
fn double_fault_through_a_task_gate_runs_the_handler_task_with_the_error_code() -> T {
    let mut a = CodeAssembler::new(32)?;
    let mut fault = a.create_label();
    a.mov(ax, TSS_SEL as u32)?;
    a.ltr(ax)?;
    a.xor(eax, eax)?;
    a.mov(ds, ax)?;
    a.set_label(&mut fault)?;
    a.mov(eax, dword_ptr(0))?; // #GP(0), whose gate is not present: #NP, then #DF
    a.hlt()?;
    let (prog, l) = assemble(&mut a, CODE, &[fault]);
    let mut m = tasking(|_| Ok(()));
    m.load(CODE, &prog);
    m.set_gate32(13, gate32(KCODE32, handler_addr(13) as u32, INT_GATE, 0, false));
    m.set_gate32(8, task_gate(TSS3_SEL, 0));
    m.load(TASK3_CODE, &code(32, TASK3_CODE, |a| {
        a.pop(ecx)?;
        a.str(bx)?;
        a.hlt()
    }));
    m.run_to_halt();
    assert_eq!(m.vectors(), [], "no IDT handler ran: {}", m.describe());
    assert_eq!((m.cpu.tr.selector, m.cpu.regs[RBX] & 0xffff), (TSS3_SEL, TSS3_SEL as u64), "the #DF task runs");
    assert_eq!(m.cpu.regs[RCX], 0, "#DF's error code on the handler task's stack");
    assert_eq!(m.cpu.regs[RSP], TASK3_STACK as u64);
    assert!(m.cpu.flags.sys(bits::NT));
    assert_eq!(m.r16(TSS3), TSS_SEL, "linked to the faulting task");
    assert_eq!(m.r32(TSS + 0x20) as u64, l[0], "the faulting task saved at the faulting instruction");
    assert_eq!((descriptor_type(&m, TSS_SEL), descriptor_type(&m, TSS3_SEL)), (0xB, 0xB));
    Ok(())
}

#[test]
fn call_to_a_16bit_tss_loads_word_registers_and_iret_saves_words() -> T {
    let mut a = CodeAssembler::new(32)?;
    let mut after = a.create_label();
    a.mov(ax, TSS_SEL as u32)?;
    a.ltr(ax)?;
    a.call_far(TSS2_SEL, 0)?;
    a.set_label(&mut after)?;
    a.hlt()?;
    let (prog, l) = assemble(&mut a, CODE, &[after]);
    let mut m = tasking(|_| Ok(()));
    m.load(CODE, &prog);
    // A 286 TSS: IP, FLAGS, AX..DI, ES, CS, SS, DS, LDT as words.
    for k in 0..0x2C {
        m.write(TSS2 + k, 1, 0);
    }
    m.w16(TSS2 + 0x0E, TASK2_CODE as u16);
    m.w16(TSS2 + 0x10, 2);
    for k in 0..8u16 {
        m.w16(TSS2 + 0x12 + 2 * k as u64, 0x1230 + k);
    }
    m.w16(TSS2 + 0x1A, 0x7000); // SP
    for (k, sel) in [DATA16, CODE16, DATA16, DATA16].into_iter().enumerate() {
        m.w16(TSS2 + 0x22 + 2 * k as u64, sel);
    }
    m.set_gdt_entry(TSS2_SEL, seg_desc(TSS2 as u32, 0x2B, ACC_TSS16, 0));
    m.load(TASK2_CODE, &code(16, TASK2_CODE, |a| {
        a.mov(dword_ptr(0x8000), eax)?;
        a.mov(dword_ptr(0x8004), esp)?;
        a.mov(word_ptr(0x8008), fs)?;
        a.mov(ax, 0xBEEF)?;
        a.iret()
    }));
    m.run_to_halt();
    assert_eq!(m.cpu.tr.selector, TSS_SEL, "{}", m.describe());
    assert_eq!(m.cpu.rip, l[0] + 1);
    assert_eq!((m.r32(0x8000), m.r32(0x8004)), (0xFFFF_1230, 0xFFFF_7000), "upper halves set to ones (the CPU model's answer)");
    assert_eq!(m.r16(0x8008), 0, "FS null");
    assert_eq!(descriptor_type(&m, TSS2_SEL), 0x1, "available 286 TSS again");
    assert_eq!(m.r16(TSS2), TSS_SEL, "back link");
    assert_eq!(m.r16(TSS2 + 0x12), 0xBEEF, "AX saved as a word at IRET");
    Ok(())
}

#[test]
fn task_switch_privilege_and_busy_checks_fault_in_the_old_task() -> T {
    // JMP to the busy current TSS: #GP(TSS). A task gate of DPL 0 from CPL 3: #GP(gate).
    let mut m = tasking(|a| a.jmp_far(TSS_SEL, 0));
    assert_eq!(m.run_to_exception(), 13, "{}", m.describe());
    assert_eq!(m.stack32(0), TSS_SEL as u32);

    let mut m = user32(&code(32, USER_CODE, |a| a.call_far(GATE_SEL | 3, 0)));
    write_tss32(&mut m, TSS2, TASK2_CODE as u32, TASK2_STACK);
    m.set_gdt_entry(TSS2_SEL, seg_desc(TSS2 as u32, 0x67, ACC_TSS32, 0));
    m.set_gdt_entry(GATE_SEL, task_gate(TSS2_SEL, 0));
    assert_eq!(m.run_to_exception(), 13, "{}", m.describe());
    assert_eq!((m.stack32(0), m.stack32(2)), (GATE_SEL as u32, UCODE32 as u32));
    assert_eq!(m.cpu.tr.selector, TSS_SEL, "no switch");

    // A TSS below the minimum limit: #TS(TSS).
    let mut m = tasking(|a| a.jmp_far(TSS2_SEL, 0));
    m.set_gdt_entry(TSS2_SEL, seg_desc(TSS2 as u32, 0x66, ACC_TSS32, 0));
    assert_eq!(m.run_to_exception(), 10, "{}", m.describe());
    assert_eq!((m.stack32(0), m.cpu.tr.selector), (TSS2_SEL as u32, TSS_SEL));
    Ok(())
}

#[test]
fn a_bad_stack_in_the_new_task_faults_in_the_new_task() -> T {
    // TSS2's SS has RPL 3 at CPL 0: #TS(SS) after the switch, through a task gate to TSS3.
    let mut m = tasking(|a| a.jmp_far(TSS2_SEL, 0));
    m.w16(TSS2 + 0x50, UDATA);
    m.set_gate32(10, task_gate(TSS3_SEL, 0));
    m.load(TASK3_CODE, &code(32, TASK3_CODE, |a| {
        a.pop(ecx)?;
        a.hlt()
    }));
    m.run_to_halt();
    assert_eq!((m.cpu.tr.selector, m.cpu.regs[RCX]), (TSS3_SEL, (UDATA & !3) as u64), "#TS(SS) in the #TS task: {}", m.describe());
    assert_eq!(m.r16(TSS3), TSS2_SEL, "the faulting task is the new one");
    assert_eq!(m.r32(TSS2 + 0x20) as u64, TASK2_CODE, "which faulted before its first instruction");
    assert_eq!(m.r16(TSS2 + 0x50), UDATA, "its selectors as loaded");
    Ok(())
}

#[test]
fn the_new_tss_supplies_cr3_and_the_ldt() -> T {
    // TSS2: CR3 = a second page directory mapping linear 0x400000 to DATA; LDTR = an LDT
    // whose first entry is a data segment the task loads DS from.
    const LDT: u64 = 0x6000;
    const LDT_SEL: u16 = FREE_SEL + 0x30;
    const PD2: u64 = PAGE_TABLES + 0x10000;
    let mut m = tasking(|a| a.jmp_far(TSS2_SEL, 0));
    m.enable_paging32();
    m.w32(PD2, m.r32(PAGE_TABLES)); // the first 4 MiB as before
    m.w32(PD2 + 4, (PD2 + 0x1000) as u32 | 7);
    m.w32(PD2 + 0x1000, DATA as u32 | 7);
    m.w32(TSS2 + 0x1C, PD2 as u32);
    m.w64(LDT, flat(ACC_DATA, FLAGS_32));
    m.set_gdt_entry(LDT_SEL, seg_desc(LDT as u32, 7, 0x82, 0));
    m.w16(TSS2 + 0x60, LDT_SEL);
    m.w16(TSS2 + 0x54, 0x4); // DS: LDT entry 0, RPL 0
    m.w32(DATA, 0xCAFE_F00D);
    m.load(TASK2_CODE, &code(32, TASK2_CODE, |a| {
        a.mov(eax, dword_ptr(0x400000))?;
        a.hlt()
    }));
    m.run_to_halt();
    assert_eq!((m.cpu.cr3, m.cpu.ldtr.selector, m.cpu.seg[DS].selector), (PD2, LDT_SEL, 4), "{}", m.describe());
    assert_eq!(m.cpu.regs[RAX], 0xCAFE_F00D, "read through the new task's page tables");
    Ok(())
}

#[test]
fn the_tss_trap_bit_raises_a_debug_trap_before_the_new_tasks_first_instruction() -> T {
    let mut m = tasking(|a| a.jmp_far(TSS2_SEL, 0));
    m.w16(TSS2 + 0x64, 1);
    m.load(TASK2_CODE, &code(32, TASK2_CODE, |a| a.ud2()));
    assert_eq!(m.run_to_exception(), 1, "{}", m.describe());
    assert_eq!(m.vectors(), [1]);
    assert_eq!(m.stack32(0) as u64, TASK2_CODE, "EIP of the new task's first instruction");
    assert_ne!(m.cpu.dr[6] & (1 << 15), 0, "DR6.BT");
    Ok(())
}

#[test]
fn int_n_through_a_task_gate_from_ring3_switches_to_a_ring0_task_and_back() -> T {
    let mut a = CodeAssembler::new(32)?;
    let mut after = a.create_label();
    a.mov(ebx, 0x3333u32)?;
    a.int(0x41)?;
    a.set_label(&mut after)?;
    a.mov(edx, cs)?;
    a.mov(esi, ebx)?;
    a.int(0x40)?;
    let (user, l) = assemble(&mut a, USER_CODE, &[after]);
    let mut m = user32(&user);
    write_tss32(&mut m, TSS2, TASK2_CODE as u32, TASK2_STACK);
    m.set_gdt_entry(TSS2_SEL, seg_desc(TSS2 as u32, 0x67, ACC_TSS32, 0));
    m.set_gate32(0x41, task_gate(TSS2_SEL, 3));
    m.load(TASK2_CODE, &code(32, TASK2_CODE, |a| {
        a.mov(dword_ptr(DATA), esp)?;
        a.iretd()
    }));
    assert_eq!(m.run_to_exception(), 0x40, "{}", m.describe());
    assert_eq!(m.r32(DATA), TASK2_STACK, "no error code pushed for INT n");
    assert_eq!(m.r32(TSS + 0x20) as u64, l[0], "the user task saved after its INT");
    assert_eq!((m.r16(TSS + 0x4C), m.r32(TSS + 0x38) as u64), (UCODE32, USER_STACK_TOP));
    assert_eq!((m.cpu.regs[RDX] & 0xffff, m.cpu.regs[RSI]), (UCODE32 as u64, 0x3333), "back at CPL 3 with its registers");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 13. The I/O permission bitmap (SDM vol. 1, 19.5; vol. 3, 20.2.8) and BOUND
// ---------------------------------------------------------------------------------------

/// The TSS's I/O bitmap at TSS + 0x68 covers ports 0..0x407 (0x81 bytes) and allows only
/// ports 0x60, 0x402 and 0x403; the all-ones byte the processor may read past it is the last
/// byte within the TSS limit (SDM vol. 1, 19.5.2).
fn with_io_bitmap(m: &mut Machine) {
    m.set_gdt_entry(TSS_SEL, seg_desc(TSS as u32, 0x68 + 0x82 - 1, ACC_TSS32, 0));
    for k in 0..0x82 {
        m.write(TSS + 0x68 + k, 1, 0xff);
    }
    let allow = |m: &mut Machine, port: u64| {
        let at = TSS + 0x68 + port / 8;
        let b = m.r8(at) & !(1 << (port % 8));
        m.write(at, 1, b as u64);
    };
    for port in [0x60, 0x402, 0x403] {
        allow(m, port);
    }
}

/// Runs `user` at CPL 3 with IOPL `iopl` and the bitmap above (gate 0x40 halts).
fn user_io(iopl: u32, user: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Machine {
    let mut m = Machine::protected32(&code(32, CODE, |a| {
        a.mov(ax, TSS_SEL as u32)?;
        a.ltr(ax)?;
        a.push(UDATA as u32)?;
        a.push(USER_STACK_TOP as u32)?;
        a.push(0x202u32 | iopl << 12)?;
        a.push(UCODE32 as u32)?;
        a.push(USER_CODE as u32)?;
        a.iretd()
    }));
    m.load(USER_CODE, &code(32, USER_CODE, user));
    m.set_gate32(0x40, gate32(KCODE32, handler_addr(0x40) as u32, INT_GATE, 3, true));
    with_io_bitmap(&mut m);
    m
}

#[test]
fn io_at_cpl3_above_iopl_consults_the_tss_bitmap_for_every_byte() -> T {
    // Allowed ports go through; the first denied one is #GP(0) at the instruction.
    let mut a = CodeAssembler::new(32)?;
    let mut denied = a.create_label();
    a.mov(dx, 0x402u32)?;
    a.mov(al, b'k' as u32)?;
    a.out(dx, al)?;
    a.in_(al, 0x60u32)?;
    a.mov(dx, 0x401u32)?;
    a.set_label(&mut denied)?;
    a.out(dx, ax)?; // 0x401 denied, 0x402 allowed: one denied byte is enough
    a.int(0x40)?;
    let (prog, l) = assemble(&mut a, USER_CODE, &[denied]);
    let mut m = user32(&prog);
    with_io_bitmap(&mut m);
    assert_eq!(m.run_to_exception(), 13, "{}", m.describe());
    assert_eq!(m.bus.debugcon, b"k", "the allowed OUT reached the port");
    assert_eq!(m.bus.io_reads.first(), Some(&(0x60, 1)), "the allowed IN too");
    assert_eq!((m.stack32(0), m.stack32(1) as u64), (0, l[0]), "#GP(0) at the word OUT to 0x401");
    Ok(())
}

#[test]
fn string_io_checks_the_bitmap_and_iopl_3_skips_it() -> T {
    for iopl in [0, 3] {
        let mut m = user_io(iopl, |a| {
            a.push(UDATA as u32)?;
            a.pop(ds)?; // the IRETD to ring 3 nulled the ring-0 DS
            a.mov(dx, 0x80u32)?;
            a.mov(esi, USER_CODE as u32)?;
            a.outsb()?;
            a.mov(dx, 0x402u32)?;
            a.mov(edi, DATA as u32)?;
            a.push(UDATA as u32)?;
            a.pop(es)?;
            a.insb()?;
            a.int(0x40)
        });
        let v = m.run_to_exception();
        let to_80 = m.bus.io_writes.iter().filter(|w| w.0 == 0x80).count();
        if iopl == 3 {
            assert_eq!(v, 0x40, "CPL <= IOPL: no bitmap check: {}", m.describe());
            assert_eq!(to_80, 2, "the OUTSB and the stub's report");
        } else {
            assert_eq!(v, 13, "{}", m.describe());
            assert_eq!(to_80, 1, "only the stub's report");
        }
    }
    // INSB from an allowed port at IOPL 0.
    let mut m = user_io(0, |a| {
        a.mov(dx, 0x402u32)?;
        a.mov(edi, DATA as u32)?;
        a.push(UDATA as u32)?;
        a.pop(es)?;
        a.insb()?;
        a.int(0x40)
    });
    assert_eq!(m.run_to_exception(), 0x40, "{}", m.describe());
    assert_eq!(m.bus.io_reads, [(0x402, 1)]);
    Ok(())
}

#[test]
fn a_port_whose_bitmap_bytes_reach_past_the_tss_limit_is_denied() -> T {
    let mut m = user_io(0, |a| {
        a.mov(dx, 0x500u32)?; // bitmap byte 0xA0: past the limit
        a.in_(al, dx)?;
        a.int(0x40)
    });
    assert_eq!(m.run_to_exception(), 13, "{}", m.describe());
    assert_eq!(m.stack32(0), 0);
    // Port 0x402 is allowed, but without the byte after its bitmap byte inside the limit the
    // two-byte read of the map reaches past it: #GP.
    let mut m = user_io(0, |a| {
        a.mov(dx, 0x402u32)?;
        a.out(dx, al)?;
        a.int(0x40)
    });
    m.set_gdt_entry(TSS_SEL, seg_desc(TSS as u32, 0x68 + 0x81 - 1, ACC_TSS32, 0));
    assert_eq!(m.run_to_exception(), 13, "{}", m.describe());
    assert_eq!((m.stack32(0), m.stack32(1) as u64), (0, USER_CODE + 4));
    Ok(())
}

#[test]
fn virtual_8086_io_consults_the_bitmap_even_at_iopl_3() -> T {
    // Ring 0 enters virtual-8086 mode (IOPL 3) at 0800:0000; there port 0x402 is allowed by
    // the bitmap and port 0x80 is not: #GP(0) from virtual-8086 mode.
    let kernel = code(32, CODE, |a| {
        a.mov(ax, TSS_SEL as u32)?;
        a.ltr(ax)?;
        for _ in 0..4 {
            a.push(0u32)?; // GS, FS, DS, ES
        }
        a.push(0x0700u32)?; // SS
        a.push(0xFFF0u32)?; // ESP
        a.push((bits::VM | 0x3002) as u32)?; // EFLAGS: VM, IOPL 3
        a.push(0x0800u32)?; // CS
        a.push(0u32)?; // EIP
        a.iretd()
    });
    let mut m = Machine::protected32(&kernel);
    with_io_bitmap(&mut m);
    let mut a = CodeAssembler::new(16)?;
    let mut denied = a.create_label();
    a.mov(dx, 0x402u32)?;
    a.mov(al, b'v' as u32)?;
    a.out(dx, al)?;
    a.set_label(&mut denied)?;
    a.out(0x80u32, al)?;
    a.hlt()?;
    let (v86, l) = assemble(&mut a, 0, &[denied]);
    m.load(0x8000, &v86);
    assert_eq!(m.run_to_exception(), 13, "{}", m.describe());
    assert_eq!(m.bus.debugcon, b"v", "{}", m.describe());
    assert_eq!(m.stack32(0), 0, "#GP(0)");
    assert_eq!((m.stack32(1) as u64, m.stack32(2)), (l[0], 0x0800), "at the OUT, in virtual-8086 mode");
    assert_ne!(m.stack32(3) as u64 & bits::VM, 0, "EFLAGS.VM in the frame");
    Ok(())
}

#[test]
fn bound_raises_br_outside_the_signed_bounds_as_a_fault() -> T {
    for (index, faults) in [(-5i32, false), (5, false), (-6, true), (6, true)] {
        let mut a = CodeAssembler::new(32)?;
        let mut at = a.create_label();
        a.mov(eax, index as u32)?;
        a.set_label(&mut at)?;
        a.bound(eax, qword_ptr(DATA))?;
        a.db(&[0x66])?;
        a.bound(ax, dword_ptr(DATA + 8))?;
        a.hlt()?;
        let (prog, l) = assemble(&mut a, CODE, &[at]);
        let mut m = Machine::protected32(&prog);
        m.w32(DATA, -5i32 as u32);
        m.w32(DATA + 4, 5);
        m.w16(DATA + 8, -5i16 as u16);
        m.w16(DATA + 10, 5);
        if faults {
            assert_eq!(m.run_to_exception(), 5, "{index}: {}", m.describe());
            assert_eq!((m.cpu.regs[RSP], m.stack32(0) as u64), (STACK_TOP - 12, l[0]), "no error code; EIP at the BOUND");
        } else {
            m.run_to_halt();
            assert_eq!(m.vectors(), [], "{index}: {}", m.describe());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 14. Single-step (SDM vol. 3, 18.3.1.4)
// ---------------------------------------------------------------------------------------

#[test]
fn trap_flag_raises_a_debug_trap_after_each_instruction_from_the_one_after_popf() -> T {
    let mut a = CodeAssembler::new(32)?;
    let mut l = Vec::new();
    for _ in 0..7 {
        l.push(a.create_label());
    }
    a.pushfd()?;
    a.or(dword_ptr(esp), bits::TF as i32)?;
    a.popfd()?; // sets TF: the first trap follows the next instruction
    a.set_label(&mut l[0])?;
    a.nop()?;
    a.set_label(&mut l[1])?;
    a.nop()?;
    a.set_label(&mut l[2])?;
    a.mov(ebx, 1)?;
    a.set_label(&mut l[3])?;
    a.pushfd()?;
    a.set_label(&mut l[4])?;
    a.and(dword_ptr(esp), !(bits::TF as i32))?;
    a.set_label(&mut l[5])?;
    a.popfd()?; // clears TF, but TF was set when it began: one more trap
    a.set_label(&mut l[6])?;
    a.hlt()?;
    let (prog, addrs) = assemble(&mut a, CODE, &l);
    let mut m = Machine::protected32(&prog);
    m.load(0x5000, &code(32, 0x5000, |a| {
        a.mov(ecx, dword_ptr(DATA))?;
        a.mov(eax, dword_ptr(esp))?;
        a.mov(dword_ptr(ecx * 4 + DATA + 4), eax)?;
        a.inc(dword_ptr(DATA))?;
        a.iretd()
    }));
    m.set_gate32(1, gate32(KCODE32, 0x5000, INT_GATE, 0, true));
    m.run_to_halt();
    let traps: Vec<u64> = (0..m.r32(DATA) as u64).map(|k| m.r32(DATA + 4 + 4 * k) as u64).collect();
    assert_eq!(traps, addrs[1..], "a trap after each instruction, none inside the handler: {}", m.describe());
    assert_ne!(m.cpu.dr[6] & cpu::single_step::DR6_BS, 0, "DR6.BS");
    assert!(!m.cpu.flags.sys(bits::TF));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 15. What the CPU does not model is counted by name, apart from instructions
// ---------------------------------------------------------------------------------------

#[test]
fn unmodelled_mechanisms_are_counted_as_missing_features_not_instructions() -> T {
    // Alignment checking enabled at CPL 3; then a breakpoint enabled in DR7.
    let mut m = user32(&code(32, USER_CODE, |a| {
        a.pushfd()?;
        a.or(dword_ptr(esp), bits::AC as i32)?;
        a.popfd()?;
        a.int(0x40)
    }));
    m.cpu.cr0 |= cr::CR0_AM;
    assert_eq!(m.run_to_exception(), 0x40, "{}", m.describe());
    assert!(m.cpu.unimplemented.is_empty());
    let names: Vec<&str> = m.cpu.missing_features.keys().map(String::as_str).collect();
    assert_eq!(names, ["alignment checking (CR0.AM and EFLAGS.AC at CPL 3; #AC never raised)"]);
    let mut m = Machine::protected32(&code(32, CODE, |a| {
        a.mov(eax, 0x401)?;
        a.mov(dr7, eax)?;
        a.hlt()
    }));
    m.run_to_halt();
    assert_eq!(m.cpu.missing_features.get("hardware breakpoints in DR0-DR3 (enabled in DR7; never hit)"), Some(&1));
    Ok(())
}

#[test]
fn task_switches_do_not_exist_in_ia32e_mode() -> T {
    // IRETQ with NT set, on a frame that would return to a HLT: #GP(0). A far JMP to a TSS
    // descriptor: #GP(selector).
    let mut m = Machine::long64(&code(64, CODE, |a| {
        a.pushfq()?;
        a.or(qword_ptr(rsp), bits::NT as i32)?;
        a.popfq()?;
        a.push(L_KDATA as i32)?;
        a.push(STACK_TOP as i32)?;
        a.push(2)?;
        a.push(L_KCODE64 as i32)?;
        a.push((CODE + 0x100) as i32)?;
        a.iretq()
    }));
    m.load(CODE + 0x100, &[0xF4]);
    assert_eq!(m.run_to_exception(), 13, "{}", m.describe());
    assert_eq!(m.stack64(0), 0);
    let mut m = Machine::long64(&code(64, CODE, |a| {
        a.mov(rax, DATA)?;
        a.mov(dword_ptr(rax), 0)?;
        a.mov(word_ptr(rax + 4), L_TSS as u32)?;
        a.jmp(fword_ptr(rax))?;
        a.hlt()
    }));
    assert_eq!(m.run_to_exception(), 13, "{}", m.describe());
    assert_eq!(m.stack64(0), L_TSS as u64);
    Ok(())
}

#[test]
fn a_fault_while_pushing_an_interrupt_frame_leaves_the_interrupted_state_as_it_was() -> T {
    // INT 0x40 from ring 3 with ESP0 = 0x5F008: SS and ESP fit on the present page, EFLAGS
    // would go to the not-present page below: #PF, taken by a #PF task that finds the user's
    // SS:ESP and CPL-3 CS saved in the interrupted task's TSS.
    let mut m = user32(&code(32, USER_CODE, |a| {
        a.mov(ebx, 0x1234)?;
        a.int(0x40)
    }));
    m.enable_paging32();
    m.map4k_32(0x5E000, 0x5E000, 0);
    m.w32(TSS + 4, 0x5F008);
    write_tss32(&mut m, TSS3, TASK3_CODE as u32, TASK3_STACK);
    m.set_gdt_entry(TSS3_SEL, seg_desc(TSS3 as u32, 0x67, ACC_TSS32, 0));
    m.w32(TSS3 + 0x1C, PAGE_TABLES as u32);
    m.set_gate32(14, task_gate(TSS3_SEL, 0));
    m.load(TASK3_CODE, &code(32, TASK3_CODE, |a| {
        a.pop(ecx)?;
        a.hlt()
    }));
    m.run_to_halt();
    assert_eq!((m.cpu.tr.selector, m.cpu.regs[RCX], m.cpu.cr2), (TSS3_SEL, 2, 0x5EFFC), "#PF(write, supervisor) in the #PF task: {}", m.describe());
    assert_eq!((m.r16(TSS + 0x50), m.r32(TSS + 0x38) as u64), (UDATA, USER_STACK_TOP), "the user's SS:ESP saved, not the half-built ring-0 stack");
    assert_eq!((m.r16(TSS + 0x4C), m.r32(TSS + 0x34)), (UCODE32, 0x1234));
    Ok(())
}

#[test]
fn a_fault_while_writing_a_long_mode_interrupt_frame_leaves_ss_as_it_was() -> T {
    // RSP0 = 0x10: SS and RSP land at 0x8 and 0x0, RFLAGS would go to the unmapped top of the
    // address space: #PF, delivered on IST1 with the user's SS in its frame.
    let kernel = code(64, CODE, |a| {
        a.mov(ax, L_TSS as u32)?;
        a.ltr(ax)?;
        a.push(L_UDATA as i32)?;
        a.push(USER_STACK_TOP as i32)?;
        a.push(0x202)?;
        a.push(L_UCODE64 as i32)?;
        a.push(USER_CODE as i32)?;
        a.iretq()
    });
    let mut m = Machine::long64(&kernel);
    m.load(USER_CODE, &code(64, USER_CODE, |a| a.int(0x40)));
    m.set_gate64(0x40, gate64(L_KCODE64, handler_addr(0x40), INT_GATE, 3, 0));
    m.set_gate64(14, gate64(L_KCODE64, handler_addr(14), INT_GATE, 0, 1));
    m.w64(TSS + 4, 0x10);
    assert_eq!(m.run_to_exception(), 14, "{}", m.describe());
    assert_eq!(m.cpu.cr2, 0xFFFF_FFFF_FFFF_FFF8);
    assert_eq!((m.stack64(2), m.stack64(4), m.stack64(5)), (L_UCODE64 as u64, USER_STACK_TOP, L_UDATA as u64), "the user's CS, RSP and SS in the #PF frame");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 16. Instruction pointer width and decoded-code invalidation
// ---------------------------------------------------------------------------------------

/// 16-bit code with a 4 GiB CS limit (as SMM entry and big real mode leave it) runs on past
/// offset 0xFFFF: sequential execution advances the full EIP, and a 32-bit-operand jump keeps
/// its 32-bit target (SDM vol. 2, JMP: only a 16-bit operand size truncates to IP).
#[test]
fn sixteen_bit_code_with_a_big_cs_limit_runs_above_offset_ffff() -> T {
    // At CS offset 0xFFFD: `nop; nop; nop` crosses 0xFFFF; at 0x10000 `mov ebp, 0x20000;
    // jmp ebp`; at 0x20000 `mov ax, 0x5a5a; hlt`.
    let mut m = Machine::real(&[]);
    m.cpu.seg[CS].limit = 0xffff_ffff;
    m.load(0xfffd, &[0x90, 0x90, 0x90, 0x66, 0xbd, 0x00, 0x00, 0x02, 0x00, 0x66, 0xff, 0xe5]);
    m.load(0x20000, &[0xb8, 0x5a, 0x5a, 0xf4]);
    m.cpu.rip = 0xfffd;
    m.run_to_halt();
    assert_eq!((m.cpu.rip, m.cpu.regs[RAX] & 0xffff), (0x20004, 0x5a5a), "{}", m.describe());
    Ok(())
}

/// With the usual 64 KiB limit, running off the end of the code segment is a #GP, not a wrap
/// to offset 0 (the 8086's behaviour, which the 286 and later replaced by the limit check).
#[test]
fn real_mode_code_past_the_cs_limit_faults() -> T {
    let mut m = Machine::real(&[]);
    m.load(0xfffe, &[0x90, 0x90, 0x90]);
    m.cpu.rip = 0xfffe;
    // The real-mode #GP handler (vector 13) halts at 0x500.
    m.w16(13 * 4, 0x500);
    m.w16(13 * 4 + 2, 0);
    m.load(0x500, &[0xf4]);
    m.run_to_halt();
    assert_eq!(m.cpu.rip, 0x501, "{}", m.describe());
    assert_eq!(m.stack16(0), 0x10000u32 as u16, "the faulting IP: 0x10000 as pushed (low 16 bits)");
    Ok(())
}

/// `invalidate_code` drops exactly the decoded code of the range it is given: a routine
/// overwritten behind the CPU's back (as a bus master does) runs its new bytes once its range
/// is invalidated, while another routine overwritten the same way but not invalidated still
/// runs from its decoded block (the CPU only notices its own writes).
#[test]
fn invalidate_code_drops_the_blocks_of_its_range_only() {
    // 7C00: call 8000h; mov bl, al; call 9000h; mov cl, al; hlt
    let mut m = Machine::real(&[0xe8, 0xfd, 0x03, 0x88, 0xc3, 0xe8, 0xf8, 0x13, 0x88, 0xc1, 0xf4]);
    m.load(0x8000, &[0xb0, 0x01, 0xc3]); // mov al, 1; ret
    m.load(0x9000, &[0xb0, 0x11, 0xc3]); // mov al, 11h; ret
    m.run_to_halt();
    assert_eq!((m.cpu.regs[RBX] as u8, m.cpu.regs[RCX] as u8), (0x01, 0x11));
    m.bus.ram[0x8001] = 0x02;
    m.bus.ram[0x9001] = 0x12;
    m.cpu.invalidate_code(0x8000..0x8003);
    m.cpu.halted = false;
    m.cpu.rip = REAL_CODE;
    m.run_to_halt();
    assert_eq!(m.cpu.regs[RBX] as u8, 0x02, "the invalidated routine runs its new bytes");
    assert_eq!(m.cpu.regs[RCX] as u8, 0x11, "the other routine's block was kept");
}

#[test]
fn a_breakpoint_stops_before_the_function_and_run_goes_on_from_there() -> T {
    // The caller calls a function at 0x9000 twice; a breakpoint at its entry stops both calls.
    let mut a = CodeAssembler::new(16)?;
    a.mov(cx, 0)?;
    a.call_far(0x0900, 0x0000)?;
    a.call_far(0x0900, 0x0000)?;
    a.hlt()?;
    let (prog, _) = assemble(&mut a, REAL_CODE, &[]);
    let mut m = Machine::real(&prog);
    m.load(0x9000, &code(16, 0, |a| {
        a.inc(cx)?;
        a.retf()
    }));
    m.cpu.breakpoints = Some(Box::new([0u64].into_iter().collect()));
    for calls in 0..2u64 {
        assert_eq!(m.run(100_000), Exit::Breakpoint);
        assert_eq!((m.cpu.seg[CS].selector, m.cpu.rip), (0x0900, 0), "stopped at the entry");
        assert_eq!(m.cpu.regs[RCX] & 0xffff, calls, "before the function ran");
    }
    m.run_to_halt();
    assert_eq!(m.cpu.regs[RCX] & 0xffff, 2, "both calls ran, once each");
    Ok(())
}
