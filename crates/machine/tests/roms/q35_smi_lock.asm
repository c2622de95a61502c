; q35: PMBASE 0x600 + ACPI_EN, SMI_EN = GBL_SMI_EN | APMC_EN, SMI_LOCK, then try to clear
; GBL_SMI_EN, raise an APM SMI and check SMI_STS.APM_STS and its write-one-to-clear.
; Exit code bits: 1 GBL_SMI_EN stuck, 2 APM_STS set, 4 APM_STS cleared by writing one.
%include "common.inc"
start:
  cli
  xor ax, ax
  mov ds, ax
  mov ss, ax
  mov sp, 0x7000
  rsm_at_default_smbase
  pci_addr 0xf840                  ; 00:1F.0 PMBASE
  mov dx, 0xcfc
  mov eax, 0x601
  out dx, eax
  pci_addr 0xf844                  ; ACPI_CNTL
  mov dx, 0xcfc
  mov al, 0x80
  out dx, al
  mov dx, 0x630                    ; SMI_EN
  mov eax, 0x21
  out dx, eax
  pci_addr 0xf8a0                  ; GEN_PMCON_1: word read, dword write back (SeaBIOS)
  mov dx, 0xcfc
  in ax, dx
  or eax, 0x10
  and eax, 0xffff
  out dx, eax
  mov dx, 0x630
  mov eax, 0x20
  out dx, eax
  in eax, dx
  xor cx, cx
  cmp eax, 0x21
  jne .no1
  or cl, 1
.no1:
  mov al, 0x5a
  out 0xb3, al
  mov al, 0x10
  out 0xb2, al
  mov dx, 0x634                    ; SMI_STS
  in eax, dx
  test eax, 0x20
  jz .no2
  or cl, 2
.no2:
  mov eax, 0x20
  out dx, eax
  in eax, dx
  test eax, 0x20
  jnz .no4
  or cl, 4
.no4:
  mov al, cl
  out 0xf4, al
.halt:
  hlt
  jmp .halt
rom_end
