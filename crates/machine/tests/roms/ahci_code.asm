; q35: code that already ran is overwritten by an AHCI READ DMA EXT and must run its new
; bytes. 32-bit protected mode; the routine at CODE returns 1 in al, the disk's sector 0
; (tests/dma_smram.rs) holds "mov al, 2; ret".
; Exit code (isa-debug-exit): 0 good, 1 the first call did not return 1, 2 the command failed,
; 3 the stale code ran.
%include "common.inc"

%define LIN(x) (0xf0000 + (x))
ABAR  equ 0xfebf0000
P0    equ ABAR + 0x100
CLB   equ 0x10000
FB    equ 0x11000
CT    equ 0x12000
CODE  equ 0x20000

start:
  cli
  o32 lgdt [cs:gdtr]
  mov eax, cr0
  or al, 1
  mov cr0, eax
  jmp dword 0x08:LIN(pm32)

align 8
gdt:
  dq 0
  dq 0x00cf9b000000ffff           ; 0x08: flat 32-bit code
  dq 0x00cf93000000ffff           ; 0x10: flat data
gdtr:
  dw 23
  dd LIN(gdt)

bits 32
%macro cfg_write 2                ; dword config write to 00:1F.2
  mov dx, 0xcf8
  mov eax, 0x80000000 | (0x1f << 11) | (2 << 8) | %1
  out dx, eax
  mov dx, 0xcfc
  mov eax, %2
  out dx, eax
%endmacro

pm32:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov esp, 0x7000
  mov dword [CODE], 0x90c301b0     ; mov al, 1; ret
  mov ebx, CODE                     ; absolute (the ROM runs at 0xF0000, assembled at 0)
  call ebx
  cmp al, 1
  mov al, 1
  jne out
  cfg_write 0x24, ABAR
  cfg_write 0x04, 0x6              ; memory space, bus master
  mov dword [P0 + 0x00], CLB
  mov dword [P0 + 0x08], FB
  mov dword [P0 + 0x30], 0xffffffff
  mov dword [P0 + 0x18], 0x11      ; FRE | ST
  ; READ DMA EXT, LBA 0, one sector, into CODE
  mov dword [CLB], 5 | (1 << 16)
  mov dword [CLB + 4], 0
  mov dword [CLB + 8], CT
  mov dword [CLB + 12], 0
  mov dword [CT], 0x00258027
  mov dword [CT + 4], 0x40000000
  mov dword [CT + 8], 0
  mov dword [CT + 12], 1
  mov dword [CT + 0x80], CODE
  mov dword [CT + 0x84], 0
  mov dword [CT + 0x8c], 511
  mov dword [P0 + 0x10], 0xffffffff
  mov dword [P0 + 0x38], 1          ; PxCI: the transfer runs now
  mov eax, [P0 + 0x38]
  test eax, eax
  mov al, 2
  jnz out
  mov ebx, CODE                     ; absolute (the ROM runs at 0xF0000, assembled at 0)
  call ebx
  cmp al, 2
  mov al, 3
  jne out
  xor al, al
out:
  out 0xf4, al
  cli
  hlt

bits 16
rom_end
