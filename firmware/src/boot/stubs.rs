//! The two pieces of SMM entry code the boot code copies into SMRAM.
//!
//! Both start in the SMM entry state (SDM vol. 3C 34.5.1): CS.base = SMBASE, EIP = 0x8000,
//! 16-bit code, 4 GiB segment limits, CR0.PE = PG = 0, CR4 = 0, EFER = 0.
//!
//! - The relocation stub runs once at the default SMBASE (0x38000): it writes the new SMBASE
//!   into the SMBASE field of the save-state map (0x7EF8 in the Intel-64 and 32-bit maps, 0x7F00
//!   in the AMD64 map, chosen by the revision ID at 0x7EFC; SDM 34.11), records the revision ID
//!   for the boot code, and executes RSM, which makes the new SMBASE current.
//! - The SMI entry stub runs at every later SMI at NEWSMBASE + 0x8000 in TSEG: it loads its own
//!   GDT, enters protected mode, then long mode with the SMM page tables in TSEG, saves the
//!   SSE state (an SMI does not save it, SDM 34.4.1.1), calls `smi_main` in the SMM image and
//!   returns with RSM. The boot code fills the data block at the start of the stub (fixed
//!   offsets, checked by `.if` below) with addresses it knows only at run time.

/// Offsets in the SMI entry stub's data block.
pub mod smi {
    pub const GDTR: usize = 0x08;
    pub const FAR32: usize = 0x10;
    pub const CR3: usize = 0x18;
    pub const RSP: usize = 0x20;
    pub const ENTRY: usize = 0x28;
    pub const CONTEXT: usize = 0x30;
    pub const GDT: usize = 0x38;
    /// The 32-bit code's offset (its physical address goes into FAR32).
    pub const CODE32: usize = 0x80;
    /// The 64-bit code's offset (the stub's `retf` target).
    pub const CODE64: usize = 0x100;
}

/// Offsets in the relocation stub's data block.
pub mod reloc {
    pub const NEW_SMBASE: usize = 0x04;
    /// The revision ID the stub saw (0 until the relocation SMI ran).
    pub const REVISION: usize = 0x08;
}

core::arch::global_asm!(
    r#"
    .pushsection .rodata.smm_stubs, "a"
    .balign 16
    .global smi_stub_start
    .global smi_stub_end
    .code16
smi_stub_start:
    jmp smi_code16
    .org smi_stub_start + 0x08
smi_f_gdtr:
    .word 31
    .long 0
    .org smi_stub_start + 0x10
smi_f_far32:
    .long 0
    .word 0x08
    .org smi_stub_start + 0x18
smi_f_cr3:
    .long 0
    .org smi_stub_start + 0x20
smi_f_rsp:
    .quad 0
smi_f_entry:
    .quad 0
smi_f_context:
    .quad 0
    .org smi_stub_start + 0x38
smi_gdt:
    .quad 0
    .quad 0x00cf9b000000ffff  /* 0x08: 32-bit code */
    .quad 0x00cf93000000ffff  /* 0x10: data */
    .quad 0x00af9b000000ffff  /* 0x18: 64-bit code */
smi_code16:
    /* CS.base = SMBASE; the stub is at CS:0x8000. */
    .byte 0x66
    lgdt cs:[0x8000 + 0x08]
    mov ebp, cs:[0x8000 + 0x10]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    /* jmp far dword [cs:0x8010] */
    .byte 0x66, 0x2e, 0xff, 0x2e
    .word 0x8010
    .org smi_stub_start + {code32}
    .code32
smi_code32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    sub ebp, {code32}
    mov esp, [ebp + 0x20]
    mov eax, 0x620
    mov cr4, eax
    mov eax, [ebp + 0x18]
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 0x100
    wrmsr
    mov eax, cr0
    or eax, 0x80000023
    and eax, 0xfffffff3
    mov cr0, eax
    push 0x18
    lea eax, [ebp + {code64}]
    push eax
    retf
    .org smi_stub_start + {code64}
    .code64
smi_code64:
    mov rsp, [rip + smi_f_rsp]
    sub rsp, 512
    fxsave [rsp]
    mov rdi, [rip + smi_f_context]
    call qword ptr [rip + smi_f_entry]
    fxrstor [rsp]
    rsm
smi_stub_end:

    .balign 16
    .global reloc_stub_start
    .global reloc_stub_end
    .code16
reloc_stub_start:
    jmp reloc_code
    .org reloc_stub_start + 0x04
    .long 0
    .long 0
reloc_code:
    mov ax, cs
    mov ds, ax
    mov ebx, [0x8004]
    mov eax, [0xfefc]
    cmp ax, 0x64
    jne 1f
    mov [0xff00], ebx
    jmp 2f
1:
    mov [0xfef8], ebx
2:
    mov [0x8008], eax
    rsm
reloc_stub_end:
    .code64
    .popsection
"#,
    code32 = const smi::CODE32,
    code64 = const smi::CODE64,
);

extern "C" {
    static smi_stub_start: u8;
    static smi_stub_end: u8;
    static reloc_stub_start: u8;
    static reloc_stub_end: u8;
}

fn bytes(start: &'static u8, end: &'static u8) -> &'static [u8] {
    let (s, e) = (start as *const u8, end as *const u8);
    // SAFETY: the two labels delimit one block of bytes in .rodata.
    unsafe { core::slice::from_raw_parts(s, e as usize - s as usize) }
}

/// The SMI entry stub's bytes.
pub fn smi_stub() -> &'static [u8] {
    // SAFETY: taking the address of the labels only.
    unsafe { bytes(&smi_stub_start, &smi_stub_end) }
}

/// The relocation stub's bytes.
pub fn reloc_stub() -> &'static [u8] {
    // SAFETY: as above.
    unsafe { bytes(&reloc_stub_start, &reloc_stub_end) }
}
