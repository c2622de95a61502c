; Open SMRAM, write 0x42 at 0xA0000, close it, read, reopen, read.
; -DCFG=<dword register address>, -DPORT=<0xCFC + byte lane>, -DOPEN=, -DCLOSED= SMRAM values.
; Exit code bits: 1 read back 0x42 while open, 2 read 0xFF after closing, 4 0x42 after reopening.
%include "common.inc"
start:
  cli
  xor ax, ax
  mov ds, ax
  mov ss, ax
  mov sp, 0x7000
  pci_addr CFG
  mov dx, PORT
  mov al, OPEN
  out dx, al
  mov ax, 0xa000
  mov es, ax
  mov byte [es:0x10], 0x42
  xor cx, cx
  cmp byte [es:0x10], 0x42
  jne .n1
  or cl, 1
.n1:
  mov al, CLOSED
  out dx, al
  cmp byte [es:0x10], 0xff
  jne .n2
  or cl, 2
.n2:
  mov al, OPEN
  out dx, al
  cmp byte [es:0x10], 0x42
  jne .n4
  or cl, 4
.n4:
  mov al, cl
  out 0xf4, al
.halt:
  hlt
  jmp .halt
rom_end
