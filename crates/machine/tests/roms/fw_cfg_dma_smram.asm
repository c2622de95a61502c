; fw_cfg DMA against closed and locked SMRAM, from ring-0 real-mode code outside SMM.
;
; An SMI handler (copied to the default SMBASE + 0x8000) first fills SMRAM with 0xA5: the A/B
; segment, and TSEG when -DTSEG=<base> is given (q35, 1 MiB). The ROM then closes and locks
; SMRAM (D_LCK) and aims fw_cfg DMA at it: (a) a 4-byte read of the signature (key 0) into
; 0xA0000 and TSEG, and a descriptor placed at 0xA0000; (b) a 4 KiB read of the 4-byte item
; (QEMU zero-fills the rest) into 0xA1000 and TSEG + 0x1000; (c) an 8-byte DMA write of chosen
; bytes to key REQ (q35: etc/smi/requested-features; pc has no writable item) read back into
; 0xA3000 and TSEG + 0x3000. The same
; transfers into ordinary RAM must still work, and (d) code that already ran at CODE_AT must
; run its new bytes once a DMA read (key CODE) overwrote them. A second SMI then compares
; SMRAM with the fill.
;
; Defines: -DQ35 (else pc), -DTSEG=<base> (q35), -DREQ=<key>, -DCODE=<key> (a fw_cfg file
; holding "mov al, 2; retf").
; Exit code (isa-debug-exit), bits: 1 the A/B segment changed, 2 TSEG changed, 4 ordinary
; 4-byte read wrong, 8 ordinary long read not zero-filled, 16 ordinary write/read-back wrong
; (pc: the write was not refused), 32 the overwritten code did not run, 64 the SMI handler did
; not run twice.
%include "common.inc"

MODE     equ 0x6000                 ; 1: fill SMRAM, 2: check it
RESULT   equ 0x6001                 ; bits 1/2 from the check
COUNT    equ 0x6002                 ; SMIs handled
DESC     equ 0x5000
CHOSEN   equ 0x5200                 ; the 8 bytes written to REQ
OUT_A    equ 0x5300                 ; ordinary targets
OUT_B    equ 0x5400
OUT_C    equ 0x5600
CODE_AT  equ 0x8000
FILL     equ 0xa5a5a5a5

; desc CONTROL, LENGTH, ADDRESS: builds the descriptor at DESC (big-endian fields)
%macro desc 3
  mov eax, %1
  bswap eax
  mov [DESC], eax
  mov eax, %2
  bswap eax
  mov [DESC + 4], eax
  mov dword [DESC + 8], 0
  mov eax, %3
  bswap eax
  mov [DESC + 12], eax
%endmacro

; fw_dma ADDRESS: starts the transfer whose descriptor is at ADDRESS (below 4 GiB)
%macro fw_dma 1
  mov dx, 0x514
  xor eax, eax
  out dx, eax
  mov dx, 0x518
  mov eax, %1
  bswap eax
  out dx, eax
%endmacro

%define SEL_READ(k)  (((k) << 16) | 0x0a)
%define SEL_WRITE(k) (((k) << 16) | 0x18)

start:
  cli
  cld
  xor ax, ax
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov sp, 0x7000
  xor bp, bp                        ; exit code bits
  mov dword [MODE], 0
  ; The SMI handler at 0x38000.
  push ds
  push cs
  pop ds
  mov si, smm_handler
  mov ax, 0x3800
  mov es, ax
  xor di, di
  mov cx, smm_handler_end - smm_handler
  rep movsb
  pop ds
  xor ax, ax
  mov es, ax
%ifdef Q35
  pci_addr 0xf840                   ; LPC PMBASE = 0x600, ACPI_EN, SMI_EN = GBL_SMI_EN | APMC_EN
  mov dx, 0xcfc
  mov eax, 0x601
  out dx, eax
  pci_addr 0xf844
  mov dx, 0xcfc
  mov al, 0x80
  out dx, al
  mov dx, 0x630
  mov eax, 0x21
  out dx, eax
  pci_addr 0x9c                     ; MCH: ESMRAMC = T_EN (1 MiB TSEG), SMRAM = G_SMRAME
  mov dx, 0xcfe
  mov al, 0x01
  out dx, al
  mov dx, 0xcfd
  mov al, 0x0a
  out dx, al
%else
  pci_addr 0x0b58                   ; PIIX4 PM 0x5B bit 1: APMC_EN
  mov dx, 0xcfc
  in eax, dx
  or eax, 0x02000000
  out dx, eax
  pci_addr 0x70                     ; PMC SMRAM (0x72) = G_SMRAME
  mov dx, 0xcfe
  mov al, 0x0a
  out dx, al
