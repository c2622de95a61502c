; SMM that does not give the CPU back, for the pc machine (i440FX + PIIX4). It enables APM
; SMIs (PIIX4 PM 00:01.3, register 0x58 bit 25), copies an SMI handler to the default
; SMBASE's entry (0x30000 + 0x8000), raises one SMI through port 0xB2, then counts in BX
; forever (the work the SMIs take the CPU from).
; Default: the handler loops (jmp $) and never reaches RSM: stuck in SMM.
; -DSTORM: the handler raises another APM SMI, then RSM; that SMI, latched while in SMM, is
; taken right after RSM, and so on: an SMI storm.
bits 16
org 0
start:
  cli
  xor ax, ax
  mov ss, ax
  mov sp, 0x7000
  mov ax, 0x3800
  mov es, ax
  xor di, di
  mov ax, cs
  mov ds, ax
  mov si, handler
  mov cx, handler_end - handler
  cld
  rep movsb
  mov eax, 0x80000B58
  mov dx, 0xcf8
  out dx, eax
  mov dx, 0xcfc
  in eax, dx
  or eax, 0x02000000
  out dx, eax
  mov al, 0x01
  out 0xb2, al
work:
  inc bx
  jmp work

; Copied to SMBASE + 0x8000 (position-independent).
handler:
%ifdef STORM
  mov al, 0x01
  out 0xb2, al
  rsm
%else
  jmp $
%endif
handler_end:

times 0xfff0-($-$$) db 0xff
  jmp 0xf000:start
times 0x10000-($-$$) db 0xff
