//! The runner's SMI entry code, assembled with iced-x86's code assembler.
//!
//! - [`relocation`]: what the first SMI runs at the default SMBASE (0x30000): it writes the new
//!   SMBASE into the save state's SMBASE field and returns (SDM vol. 3C, 34.11 "SMBASE
//!   Relocation"; AMD APM vol. 2, 10.2.3), as firmware relocates each CPU.
//! - [`entry`]: the SMI handler at the relocated SMBASE + 0x8000. SMM starts in a real-mode-like
//!   state (CS base = SMBASE, other segments base 0 and 4 GiB limits, SDM Table 34-4); the
//!   stub enables PAE, the SSE state, long mode and paging with the SMRAM page tables, far-jumps
//!   to 64-bit code, calls the function the host put in the mailbox with its four arguments
//!   (the MS x64 convention, 32 bytes of shadow space), stores RAX back and executes RSM: the
//!   shape of edk2's PiSmmCpuDxeSmm entry and core dispatch, reduced to one call.

use crate::layout::{GDT, MAILBOX, PML4, SMM_STACK_TOP};
use iced_x86::code_asm::*;

/// CR4: PAE (5), OSFXSR (9), OSXMMEXCPT (10).
const CR4_BITS: u32 = 1 << 5 | 1 << 9 | 1 << 10;
/// CR0: PE, MP, ET, NE, PG.
const CR0_BITS: u32 = 1 | 1 << 1 | 1 << 4 | 1 << 5 | 1 << 31;
/// IA32_EFER and its LME bit.
const IA32_EFER: u32 = 0xc000_0080;
const EFER_LME: u32 = 1 << 8;
/// GDT selectors.
const CODE64: u32 = 0x08;
const DATA: u32 = 0x10;
/// Where the 64-bit part starts, from the entry.
const LONG_OFFSET: u64 = 0x100;
/// The pseudo-descriptor's place in the GDT page.
pub const GDTR_OFFSET: u64 = 0x40;

fn assemble(a: &mut CodeAssembler, ip: u64) -> Vec<u8> {
    a.assemble(ip).expect("the runner's entry code assembles")
}

/// The relocation handler for the default SMBASE `0x30000`: the SMBASE field is at
/// `smbase_offset` (SDM form, from SMBASE + 0x8000).
pub fn relocation(new_smbase: u32, smbase_offset: u16) -> Vec<u8> {
    let mut a = CodeAssembler::new(16).expect("16-bit");
    // CS.base = SMBASE = 0x30000: the field is at CS:0x8000+offset.
    let field = 0x8000u32 + smbase_offset as u32;
    a.mov(dword_ptr(field).cs(), new_smbase).expect("mov");
    a.rsm().expect("rsm");
    assemble(&mut a, 0x8000)
}

/// How the 16-bit part finds the GDT's pseudo-descriptor.
enum Gdtr {
    /// Through EBX with DS (base 0 and a 4 GiB limit at SMM entry, SDM Table 34-4).
    Flat(u32),
    /// CS-relative: a real-mode CS whose base is the ROM's (the reset vector's 0xFFFF0000).
    CodeRelative(u16),
}

/// The 16-bit part: PAE and the SSE state in CR4, `pml4` in CR3, EFER.LME, the GDT, then
/// CR0.PE|PG and a far jump to the 64-bit code at `long` (SDM vol. 3A, 10.8.5 "Initializing
/// IA-32e Mode"). The 32-bit operand-size LGDT loads a 32-bit base.
fn to_long_mode(at: u64, pml4: u32, gdtr: Gdtr, long: u64) -> Vec<u8> {
    use iced_x86::{Code, Instruction, MemoryOperand, Register};
    let mut head = CodeAssembler::new(16).expect("16-bit");
    (|| -> Result<(), IcedError> {
        head.mov(eax, CR4_BITS)?;
        head.mov(cr4, eax)?;
        head.mov(eax, pml4)?;
        head.mov(cr3, eax)?;
        head.mov(ecx, IA32_EFER)?;
        head.rdmsr()?;
        head.or(eax, EFER_LME)?;
        head.wrmsr()?;
        let lgdt = match gdtr {
            Gdtr::Flat(addr) => {
                head.mov(ebx, addr)?;
                Instruction::with1(Code::Lgdt_m1632, MemoryOperand::with_base(Register::EBX))?
            }
            Gdtr::CodeRelative(off) => {
                let mut i = Instruction::with1(Code::Lgdt_m1632, MemoryOperand::with_displ(off as u64, 2))?;
                i.set_segment_prefix(Register::CS);
                i
            }
        };
        head.add_instruction(lgdt)?;
        head.mov(eax, CR0_BITS)?;
        head.mov(cr0, eax)?;
        // JMP FAR ptr16:32 into the 64-bit code segment: long mode, now that CR0.PG is set
        // with EFER.LME.
        head.add_instruction(Instruction::with_far_branch(Code::Jmp_ptr1632, CODE64 as u16, long as u32)?)?;
        Ok(())
    })()
    .expect("the mode switch assembles");
    assemble(&mut head, at)
}

