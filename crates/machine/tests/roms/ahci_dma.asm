; Drives the ICH9 AHCI controller (q35, 00:1F.2) directly from 32-bit protected mode: assigns
; ABAR, enables memory decoding and bus mastering, starts port 0, and issues READ DMA EXT over
; a two-entry PRDT, WRITE DMA EXT and read-back, IDENTIFY DEVICE (PIO setup FIS), a read past
; the end (task-file error: PxIS.TFES, PxCI stays set until PxCMD.ST is cleared), and a PRD
; pointing at unmapped memory (host bus data error).
; The disk (tests/disks.rs) has SECTORS sectors; sector n starts with the word n.
; Exit code (isa-debug-exit): 0 = all good, otherwise the number of the failed check.
%include "common.inc"

%define LIN(x) (0xf0000 + (x))
ABAR  equ 0xfebf0000
P0    equ ABAR + 0x100
CLB   equ 0x10000
FB    equ 0x11000
CT    equ 0x12000
BUF   equ 0x20000

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
%macro fail 1
  mov al, %1
  jmp fail_out
%endmacro
%macro expect 3                   ; expect <value-expr in eax after load>, <expected>, <code>
  mov eax, %1
  cmp eax, %2
  je %%ok
  fail %3
%%ok:
%endmacro
%macro cfg_write 2                ; dword config write to 00:1F.2
  mov dx, 0xcf8
  mov eax, 0x80000000 | (0x1f << 11) | (2 << 8) | %1
  out dx, eax
  mov dx, 0xcfc
  mov eax, %2
  out dx, eax
%endmacro

; issue <command>, <lba>, <count>, <write flag>, <prd address>, <prd bytes>
%macro issue 6
  mov dword [CLB], 5 | (%4 << 6) | (1 << 16)
  mov dword [CLB + 4], 0
  mov dword [CLB + 8], CT
  mov dword [CLB + 12], 0
  mov dword [CT], 0x00008027 | (%1 << 16)
  mov dword [CT + 4], 0x40000000 | ((%2) & 0xffffff)
  mov dword [CT + 8], ((%2) >> 24) & 0xff
  mov dword [CT + 12], %3
  mov dword [CT + 0x80], %5
  mov dword [CT + 0x84], 0
  mov dword [CT + 0x8c], (%6) - 1
  mov dword [P0 + 0x10], 0xffffffff  ; clear PxIS
  mov dword [P0 + 0x38], 1           ; PxCI
%endmacro

pm32:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov esp, 0x7000
  cfg_write 0x24, ABAR
  cfg_write 0x04, 0x6              ; memory space, bus master
  expect [ABAR + 0x0c], 0x3f, 1    ; PI: six ports
  expect [ABAR + 0x10], 0x00010200, 2
  mov eax, [ABAR + 0x04]
  test eax, 0x80000000             ; GHC.AE
  jnz .ae
  fail 3
.ae:
  expect [P0 + 0x28], 0x113, 4     ; SSTS
  expect [P0 + 0x24], 0x101, 5     ; SIG
  expect [ABAR + 0x180 + 0x28], 0, 6 ; port 1 empty
  mov dword [P0 + 0x00], CLB
  mov dword [P0 + 0x08], FB
  mov dword [P0 + 0x30], 0xffffffff  ; clear SERR
  mov dword [P0 + 0x18], 0x11        ; FRE | ST
  mov eax, [P0 + 0x18]
  and eax, 0xc011
  cmp eax, 0xc011                    ; CR and FR follow
  je .started
  fail 7
.started:
  ; READ DMA EXT: 2 sectors from LBA 5, over PRDs of 1 KiB
  issue 0x25, 5, 2, 0, BUF, 1024
  expect [P0 + 0x38], 0, 8           ; CI cleared
  expect [P0 + 0x20], 0x50, 9        ; TFD
  mov eax, [P0 + 0x10]
  test eax, 1                        ; DHRS
  jnz .dhrs
  fail 10
.dhrs:
  movzx eax, word [BUF]
  cmp eax, 5
  je .d0
  fail 11
.d0:
  movzx eax, word [BUF + 512]
  cmp eax, 6
  je .d1
  fail 12
.d1:
  movzx eax, byte [FB + 0x40]
  cmp eax, 0x34                      ; D2H register FIS in the received-FIS area
  je .fis
  fail 13
.fis:
  expect [CLB + 4], 1024, 14         ; PRDBC
  ; WRITE DMA EXT: LBA 9 <- 0x5a5a5a5a, read back
  mov edi, BUF + 0x1000
  mov ecx, 128
  mov eax, 0x5a5a5a5a
  rep stosd
  issue 0x35, 9, 1, 1, BUF + 0x1000, 512
  expect [P0 + 0x20], 0x50, 15
  issue 0x25, 9, 1, 0, BUF + 0x2000, 512
  expect [BUF + 0x2000 + 508], 0x5a5a5a5a, 16
  ; IDENTIFY DEVICE: PIO setup FIS
  issue 0xec, 0, 0, 0, BUF + 0x3000, 512
  mov eax, [P0 + 0x10]
  test eax, 2                        ; PSS
  jnz .pss
  fail 17
.pss:
  movzx eax, byte [FB + 0x20]
  cmp eax, 0x5f
  je .psfis
  fail 18
.psfis:
  movzx eax, word [BUF + 0x3000 + 100 * 2]
  cmp eax, SECTORS
  je .idcap
  fail 19
.idcap:
  ; Past the end: ERR/IDNF, TFES, CI stays set until ST is cleared
  issue 0x25, SECTORS, 1, 0, BUF, 512
  expect [P0 + 0x20], 0x1041, 20
  mov eax, [P0 + 0x10]
  test eax, 0x40000000
  jnz .tfes
  fail 21
.tfes:
  expect [P0 + 0x38], 1, 22
  mov dword [P0 + 0x18], 0x10        ; clear ST
  expect [P0 + 0x38], 0, 23
  mov eax, [P0 + 0x18]
  test eax, 0x8000
  jz .cr_clear
  fail 24
.cr_clear:
  mov dword [P0 + 0x18], 0x11
  ; A PRD into nothing: host bus data error, no data anywhere
  issue 0x25, 1, 1, 0, 0xf0000000, 512
  mov eax, [P0 + 0x10]
  test eax, 0x10000000
  jnz .hbds
  fail 25
.hbds:
  xor al, al
fail_out:
  out 0xf4, al
  cli
  hlt

bits 16
rom_end
