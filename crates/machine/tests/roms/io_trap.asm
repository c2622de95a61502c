; Writes port 0x80 three times (the test traps it), with RSM at 0x38000; exits with 0.
%include "common.inc"
start:
  cli
  xor ax, ax
  mov ds, ax
  mov ss, ax
  mov sp, 0x7000
  rsm_at_default_smbase
  mov al, 1
  out 0x80, al
  out 0x80, al
  out 0x80, al
  mov al, 0
  out 0xf4, al
.halt:
  hlt
  jmp .halt
rom_end
