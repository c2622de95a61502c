//! The demonstration ROM `smmlab run` boots when no `--bios` is given: 16-bit real-mode code,
//! assembled here byte by byte, that prints to debugcon, runs an ALU and memory loop, and exits
//! through isa-debug-exit with status 0.

const ITERATIONS: u32 = 1_000_000;

/// A tiny emitter with backward labels and forward rel8 fix-ups.
struct Asm {
    code: Vec<u8>,
}

impl Asm {
    fn here(&self) -> usize {
        self.code.len()
    }
    fn b(&mut self, bytes: &[u8]) {
        self.code.extend_from_slice(bytes);
    }
    fn rel8_to(&mut self, op: u8, target: usize) {
        let rel = target as isize - (self.here() as isize + 2);
        self.b(&[op, rel as i8 as u8]);
    }
    /// Emits a rel8 jump with a placeholder; returns where to patch.
    fn rel8_fwd(&mut self, op: u8) -> usize {
        self.b(&[op, 0]);
        self.here() - 1
    }
    fn patch_here(&mut self, at: usize) {
        self.code[at] = (self.here() - (at + 1)) as u8;
    }
}

/// Builds the 64 KiB ROM image.
pub fn build() -> Vec<u8> {
    let mut a = Asm { code: Vec::new() };
    let msg1 = b"smmlab: built-in demonstration ROM, real mode\n\0";
    let msg2 = b"smmlab: ALU and memory loop finished, exiting with status 0\n\0";
    // start:
    a.b(&[0xfa]); // cli
    a.b(&[0x31, 0xc0]); // xor ax, ax
    a.b(&[0x8e, 0xd8]); // mov ds, ax
    a.b(&[0x8e, 0xd0]); // mov ss, ax
    a.b(&[0xbc, 0x00, 0x70]); // mov sp, 0x7000
    a.b(&[0xbe, 0, 0]); // mov si, msg1 (patched)
    let msg1_ref = a.here() - 2;
    a.b(&[0xe8, 0, 0]); // call print (patched)
    let call1 = a.here() - 2;
    a.b(&[0x66, 0xb9]); // mov ecx, ITERATIONS
    a.b(&ITERATIONS.to_le_bytes());
    a.b(&[0x66, 0x31, 0xc0]); // xor eax, eax
    a.b(&[0x66, 0xbb, 1, 0, 0, 0]); // mov ebx, 1
    a.b(&[0xbe, 0x00, 0x10]); // mov si, 0x1000
    let body = a.here();
    a.b(&[0x66, 0x01, 0xd8]); // add eax, ebx
    a.b(&[0x66, 0x31, 0xc3]); // xor ebx, eax
    a.b(&[0x66, 0x89, 0x04]); // mov [si], eax
    a.b(&[0x83, 0xc6, 0x04]); // add si, 4
    a.b(&[0x81, 0xe6, 0xfc, 0x1f]); // and si, 0x1ffc
    a.b(&[0x66, 0x49]); // dec ecx
    a.rel8_to(0x75, body); // jnz body
    a.b(&[0xbe, 0, 0]); // mov si, msg2 (patched)
    let msg2_ref = a.here() - 2;
    a.b(&[0xe8, 0, 0]); // call print
    let call2 = a.here() - 2;
    a.b(&[0xb0, 0x00, 0xe6, 0xf4]); // mov al, 0; out 0xf4, al
    let halt = a.here();
    a.b(&[0xf4]); // hlt
    a.rel8_to(0xeb, halt); // jmp halt
    // print: CS:SI -> debugcon, until NUL.
    let print = a.here();
    a.b(&[0xba, 0x02, 0x04]); // mov dx, 0x402
    let next = a.here();
    a.b(&[0x2e, 0xac]); // cs lodsb
    a.b(&[0x84, 0xc0]); // test al, al
    let jz = a.rel8_fwd(0x74); // jz done
    a.b(&[0xee]); // out dx, al
    a.rel8_to(0xeb, next); // jmp next
    a.patch_here(jz);
    a.b(&[0xc3]); // ret
    let m1 = a.here();
    a.b(msg1);
    let m2 = a.here();
    a.b(msg2);
    for (at, target) in [(call1, print), (call2, print)] {
        let rel = (target as isize - (at as isize + 2)) as i16;
        a.code[at..at + 2].copy_from_slice(&rel.to_le_bytes());
    }
    a.code[msg1_ref..msg1_ref + 2].copy_from_slice(&(m1 as u16).to_le_bytes());
    a.code[msg2_ref..msg2_ref + 2].copy_from_slice(&(m2 as u16).to_le_bytes());
    let mut rom = vec![0xffu8; 0x10000];
    rom[..a.code.len()].copy_from_slice(&a.code);
    // Reset vector at F000:FFF0: jmp far F000:0000.
    rom[0xfff0..0xfff5].copy_from_slice(&[0xea, 0x00, 0x00, 0x00, 0xf0]);
    rom
}

#[cfg(test)]
mod tests {
    #[test]
    fn demo_rom_is_64k_with_a_reset_vector() {
        let r = super::build();
        assert_eq!(r.len(), 0x10000);
        assert_eq!(r[0xfff0], 0xea);
    }
}
