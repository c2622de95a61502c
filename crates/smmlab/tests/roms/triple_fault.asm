; Empties the real-mode IVT (limit 0) and executes INT3: #BP cannot be delivered (#GP),
; #GP cannot be delivered (#DF), #DF cannot be delivered: triple fault.
bits 16
org 0
start:
  xor ax, ax
  mov ds, ax
  mov ss, ax
  mov sp, 0x7000
  lidt [cs:idt]
  int3
  hlt
idt: dw 0
     dd 0
times 0xfff0-($-$$) db 0xff
  jmp 0xf000:start
times 0x10000-($-$$) db 0xff
