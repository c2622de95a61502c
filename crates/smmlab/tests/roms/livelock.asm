; Points the #UD vector at a UD2: every delivery faults again and no instruction ever retires
; after the set-up. The emulator must end the run with a clear reason, not hang.
bits 16
org 0
start:
  xor ax, ax
  mov ds, ax
  mov ax, 0x1000         ; a stack segment away from the IVT, so the endless pushes of the
  mov ss, ax             ; fault frames wrap inside it and never change the vector
  mov sp, 0x7000
  mov word [6*4], ud_here
  mov word [6*4+2], 0xf000
ud_here:
  ud2
times 0xfff0-($-$$) db 0xff
  jmp 0xf000:start
times 0x10000-($-$$) db 0xff
