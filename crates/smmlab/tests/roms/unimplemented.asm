; Executes FSIN (which smmlab does not implement); the #UD handler at IVT vector 6 reports on
; debugcon and exits with status 0.
bits 16
org 0
start:
  xor ax, ax
  mov ds, ax
  mov ss, ax
  mov sp, 0x7000
  mov word [6*4], ud_handler
  mov word [6*4+2], 0xf000
  fninit
  fsin
  mov al, 1          ; not reached: FSIN must fault
  out 0xf4, al
  hlt
ud_handler:
  mov dx, 0x402
  mov al, 'U'
  out dx, al
  mov al, 'D'
  out dx, al
  mov al, 0
  out 0xf4, al
  hlt
times 0xfff0-($-$$) db 0xff
  jmp 0xf000:start
times 0x10000-($-$$) db 0xff
