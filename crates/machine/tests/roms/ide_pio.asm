; Drives the PIIX3 IDE controller (pc, 00:01.1) directly in real mode: enables its legacy
; ports, IDENTIFY DEVICE, READ SECTORS, WRITE SECTORS and read-back, READ SECTORS EXT,
; READ MULTIPLE, an out-of-range read (IDNF), SRST, and the empty secondary channel.
; The disk (tests/disks.rs) has SECTORS sectors; sector n starts with the word n.
; Exit code (isa-debug-exit): 0 = all good, otherwise the number of the failed check.
%include "common.inc"

%macro fail 1
  mov al, %1
  jmp fail_out
%endmacro

; wait_drq: poll status until BSY clear; exits with the status in al
%macro status 0
  mov dx, 0x1f7
  in al, dx
%endmacro

%macro outp 2
  mov dx, %1
  mov al, %2
  out dx, al
%endmacro

start:
  xor ax, ax
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov sp, 0x7000
  cld
  ; Before decode is enabled the ports float.
  mov dx, 0x1f7
  in al, dx
  cmp al, 0xff
  je .off_ok
  fail 1
.off_ok:
  pci_addr (1 << 11) | (1 << 8) | 0x04
  mov dx, 0xcfc
  mov ax, 1                       ; PCICMD.IOSE
  out dx, ax
  pci_addr (1 << 11) | (1 << 8) | 0x40
  mov dx, 0xcfc
  mov eax, 0x80008000             ; IDETIM primary and secondary: IDE decode enable
  out dx, eax

  status
  cmp al, 0x50
  je .ready
  fail 2
.ready:
  mov dx, 0x177
  in al, dx
  cmp al, 0x7f
  je .sec_ok
  fail 3
.sec_ok:
  ; IDENTIFY DEVICE
  outp 0x1f6, 0xa0
  outp 0x1f7, 0xec
  status
  cmp al, 0x58
  je .id_drq
  fail 4
.id_drq:
  mov di, 0x1000
  mov cx, 256
  mov dx, 0x1f0
  rep insw
  status
  cmp al, 0x50
  je .id_done
  fail 5
.id_done:
  cmp word [0x1000], 0x0040
  je .id_w0
  fail 6
.id_w0:
  cmp word [0x1000 + 60 * 2], SECTORS
  je .id_cap
  fail 7
.id_cap:
  ; READ SECTORS, LBA28: 2 sectors from LBA 5
  outp 0x1f2, 2
  outp 0x1f3, 5
  outp 0x1f4, 0
  outp 0x1f5, 0
  outp 0x1f6, 0xe0
  outp 0x1f7, 0x20
  mov di, 0x2000
  mov bx, 2
.rd_block:
  status
  cmp al, 0x58
  je .rd_drq
  fail 8
.rd_drq:
  mov cx, 256
  mov dx, 0x1f0
  rep insw
  dec bx
  jnz .rd_block
  cmp word [0x2000], 5
  je .rd1
  fail 9
.rd1:
  cmp word [0x2200], 6
  je .rd2
  fail 10
.rd2:
  ; WRITE SECTORS: LBA 7 gets 0xABCD words
  outp 0x1f2, 1
  outp 0x1f3, 7
  outp 0x1f6, 0xe0
  outp 0x1f7, 0x30
  status
  cmp al, 0x58
  je .wr_drq
  fail 11
.wr_drq:
  mov cx, 256
  mov dx, 0x1f0
  mov ax, 0xabcd
.wr_loop:
  out dx, ax
  loop .wr_loop
  status
  cmp al, 0x50
  je .wr_done
  fail 12
.wr_done:
  ; read it back
  outp 0x1f2, 1
  outp 0x1f3, 7
  outp 0x1f6, 0xe0
  outp 0x1f7, 0x20
  mov di, 0x3000
  mov cx, 256
  mov dx, 0x1f0
  rep insw
  cmp word [0x31fe], 0xabcd
  je .rb_ok
  fail 13
.rb_ok:
  ; READ SECTORS EXT: LBA 0x000000000123, 1 sector (high bytes first)
  outp 0x1f2, 0
  outp 0x1f3, 0
  outp 0x1f4, 0
  outp 0x1f5, 0
  outp 0x1f2, 1
  outp 0x1f3, 0x23
  outp 0x1f4, 0x01
  outp 0x1f5, 0
  outp 0x1f6, 0x40
  outp 0x1f7, 0x24
  mov di, 0x4000
  mov cx, 128
  mov dx, 0x1f0
  rep insd                        ; 32-bit PIO
  cmp word [0x4000], 0x123
  je .ext_ok
  fail 14
.ext_ok:
  ; SET MULTIPLE MODE 4, READ MULTIPLE 8 sectors from LBA 16: two DRQ blocks
  outp 0x1f2, 4
  outp 0x1f7, 0xc6
  status
  cmp al, 0x50
  je .sm_ok
  fail 15
.sm_ok:
  outp 0x1f2, 8
  outp 0x1f3, 16
  outp 0x1f4, 0
  outp 0x1f5, 0
  outp 0x1f6, 0xe0
  outp 0x1f7, 0xc4
  mov di, 0x5000
  mov cx, 4 * 256
  mov dx, 0x1f0
  rep insw
  status
  cmp al, 0x58
  je .rm_second
  fail 16
.rm_second:
  mov cx, 4 * 256
  mov dx, 0x1f0
  rep insw
  cmp word [0x5000 + 7 * 512], 23
  je .rm_ok
  fail 17
.rm_ok:
  ; Out of range: LBA = SECTORS
  outp 0x1f2, 1
  outp 0x1f3, SECTORS & 0xff
  outp 0x1f4, SECTORS >> 8
  outp 0x1f5, 0
  outp 0x1f6, 0xe0
  outp 0x1f7, 0x20
  status
  cmp al, 0x41
  je .oor_st
  fail 18
.oor_st:
  mov dx, 0x1f1
  in al, dx
  cmp al, 0x10
  je .oor_ok
  fail 19
.oor_ok:
  ; SRST: busy while set, then the signature
  outp 0x3f6, 0x06
  mov dx, 0x3f6
  in al, dx
  cmp al, 0x80
  je .srst_busy
  fail 20
.srst_busy:
  outp 0x3f6, 0x02
  mov dx, 0x3f6
  in al, dx
  cmp al, 0x50
  je .srst_ready
  fail 21
.srst_ready:
  mov dx, 0x1f2
  in al, dx
  cmp al, 1
  je .sig_ok
  fail 22
.sig_ok:
  xor al, al
fail_out:
  out 0xf4, al
  cli
  hlt

rom_end
