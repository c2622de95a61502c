; Writes output that no newline flushes, then loops forever: for the tests that stop a run
; with a signal. On debugcon (0xE9 port 0x402) 28 bytes without a newline; on COM1 (0x3F8;
; smmlab's --serial) "ready\n", which the host flushes at once and the test waits for, then
; "tail" without a newline. Then `jmp $`. Any machine with debugcon; --serial needs pc or q35.
bits 16
org 0
start:
  cli
  mov ax, cs
  mov ds, ax
  mov dx, 0x402
  mov si, debugcon_text
  call puts
  mov dx, 0x3f8
  mov si, serial_ready
  call puts
  mov si, serial_tail
  call puts
forever:
  jmp forever

; Writes the NUL-terminated string at DS:SI to port DX.
puts:
  lodsb
  test al, al
  jz .done
  out dx, al
  jmp puts
.done:
  ret

debugcon_text: db "no newline ends this output.", 0
serial_ready: db "ready", 10, 0
serial_tail: db "tail", 0

times 0xfff0-($-$$) db 0xff
  jmp 0xf000:start
times 0x10000-($-$$) db 0xff
