//! System Management Mode conformance: SMI entry state (SDM vol. 3C table 34-4), the three
//! save-state maps field by field, SMBASE relocation, RSM into every mode, synchronous SMIs,
//! I/O-instruction and auto-HALT restart, SMI/NMI/INIT interplay, RSM checks, the SMM MSRs
//! (Intel SMRR, SMM_FEATURE_CONTROL; AMD SMM_BASE/ADDR/MASK, HWCR.SmmLock) and the SmmEntry /
//! SmmExit reports. Guests are assembled with iced-x86 and run on `guest::TestBus`.
//!
//! Save-area offsets are written in the SDM form, relative to SMBASE + 0x8000 (so 0x7FFC is
//! physical SMBASE + 0xFFFC). SMM handlers are 16-bit code at SMBASE + 0x8000 with CS base =
//! SMBASE, so a handler reaches the field at offset `off` as `cs:[0x8000 + off]`.

mod guest;

use cpu::cpuid::Vendor;
use cpu::flags::bits;
use cpu::regs::{RAX, RBX, RCX, RDX, RSI};
use cpu::sreg::{CS, DS, ES, FS, GS, SS};
use cpu::smm::RsmCheck;
use cpu::{cr, Cpu, CpuModel, Exit, MachineCheck, Segment, ShutdownReason, TableReg};
use guest::*;
use iced_x86::code_asm::*;

type T = Result<(), Box<dyn std::error::Error>>;

const SMBASE: u64 = 0x30000;
const INTEL64: CpuModel = CpuModel { vendor: Vendor::Intel, long_mode: true, tsc_hz: 1_000_000_000 };
const AMD64: CpuModel = CpuModel { vendor: Vendor::Amd, long_mode: true, tsc_hz: 1_000_000_000 };
const LEGACY32: CpuModel = CpuModel { vendor: Vendor::Intel, long_mode: false, tsc_hz: 1_000_000_000 };
const ALL_MODELS: [CpuModel; 3] = [INTEL64, AMD64, LEGACY32];

const UD: u8 = 6;
const GP: u8 = 13;
const NMI: u8 = 2;

// MSRs.
const MSR_SMI_COUNT: u32 = 0x34;
const IA32_SMBASE: u32 = 0x9e;
const IA32_MTRRCAP: u32 = 0xfe;
const MSR_SMM_MCA_CAP: u32 = 0x17d;
const SMRR_PHYSBASE: u32 = 0x1f2;
const SMRR_PHYSMASK: u32 = 0x1f3;
const SMM_FEATURE_CONTROL: u32 = 0x4e0;
const AMD_HWCR: u32 = 0xc001_0015;
const AMD_SMM_BASE: u32 = 0xc001_0111;
const AMD_SMM_ADDR: u32 = 0xc001_0112;
const AMD_SMM_MASK: u32 = 0xc001_0113;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Assembles code for `bits`-bit mode at `ip`, returning the bytes and the labels' addresses.
fn asm_labels(bits: u32, ip: u64, f: impl FnOnce(&mut CodeAssembler, &mut Vec<CodeLabel>) -> Result<(), IcedError>) -> (Vec<u8>, Vec<u64>) {
    let mut a = CodeAssembler::new(bits).expect("bitness");
    let mut labels = Vec::new();
    f(&mut a, &mut labels).expect("emit");
    assemble(&mut a, ip, &labels)
}

/// Assembles straight-line code for `bits`-bit mode at `ip`.
fn asm(bits: u32, ip: u64, f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    asm_labels(bits, ip, |a, _| f(a)).0
}

/// A label placed at the current position, recorded in `labels` (its address is returned by
/// `asm_labels` in the same order).
fn here(a: &mut CodeAssembler, labels: &mut Vec<CodeLabel>) -> Result<(), IcedError> {
    let mut l = a.create_label();
    a.set_label(&mut l)?;
    labels.push(l);
    Ok(())
}

/// Installs a 16-bit SMM handler at `smbase` + 0x8000 (where SMI entry starts executing).
fn install_handler(m: &mut Machine, smbase: u64, f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) {
    let code = asm(16, 0x8000, f);
    m.load(smbase + 0x8000, &code);
}

/// Handler code that stops the run (port 0xF4) so the test can look at SMM, then RSMs.
fn break_then_rsm(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.out(EXIT_PORT as u32, al)?;
    a.rsm()
}

/// The save-area field at `off` (SDM form), `width` bytes.
fn saved(m: &Machine, smbase: u64, off: u16, width: usize) -> u64 {
    m.read(smbase + 0x8000 + off as u64, width)
}

fn set_saved(m: &mut Machine, smbase: u64, off: u16, width: usize, v: u64) {
    m.write(smbase + 0x8000 + off as u64, width, v)
}

/// Runs until a handler's break (port 0xF4) stops the CPU inside SMM.
fn run_to_smm_break(m: &mut Machine) {
    let exit = m.run(100_000);
    assert_eq!(exit, Exit::Stopped, "expected a break in SMM: {}", m.describe());
    assert!(m.cpu.smm, "stopped outside SMM: {}", m.describe());
    m.bus.stop = false;
}

/// A real-mode machine of `model` at 0000:7C00 running `code`, with the IVT pointing at the
/// exception stubs (a fault shows up in `vectors()`), and the break handler installed.
fn real_machine(model: CpuModel, code: &[u8]) -> Machine {
    let mut m = Machine::real(code);
    m.cpu.model = model;
    m.real_ivt_to_stubs();
    install_handler(&mut m, SMBASE, break_then_rsm);
    m
}

/// Real-mode code at REAL_CODE.
fn real_code(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    asm(16, REAL_CODE, f)
}

/// Writes one MSR from EAX/EDX in guest code (any mode).
fn wrmsr(a: &mut CodeAssembler, idx: u32, v: u64) -> Result<(), IcedError> {
    a.mov(ecx, idx)?;
    a.mov(eax, v as u32)?;
    a.mov(edx, (v >> 32) as u32)?;
    a.wrmsr()
}

/// Reads one MSR in guest code and stores EAX, EDX at physical `at`, `at + 4` through a
/// 32-bit address (SMM handlers: 4 GiB data limits).
fn rdmsr_to(a: &mut CodeAssembler, idx: u32, at: u32) -> Result<(), IcedError> {
    a.mov(ecx, idx)?;
    a.rdmsr()?;
    a.mov(ebx, at)?;
    a.mov(dword_ptr(ebx), eax)?;
    a.mov(dword_ptr(ebx + 4), edx)
}

/// Checks a list of (offset, width, expected, name) save-area fields, reporting every mismatch.
fn check_fields(m: &Machine, smbase: u64, fields: &[(u16, usize, u64, &str)]) {
    let bad: Vec<String> = fields
        .iter()
        .filter(|&&(off, w, want, _)| saved(m, smbase, off, w) != want)
        .map(|&(off, w, want, name)| format!("{name} at {off:#x}: got {:#x}, want {want:#x}", saved(m, smbase, off, w)))
        .collect();
    assert!(bad.is_empty(), "save-area mismatches:\n{}", bad.join("\n"));
}

/// The architectural state RSM must restore.
#[derive(Clone, Debug, PartialEq)]
struct State {
    regs: [u64; 16],
    rflags: u64,
    cr0: u64,
    cr3: u64,
    cr4: u64,
    dr6: u64,
    dr7: u64,
    efer: u64,
    seg: [Segment; 6],
    ldtr: Segment,
    tr: Segment,
    gdtr: TableReg,
    idtr: TableReg,
    cpl: u8,
    mode: &'static str,
}

fn state(c: &Cpu) -> State {
    State {
        regs: c.regs,
        rflags: c.flags.get(),
        cr0: c.cr0,
        cr3: c.cr3,
        cr4: c.cr4,
        dr6: c.dr[6],
        dr7: c.dr[7],
        efer: c.efer,
        seg: c.seg,
        ldtr: c.ldtr,
        tr: c.tr,
        gdtr: c.gdtr,
        idtr: c.idtr,
        cpl: c.cpl,
        mode: c.mode_name(),
    }
}

/// Arithmetic flags, DF and IF set: a distinctive RFLAGS.
const RFLAGS: u64 = bits::FIXED | bits::CF | bits::PF | bits::ZF | bits::SF | bits::DF | bits::OF | bits::IF;

/// A program that is 16 NOPs and a HLT, resumed at the HLT (RIP = CODE + 0x10).
fn nops_then_hlt() -> Vec<u8> {
    let mut p = vec![0x90; 0x10];
    p.push(0xF4);
    p
}

/// 64-bit mode with paging and a distinctive value in every register the maps save.
fn distinctive_long_mode(model: CpuModel) -> Machine {
    let mut m = Machine::long64(&nops_then_hlt());
    m.cpu.model = model;
    install_handler(&mut m, SMBASE, break_then_rsm);
    let c = &mut m.cpu;
    for k in 0..16u64 {
        c.regs[k as usize] = (0xA0 + k) << 56 | (0xB0 + k) << 32 | (0xC0 + k) << 8 | k;
    }
    c.rip = CODE + 0x10;
    c.flags.set(RFLAGS);
    c.cr0 = cr::CR0_PE | cr::CR0_MP | cr::CR0_ET | cr::CR0_NE | cr::CR0_WP | cr::CR0_AM | cr::CR0_PG;
    c.cr3 = PAGE_TABLES | 0x8; // PWT
    c.cr4 = cr::CR4_DE | cr::CR4_PSE | cr::CR4_PAE | cr::CR4_PGE | cr::CR4_OSFXSR | cr::CR4_OSXMMEXCPT;
    c.dr[6] = 0xffff_0ff3;
    c.dr[7] = 0x702;
    c.efer = cr::EFER_SCE | cr::EFER_LME | cr::EFER_LMA | cr::EFER_NXE;
    c.seg[ES] = Segment { selector: 0x18, base: 0x1111_2000, limit: 0xf_ffff, attr: 0x093 };
    c.seg[DS] = Segment { selector: 0x18, base: 0x2222_3000, limit: 0xffff, attr: 0x493 };
    c.seg[FS] = Segment { selector: 0x2b, base: 0x0000_7fff_ffff_f000, limit: 0xf_ffff, attr: 0x0f3 };
    c.seg[GS] = Segment { selector: 0x18, base: 0xffff_8000_1234_5000, limit: 0, attr: 0x193 };
    c.ldtr = Segment { selector: 0x48, base: 0x0000_0001_2345_6000, limit: 0x1ff, attr: 0x82 };
    c.tr = Segment { selector: L_TSS, base: 0x0000_0002_0000_3000, limit: 0x67, attr: 0x8b };
    c.gdtr = TableReg { base: 0xffff_8000_0000_1000, limit: 0x3ff };
    c.idtr = TableReg { base: 0x0000_0003_0000_2000, limit: 0xfff };
    c.flush_tlb();
    m
}