/// Flat data segments and the stack at `stack_top`, then `func(args)` from `mailbox`
/// (function, four arguments; RAX is stored after them): the MS x64 convention, 32 bytes of
/// shadow space. The stack top is 16-aligned, so after the shadow space and the call's push
/// the callee starts with RSP = 8 mod 16, as the convention wants.
fn call_mailbox(b: &mut CodeAssembler, mailbox: u64, stack_top: u64) -> Result<(), IcedError> {
    b.mov(eax, DATA)?;
    b.mov(ds, ax)?;
    b.mov(es, ax)?;
    b.mov(ss, ax)?;
    b.mov(fs, ax)?;
    b.mov(gs, ax)?;
    b.mov(rsp, stack_top)?;
    b.mov(rbx, mailbox)?;
    b.mov(rcx, qword_ptr(rbx + 8))?;
    b.mov(rdx, qword_ptr(rbx + 16))?;
    b.mov(r8, qword_ptr(rbx + 24))?;
    b.mov(r9, qword_ptr(rbx + 32))?;
    b.sub(rsp, 0x20)?;
    b.call(qword_ptr(rbx))?;
    b.mov(rbx, mailbox)?;
    b.mov(qword_ptr(rbx + 40), rax)?;
    Ok(())
}

/// The SMI handler placed at `entry` (SMBASE + 0x8000): long mode with the SMRAM page tables,
/// the mailbox's call, RSM.
pub fn entry(entry: u64) -> Vec<u8> {
    let long = entry + LONG_OFFSET;
    let mut code = to_long_mode(entry, PML4 as u32, Gdtr::Flat((GDT + GDTR_OFFSET) as u32), long);
    assert!(code.len() as u64 <= LONG_OFFSET, "the 16-bit part fits before the 64-bit part");
    code.resize(LONG_OFFSET as usize, 0xcc);
    let mut b = CodeAssembler::new(64).expect("64-bit");
    (|| -> Result<(), IcedError> {
        call_mailbox(&mut b, MAILBOX, SMM_STACK_TOP)?;
        b.rsm()
    })()
    .expect("entry code assembles");
    code.extend(assemble(&mut b, long));
    code
}

/// The code the host runs outside SMM ([`outside`]): a 16-bit start in the reset ROM, the
/// rest in RAM (system flash mapped later replaces the ROM; by then the CPU has left it).
pub struct Outside {
    /// For the reset ROM's start (0xFFFF0000, CS base at reset): real mode to long mode, and
    /// the GDT's pseudo-descriptor at [`outside_layout::ROM_GDTR`].
    pub rom: Vec<u8>,
    /// For RAM at the `code` address given: HLT (where the switch lands), the call loop at
    /// [`outside_layout::CALL`], the GDT at [`outside_layout::GDT`].
    pub ram: Vec<u8>,
}

/// Offsets in [`Outside`]'s two parts.
pub mod outside_layout {
    /// In the ROM: the pseudo-descriptor the 16-bit start loads (CS-relative).
    pub const ROM_GDTR: u16 = 0x100;
    /// In RAM: the call loop; the host wakes the CPU here for each call.
    pub const CALL: u64 = 0x10;
    /// In RAM: the GDT.
    pub const GDT: u64 = 0x100;
}

/// The code the host runs outside SMM: from the reset state (real mode, CS base 0xFFFF0000)
/// to long mode with the page tables at `pml4`, landing on a HLT at `code` in RAM; then, each
/// time the host wakes the CPU at `code` + [`outside_layout::CALL`], the call in the mailbox
/// at `mailbox` on the stack at `stack_top`, its RAX stored, HLT. This is where a boot's DXE
/// phase stands when the SMM core's first dispatch runs drivers' entry points outside SMM.
pub fn outside(code: u64, pml4: u64, mailbox: u64, stack_top: u64) -> Outside {
    use outside_layout::*;
    let mut rom = to_long_mode(0, pml4 as u32, Gdtr::CodeRelative(ROM_GDTR), code);
    assert!(rom.len() <= ROM_GDTR as usize, "the 16-bit start fits before its pseudo-descriptor");
    rom.resize(ROM_GDTR as usize, 0xcc);
    let g = gdt(code + GDT);
    rom.extend_from_slice(&g[GDTR_OFFSET as usize..GDTR_OFFSET as usize + 10]);
    let mut l = CodeAssembler::new(64).expect("64-bit");
    let mut call = l.create_label();
    (|| -> Result<(), IcedError> {
        l.hlt()?;
        l.jmp(call)?;
        // Pad to CALL so that the loop has a fixed address.
        for _ in 0..CALL - 3 {
            l.nop()?;
        }
        l.set_label(&mut call)?;
        call_mailbox(&mut l, mailbox, stack_top)?;
        l.hlt()?;
        l.jmp(call)
    })()
    .expect("outside code assembles");
    let mut ram = assemble(&mut l, code);
    assert_eq!(ram.get(CALL as usize - 1), Some(&0x90), "the loop starts at CALL");
    assert!(ram.len() <= GDT as usize, "the loop fits before the GDT");
    ram.resize(GDT as usize, 0xcc);
    ram.extend(g);
    Outside { rom, ram }
}

