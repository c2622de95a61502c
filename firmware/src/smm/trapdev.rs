//! Emulating hardware the board does not have: the OS expects a 16550 UART at COM2 (0x2F8);
//! the firmware traps its ports with the ICH9 I/O trap logic (IOTR0, MONITOR_STS) and answers
//! in SMM: transmitted bytes are collected into lines and logged, the line status register
//! always reads "transmitter empty", the scratch register holds what was written.

use firmware::con::{hex16, hex8, puts};
use firmware::hw::*;
use firmware::layout::SmmContext;
use firmware::savestate::{Gpr, SaveState};

struct Uart {
    line: [u8; 96],
    len: usize,
    regs: [u8; 8],
}

static mut UART: Uart = Uart { line: [0; 96], len: 0, regs: [0; 8] };

/// MONITOR_STS: an I/O trap hit.
pub fn io_trap(_ctx: &mut SmmContext, ss: &SaveState) {
    let trsr = rcba_read32(RCBA_TRSR);
    rcba_write32(RCBA_TRSR, trsr & 0xf);
    puts("smm: io-trap");
    let Some(io) = ss.io_info() else {
        return puts(" without I/O information\n");
    };
    if !(COM2..COM2 + 8).contains(&io.port) {
        puts(" port ");
        hex16(io.port);
        return puts(" not emulated\n");
    }
    // SAFETY: one CPU in SMM; only this module touches it.
    let u = unsafe { &mut *core::ptr::addr_of_mut!(UART) };
    let reg = io.port - COM2;
    puts(" com2 (emulated 16550)");
    if io.input {
        let v = match reg {
            UART_LSR => UART_LSR_THRE_TEMT,
            2 => 0x01, // IIR: no interrupt pending
            6 => 0xb0, // MSR: DCD, DSR, CTS
            UART_THR => 0,
            r => u.regs[r as usize],
        };
        ss.answer_in(io, v as u32);
        puts(" in reg ");
        hex8(reg as u8);
        puts(" -> ");
        hex8(v);
        puts("\n");
        return;
    }
    let b = ss.read(Gpr::Rax) as u8;
    if reg != UART_THR {
        u.regs[reg as usize] = b;
        puts(" out reg ");
        hex8(reg as u8);
        puts(" <- ");
        hex8(b);
        puts("\n");
        return;
    }
    if b != b'\n' && u.len < u.line.len() {
        u.line[u.len] = b;
        u.len += 1;
    }
    puts(" THR <- ");
    hex8(b);
    if b == b'\n' || u.len == u.line.len() {
        puts(" line \"");
        for &c in &u.line[..u.len] {
            firmware::io::outb(firmware::layout::PORT_DEBUGCON, if (0x20..0x7f).contains(&c) { c } else { b'?' });
        }
        puts("\"");
        u.len = 0;
    }
    puts("\n");
}
