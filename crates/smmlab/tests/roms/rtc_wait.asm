; Boot sector: waits through INT 15h AH=86h (BIOS wait, which SeaBIOS and the Bochs BIOS
; implement with the RTC periodic interrupt on IRQ 8) and through INT 15h AH=83h (event
; wait, the same interrupt setting a flag byte), prints "RTCWAIT DONE" (or FAIL) on
; debugcon 0x402 and leaves through isa-debug-exit (port 0xF4).
bits 16
org 0x7c00

start:
  cli
  xor ax, ax
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov sp, 0x7c00
  sti
  mov si, msg_start
  call print
  ; INT 15h AH=86h: wait CX:DX = 0x0001:0x0000 = 65536 microseconds.
  mov ah, 0x86
  mov cx, 0x0001
  xor dx, dx
  int 0x15
  jc fail
  ; INT 15h AH=83h AL=0: set a 50 ms event wait that sets bit 7 of [flag].
  mov byte [flag], 0
  mov ax, 0x8300
  xor cx, cx
  mov dx, 50000
  mov bx, flag
  int 0x15
  jc fail
.poll:
  hlt
  test byte [flag], 0x80
  jz .poll
  mov si, msg_done
  call print
  mov al, 0
  jmp exit
fail:
  mov si, msg_fail
  call print
  mov al, 1
exit:
  mov dx, 0xf4
  out dx, al
  cli
  hlt

print:
  mov dx, 0x402
.next:
  lodsb
  test al, al
  jz .ret
  out dx, al
  jmp .next
.ret:
  ret

flag: db 0
msg_start: db "RTCWAIT START", 10, 0
msg_done: db "RTCWAIT DONE", 10, 0
msg_fail: db "RTCWAIT FAIL", 10, 0

times 510-($-$$) db 0
  dw 0xaa55