/// 32-bit protected mode with 32-bit paging and a distinctive value in every saved register.
fn distinctive_protected32(model: CpuModel) -> Machine {
    let mut m = Machine::protected32(&nops_then_hlt());
    m.cpu.model = model;
    m.enable_paging32();
    install_handler(&mut m, SMBASE, break_then_rsm);
    let c = &mut m.cpu;
    for k in 0..8u64 {
        c.regs[k as usize] = 0xC0DE_0000 | (0x10 + k) << 8 | k;
    }
    c.rip = CODE + 0x10;
    c.flags.set(RFLAGS);
    c.cr0 = cr::CR0_PE | cr::CR0_MP | cr::CR0_ET | cr::CR0_NE | cr::CR0_WP | cr::CR0_AM | cr::CR0_PG;
    c.cr3 = PAGE_TABLES | 0x8;
    c.cr4 = cr::CR4_DE | cr::CR4_PSE | cr::CR4_PGE | cr::CR4_OSFXSR | cr::CR4_OSXMMEXCPT;
    c.dr[6] = 0xffff_0ff3;
    c.dr[7] = 0x702;
    c.efer = cr::EFER_NXE;
    c.seg[ES] = Segment { selector: 0x10, base: 0x1111_2000, limit: 0xf_ffff, attr: 0x093 };
    c.seg[DS] = Segment { selector: 0x10, base: 0x2222_3000, limit: 0xffff, attr: 0x493 };
    c.seg[FS] = Segment { selector: 0x23, base: 0x3333_4000, limit: 0xfff, attr: 0x0f3 };
    c.seg[GS] = Segment { selector: 0x10, base: 0x4444_5000, limit: 0, attr: 0x193 };
    c.ldtr = Segment { selector: 0x48, base: 0x0123_6000, limit: 0x1ff, attr: 0x82 };
    c.tr = Segment { selector: TSS_SEL, base: 0x0002_3000, limit: 0x67, attr: 0x8b };
    c.gdtr = TableReg { base: 0x5555_1000, limit: 0x3ff };
    c.idtr = TableReg { base: 0x6666_2000, limit: 0x7ff };
    c.flush_tlb();
    m
}

/// Takes an SMI in the prepared machine, hands the save area to `check`, then RSMs and checks
/// that the interrupted program resumes with exactly the state it had (it then runs its HLT).
fn smi_check_map_and_resume(mut m: Machine, check: impl FnOnce(&Machine)) {
    let before = state(&m.cpu);
    let rip = m.cpu.rip;
    m.bus.raise_smi();
    run_to_smm_break(&mut m);
    check(&m);
    assert_eq!(m.run(100_000), Exit::Halted, "{}", m.describe());
    assert!(!m.cpu.smm);
    assert_eq!(m.cpu.rip, rip + 1, "resumed at the HLT");
    assert_eq!(state(&m.cpu), before, "RSM restores the interrupted state exactly");
}

/// Runs the first `n` program instructions, the last being an SMI-raising OUT, then checks that
/// the SMI, the break handler and the RSM (run alone) give back exactly that state, RIP included.
fn smi_round_trip_is_exact(m: &mut Machine, n: u64) {
    assert_eq!(m.run(n), Exit::InstructionLimit);
    let before = state(&m.cpu);
    let rip = m.cpu.rip;
    run_to_smm_break(m);
    assert_eq!(m.run(1), Exit::InstructionLimit, "the RSM");
    assert!(!m.cpu.smm);
    assert_eq!(state(&m.cpu), before, "RSM restores the interrupted state exactly");
    assert_eq!(m.cpu.rip, rip);
}

// ---------------------------------------------------------------------------------------
// 1. Entry state
// ---------------------------------------------------------------------------------------

#[test]
fn smi_entry_loads_the_table_34_4_state_and_sets_smiact() -> T {
    for model in ALL_MODELS {
        let mut m = Machine::protected32(&nops_then_hlt());
        m.cpu.model = model;
        m.enable_paging32();
        install_handler(&mut m, SMBASE, break_then_rsm);
        let all = cr::CR0_PE | cr::CR0_MP | cr::CR0_EM | cr::CR0_TS | cr::CR0_ET | cr::CR0_NE | cr::CR0_WP | cr::CR0_AM | cr::CR0_PG;
        m.cpu.cr0 = all;
        m.cpu.cr4 = cr::CR4_PSE | cr::CR4_PGE;
        m.cpu.efer = cr::EFER_NXE;
        m.cpu.dr[7] = 0x7ff;
        m.cpu.flags.set(RFLAGS);
        m.cpu.regs[RAX] = 0x1234_5678;
        let idtr = m.cpu.idtr;
        m.bus.raise_smi();
        run_to_smm_break(&mut m);
        let c = &m.cpu;
        assert!(c.smm, "SMIACT");
        assert_eq!(m.bus.smm_entries.len(), 1);
        // The break is the handler's first instruction, a 2-byte OUT at SMBASE + 0x8000.
        assert_eq!(c.rip, 0x8002, "EIP started at 0x8000");
        assert_eq!(c.icount, m.bus.smm_entries[0].icount + 1, "one handler instruction ran");
        let code_seg = c.seg[CS];
        assert_eq!((code_seg.selector, code_seg.base, code_seg.limit), (0x3000, SMBASE, 0xffff_ffff), "{model:?} CS");
        assert!(!code_seg.big(), "16-bit CS");
        for s in [DS, ES, SS, FS, GS] {
            let d = c.seg[s];
            assert_eq!((d.selector, d.base, d.limit), (0, 0, 0xffff_ffff), "{model:?} segment {s}");
        }
        assert_eq!(c.flags.get(), 0x2, "EFLAGS");
        assert_eq!(c.cr0, all & !(cr::CR0_PE | cr::CR0_EM | cr::CR0_TS | cr::CR0_PG), "CR0: PE EM TS PG cleared, others kept");
        assert_eq!(c.cr4, 0, "CR4");
        assert_eq!(c.efer, 0, "EFER");
        assert_eq!(c.dr[7], 0x400, "DR7");
        assert_eq!(c.idtr, idtr, "IDTR unchanged");
        assert_eq!(c.mode_name(), "real");
        assert_eq!(c.regs[RAX], 0x1234_5678, "GPRs are not changed by entry");
    }
    Ok(())
}

