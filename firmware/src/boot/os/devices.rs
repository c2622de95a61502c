//! The OS's drivers for the devices SMM emulates: a 16550 at COM2 (polled transmit) and the
//! i8042 keyboard (polled on every timer tick, scan code set 1).

use super::intr;
use firmware::con::{dec, puts};
use firmware::hw::{COM2, UART_LSR, UART_SCR, UART_THR};
use firmware::io::{inb, outb, rdtsc};

/// Whether a UART answers at COM2 (the scratch-register test Linux's 8250 driver also uses).
pub fn com2_present() -> bool {
    outb(COM2 + UART_SCR, 0x5a);
    let a = inb(COM2 + UART_SCR);
    outb(COM2 + UART_SCR, 0xa5);
    let b = inb(COM2 + UART_SCR);
    a == 0x5a && b == 0xa5
}

/// Sends `s` on COM2, waiting for THRE before every byte; returns the bytes sent.
pub fn com2_write(s: &[u8]) -> usize {
    let mut sent = 0;
    for &c in s {
        let mut spins = 0;
        while inb(COM2 + UART_LSR) & 0x20 == 0 {
            spins += 1;
            if spins > 1000 {
                return sent;
            }
        }
        outb(COM2 + UART_THR, c);
        sent += 1;
    }
    sent
}

/// Scan code set 1 make codes to ASCII (unshifted, shifted).
fn ascii(code: u8, shift: bool) -> Option<u8> {
    const ROW: &[(u8, u8, u8)] = &[
        (0x02, b'1', b'!'), (0x03, b'2', b'@'), (0x04, b'3', b'#'), (0x05, b'4', b'$'), (0x06, b'5', b'%'), (0x07, b'6', b'^'),
        (0x08, b'7', b'&'), (0x09, b'8', b'*'), (0x0a, b'9', b'('), (0x0b, b'0', b')'), (0x0c, b'-', b'_'), (0x0d, b'=', b'+'),
        (0x10, b'q', b'Q'), (0x11, b'w', b'W'), (0x12, b'e', b'E'), (0x13, b'r', b'R'), (0x14, b't', b'T'), (0x15, b'y', b'Y'),
        (0x16, b'u', b'U'), (0x17, b'i', b'I'), (0x18, b'o', b'O'), (0x19, b'p', b'P'), (0x1a, b'[', b'{'), (0x1b, b']', b'}'), (0x1e, b'a', b'A'), (0x1f, b's', b'S'),
        (0x20, b'd', b'D'), (0x21, b'f', b'F'), (0x22, b'g', b'G'), (0x23, b'h', b'H'), (0x24, b'j', b'J'), (0x25, b'k', b'K'),
        (0x26, b'l', b'L'), (0x27, b';', b':'), (0x28, b'\'', b'"'), (0x29, b'`', b'~'), (0x2b, b'\\', b'|'), (0x2c, b'z', b'Z'), (0x2d, b'x', b'X'), (0x2e, b'c', b'C'), (0x2f, b'v', b'V'), (0x30, b'b', b'B'),
        (0x31, b'n', b'N'), (0x32, b'm', b'M'), (0x33, b',', b'<'), (0x34, b'.', b'>'), (0x35, b'/', b'?'), (0x39, b' ', b' '),
    ];
    ROW.iter().find(|r| r.0 == code).map(|r| if shift { r.2 } else { r.1 })
}

/// Reads a line from the keyboard: polls the i8042 once per timer tick until Enter or until
/// `timeout_ms` elapse. Returns the number of bytes put in `line`.
pub fn read_line(line: &mut [u8], timeout_ms: u64) -> usize {
    let (mut n, mut shift, mut polls) = (0usize, false, 0u64);
    let t0 = intr::ticks();
    let tsc0 = rdtsc();
    while intr::ticks() - t0 < timeout_ms {
        intr::wait_for_interrupt();
        polls += 1;
        while inb(0x64) & 1 != 0 {
            let code = inb(0x60);
            match code {
                0x2a | 0x36 => shift = true,
                0xaa | 0xb6 => shift = false,
                0x1c => {
                    puts("os: keyboard: ");
                    dec(polls);
                    puts(" polls of the i8042 (each one an SMI), ");
                    dec((rdtsc() - tsc0) / 1_000_000);
                    puts(" M TSC ticks\n");
                    return n;
                }
                0x0e => n = n.saturating_sub(1),
                c if c & 0x80 == 0 => {
                    if let Some(a) = ascii(c, shift) {
                        if n < line.len() {
                            line[n] = a;
                            n += 1;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    puts("os: keyboard: no Enter within the timeout\n");
    n
}
