; Dumps every fw_cfg file on debugcon (port 0x402), then exits through isa-debug-exit (0xF4)
; or, without that device, resets through 0xCF9. Two builds:
; - default: a 64 KiB flat ROM run from the reset vector in real mode (-bios / --bios);
; - nasm -DOPTION_ROM: a legacy option ROM (0x55AA, 2 blocks, entry at offset 3) for
;   -option-rom, so that it runs after the firmware (SeaBIOS) has read the ACPI files; its
;   checksum byte (the last) is left 0 for the test to fix (SeaBIOS refuses a ROM whose bytes
;   do not sum to 0, src/optionroms.c is_valid_rom). It never returns to the firmware.
;
; fw_cfg facts (QEMU docs/specs/fw_cfg.rst, "Selector (Control) Register", "Data Register",
; "File Directory"): the 16-bit selector is written to port 0x510, item bytes are read one by
; one from port 0x511; key 0x19 is the file directory: a big-endian u32 count, then per file
; a 64-byte FWCfgFile { u32 size (BE), u16 select (BE), u16 reserved, char name[56] }.
;
; Output framing, parsed by tests/seabios.rs:
;   FWCFG-DUMP <count, 8 hex digits>
;   FILE <select, 4 hex> <size, 8 hex> <name>      once per file, in directory order,
;   D <up to 32 bytes in hex>                      followed by its contents
;   END
bits 16
org 0

%ifdef OPTION_ROM
  db 0x55, 0xaa, 2              ; signature, size in 512-byte blocks
  jmp start                     ; init entry, offset 3
%endif

FW_SEL   equ 0x510
FW_DATA  equ 0x511
CON      equ 0x402
DIR      equ 0x1000             ; the directory's entries, copied to RAM (segment 0)
COUNT    equ 0x0f00             ; u32: files left to dump
MAXFILES equ 256                ; 16 KiB of entries at most

start:
  cli
  xor ax, ax
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov sp, 0x7000
  mov ax, 0x19                  ; select the file directory
  mov dx, FW_SEL
  out dx, ax
  call read_be32
  mov [COUNT], eax
  mov si, msg_head
  call puts
  mov eax, [COUNT]
  call put_hex32
  call newline
  mov eax, [COUNT]
  cmp eax, MAXFILES
  jbe .count_ok
  mov eax, MAXFILES
.count_ok:
  mov [COUNT], eax
  shl ax, 6                     ; 64 bytes per entry
  mov cx, ax
  mov di, DIR
  mov dx, FW_DATA
.copy:
  jcxz .copied
  in al, dx
  stosb
  dec cx
  jmp .copy
.copied:
  mov bx, DIR
.entry:
  cmp dword [COUNT], 0
  je .done
  mov si, msg_file
  call puts
  mov ax, [bx + 4]              ; select, big-endian
  xchg al, ah
  push ax
  call put_hex16
  mov al, ' '
  call putc
  mov eax, [bx]                 ; size, big-endian
  bswap eax
  mov ebp, eax
  call put_hex32
  mov al, ' '
  call putc
  lea si, [bx + 8]              ; name, NUL-terminated within 56 bytes
  mov cx, 56
.name:
  lodsb
  test al, al
  jz .name_done
  call putc
  loop .name
.name_done:
  call newline
  pop ax                        ; select the file
  mov dx, FW_SEL
  out dx, ax
  mov ecx, ebp                  ; bytes left
  xor di, di                    ; bytes on the current D line
.byte:
  test ecx, ecx
  jz .file_done
  test di, di
  jnz .same_line
  mov al, 'D'
  call putc
  mov al, ' '
  call putc
.same_line:
  mov dx, FW_DATA
  in al, dx
  call put_hex8
  inc di
  cmp di, 32
  jne .next_byte
  call newline
  xor di, di
.next_byte:
  dec ecx
  jmp .byte
.file_done:
  test di, di
  jz .no_partial
  call newline
.no_partial:
  add bx, 64
  dec dword [COUNT]
  jmp .entry
.done:
  mov si, msg_end
  call puts
  xor al, al
  out 0xf4, al                  ; isa-debug-exit
  mov dx, 0xcf9                 ; no such device: hard reset
  mov al, 0x06
  out dx, al
.halt:
  hlt
  jmp .halt

; eax <- big-endian u32 from the data port
read_be32:
  mov dx, FW_DATA
  xor eax, eax
  mov cx, 4
.b:
  shl eax, 8
  in al, dx
  loop .b
  ret

; prints the NUL-terminated string at cs:si
puts:
  cs lodsb
  test al, al
  jz .e
  call putc
  jmp puts
.e:
  ret

putc:
  push dx
  mov dx, CON
  out dx, al
  pop dx
  ret

newline:
  mov al, 10
  jmp putc

put_hex32:
  push eax
  shr eax, 16
  call put_hex16
  pop eax
put_hex16:
  push ax
  mov al, ah
  call put_hex8
  pop ax
put_hex8:
  push ax
  shr al, 4
  call put_nibble
  pop ax
put_nibble:
  push ax
  and al, 0x0f
  add al, '0'
  cmp al, '9'
  jbe .p
  add al, 'a' - '9' - 1
.p:
  call putc
  pop ax
  ret

msg_head: db "FWCFG-DUMP ", 0
msg_file: db "FILE ", 0
msg_end:  db "END", 10, 0

%ifdef OPTION_ROM
times 1023-($-$$) db 0
  db 0                          ; checksum, set by the test
%else
times 0xfff0-($-$$) db 0xff
  jmp 0xf000:start
times 0x10000-($-$$) db 0xff
%endif
