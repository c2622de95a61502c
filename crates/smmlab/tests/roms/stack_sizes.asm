; Stack-size conformance ROM, run under smmlab and QEMU and compared line by line
; (tests/qemu_protected_mode.rs). Every stack instruction form runs where the operand size and
; the stack-address size differ: 32-bit code on a 16-bit stack (SS.B = 0) whose ESP has a
; non-zero upper half and whose SP wraps, then 16-bit code on a 32-bit stack above 64 KiB.
; After each step ESP (and sometimes another register) is recorded in a table; at the end the
; table and the stack memory around the wrap are printed on debugcon (port 0x402) as hex,
; then DONE, then the ROM exits through isa-debug-exit (port 0xF4).

bits 16
org 0
section .text
section .tail start=0xfff0
section .text

CODE32  equ 0x08            ; base 0xF0000, 32-bit
DATA    equ 0x10            ; flat
STK16   equ 0x18            ; base 0x20000, limit 0xFFFF, B = 0
CODE16  equ 0x20            ; base 0xF0000, 16-bit
GDT_BASE equ 0x1000
IDT_BASE equ 0x2000
TABLE   equ 0x8000          ; the records, 4 bytes each
CUR     equ 0x7f00          ; the next record's address (POPA/POPAD restore EDI)
STK16_BASE equ 0x20000

; record ESP (EDI points into the table in both code sizes: DS is flat)
%macro rec 0
  mov [edi], esp
  add edi, 4
  mov [CUR], edi
%endmacro
%macro recr 1
  mov [edi], %1
  add edi, 4
  mov [CUR], edi
%endmacro

start:
  cli
  cld
  xor ax, ax
  mov es, ax
  mov ss, ax
  mov sp, 0x7000
  mov ax, cs
  mov ds, ax
  mov si, gdt_image
  mov di, GDT_BASE
  mov cx, gdt_image_end - gdt_image
  rep movsb
  o32 lgdt [cs:gdtr]
  o32 lidt [cs:idtr]
  mov eax, cr0
  or al, 1
  mov cr0, eax
  jmp dword CODE32:pm

gdtr: dw gdt_image_end - gdt_image - 1
      dd GDT_BASE
idtr: dw 0x40 * 8 - 1
      dd IDT_BASE

bits 32
pm:
  mov ax, DATA
  mov ds, ax
  mov es, ax
  mov fs, ax
  mov gs, ax
  ; IDT 0x30: 386 interrupt gate to int30 (records ESP, IRETD); 0x31 the same for 16-bit code.
  mov eax, int30
  mov edx, eax
  and eax, 0xffff
  or eax, CODE32 << 16
  and edx, 0xffff0000
  or edx, 0x8e00
  mov [IDT_BASE + 0x30 * 8], eax
  mov [IDT_BASE + 0x30 * 8 + 4], edx
  mov eax, int31
  mov edx, eax
  and eax, 0xffff
  or eax, CODE32 << 16
  and edx, 0xffff0000
  or edx, 0x8e00
  mov [IDT_BASE + 0x31 * 8], eax
  mov [IDT_BASE + 0x31 * 8 + 4], edx
  ; clear the 16-bit stack segment's ends and the table
  mov edi, STK16_BASE
  mov ecx, 0x10000
  mov al, 0xee
  rep stosb
  mov edi, TABLE
  mov ecx, 0x400
  xor al, al
  rep stosb
  mov edi, TABLE

; ---- 32-bit code on a 16-bit stack ----
  mov ax, STK16
  mov ss, ax
  mov esp, 0x12340008
  mov eax, 0x11111111
  push eax                  ; SP 8 -> 4
  push dword 0x22222222     ; SP 4 -> 0
  rec
  push eax                  ; SP wraps to 0xFFFC, ESP's upper half kept
  rec
  pop ebx
  rec
  recr ebx
  pop ebx
  pop ecx
  rec
  push word 0x3333          ; a 2-byte push in 32-bit code
  rec
  pop dx
  rec
  push es                   ; a 32-bit push of a segment register
  rec
  pop es
  rec
  mov ebp, 0x5678abcd
  pushad
  rec
  mov eax, [STK16_BASE + 0xfff0]   ; the pushed ESP slot's neighbourhood
  recr eax
  popad
  mov edi, [CUR]
  rec
  pushfd
  rec
  popfd
  rec
  call near_sub
  rec
  push dword 0x44444444
  push dword 0x55555555
  call ret8_sub
  rec
  o16 call near16_sub       ; 2-byte return address
  rec
  push cs
  push dword .after_retf
  retf
