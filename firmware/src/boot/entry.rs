//! Reset vector → 16-bit → 32-bit protected mode → long mode with identity paging → Rust.
//!
//! At reset CS.base = 0xFFFF0000 and IP = 0xFFF0 (SDM vol. 3A 9.1.4), so the reset vector is
//! the last 16 bytes of the ROM. The 16- and 32-bit code runs in place from the ROM; it copies
//! the 64-bit image from the ROM to RAM at 1 MiB (boot.ld), zeroes its bss, builds page tables
//! identity-mapping the low 4 GiB with 2 MiB pages, sets CR4.PAE|OSFXSR|OSXMMEXCPT (the compiled
//! code uses SSE), EFER.LME and CR0.PG (SDM vol. 3A 10.8.5), and jumps to `boot_main`.

core::arch::global_asm!(
    r#"
    .pushsection .rom32, "ax"
    .code16
    .global reset_entry16
reset_entry16:
    cli
    cld
    .byte 0x66
    lgdt cs:[rom_gdtr - 0xffff0000]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    .byte 0x66, 0xea
    .long rom_entry32
    .word 0x08

    .code32
rom_entry32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov esp, {stack}
    /* Long mode present? CPUID 0x80000001 EDX bit 29. */
    mov eax, 0x80000000
    cpuid
    cmp eax, 0x80000001
    jb no_long_mode
    mov eax, 0x80000001
    cpuid
    bt edx, 29
    jnc no_long_mode
    /* Copy the 64-bit image to RAM and zero its bss. */
    mov esi, offset __boot_lma
    mov edi, offset __boot_vma
    mov ecx, offset __boot_vma_end
    sub ecx, edi
    shr ecx, 2
    rep movsd
    mov edi, offset __bss_start
    mov ecx, offset __bss_end
    sub ecx, edi
    shr ecx, 2
    xor eax, eax
    rep stosd
    /* Page tables: PML4, PDPT, 4 PDs. */
    mov edi, {pt}
    mov ecx, 6 * 1024
    xor eax, eax
    rep stosd
    mov dword ptr [{pt}], {pt} + 0x1003
    mov dword ptr [{pt} + 0x1000], {pt} + 0x2003
    mov dword ptr [{pt} + 0x1008], {pt} + 0x3003
    mov dword ptr [{pt} + 0x1010], {pt} + 0x4003
    mov dword ptr [{pt} + 0x1018], {pt} + 0x5003
    mov edi, {pt} + 0x2000
    mov eax, 0x83
    mov ecx, 2048
2:
    mov [edi], eax
    add eax, 0x200000
    add edi, 8
    dec ecx
    jnz 2b
    mov eax, 0x620
    mov cr4, eax
    mov eax, {pt}
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 0x100
    wrmsr
    /* PG | NE | ET | MP | PE; CD/NW/EM/TS clear. */
    mov eax, 0x80000033
    mov cr0, eax
    .byte 0xea
    .long boot_entry64
    .word 0x18

no_long_mode:
    mov esi, offset no_long_mode_msg
    mov dx, 0x402
3:
    lodsb
    test al, al
    jz 4f
    out dx, al
    jmp 3b
4:
    mov al, {failed}
    out 0xf4, al
5:
    hlt
    jmp 5b

    .balign 8
rom_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff  /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff  /* 0x10: data */
    .quad 0x00af9a000000ffff  /* 0x18: 64-bit code */
rom_gdtr:
    .word 31
    .long rom_gdt
no_long_mode_msg:
    .asciz "fw: this CPU model has no long mode; the built-in firmware needs it\n"

    .section .resetvec, "ax"
    .code16
    jmp reset_entry16
    .balign 16, 0xf4

    .section .text.entry, "ax"
    .code64
    .global boot_entry64
boot_entry64:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov rsp, {stack}
    call boot_main
6:
    hlt
    jmp 6b
    .popsection
    .code64
"#,
    stack = const firmware::layout::BOOT_STACK_TOP,
    pt = const firmware::layout::BOOT_PAGE_TABLES,
    failed = const firmware::layout::EXIT_FIRMWARE_FAILED,
);
