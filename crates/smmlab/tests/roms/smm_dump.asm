; Differential SMM test ROM for the `pc` machine (i440FX + PIIX4), run under smmlab and QEMU.
; It enables APM SMIs (PIIX4 00:01.3 register 0x5B bit 1), installs an SMI handler at the
; default SMBASE (0x30000 + 0x8000) that prints the whole 1 KiB at SMBASE+0xFC00 as hex on
; debugcon, then sets distinctive register values and raises one SMI through port 0xB2.
; After RSM it prints the registers it sees, then exits through isa-debug-exit.
bits 16
org 0
start:
  cli
  xor ax, ax
  mov ss, ax
  mov sp, 0x7000
  ; Copy the handler to 0x38000.
  mov ax, 0x3800
  mov es, ax
  xor di, di
  mov ax, cs
  mov ds, ax
  mov si, handler
  mov cx, handler_end - handler
  cld
  rep movsb
  ; APMC_EN in PIIX4 PM.
  mov eax, 0x80000B58
  mov dx, 0xcf8
  out dx, eax
  mov dx, 0xcfc
  in eax, dx
  or eax, 0x02000000
  out dx, eax
  ; Distinctive state.
  mov ax, 0x1234
  mov ds, ax
  mov ax, 0x2345
  mov es, ax
  mov ax, 0x3456
  mov fs, ax
  mov ax, 0x4567
  mov gs, ax
  mov eax, 0x11110001
  mov ebx, 0x22220002
  mov ecx, 0x33330003
  mov edx, 0x44440004
  mov esi, 0x55550005
  mov edi, 0x66660006
  mov ebp, 0x77770007
  mov al, 0x42
  out 0xb2, al
  ; QEMU TCG takes the SMI only at the end of its translation block: end it here with a
  ; jump that changes nothing but RIP, so the two runs differ only in the saved RIP.
  jmp short after_smi
after_smi:
  ; Report EAX after RSM, then exit.
  mov ax, cs
  mov ds, ax
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
done_msg: db "DONE", 10, 0

; The SMI handler, copied to SMBASE+0x8000 and run with CS base = SMBASE.
handler:
  mov dx, 0x402
  mov al, 'S'
  out dx, al
  mov al, ' '
  out dx, al
  mov si, 0xfc00
.next:
  mov al, [cs:si]
  mov bl, al
  shr al, 4
  call .hex
  mov al, bl
  and al, 0x0f
  call .hex
  inc si
  jnz .next                 ; 0xFC00..0xFFFF, then SI wraps to 0
  mov al, 10
  out dx, al
  rsm
.hex:
  add al, '0'
  cmp al, '9'
  jbe .out
  add al, 'a' - '9' - 1
.out:
  out dx, al
  ret
handler_end:

times 0xfff0-($-$$) db 0xff
  jmp 0xf000:start
times 0x10000-($-$$) db 0xff