.after_retf:
  rec
  push word CODE32
  push word .after_retf16
  o16 retf
.after_retf16:
  rec
  mov ebp, 0x5678fff0
  enter 12, 3
  rec
  recr ebp
  leave
  rec
  recr ebp
  int 0x30
  rec
  ; the pushes around the wrap, as memory shows them
  mov esi, STK16_BASE + 0xffc0
  mov ecx, 16
.dump1:
  mov eax, [esi]
  recr eax
  add esi, 4
  loop .dump1
  mov esi, STK16_BASE
  mov ecx, 4
.dump2:
  mov eax, [esi]
  recr eax
  add esi, 4
  loop .dump2

; ---- 16-bit code on a 32-bit stack above 64 KiB ----
  mov ax, DATA
  mov ss, ax
  mov esp, 0x00010004
  jmp CODE16:code16
back32:
  mov ax, DATA
  mov ss, ax
  mov esp, 0x7000
  ; print the table, 8 records a line
  mov esi, TABLE
  mov ebx, 0
.line:
  cmp esi, edi
  jae .done
  push esi
  mov esi, s_r
  call puts
  pop esi
  mov eax, ebx
  call hex16
  mov ecx, 8
.rec:
  cmp esi, edi
  jae .eol
  mov eax, [esi]
  call hex32
  add esi, 4
  loop .rec
.eol:
  call newline
  add ebx, 8
  jmp .line
.done:
  mov esi, s_done
  call puts
  call newline
  mov al, 0
  out 0xf4, al
  hlt

near_sub:
  rec
  ret
ret8_sub:
  rec
  ret 8
near16_sub:
  rec
  o16 ret
int30:
  rec
  iretd

bits 16
code16:
  mov eax, 0x66666666
  push ax                   ; ESP 0x10004 -> 0x10002: no 16-bit wrap on a 32-bit stack
  push ax
  rec
  push ax
  rec
  push dword 0x77777777
  rec
  pop edx
  pop ax
  rec
  pusha
  rec
  popa
  mov edi, [CUR]
  rec
  pushad
  rec
  popad
  mov edi, [CUR]
  rec
  pushf
  rec
  popf
  rec
  call near16
  rec
  mov ebp, 0x0001fff0
  enter 6, 2
  rec
  recr ebp
  leave
  rec
  recr ebp
  int 0x31                  ; a 386 gate from 16-bit code: a 32-bit frame
  rec
  push ds
  rec
  pop ds
  rec
  ; the words pushed below 0x10000
  mov esi, 0xffd0
  mov cx, 16
.dump:
  mov eax, [esi]
  recr eax
  add esi, 4
  loop .dump
  jmp dword CODE32:back32

near16:
  rec
  ret

bits 32
int31:
  rec
  iretd

puts:
  push eax
  push edx
  mov dx, 0x402
.n:
  mov al, [cs:esi]
  test al, al
  jz .d
  out dx, al
  inc esi
  jmp .n
.d:
  pop edx
  pop eax
  ret

newline:
  push eax
  push edx
  mov dx, 0x402
  mov al, 10
  out dx, al
  pop edx
  pop eax
  ret

hex32:
  push ecx
  mov ecx, 8
  jmp hex
hex16:
  push ecx
  mov ecx, 4
  shl eax, 16
hex:
  push eax
  push edx
  mov dx, 0x402
  push eax
  mov al, ' '
  out dx, al
  pop eax
.d:
  rol eax, 4
  push eax
  and al, 0xf
  add al, '0'
  cmp al, '9'
  jbe .o
  add al, 'A' - '0' - 10
.o:
  out dx, al
  pop eax
  loop .d
  pop edx
  pop eax
  pop ecx
  ret

s_r: db "r", 0
s_done: db "DONE", 0

gdt_image:
  dq 0
  dw 0xffff, 0x0000
  db 0x0f, 0x9a, 0x40, 0x00     ; CODE32: base 0xF0000, limit 0xFFFF, D = 1
  dw 0xffff, 0x0000
  db 0x00, 0x92, 0xcf, 0x00     ; DATA: flat
  dw 0xffff, 0x0000
  db 0x02, 0x92, 0x00, 0x00     ; STK16: base 0x20000, limit 0xFFFF, B = 0
  dw 0xffff, 0x0000
  db 0x0f, 0x9a, 0x00, 0x00     ; CODE16: base 0xF0000, limit 0xFFFF, D = 0
gdt_image_end:

section .tail
bits 16
  jmp 0xf000:start
  times 16 - ($ - $$) db 0xff
