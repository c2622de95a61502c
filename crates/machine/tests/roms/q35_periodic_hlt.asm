; q35: periodic SMI every 8 s (PER_SMI_SEL = 11b) with GBL_SMI_EN | PERIODIC_EN; the CPU
; halts three times, each SMI wakes it, then the ROM exits with 0. The handler at 0x38000
; clears the auto-HALT restart field (Intel map, SMBASE + 0xFF02) so that RSM returns past the
; HLT instead of into the halted state, then executes RSM.
%include "common.inc"
start:
  cli
  xor ax, ax
  mov ds, ax
  mov ss, ax
  mov sp, 0x7000
  mov ax, 0x3800
  mov es, ax
  mov di, 0
  mov si, handler
  mov cx, handler_end - handler
  cs rep movsb
  pci_addr 0xf840
  mov dx, 0xcfc
  mov eax, 0x601
  out dx, eax
  pci_addr 0xf844
  mov dx, 0xcfc
  mov al, 0x80
  out dx, al
  pci_addr 0xf8a0
  mov dx, 0xcfc
  mov ax, 0x0003
  out dx, ax
  mov dx, 0x630
  mov eax, 0x4001
  out dx, eax
  mov cx, 3
.wait:
  hlt
  dec cx
  jnz .wait
  mov al, 0
  out 0xf4, al
.halt:
  hlt
  jmp .halt
handler:
  mov word [cs:0xff02], 0            ; auto-HALT restart = 0
  rsm
handler_end:
rom_end
