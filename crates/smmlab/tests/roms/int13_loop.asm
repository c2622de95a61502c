; A boot sector that reads disk sectors 100 times through INT 13h and checks them, for the
; disk boot tests (tests/disk_boot.rs). Even iterations use AH=02h (CHS read), odd ones AH=42h
; (extended read). Sector n (1..8) holds the word n at offset 0 and the byte n ^ 0A5h at 511.
; Output goes to debugcon (port 0x402); isa-debug-exit (0xF4) ends the run: 0 = all good.
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
  mov [drive], dl
  mov si, msg_start
  call print
  xor bp, bp                      ; iteration
.loop:
  mov ax, bp
  and ax, 7
  inc ax                          ; LBA 1..8
  mov [lba], ax
  mov word [0x8000], 0xffff       ; poison the buffer
  mov byte [0x81ff], 0
  test bp, 1
  jnz .ext
  mov cx, ax
  inc cx                          ; CHS: cylinder 0, head 0, sector LBA + 1
  mov ax, 0x0201
  xor dh, dh
  mov dl, [drive]
  mov bx, 0x8000
  int 0x13
  jc fail
  jmp .check
.ext:
  mov [dap_lba], ax
  mov ah, 0x42
  mov dl, [drive]
  mov si, dap
  int 0x13
  jc fail
.check:
  mov ax, [lba]
  cmp [0x8000], ax
  jne fail
  xor al, 0xa5
  cmp [0x81ff], al
  jne fail
  inc bp
  cmp bp, 100
  jb .loop
  mov si, msg_done
  call print
  mov dx, 0xf4
  xor al, al
  out dx, al
  cli
  hlt

fail:
  mov si, msg_fail
  call print
  mov dx, 0xf4
  mov al, 1
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

drive: db 0
lba: dw 0
align 4
dap:
  db 16, 0
  dw 1                            ; sectors
  dw 0x8000, 0                    ; buffer offset, segment
dap_lba:
  dq 0
msg_start: db "INT13LOOP START", 10, 0
msg_done: db "INT13LOOP DONE", 10, 0
msg_fail: db "INT13LOOP FAIL", 10, 0

times 510-($-$$) db 0
  dw 0xaa55
