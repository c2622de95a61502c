; Enables an instruction breakpoint in DR7 (smmlab does not model debug breakpoints), then
; exits with status 0: the run summary must name the feature, not an instruction.
bits 16
org 0
start:
  mov eax, 0x12340000
  mov dr0, eax
  mov eax, 0x401     ; L0: breakpoint 0 enabled
  mov dr7, eax
  mov al, 0
  out 0xf4, al
  hlt
times 0xfff0-($-$$) db 0xff
  jmp 0xf000:start
times 0x10000-($-$$) db 0xff