#[test]
fn smm_handler_uses_32_bit_offsets_with_4gib_data_limits() -> T {
    let prog = real_code(|a| a.hlt());
    let mut m = real_machine(INTEL64, &prog);
    m.w32(DATA, 0x600D_F00D);
    install_handler(&mut m, SMBASE, |a| {
        a.mov(ebx, DATA as u32)?; // above 1 MiB, through DS base 0
        a.mov(eax, dword_ptr(ebx))?;
        a.mov(dword_ptr(ebx + 4), eax)?;
        a.mov(edi, (DATA + 0x10) as u32)?; // and through ES
        a.mov(dword_ptr(edi).es(), 0x1234_5678)?;
        a.rsm()
    });
    m.bus.raise_smi();
    m.run_to_halt();
    assert_eq!(m.vectors(), vec![], "no #GP from 32-bit offsets");
    assert_eq!(m.r32(DATA + 4), 0x600D_F00D);
    assert_eq!(m.r32(DATA + 0x10), 0x1234_5678);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. The three save-state maps, field by field (and RSM restoring all of them)
// ---------------------------------------------------------------------------------------

/// Save-map attribute form: access byte in 7:0, AVL/L/D/G in 15:12.
#[test]
fn amd64_map_saves_every_field_at_its_offset_and_rsm_restores_them() -> T {
    let m = distinctive_long_mode(AMD64);
    let r = m.cpu.regs;
    smi_check_map_and_resume(m, |m| {
        let mut f: Vec<(u16, usize, u64, &str)> = vec![
            (0x7e00, 2, 0x18, "ES sel"),
            (0x7e02, 2, 0x0093, "ES attr"),
            (0x7e04, 4, 0xf_ffff, "ES limit"),
            (0x7e08, 8, 0x1111_2000, "ES base"),
            (0x7e10, 2, L_KCODE64 as u64, "CS sel"),
            (0x7e12, 2, 0xa09b, "CS attr"),
            (0x7e14, 4, 0xffff_ffff, "CS limit"),
            (0x7e18, 8, 0, "CS base"),
            (0x7e20, 2, L_KDATA as u64, "SS sel"),
            (0x7e22, 2, 0xc093, "SS attr"),
            (0x7e24, 4, 0xffff_ffff, "SS limit"),
            (0x7e28, 8, 0, "SS base"),
            (0x7e30, 2, 0x18, "DS sel"),
            (0x7e32, 2, 0x4093, "DS attr"),
            (0x7e34, 4, 0xffff, "DS limit"),
            (0x7e38, 8, 0x2222_3000, "DS base"),
            (0x7e40, 2, 0x2b, "FS sel"),
            (0x7e42, 2, 0x00f3, "FS attr"),
            (0x7e44, 4, 0xf_ffff, "FS limit"),
            (0x7e48, 8, 0x0000_7fff_ffff_f000, "FS base"),
            (0x7e50, 2, 0x18, "GS sel"),
            (0x7e52, 2, 0x1093, "GS attr"),
            (0x7e54, 4, 0, "GS limit"),
            (0x7e58, 8, 0xffff_8000_1234_5000, "GS base"),
            (0x7e64, 4, 0x3ff, "GDTR limit"),
            (0x7e68, 8, 0xffff_8000_0000_1000, "GDTR base"),
            (0x7e70, 2, 0x48, "LDTR sel"),
            (0x7e72, 2, 0x0082, "LDTR attr"),
            (0x7e74, 4, 0x1ff, "LDTR limit"),
            (0x7e78, 8, 0x0000_0001_2345_6000, "LDTR base"),
            (0x7e84, 4, 0xfff, "IDTR limit"),
            (0x7e88, 8, 0x0000_0003_0000_2000, "IDTR base"),
            (0x7e90, 2, L_TSS as u64, "TR sel"),
            (0x7e92, 2, 0x008b, "TR attr"),
            (0x7e94, 4, 0x67, "TR limit"),
            (0x7e98, 8, 0x0000_0002_0000_3000, "TR base"),
            (0x7ec0, 4, 0, "I/O trap dword (no I/O trap)"),
            (0x7ec8, 1, 0, "I/O restart"),
            (0x7ec9, 1, 0, "auto-HALT restart"),
            (0x7eca, 1, 0, "NMI mask"),
            (0x7ed0, 8, 0xd01, "EFER"),
            (0x7efc, 4, 0x0003_0064, "revision"),
            (0x7f00, 4, SMBASE, "SMBASE"),
            (0x7f48, 8, 0x6b8, "CR4"),
            (0x7f50, 8, PAGE_TABLES | 8, "CR3"),
            (0x7f58, 8, 0x8005_0033, "CR0"),
            (0x7f60, 8, 0x702, "DR7"),
            (0x7f68, 8, 0xffff_0ff3, "DR6"),
            (0x7f70, 8, RFLAGS, "RFLAGS"),
            (0x7f78, 8, CODE + 0x10, "RIP"),
        ];
        // R15 at 0x7F80 down to RAX at 0x7FF8.
        let names = ["RAX", "RCX", "RDX", "RBX", "RSP", "RBP", "RSI", "RDI", "R8", "R9", "R10", "R11", "R12", "R13", "R14", "R15"];
        for k in 0..16 {
            f.push((0x7ff8 - 8 * k as u16, 8, r[k], names[k]));
        }
        check_fields(m, SMBASE, &f);
    });
    Ok(())
}

#[test]
fn intel64_map_saves_every_field_at_its_sdm_offset_and_rsm_restores_them() -> T {
    let m = distinctive_long_mode(INTEL64);
    let r = m.cpu.regs;
    smi_check_map_and_resume(m, |m| {
        let mut f: Vec<(u16, usize, u64, &str)> = vec![
            (0x7dd0, 4, 0xffff_8000, "GDT base high"),
            (0x7dd4, 4, 0x1, "LDT base high"),
            (0x7dd8, 4, 0x3, "IDT base high"),
            (0x7de8, 8, 0, "IO_EIP (no I/O trap)"),
            (0x7e40, 4, 0x6b8, "CR4"),
            (0x7e8c, 4, 0x1000, "GDT base low"),
            (0x7e94, 4, 0x2000, "IDT base low"),
            (0x7e9c, 4, 0x2345_6000, "LDT base low"),
            (0x7ef8, 4, SMBASE, "SMBASE"),
            (0x7efc, 4, 0x0003_0101, "SMMRevId"),
            (0x7f00, 2, 0, "IORestart"),
            (0x7f02, 2, 0, "AutoHALTRestart"),
            (0x7f9c, 8, 0, "IOMemAddr"),
            (0x7fa4, 4, 0, "IOMisc (no I/O trap)"),
            (0x7fa8, 4, 0x18, "ES sel"),
            (0x7fac, 4, L_KCODE64 as u64, "CS sel"),
            (0x7fb0, 4, L_KDATA as u64, "SS sel"),
            (0x7fb4, 4, 0x18, "DS sel"),
            (0x7fb8, 4, 0x2b, "FS sel"),
            (0x7fbc, 4, 0x18, "GS sel"),
            (0x7fc0, 4, 0x48, "LDTR sel"),
            (0x7fc4, 4, L_TSS as u64, "TR sel"),
            (0x7fc8, 8, 0x702, "DR7"),
            (0x7fd0, 8, 0xffff_0ff3, "DR6"),
            (0x7fd8, 8, CODE + 0x10, "RIP"),
            (0x7fe0, 8, 0xd01, "EFER"),
            (0x7fe8, 8, RFLAGS, "RFLAGS"),
            (0x7ff0, 8, PAGE_TABLES | 8, "CR3"),
            (0x7ff8, 8, 0x8005_0033, "CR0"),
        ];
        let order = [(RAX, "RAX"), (RCX, "RCX"), (RDX, "RDX"), (RBX, "RBX"), (4, "RSP"), (5, "RBP"), (RSI, "RSI"), (7, "RDI")];
        for (k, &(reg, name)) in order.iter().enumerate() {
            f.push((0x7f5c + 8 * k as u16, 8, r[reg], name));
        }
        let high = ["R15", "R14", "R13", "R12", "R11", "R10", "R9", "R8"];
        for (k, name) in high.iter().enumerate() {
            f.push((0x7f1c + 8 * k as u16, 8, r[15 - k], name));
        }
        check_fields(m, SMBASE, &f);
    });
    Ok(())
}

#[test]
fn legacy32_map_saves_every_field_at_its_p6_offset_and_rsm_restores_them() -> T {
    let m = distinctive_protected32(LEGACY32);
    let r = m.cpu.regs;
    smi_check_map_and_resume(m, |m| {
        let mut f: Vec<(u16, usize, u64, &str)> = vec![
            (0x7ffc, 4, 0x8005_0033, "CR0"),
            (0x7ff8, 4, PAGE_TABLES | 8, "CR3"),
            (0x7ff4, 4, RFLAGS, "EFLAGS"),
            (0x7ff0, 4, CODE + 0x10, "EIP"),
            (0x7fcc, 4, 0xffff_0ff3, "DR6"),
            (0x7fc8, 4, 0x702, "DR7"),
            (0x7fc4, 4, TSS_SEL as u64, "TR sel"),
            (0x7fc0, 4, 0x48, "LDTR sel"),
            (0x7fa8, 4, 0x10, "ES sel"),
            (0x7fac, 4, KCODE32 as u64, "CS sel"),
            (0x7fb0, 4, KDATA as u64, "SS sel"),
            (0x7fb4, 4, 0x10, "DS sel"),
            (0x7fb8, 4, 0x23, "FS sel"),
            (0x7fbc, 4, 0x10, "GS sel"),
            (0x7f9c, 4, 0xc093, "SS attr"),
            (0x7fa0, 4, 0xffff_ffff, "SS limit"),
            (0x7fa4, 4, 0, "SS base"),
            (0x7f90, 4, 0xc09b, "CS attr"),
            (0x7f94, 4, 0xffff_ffff, "CS limit"),
            (0x7f98, 4, 0, "CS base"),
            (0x7f84, 4, 0x0093, "ES attr"),
            (0x7f88, 4, 0xf_ffff, "ES limit"),
            (0x7f8c, 4, 0x1111_2000, "ES base"),
            (0x7f78, 4, 0x0082, "LDTR attr"),
            (0x7f7c, 4, 0x1ff, "LDTR limit"),
            (0x7f80, 4, 0x0123_6000, "LDTR base"),
            (0x7f70, 4, 0x3ff, "GDTR limit"),
            (0x7f74, 4, 0x5555_1000, "GDTR base"),
            (0x7f5c, 4, 0x008b, "TR attr"),
            (0x7f60, 4, 0x67, "TR limit"),
            (0x7f64, 4, 0x0002_3000, "TR base"),
            (0x7f54, 4, 0x7ff, "IDTR limit"),
            (0x7f58, 4, 0x6666_2000, "IDTR base"),
            (0x7f44, 4, 0x1093, "GS attr"),
            (0x7f48, 4, 0, "GS limit"),
            (0x7f4c, 4, 0x4444_5000, "GS base"),
            (0x7f38, 4, 0x00f3, "FS attr"),
            (0x7f3c, 4, 0xfff, "FS limit"),
            (0x7f40, 4, 0x3333_4000, "FS base"),
            (0x7f2c, 4, 0x4093, "DS attr"),
            (0x7f30, 4, 0xffff, "DS limit"),
            (0x7f34, 4, 0x2222_3000, "DS base"),
            (0x7f14, 4, 0x698, "CR4"),
            (0x7f10, 4, cr::EFER_NXE, "EFER"),
            (0x7f02, 2, 0, "auto-HALT restart"),
            (0x7f00, 2, 0, "I/O restart"),
            (0x7efc, 4, 0x0003_0000, "revision"),
            (0x7ef8, 4, SMBASE, "SMBASE"),
        ];
        // EDI at 0x7FEC down to EAX at 0x7FD0, in the order EDI ESI EBP ESP EBX EDX ECX EAX.
        let order = [(7, "EDI"), (6, "ESI"), (5, "EBP"), (4, "ESP"), (RBX, "EBX"), (RDX, "EDX"), (RCX, "ECX"), (RAX, "EAX")];
        for (k, &(reg, name)) in order.iter().enumerate() {
            f.push((0x7fec - 4 * k as u16, 4, r[reg], name));
        }
        check_fields(m, SMBASE, &f);
    });
    Ok(())
}

#[test]
fn intel64_map_leaves_the_area_below_0x7c00_untouched_and_each_model_writes_its_revision() -> T {
    for (model, rev) in [(INTEL64, 0x0003_0101u64), (AMD64, 0x0003_0064), (LEGACY32, 0x0003_0000)] {
        let mut m = real_machine(model, &real_code(|a| a.hlt()));
        m.w32(SMBASE + 0xfbfc, 0xdead_beef);
        m.bus.raise_smi();
        run_to_smm_break(&mut m);
        assert_eq!(saved(&m, SMBASE, 0x7efc, 4), rev, "{model:?}");
        assert_eq!(saved(&m, SMBASE, 0x7efc, 4) & (3 << 16), 3 << 16, "bits 16 (I/O restart) and 17 (relocation)");
        assert_eq!(m.r32(SMBASE + 0xfbfc), 0xdead_beef, "nothing stored below the map");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 3. SMBASE relocation
// ---------------------------------------------------------------------------------------

fn smbase_offset(model: CpuModel) -> u16 {
    if model.vendor == Vendor::Amd && model.long_mode {
        0x7f00
    } else {
        0x7ef8
    }
}

#[test]
fn smbase_relocation_moves_the_next_entry_and_its_save_area() -> T {
    for model in ALL_MODELS {
        let (prog, l) = asm_labels(16, REAL_CODE, |a, l| {
            a.out(APM_CNT as u32, al)?; // first SMI: relocate
            a.out(APM_CNT as u32, al)?; // second SMI: enters at the new SMBASE
            here(a, l)?;
            a.hlt()
        });
        let mut m = real_machine(model, &prog);
        let off = 0x8000 + smbase_offset(model) as u32;
        install_handler(&mut m, SMBASE, |a| {
            a.mov(dword_ptr(off).cs(), 0xA0000)?;
            a.rsm()
        });
        install_handler(&mut m, 0xA0000, break_then_rsm);
        run_to_smm_break(&mut m);
        assert_eq!((m.cpu.seg[CS].selector, m.cpu.seg[CS].base), (0xA000, 0xA0000), "{model:?}");
        let e = &m.bus.smm_entries;
        assert_eq!((e[0].smbase, e[1].smbase), (0x30000, 0xA0000));
        assert_eq!(m.bus.smm_exits[0].smbase, 0xA0000, "the RSM report shows the new SMBASE");
        // The second save area is at 0xAFE00.. (0xAFC00.. for Intel-64).
        assert_eq!(saved(&m, 0xA0000, smbase_offset(model), 4), 0xA0000);
        assert_eq!(saved(&m, 0xA0000, 0x7efc, 4) & 0xffff, saved(&m, SMBASE, 0x7efc, 4) & 0xffff);
        let rip_off = match model {
            INTEL64 => 0x7fd8,
            AMD64 => 0x7f78,
            _ => 0x7ff0,
        };
        assert_eq!(saved(&m, 0xA0000, rip_off, 4), l[0], "saved RIP of the second SMI");
        assert_eq!(m.run(100), Exit::Halted);
        assert_eq!(m.cpu.rip, l[0] + 1);
        assert_eq!(m.cpu.smm_regs.smbase, 0xA0000);
    }
    Ok(())
}

#[test]
fn amd_relocation_clears_smbase_low_four_bits() -> T {
    let prog = real_code(|a| {
        a.out(APM_CNT as u32, al)?;
        a.mov(ecx, AMD_SMM_BASE)?;
        a.rdmsr()?;
        a.hlt()
    });
    let mut m = real_machine(AMD64, &prog);
    install_handler(&mut m, SMBASE, |a| {
        a.mov(dword_ptr(0xff00u32).cs(), 0xA000F)?;
        a.rsm()
    });
    m.run_to_halt();
    assert_eq!(m.cpu.smm_regs.smbase, 0xA0000);
    assert_eq!(m.cpu.regs[RAX] as u32, 0xA0000, "SMM_BASE MSR shows the relocated SMBASE");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 4. RSM back into every mode
// ---------------------------------------------------------------------------------------

#[test]
fn rsm_resumes_big_real_mode_with_its_4gib_data_limit() -> T {
    let prog = real_code(|a| {
        a.mov(eax, 0xCAFE_BABEu32)?;
        a.out(APM_CNT as u32, al)?;
        a.mov(ebx, DATA as u32)?;
        a.mov(dword_ptr(ebx), eax)?; // needs the 4 GiB DS limit
        a.mov(ecx, dword_ptr(ebx))?;
        a.hlt()
    });
    let mut m = real_machine(INTEL64, &prog);
    m.cpu.seg[DS].limit = 0xffff_ffff; // big real mode, as left by a protected-mode round trip
    m.cpu.seg[ES] = Segment { selector: 0x1234, base: 0x12340, limit: 0xffff, attr: 0x93 };
    smi_round_trip_is_exact(&mut m, 2);
    assert_eq!(m.cpu.seg[DS].limit, 0xffff_ffff, "big-real DS limit restored");
    m.run_to_halt();
    assert_eq!(m.bus.smm_exits.len(), 1);
    assert_eq!(m.vectors(), vec![], "no #GP: {}", m.describe());
    assert_eq!(m.r32(DATA), 0xCAFE_BABE);
    assert_eq!(m.cpu.regs[RCX] as u32, 0xCAFE_BABE);
    assert_eq!(m.cpu.mode_name(), "real");
    Ok(())
}

#[test]
fn rsm_resumes_16_bit_protected_mode() -> T {
    let prog = asm(16, REAL_CODE, |a| {
        a.mov(ax, 0x5555)?;
        a.out(APM_CNT as u32, al)?;
        a.push(ax)?;
        a.pop(dx)?;
        a.mov(word_ptr(0x500), dx)?;
        a.hlt()
    });
    let mut m = Machine::protected32(&[]);
    m.load(REAL_CODE, &prog);
    install_handler(&mut m, SMBASE, break_then_rsm);
    m.load_seg_direct(CS, CODE16);
    m.load_seg_direct(SS, DATA16);
    m.load_seg_direct(DS, DATA16);
    m.cpu.rip = REAL_CODE;
    m.cpu.regs[4] = 0x7000;
    assert_eq!(m.cpu.mode_name(), "protected16");
    smi_round_trip_is_exact(&mut m, 2);
    assert_eq!(m.bus.smm_entries[0].mode, "protected16");
    m.run_to_halt();
    assert_eq!(m.cpu.mode_name(), "protected16");
    assert_eq!(m.cpu.seg[CS].selector, CODE16);
    assert_eq!(m.cpu.seg[SS].selector, DATA16);
    assert_eq!(m.cpu.regs[4], 0x7000, "push/pop balanced");
    assert_eq!(m.r16(0x500), 0x5555);
    assert_eq!(m.vectors(), vec![]);
    Ok(())
}

#[test]
fn rsm_resumes_32_bit_protected_mode_with_paging() -> T {
    let prog = asm(32, CODE, |a| {
        a.mov(eax, 0x1111_2222u32)?;
        a.mov(esi, 0x0040_0000u32)?; // linear 4 MiB, mapped below to DATA
        a.stc()?;
        a.out(APM_CNT as u32, al)?;
        a.mov(dword_ptr(esi), eax)?;
        a.adc(eax, 0)?; // uses the restored CF
        a.hlt()
    });
    for model in ALL_MODELS {
        let mut m = Machine::protected32(&prog);
        m.cpu.model = model;
        m.enable_paging32();
        m.map4k_32(0x0040_0000, DATA as u32, PTE_P | PTE_W);
        install_handler(&mut m, SMBASE, break_then_rsm);
        smi_round_trip_is_exact(&mut m, 4);
        assert_eq!(m.bus.smm_entries[0].mode, "protected32");
        m.run_to_halt();
        assert_eq!(m.r32(DATA), 0x1111_2222, "{model:?}: the write went through the restored paging");
        assert_eq!(m.cpu.regs[RAX] as u32, 0x1111_2223, "CF survived");
        assert_eq!(m.cpu.mode_name(), "protected32");
        assert_eq!(m.vectors(), vec![]);
    }
    Ok(())
}

#[test]
fn rsm_resumes_long_mode_with_4_level_paging() -> T {
    let prog = asm(64, CODE, |a| {
        a.mov(rax, 0x1122_3344_5566_7788u64)?;
        a.mov(rsi, 0x00E0_0000u64)?; // the last 2 MiB page, remapped to DATA below
        a.out(APM_CNT as u32, al)?;
        a.mov(qword_ptr(rsi + 8), rax)?;
        a.mov(rbx, qword_ptr(rsi + 8))?;
        a.hlt()
    });
    for model in [INTEL64, AMD64] {
        let mut m = Machine::long64(&prog);
        m.cpu.model = model;
        m.w64(PAGE_TABLES + 0x2000 + 8 * 7, DATA | PTE_P | PTE_W | PTE_PS);
        install_handler(&mut m, SMBASE, |a| {
            a.mov(ebx, cr0)?;
            a.mov(dword_ptr(0x7000u32).cs(), ebx)?; // CR0 as seen in SMM, into spare SMRAM
            break_then_rsm(a)
        });
        smi_round_trip_is_exact(&mut m, 3);
        assert_eq!(m.bus.smm_entries[0].mode, "long");
        assert_eq!(m.r32(SMBASE + 0x7000) & cr::CR0_PG as u32, 0, "paging off in SMM");
        m.run_to_halt();
        assert_eq!(m.cpu.mode_name(), "long", "{model:?}");
        assert_eq!(m.r64(DATA + 8), 0x1122_3344_5566_7788, "write went through the restored page tables");
        assert_eq!(m.cpu.regs[RBX], 0x1122_3344_5566_7788);
        assert_eq!(m.bus.smm_exits[0].mode, "long");
        assert_eq!(m.vectors(), vec![]);
    }
    Ok(())
}

#[test]
fn rsm_honours_a_handler_that_edits_saved_rax_and_rip() -> T {
    // (model, RAX offset, RIP offset)
    for (model, rax_off, rip_off) in [(INTEL64, 0x7f5cu32, 0x7fd8u32), (AMD64, 0x7ff8, 0x7f78), (LEGACY32, 0x7fd0, 0x7ff0)] {
        let (prog, l) = asm_labels(32, CODE, |a, l| {
            a.mov(eax, 41)?;
            a.out(APM_CNT as u32, al)?;
            a.mov(ecx, 1)?;
            a.hlt()?;
            here(a, l)?;
            a.mov(ecx, 2)?;
            a.hlt()
        });
        let mut m = Machine::protected32(&prog);
        m.cpu.model = model;
        let alt = l[0] as u32;
        install_handler(&mut m, SMBASE, |a| {
            a.mov(eax, dword_ptr(0x8000 + rax_off).cs())?;
            a.add(eax, 1)?;
            a.mov(dword_ptr(0x8000 + rax_off).cs(), eax)?;
            a.mov(dword_ptr(0x8000 + rip_off).cs(), alt)?;
            a.rsm()
        });
        m.run_to_halt();
        assert_eq!(m.cpu.regs[RAX], 42, "{model:?}: edited RAX");
        assert_eq!(m.cpu.regs[RCX], 2, "{model:?}: resumed at the edited RIP");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 5. Synchronous SMI
// ---------------------------------------------------------------------------------------

#[test]
fn apm_out_smi_is_taken_right_after_the_out_not_at_the_end_of_the_block() -> T {
    let (prog, l) = asm_labels(32, CODE, |a, l| {
        a.xor(ecx, ecx)?;
        a.out(APM_CNT as u32, al)?;
        here(a, l)?;
        a.inc(ecx)?;
        a.inc(ecx)?;
        a.inc(ecx)?;
        a.hlt()
    });
    let mut m = Machine::protected32(&prog);
    install_handler(&mut m, SMBASE, break_then_rsm);
    run_to_smm_break(&mut m);
    assert_eq!(m.bus.smm_entries[0].rip, l[0], "entry report: the instruction after the OUT");
    assert_eq!(saved(&m, SMBASE, 0x7fd8, 8), l[0], "saved RIP");
    assert_eq!(saved(&m, SMBASE, 0x7f64, 8), 0, "saved RCX: no INC ran before the SMI");
    assert_eq!(m.bus.smm_entries[0].icount, 2);
    assert!(!m.bus.smm_entries[0].io_trap, "an APM SMI is not an I/O trap");
    m.run_to_halt();
    assert_eq!(m.cpu.regs[RCX], 3);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 6. I/O-instruction restart
// ---------------------------------------------------------------------------------------

/// Handler: write `v` to the I/O-restart field, break (the test disarms the trap, as the real
/// handler would after powering the device up), RSM.
fn install_io_restart_handler(m: &mut Machine, model: CpuModel, v: u32) {
    install_handler(m, SMBASE, |a| {
        if model == AMD64 {
            a.mov(byte_ptr(0xfec8u32).cs(), v)?;
        } else {
            a.mov(word_ptr(0xff00u32).cs(), v)?;
        }
        break_then_rsm(a)
    });
}

fn writes_to(m: &Machine, port: u16) -> Vec<u32> {
    m.bus.io_writes.iter().filter(|w| w.0 == port).map(|w| w.2).collect()
}

fn reads_of(m: &Machine, port: u16) -> usize {
    m.bus.io_reads.iter().filter(|r| r.0 == port).count()
}

#[test]
fn intel_io_trap_on_out_imm_records_iomisc_and_io_eip() -> T {
    for restart in [false, true] {
        let (prog, l) = asm_labels(16, REAL_CODE, |a, l| {
            a.mov(al, 0x5A)?;
            here(a, l)?;
            a.out(0x70u32, al)?;
            here(a, l)?;
            a.hlt()
        });
        let mut m = real_machine(INTEL64, &prog);
        m.bus.trap_ports = vec![0x70];
        install_io_restart_handler(&mut m, INTEL64, if restart { 0xff } else { 0 });
        run_to_smm_break(&mut m);
        assert!(m.bus.smm_entries[0].io_trap);
        // SMI flag, length 1, type 8 (OUT imm), port 0x70.
        assert_eq!(saved(&m, SMBASE, 0x7fa4, 4), 0x0070_0083, "IOMisc");
        assert_eq!(saved(&m, SMBASE, 0x7de8, 8), l[0], "IO_EIP: the OUT");
        assert_eq!(saved(&m, SMBASE, 0x7fd8, 8), l[1], "RIP: after the OUT");
        m.bus.trap_ports.clear();
        m.run_to_halt();
        let want = if restart { vec![0x5A, 0x5A] } else { vec![0x5A] };
        assert_eq!(writes_to(&m, 0x70), want, "restart={restart}: the OUT runs again only with 0xFF");
        assert_eq!(m.bus.smm_exits[0].io_restarted, restart);
        assert_eq!(m.cpu.rip, l[1] + 1);
    }
    Ok(())
}

#[test]
fn intel_io_trap_on_in_dx_records_length_and_type_and_restart_reads_twice() -> T {
    for restart in [false, true] {
        let (prog, l) = asm_labels(16, REAL_CODE, |a, l| {
            a.mov(dx, 0x1F0)?;
            here(a, l)?;
            a.in_(ax, dx)?;
            a.hlt()
        });
        let mut m = real_machine(INTEL64, &prog);
        m.bus.trap_ports = vec![0x1F0];
        install_io_restart_handler(&mut m, INTEL64, if restart { 0xff } else { 0 });
        run_to_smm_break(&mut m);
        // SMI flag, length 2, type 1 (IN DX), port 0x1F0.
        assert_eq!(saved(&m, SMBASE, 0x7fa4, 4), 0x01F0_0015, "IOMisc");
        assert_eq!(saved(&m, SMBASE, 0x7de8, 8), l[0], "IO_EIP");
        m.bus.trap_ports.clear();
        m.run_to_halt();
        assert_eq!(reads_of(&m, 0x1F0), if restart { 2 } else { 1 }, "restart={restart}");
        assert_eq!(m.cpu.regs[RAX] & 0xffff, 0xffff);
    }
    Ok(())
}

#[test]
fn amd_io_trap_on_in_records_trap_dword_and_restart_rip() -> T {
    for restart in [false, true] {
        let (prog, l) = asm_labels(16, REAL_CODE, |a, l| {
            a.mov(dx, 0x1F0)?;
            here(a, l)?;
            a.in_(al, dx)?;
            here(a, l)?;
            a.hlt()
        });
        let mut m = real_machine(AMD64, &prog);
        m.bus.trap_ports = vec![0x1F0];
        install_io_restart_handler(&mut m, AMD64, if restart { 0xff } else { 0 });
        run_to_smm_break(&mut m);
        // Port 0x1F0, SZ8 (bit 4), valid (bit 1), read (bit 0).
        assert_eq!(saved(&m, SMBASE, 0x7ec0, 4), 0x01F0_0013, "I/O trap dword");
        assert_eq!(saved(&m, SMBASE, 0x7ea0, 8), l[0], "I/O restart RIP: the IN");
        assert_eq!(saved(&m, SMBASE, 0x7f78, 8), l[1], "RIP: after the IN");
        m.bus.trap_ports.clear();
        m.run_to_halt();
        assert_eq!(reads_of(&m, 0x1F0), if restart { 2 } else { 1 }, "restart={restart}");
        assert_eq!(m.bus.smm_exits[0].io_restarted, restart);
    }
    Ok(())
}

#[test]
fn amd_io_restart_reexecutes_a_trapped_out_only_with_0xff() -> T {
    for restart in [false, true] {
        let prog = real_code(|a| {
            a.mov(al, 0x33)?;
            a.mov(dx, 0x64)?;
            a.out(dx, al)?;
            a.hlt()
        });
        let mut m = real_machine(AMD64, &prog);
        m.bus.trap_ports = vec![0x64];
        install_io_restart_handler(&mut m, AMD64, if restart { 0xff } else { 0 });
        run_to_smm_break(&mut m);
        assert_eq!(saved(&m, SMBASE, 0x7ec0, 4), 0x0064_0012, "write, valid, SZ8, port 0x64");
        m.bus.trap_ports.clear();
        m.run_to_halt();
        assert_eq!(writes_to(&m, 0x64).len(), if restart { 2 } else { 1 }, "restart={restart}");
    }
    Ok(())
}

#[test]
fn rep_outsb_trapped_mid_string_continues_after_rsm_and_restart_redoes_the_trapped_byte() -> T {
    for restart in [false, true] {
        let (prog, l) = asm_labels(16, REAL_CODE, |a, l| {
            a.mov(si, 0x600)?;
            a.mov(cx, 4)?;
            a.mov(dx, 0x1F0)?;
            a.cld()?;
            here(a, l)?;
            a.rep().outsb()?;
            a.hlt()
        });
        let mut m = real_machine(INTEL64, &prog);
        m.load(0x600, b"ABCD");
        m.bus.trap_ports = vec![0x1F0];
        m.bus.trap_skip = 1; // the second byte traps
        install_io_restart_handler(&mut m, INTEL64, if restart { 0xff } else { 0 });
        run_to_smm_break(&mut m);
        assert_eq!(writes_to(&m, 0x1F0), vec![b'A' as u32, b'B' as u32], "stopped right after the trapped byte");
        // SMI flag, length 1, type 6 (REP OUTS), port 0x1F0.
        assert_eq!(saved(&m, SMBASE, 0x7fa4, 4), 0x01F0_0063, "IOMisc");
        assert_eq!(saved(&m, SMBASE, 0x7f9c, 8), 0x601, "IOMemAddr: the trapped byte");
        assert_eq!(saved(&m, SMBASE, 0x7fd8, 8), l[0], "RIP stays on the REP OUTSB");
        assert_eq!(saved(&m, SMBASE, 0x7f64, 8) & 0xffff, 2, "RCX: two iterations left");
        m.bus.trap_ports.clear();
        m.run_to_halt();
        let want: &[u8] = if restart { b"ABBCD" } else { b"ABCD" };
        let got: Vec<u8> = writes_to(&m, 0x1F0).iter().map(|&v| v as u8).collect();
        assert_eq!(got, want, "restart={restart}");
        assert_eq!(m.cpu.regs[RCX] & 0xffff, 0);
        assert_eq!(m.cpu.regs[RSI] & 0xffff, 0x604);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 7. Auto-HALT restart
// ---------------------------------------------------------------------------------------

#[test]
fn auto_halt_field_set_by_smi_in_hlt_left_set_returns_into_hlt_cleared_resumes_after() -> T {
    for (model, off, width) in [(INTEL64, 0x7f02u16, 2usize), (AMD64, 0x7ec9, 1), (LEGACY32, 0x7f02, 2)] {
        for keep in [true, false] {
            let (prog, l) = asm_labels(16, REAL_CODE, |a, l| {
                a.hlt()?;
                here(a, l)?;
                a.mov(cx, 0x77)?;
                a.hlt()
            });
            let mut m = real_machine(model, &prog);
            assert_eq!(m.run(100), Exit::Halted);
            assert!(m.cpu.halted);
            m.bus.raise_smi();
            run_to_smm_break(&mut m);
            assert!(m.bus.smm_entries[0].from_halt);
            assert_eq!(saved(&m, SMBASE, off, width) & 1, 1, "{model:?}: auto-HALT set");
            if !keep {
                set_saved(&mut m, SMBASE, off, width, 0);
            }
            assert_eq!(m.run(100), Exit::Halted);
            assert_eq!(m.bus.smm_exits[0].halt_restarted, keep);
            if keep {
                assert!(m.cpu.halted, "back in HLT");
                assert_eq!(m.cpu.rip, l[0]);
                assert_ne!(m.cpu.regs[RCX] & 0xffff, 0x77, "the next instruction did not run");
            } else {
                assert_eq!(m.cpu.regs[RCX] & 0xffff, 0x77, "resumed after the HLT");
                assert_eq!(m.cpu.rip, l[0] + 4);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 8. SMI latching and masking
// ---------------------------------------------------------------------------------------

#[test]
fn smi_raised_twice_in_smm_is_taken_exactly_once_right_after_rsm() -> T {
    let prog = real_code(|a| {
        a.inc(cx)?;
        a.hlt()
    });
    let mut m = real_machine(INTEL64, &prog);
    install_handler(&mut m, SMBASE, |a| {
        a.out(EXIT_PORT as u32, al)?;
        a.nop()?;
        a.nop()?;
        a.rsm()
    });
    m.bus.raise_smi();
    run_to_smm_break(&mut m);
    for _ in 0..2 {
        m.bus.raise_smi();
        assert_eq!(m.run(1), Exit::InstructionLimit);
        assert!(m.cpu.smm, "not re-entered");
        assert_eq!(m.bus.smm_entries.len(), 1);
    }
    run_to_smm_break(&mut m); // RSM, then the latched SMI
    assert_eq!(m.bus.smm_entries.len(), 2);
    assert_eq!(m.bus.smm_entries[1].icount, m.bus.smm_exits[0].icount, "taken right after RSM");
    assert_eq!(m.bus.smm_entries[1].rip, REAL_CODE);
    m.run_to_halt();
    assert_eq!(m.bus.smm_entries.len(), 2, "only one SMI was latched");
    assert_eq!(m.cpu.regs[RCX] & 0xffff, 1);
    Ok(())
}

#[test]
fn smi_is_taken_with_if_clear() -> T {
    let (prog, l) = asm_labels(16, REAL_CODE, |a, l| {
        a.cli()?;
        a.out(APM_CNT as u32, al)?;
        here(a, l)?;
        a.hlt()
    });
    let mut m = real_machine(INTEL64, &prog);
    run_to_smm_break(&mut m);
    assert_eq!(m.bus.smm_entries[0].rip, l[0]);
    assert_eq!(saved(&m, SMBASE, 0x7fe8, 8) & bits::IF, 0);
    Ok(())
}

#[test]
fn smi_is_taken_in_the_sti_shadow() -> T {
    let (prog, l) = asm_labels(16, REAL_CODE, |a, l| {
        a.cli()?;
        a.sti()?;
        here(a, l)?;
        a.inc(cx)?;
        a.hlt()
    });
    let mut m = real_machine(INTEL64, &prog);
    assert_eq!(m.run(2), Exit::InstructionLimit);
    assert_eq!(m.cpu.rip, l[0], "just after STI: the shadow is active");
    m.bus.raise_smi();
    run_to_smm_break(&mut m);
    assert_eq!(m.bus.smm_entries[0].rip, l[0], "the SMI did not wait for the shadow");
    assert_eq!(saved(&m, SMBASE, 0x7f64, 8), 0, "INC had not run");
    m.run_to_halt();
    assert_eq!(m.cpu.regs[RCX], 1);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 9. NMI and INIT
// ---------------------------------------------------------------------------------------

#[test]
fn nmi_arriving_in_smm_is_held_and_delivered_after_rsm() -> T {
    let prog = real_code(|a| {
        a.nop()?;
        a.hlt()
    });
    let mut m = real_machine(INTEL64, &prog);
    install_handler(&mut m, SMBASE, |a| {
        a.out(EXIT_PORT as u32, al)?;
        a.nop()?;
        a.nop()?;
        a.rsm()
    });
    m.bus.raise_smi();
    run_to_smm_break(&mut m);
    m.bus.raise_nmi();
    assert_eq!(m.run(2), Exit::InstructionLimit);
    assert!(m.cpu.smm);
    assert_eq!(m.vectors(), vec![], "no NMI inside SMM");
    assert_eq!(m.run_to_exception(), NMI, "NMI delivered after RSM");
    assert!(!m.cpu.smm);
    assert_eq!(m.bus.smm_exits.len(), 1);
    assert_eq!(m.stack16(0) as u64, REAL_CODE, "NMI frame: the interrupted program's IP");
    Ok(())
}

#[test]
fn iret_inside_smm_unblocks_nmi_and_a_held_nmi_is_then_delivered_in_smm() -> T {
    let prog = real_code(|a| a.hlt());
    let mut m = real_machine(INTEL64, &prog);
    install_handler(&mut m, SMBASE, |a| {
        let mut do_iret = a.create_label();
        a.out(EXIT_PORT as u32, al)?;
        a.mov(sp, 0x7000)?;
        a.pushf()?;
        a.push(cs)?;
        a.call(do_iret)?; // pushes the return IP: IRET comes back right after the CALL
        a.nop()?;
        a.rsm()?;
        a.set_label(&mut do_iret)?;
        a.iret()
    });
    m.bus.raise_smi();
    run_to_smm_break(&mut m);
    m.bus.raise_nmi();
    assert_eq!(m.run(4), Exit::InstructionLimit, "{}", m.describe()); // up to the CALL
    assert_eq!(m.vectors(), vec![], "NMI blocked in SMM before IRET");
    assert_eq!(m.run_to_exception(), NMI);
    assert!(m.cpu.smm, "the NMI was delivered inside SMM");
    assert!(m.bus.smm_exits.is_empty());
    Ok(())
}

#[test]
fn smi_in_an_nmi_handler_returns_with_nmis_still_blocked() -> T {
    let prog = real_code(|a| {
        a.nop()?;
        a.hlt()
    });
    let mut m = real_machine(INTEL64, &prog);
    // NMI handler at 0000:6000: raise an SMI, then halt (without IRET).
    m.load(
        0x6000,
        &asm(16, 0x6000, |a| {
            a.out(APM_CNT as u32, al)?;
            a.mov(dx, 0x99)?;
            a.hlt()
        }),
    );
    m.set_ivt(NMI, 0, 0x6000);
    m.bus.raise_nmi();
    run_to_smm_break(&mut m);
    assert_eq!(saved(&m, SMBASE, 0x7fd8, 8), 0x6002, "the SMI interrupted the NMI handler");
    assert_eq!(m.run(100), Exit::Halted);
    assert!(!m.cpu.smm);
    assert_eq!(m.cpu.regs[RDX] & 0xffff, 0x99);
    assert!(m.cpu.nmi_blocked, "RSM left NMIs blocked");
    m.bus.raise_nmi();
    assert_eq!(m.run(100), Exit::Halted);
    assert_eq!(m.cpu.rip, 0x6006, "a second NMI is not delivered before IRET");
    Ok(())
}

#[test]
fn init_in_smm_is_held_until_after_rsm() -> T {
    let prog = real_code(|a| a.hlt());
    let mut m = real_machine(INTEL64, &prog);
    install_handler(&mut m, SMBASE, |a| {
        a.out(EXIT_PORT as u32, al)?;
        a.nop()?;
        a.nop()?;
        a.mov(dword_ptr(0xfef8u32).cs(), 0xA0000)?; // relocate: SMBASE survives INIT
        a.rsm()
    });
    m.bus.raise_smi();
    run_to_smm_break(&mut m);
    m.bus.raise_init();
    assert_eq!(m.run(2), Exit::InstructionLimit);
    assert!(m.cpu.smm, "INIT not taken in SMM");
    assert_eq!(m.cpu.seg[CS].base, SMBASE);
    assert_eq!(m.run(100), Exit::Halted);
    assert_eq!(m.bus.smm_exits.len(), 1, "RSM ran");
    assert!(!m.bus.init, "INIT acknowledged after RSM");
    assert_eq!((m.cpu.seg[CS].selector, m.cpu.seg[CS].base, m.cpu.rip), (0xf000, 0xffff_0000, 0xfff1), "INIT: reset vector");
    assert_eq!(m.cpu.smm_regs.smbase, 0xA0000, "SMBASE kept across INIT");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 10. RSM checks
// ---------------------------------------------------------------------------------------

#[test]
fn rsm_outside_smm_raises_ud() -> T {
    let mut m = real_machine(INTEL64, &real_code(|a| a.rsm()));
    assert_eq!(m.run_to_exception(), UD);
    assert!(m.bus.smm_exits.is_empty());
    Ok(())
}

/// What a case edits in the save area ([(offset, value)]) and the check that must fail.
type RsmCheckCase = (&'static str, Vec<(u32, u32)>, RsmCheck);

#[test]
fn rsm_of_an_invalid_saved_state_shuts_down_with_a_reason_in_the_exit_report() -> T {
    // Per map: (model, CR0, CR4, EFER offsets).
    let maps = [(INTEL64, 0x7ff8u32, 0x7e40u32, Some(0x7fe0u32)), (AMD64, 0x7f58, 0x7f48, Some(0x7ed0)), (LEGACY32, 0x7ffc, 0x7f14, None)];
    for (model, cr0_at, cr4_at, efer_at) in maps {
        // (what, [(offset, value)], the check that must fail)
        let mut cases: Vec<RsmCheckCase> = vec![
            ("CR0.PG without PE", vec![(cr0_at, 0x8000_0010)], RsmCheck::Cr0PgWithoutPe { cr0: 0x8000_0010 }),
            ("CR0.NW without CD", vec![(cr0_at, 0x2000_0011)], RsmCheck::Cr0NwWithoutCd { cr0: 0x2000_0011 }),
            ("CR4 reserved bit 15", vec![(cr4_at, 1 << 15)], RsmCheck::Cr4Reserved { cr4: 1 << 15 }),
        ];
        if let Some(efer_at) = efer_at {
            // The 64-bit maps save CR0 as a qword.
            cases.push(("CR0 bit 32", vec![(cr0_at, 0x10), (cr0_at + 4, 1)], RsmCheck::Cr0Reserved { cr0: 0x1_0000_0010 }));
            cases.push(("LME+PG without PAE", vec![(efer_at, cr::EFER_LME as u32), (cr0_at, 0x8000_0011), (cr4_at, 0)], RsmCheck::LongModeWithoutPae));
            cases.push(("EFER reserved bit", vec![(efer_at, 1 << 20)], RsmCheck::EferReserved { efer: 1 << 20 }));
        }
        for (what, edits, check) in cases {
            let mut m = real_machine(model, &real_code(|a| a.hlt()));
            install_handler(&mut m, SMBASE, |a| {
                for &(off, v) in &edits {
                    a.mov(dword_ptr(0x8000 + off).cs(), v)?;
                }
                a.rsm()
            });
            m.bus.raise_smi();
            let exit = m.run(100);
            let reason = ShutdownReason::RsmCheck(check);
            assert_eq!(exit, Exit::Shutdown(reason.clone()), "{model:?} {what}");
            let x = &m.bus.smm_exits[0];
            assert_eq!(x.shutdown.as_ref(), Some(&reason), "{what}: SmmExit carries the reason");
            assert!(!m.cpu.smm);
            assert_eq!(m.run(100), Exit::Shutdown(reason), "stays shut down");
        }
    }
    Ok(())
}

#[test]
fn rsm_of_random_save_areas_never_panics() -> T {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5343_4d4d);
    for round in 0..2000 {
        let model = ALL_MODELS[round % 3];
        let mut m = real_machine(model, &real_code(|a| a.hlt()));
        m.bus.raise_smi();
        run_to_smm_break(&mut m);
        // Random bytes over the map, sometimes keeping CR0/CR4/EFER plausible so RSM gets
        // past its checks into odd modes and segment states.
        for a in SMBASE + 0xfc00..SMBASE + 0x10000 {
            if rng.gen_bool(0.5) {
                m.bus.ram[a as usize] = rng.gen();
            }
        }
        if rng.gen_bool(0.7) {
            // (CR0, CR4, EFER) that pass RSM's checks: real, protected, paged, long mode.
            let (cr0_v, cr4_v, efer_v) =
                [(0x10u64, 0u64, 0u64), (0x11, 0, 0), (0x8000_0011, 0x10, 0), (0x8000_0011, 0x20, 0x500)][rng.gen_range(0..4)];
            let (cr0_at, cr4_at, efer_at, w) = match model {
                INTEL64 => (0x7ff8, 0x7e40, Some(0x7fe0), 8),
                AMD64 => (0x7f58, 0x7f48, Some(0x7ed0), 8),
                _ => (0x7ffc, 0x7f14, Some(0x7f10), 4),
            };
            let efer_v = if model.long_mode { efer_v } else { 0 };
            set_saved(&mut m, SMBASE, cr0_at, w, cr0_v);
            set_saved(&mut m, SMBASE, cr4_at, 4, cr4_v);
            if let Some(at) = efer_at {
                set_saved(&mut m, SMBASE, at, if w == 8 { 8 } else { 4 }, efer_v);
            }
            // RFLAGS without VM/TF most of the time.
            let rfl_at = match model {
                INTEL64 => 0x7fe8,
                AMD64 => 0x7f70,
                _ => 0x7ff4,
            };
            let rfl = saved(&m, SMBASE, rfl_at, 4) & if rng.gen_bool(0.8) { !0x2_0100 } else { !0 };
            set_saved(&mut m, SMBASE, rfl_at, 4, rfl);
        }
        // A random state may loop on a fault forever, as hardware would (no instruction
        // retires, so the budget alone never ends the run): the bus watchdog stops it.
        m.bus.poll_limit = Some(20_000);
        let _ = m.run(2000); // any exit, but no panic
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 11. Intel SMM MSRs: SMI count, SMBASE, SMRR, SMM_FEATURE_CONTROL, SMM_MCA_CAP
// ---------------------------------------------------------------------------------------

#[test]
fn msr_smi_count_counts_smis() -> T {
    let prog = real_code(|a| {
        a.out(APM_CNT as u32, al)?;
        a.out(APM_CNT as u32, al)?;
        a.mov(ecx, MSR_SMI_COUNT)?;
        a.rdmsr()?;
        a.hlt()
    });
    let mut m = real_machine(INTEL64, &prog);
    install_handler(&mut m, SMBASE, |a| a.rsm());
    m.run_to_halt();
    assert_eq!(m.cpu.regs[RAX], 2);
    Ok(())
}

#[test]
fn ia32_smbase_is_readable_in_smm_and_gp_outside() -> T {
    let prog = real_code(|a| {
        a.out(APM_CNT as u32, al)?;
        a.mov(ecx, IA32_SMBASE)?;
        a.rdmsr()?;
        a.hlt()
    });
    let mut m = real_machine(INTEL64, &prog);
    install_handler(&mut m, SMBASE, |a| {
        rdmsr_to(a, IA32_SMBASE, DATA as u32)?;
        a.rsm()
    });
    assert_eq!(m.run_to_exception(), GP, "outside SMM");
    assert_eq!(m.r32(DATA), SMBASE as u32, "in SMM");
    Ok(())
}

/// Runs `rdmsr idx` (or `wrmsr idx, 0`) in real mode outside SMM; returns the vectors raised.
fn msr_outside_smm(model: CpuModel, idx: u32, write: bool) -> Vec<u8> {
    let prog = real_code(|a| {
        if write {
            wrmsr(a, idx, 0)?;
        } else {
            a.mov(ecx, idx)?;
            a.rdmsr()?;
        }
        a.hlt()
    });
    let mut m = real_machine(model, &prog);
    m.run_to_halt();
    m.vectors()
}

#[test]
fn smm_only_msrs_raise_gp_outside_smm() -> T {
    for (idx, write) in [
        (IA32_SMBASE, false),
        (SMM_FEATURE_CONTROL, false),
        (SMM_FEATURE_CONTROL, true),
        (MSR_SMM_MCA_CAP, false),
        (SMRR_PHYSBASE, true),
        (SMRR_PHYSMASK, true),
    ] {
        assert_eq!(msr_outside_smm(INTEL64, idx, write), vec![GP], "MSR {idx:#x} write={write}");
    }
    Ok(())
}

#[test]
fn mtrrcap_advertises_smrr_on_intel_only() -> T {
    for (model, smrr) in [(INTEL64, true), (LEGACY32, true), (AMD64, false)] {
        let mut m = real_machine(
            model,
            &real_code(|a| {
                a.mov(ecx, IA32_MTRRCAP)?;
                a.rdmsr()?;
                a.hlt()
            }),
        );
        m.run_to_halt();
        assert_eq!(m.cpu.regs[RAX] & (1 << 11) != 0, smrr, "{model:?}");
    }
    Ok(())
}

/// SMM handler code programming SMRR over the 64 KiB at SMBASE (write-back, valid).
fn program_smrr(a: &mut CodeAssembler) -> Result<(), IcedError> {
    wrmsr(a, SMRR_PHYSBASE, SMBASE | 6)?;
    wrmsr(a, SMRR_PHYSMASK, 0xffff_0000 | 0x800)
}

#[test]
fn smrr_is_written_in_smm_and_hides_smram_outside_smm() -> T {
    let prog = real_code(|a| {
        a.out(APM_CNT as u32, al)?; // the handler programs SMRR
        a.mov(ax, 0x3010)?;
        a.mov(ds, ax)?;
        a.mov(ecx, dword_ptr(0))?; // SMBASE + 0x100 as data: all ones
        a.mov(dword_ptr(4), 0x1234_5678)?; // dropped
        a.jmp_far(0x3000, 0x8000) // SMRAM code: fetched as 0xFF bytes, #UD
    });
    let mut m = real_machine(INTEL64, &prog);
    m.w32(SMBASE + 0x100, 0xA5A5_A5A5);
    install_handler(&mut m, SMBASE, |a| {
        program_smrr(a)?;
        rdmsr_to(a, SMRR_PHYSBASE, DATA as u32)?;
        rdmsr_to(a, SMRR_PHYSMASK, DATA as u32 + 8)?;
        a.mov(ebx, (SMBASE + 0x100) as u32)?; // in SMM the range works normally
        a.mov(eax, dword_ptr(ebx))?;
        a.mov(dword_ptr(ebx + 8), eax)?;
        a.mov(ebx, DATA as u32 + 16)?;
        a.mov(dword_ptr(ebx), eax)?;
        a.rsm()
    });
    assert_eq!(m.run_to_exception(), UD, "jump into SMRAM outside SMM: {}", m.describe());
    assert_eq!((m.r32(DATA), m.r32(DATA + 8)), (0x30006, 0xffff_0800), "SMRR read back in SMM");
    assert_eq!(m.r32(DATA + 16), 0xA5A5_A5A5, "SMM reads SMRAM");
    assert_eq!(m.r32(SMBASE + 0x108), 0xA5A5_A5A5, "SMM writes SMRAM");
    assert_eq!(m.cpu.regs[RCX] as u32, 0xffff_ffff, "outside SMM SMRAM reads all ones");
    assert_eq!(m.r32(SMBASE + 0x104), 0, "outside SMM writes to SMRAM are dropped");
    assert_eq!(m.bus.smm_exits.len(), 1);
    Ok(())
}

#[test]
fn smm_feature_control_and_mca_cap_are_smm_only_and_lock_makes_feature_control_read_only() -> T {
    let prog = real_code(|a| {
        a.out(APM_CNT as u32, al)?;
        a.hlt()
    });
    let mut m = real_machine(INTEL64, &prog);
    // #GP inside SMM goes through the real-mode IVT; point it at a stub inside SMRAM.
    m.load(SMBASE + 0x9000, &stub(GP));
    m.set_ivt(GP, 0x3000, 0x9000);
    install_handler(&mut m, SMBASE, |a| {
        program_smrr(a)?;
        wrmsr(a, SMM_FEATURE_CONTROL, 0x5)?; // SMM_CODE_CHK_EN | LOCK
        rdmsr_to(a, SMM_FEATURE_CONTROL, DATA as u32)?;
        rdmsr_to(a, MSR_SMM_MCA_CAP, DATA as u32 + 8)?;
        wrmsr(a, SMM_FEATURE_CONTROL, 0)?; // locked: #GP
        a.rsm()
    });
    assert_eq!(m.run_to_exception(), GP, "{}", m.describe());
    assert!(m.cpu.smm, "#GP taken inside SMM by the locked write");
    assert_eq!(m.r32(DATA), 5, "written and read in SMM");
    assert_ne!(m.r32(DATA + 12) & (1 << (58 - 32)), 0, "SMM_MCA_CAP bit 58 (SMM_CODE_CHK)");
    assert_eq!(m.cpu.rdmsr(SMM_FEATURE_CONTROL).ok(), Some(5), "the value stayed");
    Ok(())
}

#[test]
fn smm_code_chk_shuts_down_with_a_machine_check_when_smm_code_runs_outside_smrr() -> T {
    let mut m = real_machine(INTEL64, &real_code(|a| a.hlt()));
    m.load(0x5000, &[0x90, 0x0F, 0xAA]); // nop; rsm (outside SMRR)
    install_handler(&mut m, SMBASE, |a| {
        program_smrr(a)?;
        wrmsr(a, SMM_FEATURE_CONTROL, 0x4)?; // SMM_CODE_CHK_EN
        a.nop()?; // still inside SMRR: fine
        a.jmp_far(0, 0x5000)
    });
    m.bus.raise_smi();
    let exit = m.run(1000);
    let reason = ShutdownReason::MachineCheck(MachineCheck::SmmCodeOutsideSmrr { phys: 0x5000 });
    assert_eq!(exit, Exit::Shutdown(reason), "{}", m.describe());
    assert!(m.bus.smm_exits.is_empty(), "the code outside SMRR never ran");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 12. AMD SMM MSRs: SMM_BASE, HWCR.SmmLock, SMM_ADDR/SMM_MASK (TSeg)
// ---------------------------------------------------------------------------------------

#[test]
fn amd_smm_base_msr_reflects_and_sets_smbase() -> T {
    let prog = real_code(|a| {
        a.mov(ecx, AMD_SMM_BASE)?;
        a.rdmsr()?;
        a.mov(esi, eax)?;
        wrmsr(a, AMD_SMM_BASE, 0x5_0008)?; // low four bits are kept clear
        a.out(APM_CNT as u32, al)?;
        a.hlt()
    });
    let mut m = real_machine(AMD64, &prog);
    install_handler(&mut m, 0x50000, break_then_rsm);
    run_to_smm_break(&mut m);
    assert_eq!(m.cpu.regs[RSI] as u32, 0x30000, "reset SMBASE");
    assert_eq!(m.bus.smm_entries[0].smbase, 0x50000);
    assert_eq!(m.cpu.seg[CS].base, 0x50000);
    assert_eq!(saved(&m, 0x50000, 0x7f00, 4), 0x50000);
    m.run_to_halt();
    Ok(())
}

#[test]
fn amd_hwcr_smmlock_makes_smm_base_addr_mask_read_only() -> T {
    let prog = real_code(|a| {
        wrmsr(a, AMD_HWCR, 1)?; // SmmLock
        wrmsr(a, AMD_HWCR, 0)?; // sticky
        a.mov(ecx, AMD_HWCR)?;
        a.rdmsr()?;
        a.mov(esi, eax)?;
        wrmsr(a, AMD_SMM_BASE, 0x50000)?; // #GP
        a.hlt()
    });
    let mut m = real_machine(AMD64, &prog);
    assert_eq!(m.run_to_exception(), GP);
    assert_eq!(m.cpu.regs[RSI] & 1, 1, "SmmLock cannot be cleared");
    assert_eq!(m.cpu.smm_regs.smbase, 0x30000);
    for idx in [AMD_SMM_BASE, AMD_SMM_ADDR, AMD_SMM_MASK] {
        assert!(m.cpu.wrmsr(idx, 0x80_0000).is_err(), "{idx:#x} locked");
        assert!(m.cpu.rdmsr(idx).is_ok(), "{idx:#x} still readable");
    }
    Ok(())
}

const TSEG: u64 = 0x80_0000;
/// 128 KiB TSeg mask (bits 47:17).
const TSEG_MASK: u64 = 0xffff_fffe_0000;
const TVALID: u64 = 2;
const TCLOSE: u64 = 8;

#[test]
fn amd_tseg_tvalid_hides_tseg_outside_smm_but_not_in_smm() -> T {
    let prog = asm(32, CODE, |a| {
        wrmsr(a, AMD_SMM_ADDR, TSEG)?;
        wrmsr(a, AMD_SMM_MASK, TSEG_MASK | TVALID)?;
        a.mov(esi, TSEG as u32)?;
        a.mov(ebx, dword_ptr(esi))?; // all ones
        a.mov(dword_ptr(esi + 4), 0x55)?; // dropped
        a.out(APM_CNT as u32, al)?;
        a.hlt()
    });
    let mut m = Machine::protected32(&prog);
    m.cpu.model = AMD64;
    m.w32(TSEG, 0x1122_3344);
    install_handler(&mut m, SMBASE, |a| {
        a.mov(esi, TSEG as u32)?;
        a.mov(eax, dword_ptr(esi))?;
        a.mov(edi, DATA as u32)?;
        a.mov(dword_ptr(edi), eax)?;
        a.rsm()
    });
    m.run_to_halt();
    assert_eq!(m.cpu.regs[RBX] as u32, 0xffff_ffff, "TSeg reads all ones outside SMM");
    assert_eq!(m.r32(TSEG + 4), 0, "writes dropped");
    assert_eq!(m.r32(DATA), 0x1122_3344, "SMM sees TSeg");
    Ok(())
}

#[test]
fn amd_tclose_makes_smm_data_reads_of_tseg_all_ones_while_fetches_run() -> T {
    // SMBASE moved so the handler itself (SMBASE + 0x8000) lies at the start of TSeg.
    let smbase = TSEG - 0x8000;
    let prog = asm(32, CODE, |a| {
        wrmsr(a, AMD_SMM_BASE, smbase)?;
        wrmsr(a, AMD_SMM_ADDR, TSEG)?;
        wrmsr(a, AMD_SMM_MASK, TSEG_MASK | TVALID | TCLOSE)?;
        a.out(APM_CNT as u32, al)?;
        a.hlt()
    });
    let mut m = Machine::protected32(&prog);
    m.cpu.model = AMD64;
    m.w32(TSEG + 0x100, 0x1122_3344);
    install_handler(&mut m, smbase, |a| {
        a.mov(esi, (TSEG + 0x100) as u32)?;
        a.mov(eax, dword_ptr(esi))?;
        a.mov(edi, DATA as u32)?;
        a.mov(dword_ptr(edi), eax)?;
        a.rsm()
    });
    m.run_to_halt();
    assert_eq!(m.bus.smm_entries[0].smbase as u64, smbase);
    assert_eq!(m.bus.smm_exits.len(), 1, "the handler in TSeg was fetched and ran");
    assert_eq!(m.r32(DATA), 0xffff_ffff, "TClose: SMM data reads of TSeg are all ones");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 13. The SmmEntry / SmmExit reports
// ---------------------------------------------------------------------------------------

#[test]
fn smm_reports_carry_smbase_interrupted_rip_mode_and_instruction_counts() -> T {
    let (prog, l) = asm_labels(32, CODE, |a, l| {
        a.mov(ecx, 5)?;
        a.out(APM_CNT as u32, al)?;
        here(a, l)?;
        a.hlt()
    });
    let mut m = Machine::protected32(&prog);
    install_handler(&mut m, SMBASE, |a| {
        a.nop()?;
        a.nop()?;
        a.nop()?;
        a.rsm()
    });
    m.run_to_halt();
    let e = &m.bus.smm_entries[0];
    assert_eq!((e.smbase, e.cs, e.rip, e.mode, e.icount), (0x30000, KCODE32, l[0], "protected32", 2));
    assert!(!e.from_halt && !e.io_trap);
    let x = &m.bus.smm_exits[0];
    assert_eq!((x.smbase, x.cs, x.rip, x.mode), (0x30000, KCODE32, l[0], "protected32"));
    assert_eq!(x.smm_instructions, 4, "three NOPs and the RSM");
    assert_eq!(x.icount, 6);
    assert!(!x.io_restarted && !x.halt_restarted && x.shutdown.is_none());
    assert_eq!(m.cpu.icount, 7, "then the HLT");
    Ok(())
}
