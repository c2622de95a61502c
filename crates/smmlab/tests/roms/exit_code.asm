; Prints a line on debugcon and exits through isa-debug-exit with status 42.
bits 16
org 0
start:
  mov dx, 0x402
  mov si, msg
.next:
  cs lodsb
  test al, al
  jz .done
  out dx, al
  jmp .next
.done:
  mov al, 42
  out 0xf4, al
  hlt
msg: db "hello from the exit-code ROM", 10, 0
times 0xfff0-($-$$) db 0xff
  jmp 0xf000:start
times 0x10000-($-$$) db 0xff
