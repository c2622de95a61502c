; Protected-mode transfer conformance ROM, run under smmlab and QEMU and compared line by line
; (tests/qemu_differential.rs). From the reset vector it enters 32-bit protected mode and
; exercises call gates (16- and 32-bit, to ring 0 from ring 3, with parameters, and the far
; returns), the TSS I/O permission bitmap at CPL 3, and hardware task switches (CALL to a
; TSS with IRET back, JMP through a task gate, a double fault through a task gate, INT n
; through a DPL-3 task gate from ring 3, a new task whose SS is bad faulting in that task, a
; 16-bit TSS, and the TSS T bit). Each step prints one line of hex values on debugcon (port
; 0x402); the last line is DONE, then the ROM exits through isa-debug-exit (port 0xF4).
;
; Memory: GDT 0x1000, IDT 0x2000, TSSs 0x3000-0x3BFF, variables 0x900, ring-0 stack 0x70000,
; ring-3 stack 0x60000, task stacks below 0x50000. Code and data segments of ring 0 and ring
; 3 have base 0xF0000 (code) or 0 (data), so every code address printed is a ROM offset.

bits 16
org 0
section .text
section .rodata follows=.text
section .tail start=0xfff0
section .text

KCODE   equ 0x08
KDATA   equ 0x10
UCODE   equ 0x18 | 3
UDATA   equ 0x20 | 3
TSS1    equ 0x28            ; the main task
GATE32  equ 0x30            ; 386 call gate to ring 0, 2 parameters, DPL 3
GATE16  equ 0x38            ; 286 call gate to ring 0, 3 parameters, DPL 3
TSS2    equ 0x40            ; CALL target
TSS3    equ 0x48            ; JMP target through TGATE3
TGATE3  equ 0x50            ; task gate to TSS3
TSSDF   equ 0x58            ; double-fault task
TSSINT  equ 0x60            ; INT 0x41 task
TSSBAD  equ 0x68            ; a task whose SS is bad
TSSTS   equ 0x70            ; #TS task
TSS16   equ 0x78            ; a 286 TSS
TSST    equ 0x80            ; a TSS with the T bit
KDATA16 equ 0x88            ; a 16-bit data segment (the 286 task's stack)
IDT_VECTORS equ 0x42

GDT_BASE  equ 0x1000
IDT_BASE  equ 0x2000
RESUME    equ 0x900         ; where the exception handler continues
KSTACK    equ 0x70000
USTACK    equ 0x60000

; TSS addresses
T1_BASE   equ 0x3000
T2_BASE   equ 0x3400
T3_BASE   equ 0x3500
TDF_BASE  equ 0x3600
TINT_BASE equ 0x3700
TBAD_BASE equ 0x3800
TTS_BASE  equ 0x3900
T16_BASE  equ 0x3A00
TT_BASE   equ 0x3B00

%macro desc 4 ; base, limit, access, flags nibble
  dw (%2) & 0xffff
  dw (%1) & 0xffff
  db ((%1) >> 16) & 0xff
  db %3
  db (((%2) >> 16) & 0xf) | ((%4) << 4)
  db ((%1) >> 24) & 0xff
%endmacro

%macro gate 5 ; selector, offset, type, dpl, parameter count
  dw (%2) & 0xffff
  dw %1
  db %5
  db 0x80 | ((%4) << 5) | (%3)
  dw ((%2) >> 16) & 0xffff
%endmacro

; print a string literal
%macro say 1
  [section .rodata]
  %%s: db %1, 0
  __SECT__
  mov esi, %%s
  call puts
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
  jmp dword KCODE:pm

gdtr: dw gdt_image_end - gdt_image - 1
      dd GDT_BASE
idtr: dw IDT_VECTORS * 8 - 1
      dd IDT_BASE

bits 32
pm:
  mov ax, KDATA
  mov ds, ax
  mov es, ax
  mov fs, ax
  mov gs, ax
  mov ss, ax
  mov esp, KSTACK
  ; IDT: interrupt gates to the stubs; 0x41 a DPL-3 task gate.
  xor ecx, ecx
.idt:
  mov eax, ecx
  shl eax, 4
  add eax, stubs
  mov edx, eax
  and eax, 0xffff
  or eax, KCODE << 16
  and edx, 0xffff0000
  or edx, 0x8e00
  mov [IDT_BASE + ecx * 8], eax
  mov [IDT_BASE + ecx * 8 + 4], edx
  inc ecx
  cmp ecx, IDT_VECTORS
  jb .idt
  mov dword [IDT_BASE + 0x41 * 8], TSSINT << 16
  mov dword [IDT_BASE + 0x41 * 8 + 4], 0xe500
  ; The main TSS: SS0:ESP0, and an I/O bitmap that allows only ports 0x402-0x403.
  mov edi, T1_BASE
  mov ecx, 0x100
  xor al, al
  rep stosb
  mov dword [T1_BASE + 4], KSTACK
  mov dword [T1_BASE + 8], KDATA
  mov word [T1_BASE + 0x66], 0x68
  mov edi, T1_BASE + 0x68
  mov ecx, 0x82
  mov al, 0xff
  rep stosb
  and byte [T1_BASE + 0x68 + 0x80], 0xf3
  mov ax, TSS1
  ltr ax

; ---- 1. 386 call gate from ring 3 with two parameters, and RETF 8 back ----
  mov dword [RESUME], after_iopb
  call to_ring3
  push dword 0x11111111
  push dword 0x22222222
  call (GATE32 | 3):0
ret32:
  say "ret32"
  mov eax, cs
  call hex16
  mov eax, ds
  call hex16
  mov eax, es
  call hex16
  mov eax, esp
  call hex32
  call newline
; ---- 2. 286 call gate from ring 3 with three word parameters ----
  push word 0x3333
  push word 0x4444
  push word 0x5555
  call (GATE16 | 3):0
ret16:
  say "ret16"
  mov eax, cs
  call hex16
  mov eax, esp
  call hex32
  call newline
; ---- 3. I/O bitmap at CPL 3 (IOPL 0): port 0x402 allowed above, port 0x80 denied ----
  mov al, 0x55
  out 0x80, al
  say "iopb not enforced"
  call newline
  jmp after_iopb

gate32_entry:
  say "gate32"
  mov eax, cs
  call hex16
  mov eax, ss
  call hex16
  mov eax, esp
  call hex32
  mov ebx, 0
.f:
  mov eax, [esp + ebx * 4]
  call hex32
  inc ebx
  cmp ebx, 6
  jb .f
  call newline
  mov ax, KDATA
  mov ds, ax                ; DPL 0: nulled by the return to ring 3
  retf 8

gate16_entry:
  say "gate16"
  mov eax, cs
  call hex16
  mov eax, esp
  call hex32
  mov ebx, 0
.f:
  movzx eax, word [esp + ebx * 2]
  call hex16
  inc ebx
  cmp ebx, 7
  jb .f
  call newline
  o16 retf 6

after_iopb:
  call ring0_segments
; ---- 4. CALL to a TSS, IRET back ----
  mov edi, T2_BASE
  mov eax, task2
  mov ebx, 0x4f000
  call make_tss
  mov ebx, 0xabcd1234
  call TSS2:0
call_back:
  say "task-back"
  mov eax, ebx
  call hex32
  pushfd
  pop eax
  and eax, 0x4000
  call hex32
  mov eax, TSS1
  call tss_type
  mov eax, TSS2
  call tss_type
  mov eax, [T2_BASE + 0x20]
  call hex32
  call newline
; ---- 5. JMP through a task gate, JMP back ----
  mov edi, T3_BASE
  mov eax, task3
  mov ebx, 0x4e000
  call make_tss
  jmp TGATE3:0
jmp_back:
  say "jmp-back"
  str ax
  call hex16
  mov eax, TSS1
  call tss_type
  mov eax, TSS3
  call tss_type
  call newline
; ---- 6. A double fault through a task gate ----
  mov edi, TDF_BASE
  mov eax, df_task
  mov ebx, 0x4d000
  call make_tss
  mov dword [IDT_BASE + 8 * 8], TSSDF << 16
  mov dword [IDT_BASE + 8 * 8 + 4], 0x8500
  and byte [IDT_BASE + 13 * 8 + 5], 0x7f   ; #GP's gate not present: #GP, #NP, #DF
  mov ax, 0xfff8            ; past the GDT limit: #GP(0xFFF8)
df_fault:
  mov ds, ax
  say "no double fault"
  call newline
df_back:
  call ring0_segments
  or byte [IDT_BASE + 13 * 8 + 5], 0x80
  say "df-back"
  str ax
  call hex16
  mov eax, TSS1
  call tss_type
  mov eax, TSSDF
  call tss_type
  call newline
; ---- 7. INT 0x41 from ring 3 through a DPL-3 task gate ----
  mov edi, TINT_BASE
  mov eax, int_task
  mov ebx, 0x4c000
  call make_tss
  mov dword [RESUME], after_int
  call to_ring3
  mov ebx, 0x77777777
  int 0x41
  say "int-back"
  mov eax, cs
  call hex16
  mov eax, ebx
  call hex32
  mov eax, esp
  call hex32
  call newline
  int 0x20                  ; back to ring 0 through the exception path
after_int:
  call ring0_segments
; ---- 8. A new task whose SS has RPL 3: #TS in the new task, through a task gate ----
  mov edi, TBAD_BASE
  mov eax, task2
  mov ebx, 0x4b000
  call make_tss
  mov word [TBAD_BASE + 0x50], UDATA
  mov edi, TTS_BASE
  mov eax, ts_task
  mov ebx, 0x4a000
  call make_tss
  mov dword [IDT_BASE + 10 * 8], TSSTS << 16
  mov dword [IDT_BASE + 10 * 8 + 4], 0x8500
ts_jmp:
  jmp TSSBAD:0
ts_back:
  say "ts-back"
  str ax
  call hex16
  mov eax, TSSBAD
  call tss_type
  mov eax, [TBAD_BASE + 0x20]
  call hex32
  movzx eax, word [TBAD_BASE + 0x50]
  call hex16
  mov eax, task2            ; the new task's entry point
  call hex32
  mov eax, ts_jmp           ; the JMP that switched to it
  call hex32
  call newline
; ---- 9. CALL to a 286 TSS ----
  mov edi, T16_BASE
  mov ecx, 0x2c
  xor al, al
  rep stosb
  mov word [T16_BASE + 0x0e], task16
  mov word [T16_BASE + 0x10], 2
  mov word [T16_BASE + 0x12], 0x1230        ; AX
  mov word [T16_BASE + 0x14], 0x1231        ; CX
  mov word [T16_BASE + 0x1a], 0xf000        ; SP
  mov word [T16_BASE + 0x22], KDATA         ; ES
  mov word [T16_BASE + 0x24], KCODE         ; CS (a 32-bit code segment)
  mov word [T16_BASE + 0x26], KDATA16       ; SS: SP wraps within 16 bits
  mov word [T16_BASE + 0x28], KDATA         ; DS
  mov eax, 0xa5a50000       ; a 16-bit TSS leaves the upper halves undefined: the CPU model decides
  mov ecx, 0x5a5a0000
  call TSS16:0
  say "t16-back"
  mov eax, TSS16
  call tss_type
  movzx eax, word [T16_BASE]
  call hex16
  movzx eax, word [T16_BASE + 0x0e]
  call hex16
  movzx eax, word [T16_BASE + 0x12]
  call hex16
  call newline
; ---- 10. The T bit: #DB before the new task's first instruction ----
  mov edi, TT_BASE
  mov eax, t_task
  mov ebx, 0x49000
  call make_tss
  mov word [TT_BASE + 0x64], 1
  mov dword [RESUME], t_resume
  say "t-entry"
  mov eax, t_task
  call hex32
  call newline
  jmp TSST:0
t_back:
  say "t-back"
  str ax
  call hex16
  call newline
  say "DONE"
  call newline
  mov al, 0
  out 0xf4, al
  hlt

t_resume:
  ; in task TSST after its #DB (or its first instruction): back to the main task
  jmp TSS1:0

t_task:
  say "t-task no trap"
  call newline
  jmp TSS1:0

task2:
  say "task2"
  str ax
  call hex16
  pushfd
  pop eax
  and eax, 0x4000
  call hex32
  movzx eax, word [T2_BASE]
  call hex16
  mov eax, TSS1
  call tss_type
  mov eax, TSS2
  call tss_type
  mov eax, ebx
  call hex32
  call newline
  mov ebx, 0x5555aaaa
  iretd
  say "task2 again"
  call newline
  hlt

task3:
  say "task3"
  str ax
  call hex16
  pushfd
  pop eax
  and eax, 0x4000
  call hex32
  movzx eax, word [T3_BASE]
  call hex16
  mov eax, TSS1
  call tss_type
  mov eax, TSS3
  call tss_type
  call newline
  mov dword [T1_BASE + 0x20], jmp_back
  jmp TSS1:0

df_task:
  say "df-task"
  pop eax
  call hex32
  str ax
  call hex16
  movzx eax, word [TDF_BASE]
  call hex16
  mov eax, [T1_BASE + 0x20]
  call hex32
  pushfd
  pop eax
  and eax, 0x4000
  call hex32
  call newline
  mov dword [T1_BASE + 0x20], df_back
  iretd

int_task:
  say "int-task"
  str ax
  call hex16
  mov eax, esp
  call hex32
  movzx eax, word [TINT_BASE]
  call hex16
  movzx eax, word [T1_BASE + 0x4c]
  call hex16
  mov eax, [T1_BASE + 0x38]
  call hex32
  call newline
  iretd

ts_task:
  say "ts-task"
  pop eax
  call hex32
  str ax
  call hex16
  movzx eax, word [TTS_BASE]
  call hex16
  call newline
  mov dword [T1_BASE + 0x20], ts_back
  jmp TSS1:0

task16:
  say "task16"
  call hex32                ; EAX as the 286 TSS left it
  mov eax, ecx
  call hex32
  mov eax, esp
  call hex32
  mov eax, fs
  call hex16
  movzx eax, word [T16_BASE]
  call hex16
  call newline
  mov ax, 0xbeef
  iretd

; Drops to ring 3 at the caller's return address with ESP = USTACK, DS = ES = UDATA, IOPL 0.
to_ring3:
  pop eax
  push dword UDATA
  push dword USTACK
  push dword 0x002
  push dword UCODE
  push eax
  mov ax, UDATA
  mov ds, ax
  mov es, ax
  mov fs, ax
  mov gs, ax
  iretd

ring0_segments:
  pop eax
  mov bx, KDATA
  mov ds, bx
  mov es, bx
  mov fs, bx
  mov gs, bx
  mov ss, bx
  mov esp, KSTACK
  jmp eax

; EDI = TSS base, EAX = EIP, EBX = ESP: a 32-bit ring-0 task with flat data.
make_tss:
  push edi
  push eax
  mov ecx, 0x68
  xor al, al
  rep stosb
  pop eax
  pop edi
  mov [edi + 0x20], eax
  mov dword [edi + 0x24], 2
  mov [edi + 0x38], ebx
  mov word [edi + 0x48], KDATA
  mov word [edi + 0x4c], KCODE
  mov word [edi + 0x50], KDATA
  mov word [edi + 0x54], KDATA
  mov word [edi + 0x58], KDATA
  mov word [edi + 0x5c], KDATA
  mov word [edi + 0x66], 0x68
  ret

; Prints the type nibble of the TSS descriptor selected by EAX.
tss_type:
  lar eax, eax
  shr eax, 8
  and eax, 0xf
  jmp hex16

; The exception stubs: vector v at stubs + 16 v pushes (a zero error code and) v.
exc_common:
  say "X"
  mov eax, [esp]
  call hex16
  mov eax, [esp + 4]
  call hex32
  mov eax, [esp + 8]
  call hex32
  mov eax, [esp + 12]
  call hex16
  call newline
  jmp [ss:RESUME]            ; DS may be null here (a fault at ring 3)

; Prints the NUL-terminated string at ESI (through DS).
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

; Prints " " then EAX as 8 (hex32) or 4 (hex16) hex digits.
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

align 16
stubs:
%assign v 0
%rep IDT_VECTORS
  align 16
  %if v == 8 || (v >= 10 && v <= 14) || v == 17
    push byte v
  %else
    push byte 0
    push byte v
  %endif
  jmp exc_common
%assign v v + 1
%endrep

gdt_image:
  dq 0
  desc 0xf0000, 0xffff, 0x9a, 0x4     ; KCODE: ring 0, base 0xF0000, 32-bit
  desc 0, 0xfffff, 0x92, 0xc          ; KDATA
  desc 0xf0000, 0xffff, 0xfa, 0x4     ; UCODE: ring 3
  desc 0, 0xfffff, 0xf2, 0xc          ; UDATA
  desc T1_BASE, 0x68 + 0x82 - 1, 0x89, 0
  gate KCODE, gate32_entry - $$, 0xc, 3, 2
  gate KCODE, gate16_entry - $$, 0x4, 3, 3
  desc T2_BASE, 0x67, 0x89, 0
  desc T3_BASE, 0x67, 0x89, 0
  gate TSS3, 0, 0x5, 0, 0
  desc TDF_BASE, 0x67, 0x89, 0
  desc TINT_BASE, 0x67, 0x89, 0
  desc TBAD_BASE, 0x67, 0x89, 0
  desc TTS_BASE, 0x67, 0x89, 0
  desc T16_BASE, 0x2b, 0x81, 0
  desc TT_BASE, 0x67, 0x89, 0
  desc 0, 0xffff, 0x92, 0x0           ; KDATA16
gdt_image_end:

section .tail
bits 16
  jmp 0xf000:start
  times 16 - ($ - $$) db 0xff
