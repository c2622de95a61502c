; 16-bit code keeps a 32-bit EIP (pc machine, run under smmlab and QEMU). The SMI handler at
; the default SMBASE runs 16-bit code with the 4 GiB CS limit SMM entry sets; it jumps with a
; 32-bit operand (`jmp ebp`) to CS offset 0x20000, where sequential execution must go on at
; offsets above 0xFFFF, and a 16-bit `jmp short` there must truncate EIP to 16 bits (SDM vol. 2,
; JMP: the target is ANDed with 0FFFFH when the operand size is 16). Debugcon shows "S132" on
; the right path (a not-taken JNE ends a decoded block at offset 0x20007 on the way), an "X"
; where EIP was not truncated; then RSM, "DONE" and isa-debug-exit.
bits 16
org 0
start:
  cli
  xor ax, ax
  mov ss, ax
  mov sp, 0x7000
  cld
  mov ax, cs
  mov ds, ax
  ; The handler at SMBASE + 0x8000 (0x38000).
  mov ax, 0x3800
  mov es, ax
  xor di, di
  mov si, handler
  mov cx, handler_end - handler
  rep movsb
  ; The code at CS offset 0x20000 (linear 0x50000).
  mov ax, 0x5000
  mov es, ax
  xor di, di
  mov si, far_code
  mov cx, far_code_end - far_code
  rep movsb
  ; Where the truncated jump lands: CS offset 0x000C (linear 0x3000C).
  mov ax, 0x3000
  mov es, ax
  mov di, 0x0c
  mov si, near_code
  mov cx, near_code_end - near_code
  rep movsb
  ; APMC_EN in PIIX4 PM, then the SMI.
  mov eax, 0x80000B58
  mov dx, 0xcf8
  out dx, eax
  mov dx, 0xcfc
  in eax, dx
  or eax, 0x02000000
  out dx, eax
  mov al, 0x42
  out 0xb2, al
  jmp short after_smi
after_smi:
  mov dx, 0x402
  mov si, done_msg
.p:
  lodsb
  test al, al
  jz .x
  out dx, al
  jmp .p
.x:
  mov al, 0
  out 0xf4, al
  hlt
done_msg: db 10, "DONE", 10, 0

handler:
  mov dx, 0x402
  mov al, 'S'
  out dx, al
  mov ebp, 0x20000
  jmp ebp                   ; 32-bit operand: EIP = 0x20000
handler_end:

far_code:                   ; at CS offset 0x20000
  mov al, '1'               ; sequential execution above offset 0xFFFF
  out dx, al
  cmp al, '1'
  jne .next                 ; not taken: the next instruction follows at offset 0x20007
  mov al, '3'
  out dx, al
  jmp short .next           ; 16-bit operand: EIP = (0x2000C) & 0xFFFF = 0x000C
.next:
  mov al, 'X'               ; reached only if EIP was not truncated
  out dx, al
  rsm
far_code_end:

near_code:                  ; at CS offset 0x000C
  mov al, '2'
  out dx, al
  rsm
near_code_end:

times 0xfff0-($-$$) db 0xff
  jmp 0xf000:start
times 0x10000-($-$$) db 0xff
