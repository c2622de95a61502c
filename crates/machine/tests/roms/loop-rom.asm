; Copy of the shared benchmark ROM (/work/shared/bench/loop-rom.asm), kept here so the
; machine tests do not depend on files outside the repository.
; A 64 KiB flat ROM for comparing x86 emulators on the same work.
; It needs no BIOS: the reset vector jumps to `start`, which runs in real mode.
;   -DCOUNT=N   iterations of the measured loop
;   -DSMI       each iteration writes the APM command port 0xB2, raising one SMI;
;               the SMI handler at the default SMBASE (0x30000 + 0x8000) is a bare RSM.
;               SMIs from port 0xB2 are enabled through PIIX4 PM (00:01.3) register 0x5B bit 1.
;   otherwise   each iteration runs a 7-instruction ALU and memory loop body.
; At the end it writes 0 to port 0xF4 (QEMU's isa-debug-exit) and then the string
; "Shutdown" to port 0x8900 (Bochs), and halts.
bits 16
org 0
start:
  cli
  xor ax, ax
  mov ds, ax
  mov ss, ax
  mov sp, 0x7000
%ifdef SMI
  mov ax, 0x3800
  mov es, ax
  mov word [es:0], 0xAA0F          ; RSM at 0x38000
  mov eax, 0x80000B58              ; PCI 00:01.3, dword at 0x58
  mov dx, 0xcf8
  out dx, eax
  mov dx, 0xcfc
  in eax, dx
  or eax, 0x02000000               ; 0x5B bit 1: APMC_EN
  out dx, eax
%endif
  mov ecx, COUNT
  mov si, 0x1000
  test ecx, ecx
  jz done
body:
%ifdef SMI
  mov al, 0x01
  out 0xb2, al
  dec ecx
  jnz body
%else
  add eax, ebx
  xor ebx, eax
  mov [si], eax
  add si, 4
  and si, 0x1ffc
  dec ecx
  jnz body
%endif
done:
  mov al, 0
  out 0xf4, al
  mov dx, 0x8900
  mov si, shutdown
.next:
  cs lodsb
  test al, al
  jz .halt
  out dx, al
  jmp .next
.halt:
  hlt
  jmp .halt
shutdown: db "Shutdown", 0
times 0xfff0-($-$$) db 0xff
  jmp 0xf000:start
times 0x10000-($-$$) db 0xff