%endif
  mov byte [MODE], 1
  mov al, 0x10                      ; (ICH9 takes 2 and 3 as ACPI commands, not SMIs)
  out 0xb2, al                      ; fill SMRAM
  ; Close and lock.
%ifdef Q35
  pci_addr 0x9c
  mov dx, 0xcfd
%else
  pci_addr 0x70
  mov dx, 0xcfe
%endif
  mov al, 0x1a
  out dx, al

  ; (a) the signature into SMRAM, and a descriptor inside SMRAM.
  desc SEL_READ(0), 4, 0xa0000
  fw_dma DESC
%ifdef TSEG
  desc SEL_READ(0), 4, TSEG
  fw_dma DESC
%endif
  fw_dma 0xa0000
  ; ... and into ordinary RAM.
  mov dword [OUT_A], 0xffffffff
  desc SEL_READ(0), 4, OUT_A
  fw_dma DESC
  cmp dword [OUT_A], 'QEMU'
  jne .bad_a
  cmp dword [DESC], 0               ; control written back as 0
  je .ok_a
.bad_a:
  or bp, 4
.ok_a:

  ; (b) a read longer than the item.
  desc SEL_READ(0), 0x1000, 0xa1000
  fw_dma DESC
%ifdef TSEG
  desc SEL_READ(0), 0x1000, TSEG + 0x1000
  fw_dma DESC
%endif
  mov di, OUT_B
  mov cx, 0x40
  mov eax, 0xffffffff
  rep stosd
  desc SEL_READ(0), 0x100, OUT_B
  fw_dma DESC
  cmp dword [OUT_B], 'QEMU'
  jne .bad_b
  mov si, OUT_B + 4
  mov cx, 0x3f
.zero:
  cmp dword [si], 0
  jne .bad_b
  add si, 4
  loop .zero
  jmp .ok_b
.bad_b:
  or bp, 8
.ok_b:

  ; (c) chosen bytes through a DMA write, read back into SMRAM and into ordinary RAM.
  mov dword [CHOSEN], 'ROOT'
  mov dword [CHOSEN + 4], 'KIT!'
  desc SEL_WRITE(REQ), 8, CHOSEN
  fw_dma DESC
  mov ebx, [DESC]                   ; the control word after the write
  desc SEL_READ(REQ), 8, 0xa3000
  fw_dma DESC
%ifdef TSEG
  desc SEL_READ(REQ), 8, TSEG + 0x3000
  fw_dma DESC
%endif
%ifdef Q35
  test ebx, ebx
  jnz .bad_c
  mov dword [OUT_C], 0
  mov dword [OUT_C + 4], 0
  desc SEL_READ(REQ), 8, OUT_C
  fw_dma DESC
  cmp dword [OUT_C], 'ROOT'
  jne .bad_c
  cmp dword [OUT_C + 4], 'KIT!'
  je .ok_c
%else
  cmp ebx, 0x01000000               ; ERROR (big-endian 1): no writable item
  je .ok_c
%endif
.bad_c:
  or bp, 16
.ok_c:

  ; (d) code that ran, then overwritten by DMA, runs its new bytes.
  mov dword [CODE_AT], 0x90cb01b0   ; mov al, 1; retf
  call 0:CODE_AT
  cmp al, 1
  jne .bad_d
  desc SEL_READ(CODE), 3, CODE_AT
  fw_dma DESC
  call 0:CODE_AT
  cmp al, 2
  je .ok_d
.bad_d:
  or bp, 32
.ok_d:

  ; Check SMRAM from SMM.
  mov byte [MODE], 2
  mov al, 0x10
  out 0xb2, al
  cmp word [COUNT], 2
  je .ran
  or bp, 64
.ran:
  mov al, [RESULT]
  or ax, bp
  out 0xf4, al
.halt:
  hlt
  jmp .halt

; The SMI handler (runs at 0x3000:0x8000; data segments have base 0 and 4 GiB limits).
smm_handler:
  inc word [COUNT]
  mov eax, FILL
  cmp byte [MODE], 1
  jne .check
  mov edi, 0xa0000
  mov ecx, 0x8000
  a32 rep stosd
%ifdef TSEG
  mov edi, TSEG
  mov ecx, 0x40000
  a32 rep stosd
%endif
  rsm
.check:
  xor bl, bl
  mov edi, 0xa0000
  mov ecx, 0x8000
  a32 repe scasd
  je .ab_ok
  or bl, 1
.ab_ok:
%ifdef TSEG
  mov edi, TSEG
  mov ecx, 0x40000
  a32 repe scasd
  je .tseg_ok
  or bl, 2
.tseg_ok:
%endif
  mov [RESULT], bl
  rsm
smm_handler_end:

rom_end
