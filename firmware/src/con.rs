//! debugcon (port 0x402) output without core::fmt: strings, fixed-width hex, decimal.

use crate::io::outb;
use crate::layout::PORT_DEBUGCON;

pub fn puts(s: &str) {
    for b in s.bytes() {
        outb(PORT_DEBUGCON, b);
    }
}

/// `0x` and `digits` hex digits of `v`.
pub fn hex(v: u64, digits: u32) {
    puts("0x");
    for k in (0..digits).rev() {
        let n = ((v >> (4 * k)) & 0xf) as u8;
        outb(PORT_DEBUGCON, if n < 10 { b'0' + n } else { b'a' + n - 10 });
    }
}

pub fn hex8(v: u8) {
    hex(v as u64, 2)
}

pub fn hex16(v: u16) {
    hex(v as u64, 4)
}

pub fn hex32(v: u32) {
    hex(v as u64, 8)
}

pub fn hex64(v: u64) {
    hex(v, 16)
}

pub fn dec(mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        outb(PORT_DEBUGCON, b);
    }
}

/// A GUID in registry format (8-4-4-4-12), from its 16 bytes in memory order.
pub fn guid(g: &[u8; 16]) {
    let d1 = u32::from_le_bytes([g[0], g[1], g[2], g[3]]);
    let d2 = u16::from_le_bytes([g[4], g[5]]);
    let d3 = u16::from_le_bytes([g[6], g[7]]);
    let nib = |v: u64, digits: u32| {
        for k in (0..digits).rev() {
            let n = ((v >> (4 * k)) & 0xf) as u8;
            outb(PORT_DEBUGCON, if n < 10 { b'0' + n } else { b'a' + n - 10 });
        }
    };
    nib(d1 as u64, 8);
    puts("-");
    nib(d2 as u64, 4);
    puts("-");
    nib(d3 as u64, 4);
    puts("-");
    nib(u16::from_be_bytes([g[8], g[9]]) as u64, 4);
    puts("-");
    for &b in &g[10..] {
        nib(b as u64, 2);
    }
}
