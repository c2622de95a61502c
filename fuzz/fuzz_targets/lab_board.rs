//! Arbitrary guest traffic to the q35 board with the built-in platform's hardware: port and
//! memory accesses of any size, inside and outside SMM, to the ICH9 PM/TCO/GPI registers, the
//! hardware monitor, the UHCI legacy block and its trapped ports, RCBA and its I/O traps, the
//! MCH's ECC registers, the flash and TSEG, with guest time passing. Nothing may panic.
#![no_main]

use cpu::{Access, AccessKind, Bus};
use machine::board::q35;

/// Places worth hitting; the fuzzer also gets any 16-bit port.
const PORTS: [u16; 10] = [0x600, 0x630, 0x638, 0x660, 0x295, 0x60, 0x64, 0x2f8, 0xc000, 0xcf8];
const MEMORY: [u64; 5] = [0xfed1_c000, 0xfed1_de00, 0xfffe_f000, 0x07f0_0000, 0xfee0_0000];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut b = q35::new(128 << 20, vec![0x90; 0x20000], 1_000_000);
    b.chipset.enable_lab_hardware();
    let mut now = 0u64;
    for op in data.chunks_exact(8) {
        let value = u32::from_le_bytes([op[4], op[5], op[6], op[7]]);
        let size = [1u8, 2, 4, 8][(op[3] & 3) as usize];
        let smm = op[3] & 0x80 != 0;
        let port = if op[2] & 1 == 0 { PORTS[op[1] as usize % PORTS.len()].wrapping_add(op[2] as u16 >> 1) } else { u16::from_le_bytes([op[1], op[2]]) };
        let addr = MEMORY[op[1] as usize % MEMORY.len()] + (op[2] as u64) * 4;
        match op[0] % 6 {
            0 => b.io_out(Access { addr: port as u64, size: size.min(4), kind: AccessKind::IoOut, smm }, value),
            1 => {
                b.io_in(Access { addr: port as u64, size: size.min(4), kind: AccessKind::IoIn, smm });
            }
            2 => b.write(Access { addr, size, kind: AccessKind::Write, smm }, value as u64),
            3 => {
                b.read(Access { addr, size, kind: AccessKind::Read, smm });
            }
            4 => {
                now += value as u64 % 5_000_000;
                b.set_now(now);
            }
            _ => {
                // PCI configuration through 0xCF8/0xCFC: the MCH, the LPC and the UHCI.
                let dev = [0u32, 0x1d, 0x1f][op[1] as usize % 3];
                b.io_out(Access { addr: 0xcf8, size: 4, kind: AccessKind::IoOut, smm }, 0x8000_0000 | dev << 11 | (op[2] as u32 & 0xfc));
                b.io_out(Access { addr: 0xcfc, size: size.min(4), kind: AccessKind::IoOut, smm }, value);
            }
        }
        if b.pending().has(cpu::Pending::SMI) {
            b.ack_smi();
        }
        b.events.drain();
    }
});
