//! Legacy keyboard: the board has a USB keyboard and no working i8042 path for the OS, so SMM
//! presents one. The UHCI legacy-support block (LEGSUP) raises an SMI when a HID boot report
//! arrives (USBSMIEN) and traps the OS's accesses to ports 0x60/0x64 (TRAPBY60R/W, 64R/W).
//! The handler turns reports into scan code set 1 bytes and answers the trapped reads by
//! rewriting the saved RAX, as an i8042 would answer them.

use firmware::con::{hex8, puts};
use firmware::hw::*;
use firmware::io::{inb, outb};
use firmware::layout::SmmContext;
use firmware::pci;
use firmware::savestate::{Gpr, SaveState};

struct Kbc {
    last: [u8; 8],
    queue: [u8; 64],
    head: usize,
    len: usize,
    /// The i8042 command byte (0x20/0x60): translation and interrupts as a BIOS leaves them.
    command_byte: u8,
    /// A controller command that takes a data byte on port 0x60 next.
    expect_data: u8,
}

static mut KBC: Kbc = Kbc { last: [0; 8], queue: [0; 64], head: 0, len: 0, command_byte: 0x45, expect_data: 0 };

fn kbc() -> &'static mut Kbc {
    // SAFETY: one CPU in SMM; only this module touches it.
    unsafe { &mut *core::ptr::addr_of_mut!(KBC) }
}

impl Kbc {
    fn push(&mut self, b: u8) {
        if self.len < self.queue.len() {
            self.queue[(self.head + self.len) % self.queue.len()] = b;
            self.len += 1;
        }
    }
    fn pop(&mut self) -> Option<u8> {
        (self.len > 0).then(|| {
            let b = self.queue[self.head];
            self.head = (self.head + 1) % self.queue.len();
            self.len -= 1;
            b
        })
    }
}

/// HID usage (keyboard page, HID Usage Tables 10) to scan code set 1.
fn set1(usage: u8) -> Option<u8> {
    const LETTERS: [u8; 26] = [
        0x1e, 0x30, 0x2e, 0x20, 0x12, 0x21, 0x22, 0x23, 0x17, 0x24, 0x25, 0x26, 0x32, 0x31, 0x18, 0x19, 0x10, 0x13, 0x1f, 0x14, 0x16,
        0x2f, 0x11, 0x2d, 0x15, 0x2c,
    ];
    match usage {
        0x04..=0x1d => Some(LETTERS[(usage - 0x04) as usize]),
        0x1e..=0x27 => Some(usage - 0x1e + 0x02), // 1-9, 0
        0x28 => Some(0x1c),                        // Enter
        0x29 => Some(0x01),                        // Escape
        0x2a => Some(0x0e),                        // Backspace
        0x2b => Some(0x0f),                        // Tab
        0x2c => Some(0x39),                        // Space
        0x2d => Some(0x0c),                        // -
        0x2e => Some(0x0d),                        // =
        0x2f => Some(0x1a),                        // [
        0x30 => Some(0x1b),                        // ]
        0x31 => Some(0x2b),                        // backslash
        0x33 => Some(0x27),                        // ;
        0x34 => Some(0x28),                        // '
        0x35 => Some(0x29),                        // `
        0x36 => Some(0x33),                        // ,
        0x37 => Some(0x34),                        // .
        0x38 => Some(0x35),                        // /
        _ => None,
    }
}

/// Make codes for keys in `now` not in `before`, break codes for the reverse; shift keys
/// from the modifier byte (bit 1 left shift 0x2A, bit 5 right shift 0x36).
fn translate(k: &mut Kbc, now: [u8; 8]) -> usize {
    let before = k.last;
    let mut n = 0;
    for (bit, code) in [(1u8, 0x2au8), (5, 0x36)] {
        let (was, is) = (before[0] >> bit & 1, now[0] >> bit & 1);
        if is == 1 && was == 0 {
            k.push(code);
            n += 1;
        } else if is == 0 && was == 1 {
            k.push(code | 0x80);
            n += 1;
        }
    }
    for &u in &before[2..] {
        if u != 0 && !now[2..].contains(&u) {
            if let Some(c) = set1(u) {
                k.push(c | 0x80);
                n += 1;
            }
        }
    }
    for &u in &now[2..] {
        if u != 0 && !before[2..].contains(&u) {
            if let Some(c) = set1(u) {
                k.push(c);
                n += 1;
            }
        }
    }
    k.last = now;
    n
}

/// LEGACY_USB_STS: a report arrived, or the OS touched port 0x60/0x64.
pub fn legacy_usb(_ctx: &mut SmmContext, ss: &SaveState) {
    let leg = pci::read16(UHCI_DEV, 0, UHCI_LEGSUP);
    let k = kbc();
    puts("smm: legacy-usb");
    if leg & LEGSUP_USBIRQS != 0 {
        let mut report = [0u8; 8];
        for (i, b) in report.iter_mut().enumerate() {
            *b = inb(UHCI_REPORT + i as u16);
        }
        outb(UHCI_REPORT_STS, 1);
        let n = translate(k, report);
        puts(" usb keyboard report [");
        for (i, b) in report.iter().enumerate() {
            if i > 0 {
                puts(" ");
            }
            hex8(*b);
        }
        puts("] -> ");
        firmware::con::dec(n as u64);
        puts(" scan codes queued");
    }
    if leg & LEGSUP_TRAP_STS != 0 {
        // Write the status bits back to clear them, keeping the enables.
        pci::write16(UHCI_DEV, 0, UHCI_LEGSUP, (leg & 0x00ff) | (leg & LEGSUP_TRAP_STS));
        match ss.io_info() {
            Some(io) if io.input && io.port == 0x64 => {
                // Status: OBF when a byte waits, SYS (bit 2), keyboard not inhibited (bit 4).
                let st = 0x14 | (k.len > 0) as u8;
                ss.answer_in(io, st as u32);
                puts(" i8042 emulation: in 0x64 -> ");
                hex8(st);
            }
            Some(io) if io.input && io.port == 0x60 => {
                let b = k.pop().unwrap_or(0);
                ss.answer_in(io, b as u32);
                puts(" i8042 emulation: in 0x60 -> ");
                hex8(b);
            }
            Some(io) if !io.input && io.port == 0x64 => {
                let cmd = ss.read(Gpr::Rax) as u8;
                puts(" i8042 emulation: command ");
                hex8(cmd);
                match cmd {
                    0x20 => k.push(k.command_byte),
                    0x60 => k.expect_data = cmd,
                    0xaa => k.push(0x55),
                    0xab => k.push(0x00),
                    _ => {} // 0xAD/0xAE (disable/enable keyboard) and others: accepted
                }
            }
            Some(io) if !io.input && io.port == 0x60 => {
                let b = ss.read(Gpr::Rax) as u8;
                puts(" i8042 emulation: data ");
                hex8(b);
                if core::mem::take(&mut k.expect_data) == 0x60 {
                    k.command_byte = b;
                } else {
                    // A keyboard command: acknowledge (0xFA); reset also passes its self-test.
                    k.push(0xfa);
                    if b == 0xff {
                        k.push(0xaa);
                    }
                }
            }
            _ => puts(" trap without I/O information"),
        }
    }
    puts("\n");
}
