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

/// The SMI handler placed at `entry` (SMBASE + 0x8000).
pub fn entry(entry: u64) -> Vec<u8> {
    use iced_x86::{Code, Instruction, MemoryOperand, Register};
    let long = entry + LONG_OFFSET;
    let mut head = CodeAssembler::new(16).expect("16-bit");
    (|| -> Result<(), IcedError> {
        head.mov(eax, CR4_BITS)?;
        head.mov(cr4, eax)?;
        head.mov(eax, PML4 as u32)?;
        head.mov(cr3, eax)?;
        head.mov(ecx, IA32_EFER)?;
        head.rdmsr()?;
        head.or(eax, EFER_LME)?;
        head.wrmsr()?;
        // DS has base 0 and a 4 GiB limit at SMM entry, so a 32-bit address reaches the GDT;
        // the 32-bit operand-size form loads a 32-bit base.
        head.mov(ebx, (GDT + GDTR_OFFSET) as u32)?;
        head.add_instruction(Instruction::with1(Code::Lgdt_m1632, MemoryOperand::with_base(Register::EBX))?)?;
        head.mov(eax, CR0_BITS)?;
        head.mov(cr0, eax)?;
        // JMP FAR ptr16:32 into the 64-bit code segment: long mode, now that CR0.PG is set
        // with EFER.LME.
        head.add_instruction(Instruction::with_far_branch(Code::Jmp_ptr1632, CODE64 as u16, long as u32)?)?;
        Ok(())
    })()
    .expect("entry code assembles");
    let mut code = assemble(&mut head, entry);
    assert!(code.len() as u64 <= LONG_OFFSET, "the 16-bit part fits before the 64-bit part");
    code.resize(LONG_OFFSET as usize, 0xcc);
    let mut b = CodeAssembler::new(64).expect("64-bit");
    (|| -> Result<(), IcedError> {
        b.mov(eax, DATA)?;
        b.mov(ds, ax)?;
        b.mov(es, ax)?;
        b.mov(ss, ax)?;
        b.mov(fs, ax)?;
        b.mov(gs, ax)?;
        b.mov(rsp, SMM_STACK_TOP)?;
        b.mov(rbx, MAILBOX)?;
        b.mov(rcx, qword_ptr(rbx + 8))?;
        b.mov(rdx, qword_ptr(rbx + 16))?;
        b.mov(r8, qword_ptr(rbx + 24))?;
        b.mov(r9, qword_ptr(rbx + 32))?;
        // The stack top is 16-aligned: after the shadow space and the call's push the callee
        // starts with RSP = 8 mod 16, as the convention wants.
        b.sub(rsp, 0x20)?;
        b.call(qword_ptr(rbx))?;
        b.mov(rbx, MAILBOX)?;
        b.mov(qword_ptr(rbx + 40), rax)?;
        b.rsm()?;
        Ok(())
    })()
    .expect("entry code assembles");
    code.extend(assemble(&mut b, long));
    code
}

/// The GDT page: null, 64-bit code at 0x08, flat data at 0x10, and the pseudo-descriptor at
/// [`GDTR_OFFSET`] (limit, 32-bit base).
pub fn gdt() -> Vec<u8> {
    let mut g = vec![0u8; 0x50];
    g[8..16].copy_from_slice(&0x00af_9b00_0000_ffffu64.to_le_bytes());
    g[16..24].copy_from_slice(&0x00cf_9300_0000_ffffu64.to_le_bytes());
    let o = GDTR_OFFSET as usize;
    g[o..o + 2].copy_from_slice(&23u16.to_le_bytes());
    g[o + 2..o + 10].copy_from_slice(&GDT.to_le_bytes());
    g
}

/// Identity page tables for 4 GiB with 2 MiB pages at [`PML4`]: PML4, PDPT, four directories.
pub fn page_tables() -> Vec<u8> {
    let mut t = vec![0u8; 0x6000];
    let put = |t: &mut Vec<u8>, at: usize, v: u64| t[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put(&mut t, 0, (PML4 + 0x1000) | 3);
    for i in 0..4u64 {
        put(&mut t, 0x1000 + 8 * i as usize, (PML4 + 0x2000 + 0x1000 * i) | 3);
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