/// The SMM core entry the runner gives an SMM CPU driver that relocated SMBASE itself
/// (EFI_SMM_CONFIGURATION_PROTOCOL.RegisterSmmEntry, PI 1.9 vol. 4 §4.4): the driver's SMI
/// entry calls it with the EFI_SMM_ENTRY_CONTEXT on its own stack in long mode; it makes the
/// mailbox's call and returns, as the runner's own entry does before RSM.
pub fn core_entry(at: u64) -> Vec<u8> {
    let mut b = CodeAssembler::new(64).expect("64-bit");
    (|| -> Result<(), IcedError> {
        // Entered with RSP = 8 mod 16: one push and the shadow space keep the call aligned.
        b.push(rbx)?;
        b.sub(rsp, 0x20)?;
        b.mov(rbx, MAILBOX)?;
        b.mov(rcx, qword_ptr(rbx + 8))?;
        b.mov(rdx, qword_ptr(rbx + 16))?;
        b.mov(r8, qword_ptr(rbx + 24))?;
        b.mov(r9, qword_ptr(rbx + 32))?;
        b.call(qword_ptr(rbx))?;
        b.mov(rbx, MAILBOX)?;
        b.mov(qword_ptr(rbx + 40), rax)?;
        b.add(rsp, 0x20)?;
        b.pop(rbx)?;
        b.ret()
    })()
    .expect("core entry assembles");
    assemble(&mut b, at)
}

/// The GDT page: null, 64-bit code at 0x08, flat data at 0x10, and the pseudo-descriptor at
/// [`GDTR_OFFSET`] (limit, 32-bit base), for a GDT at `base`.
pub fn gdt(base: u64) -> Vec<u8> {
    let mut g = vec![0u8; 0x50];
    g[8..16].copy_from_slice(&0x00af_9b00_0000_ffffu64.to_le_bytes());
    g[16..24].copy_from_slice(&0x00cf_9300_0000_ffffu64.to_le_bytes());
    let o = GDTR_OFFSET as usize;
    g[o..o + 2].copy_from_slice(&23u16.to_le_bytes());
    g[o + 2..o + 10].copy_from_slice(&base.to_le_bytes());
    g
}

/// Identity page tables for 4 GiB with 2 MiB pages at `pml4`: PML4, PDPT, four directories.
pub fn page_tables(pml4: u64) -> Vec<u8> {
    let mut t = vec![0u8; 0x6000];
    let put = |t: &mut Vec<u8>, at: usize, v: u64| t[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put(&mut t, 0, (pml4 + 0x1000) | 3);
    for i in 0..4u64 {
        put(&mut t, 0x1000 + 8 * i as usize, (pml4 + 0x2000 + 0x1000 * i) | 3);
        for j in 0..512u64 {
            put(&mut t, (0x2000 + 0x1000 * i + 8 * j) as usize, (i << 30 | j << 21) | 0x83);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

    fn text(bits: u32, code: &[u8], ip: u64) -> Vec<String> {
        let mut d = Decoder::with_ip(bits, code, ip, DecoderOptions::NONE);
        let mut f = IntelFormatter::new();
        let mut out = Vec::new();
        for i in &mut d {
            let mut s = String::new();
            f.format(&i, &mut s);
            out.push(s);
        }
        out
    }

    #[test]
    fn the_relocation_handler_writes_the_smbase_field_through_cs() {
        let t = text(16, &relocation(0x7800000, 0x7ef8), 0x8000);
        assert_eq!(t, ["mov dword ptr cs:[0FEF8h],7800000h", "rsm"]);
    }

    #[test]
    fn the_entry_reaches_long_mode_and_calls_the_mailbox() {
        use iced_x86::Code;
        let e = 0x7808000;
        let code = entry(e);
        let head: Vec<iced_x86::Instruction> = Decoder::with_ip(16, &code[..LONG_OFFSET as usize], e, DecoderOptions::NONE).into_iter().collect();
        // LGDT with a 32-bit operand (66h): a 32-bit GDT base, above 16 MiB.
        assert!(head.iter().any(|i| i.code() == Code::Lgdt_m1632), "{:?}", text(16, &code[..64], e));
        let jmp = head.iter().find(|i| i.code() == Code::Jmp_ptr1632).expect("a far jump");
        assert_eq!((jmp.far_branch_selector(), jmp.far_branch32()), (8, (e + LONG_OFFSET) as u32));
        let tail = text(64, &code[LONG_OFFSET as usize..], e + LONG_OFFSET);
        assert!(tail.iter().any(|l| l.starts_with("call qword ptr [rbx]")), "{tail:?}");
        assert_eq!(tail.last().map(String::as_str), Some("rsm"));
    }
}
