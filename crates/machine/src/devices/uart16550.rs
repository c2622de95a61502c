//! A 16550A UART (COM1 at 0x3F8 on PC boards), transmit side only: nothing is ever
//! received. Register map from the TI/National PC16550D datasheet (SNLS378): offset 0 =
//! RBR/THR (DLL when LCR.DLAB), 1 = IER (DLM when DLAB), 2 = IIR (read) / FCR (write),
//! 3 = LCR, 4 = MCR, 5 = LSR, 6 = MSR, 7 = SCR. Transmitted bytes go to `sink` at once, so
//! the transmitter is always empty (LSR.THRE | LSR.TEMT). In loopback (MCR bit 4) bytes are
//! not sent and MSR reflects MCR's outputs.

use super::{ones, PortDevice};
use crate::clock::Ticks;
use std::io::Write;

/// RBR (read) / THR (write); with DLAB, the divisor latch low byte.
pub const UART_RBR_THR: u16 = 0;
/// Interrupt enable; with DLAB, the divisor latch high byte.
pub const UART_IER: u16 = 1;
/// IIR (read) / FCR (write).
pub const UART_IIR_FCR: u16 = 2;
/// Line control.
pub const UART_LCR: u16 = 3;
/// Modem control.
pub const UART_MCR: u16 = 4;
/// Line status.
pub const UART_LSR: u16 = 5;
/// Modem status.
pub const UART_MSR: u16 = 6;
/// Scratch.
pub const UART_SCR: u16 = 7;
/// LCR.DLAB: divisor latch access.
pub const LCR_DLAB: u8 = 0x80;
/// IER.ETBEI: transmitter-empty interrupt enable.
pub const IER_ETBEI: u8 = 0x02;
/// IIR: no interrupt pending.
pub const IIR_NO_INT: u8 = 0x01;
/// IIR: transmitter holding register empty.
pub const IIR_THRE: u8 = 0x02;
/// IIR: FIFOs enabled (bits 7:6).
pub const IIR_FIFO_ENABLED: u8 = 0xc0;
/// FCR: FIFO enable.
pub const FCR_FIFO_ENABLE: u8 = 0x01;
/// MCR.OUT2: gates the interrupt to the PIC.
pub const MCR_OUT2: u8 = 0x08;
/// MCR.LOOP: loopback.
pub const MCR_LOOP: u8 = 0x10;
/// LSR.THRE: the transmit holding register is empty.
pub const LSR_THRE: u8 = 0x20;
/// LSR.TEMT: the transmitter is empty.
pub const LSR_TEMT: u8 = 0x40;

/// The UART.
#[derive(Default)]
pub struct Uart16550 {
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    fcr: u8,
    dll: u8,
    dlm: u8,
    /// THR-empty interrupt pending (cleared by reading IIR or writing THR).
    thre_pending: bool,
    /// Everything transmitted.
    pub output: Vec<u8>,
    /// Where transmitted bytes are copied as they are sent, if anywhere.
    pub sink: Option<Box<dyn Write>>,
    /// Text whose transmission ends the run (`--stop-on-serial`); empty for none.
    pub stop_text: Vec<u8>,
    /// Whether [`Uart16550::stop_text`] has been transmitted.
    pub stop_text_seen: bool,
}

impl Uart16550 {
    /// IRQ line level (IRQ 4 for COM1): an enabled interrupt is pending and OUT2 gates it.
    pub fn irq(&self) -> bool {
        self.mcr & MCR_OUT2 != 0 && self.ier & IER_ETBEI != 0 && self.thre_pending
    }

    /// Flushes the sink.
    pub fn flush(&mut self) {
        if let Some(s) = self.sink.as_mut() {
            let _ = s.flush();
        }
    }

    fn transmit(&mut self, b: u8) {
        self.thre_pending = true;
        if self.mcr & MCR_LOOP != 0 {
            return;
        }
        self.output.push(b);
        if !self.stop_text.is_empty() && self.output.ends_with(&self.stop_text) {
            self.stop_text_seen = true;
        }
        if let Some(s) = self.sink.as_mut() {
            let _ = s.write_all(&[b]);
            if b == b'\n' {
                let _ = s.flush();
            }
        }
    }
}

impl PortDevice for Uart16550 {
    fn read(&mut self, offset: u16, size: u8, _now: Ticks) -> u32 {
        let dlab = self.lcr & LCR_DLAB != 0;
        let v = match offset {
            UART_RBR_THR if dlab => self.dll,
            UART_RBR_THR => 0,
            UART_IER if dlab => self.dlm,
            UART_IER => self.ier,
            UART_IIR_FCR => {
                let fifo = if self.fcr & FCR_FIFO_ENABLE != 0 { IIR_FIFO_ENABLED } else { 0 };
                if self.ier & IER_ETBEI != 0 && self.thre_pending {
                    self.thre_pending = false;
                    fifo | IIR_THRE
                } else {
                    fifo | IIR_NO_INT
                }
            }
            UART_LCR => self.lcr,
            UART_MCR => self.mcr,
            UART_LSR => LSR_THRE | LSR_TEMT,
            UART_MSR if self.mcr & MCR_LOOP != 0 => {
                // Loopback: DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD.
                let m = self.mcr;
                (m & 0x01) << 5 | (m & 0x02) << 3 | (m & 0x04) << 4 | (m & 0x08) << 4
            }
            // Carrier, DSR and CTS asserted: a connected terminal.
            UART_MSR => 0xb0,
            UART_SCR => self.scr,
            _ => return ones(size),
        };
        v as u32 | (ones(size) & !0xff)
    }

    fn write(&mut self, offset: u16, _size: u8, value: u32, _now: Ticks) {
        let v = value as u8;
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            UART_RBR_THR if dlab => self.dll = v,
            UART_RBR_THR => self.transmit(v),
            UART_IER if dlab => self.dlm = v,
            UART_IER => {
                // Enabling ETBEI with an empty transmitter raises the interrupt at once.
                if v & IER_ETBEI != 0 && self.ier & IER_ETBEI == 0 {
                    self.thre_pending = true;
                }
                self.ier = v & 0x0f;
            }
            UART_IIR_FCR => self.fcr = v,
            UART_LCR => self.lcr = v,
            UART_MCR => self.mcr = v & 0x1f,
            UART_SCR => self.scr = v,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Ticks {
        Ticks(0)
    }

    #[test]
    fn transmit_goes_to_output_and_lsr_is_always_empty() {
        let mut u = Uart16550::default();
        u.write(UART_RBR_THR, 1, b'A' as u32, t());
        assert_eq!(u.output, b"A");
        assert_eq!(u.read(UART_LSR, 1, t()), (LSR_THRE | LSR_TEMT) as u32);
    }

    #[test]
    fn dlab_selects_divisor_latch() {
        let mut u = Uart16550::default();
        u.write(UART_LCR, 1, 0x83, t());
        u.write(UART_RBR_THR, 1, 0x01, t());
        u.write(UART_IER, 1, 0x00, t());
        assert_eq!(u.read(UART_RBR_THR, 1, t()), 0x01);
        assert!(u.output.is_empty(), "divisor writes are not data");
        u.write(UART_LCR, 1, 0x03, t());
        assert_eq!(u.read(UART_LCR, 1, t()), 0x03);
    }

    #[test]
    fn ier_iir_scratch_and_loopback() {
        let mut u = Uart16550::default();
        u.write(UART_SCR, 1, 0x5a, t());
        assert_eq!(u.read(UART_SCR, 1, t()), 0x5a);
        u.write(UART_IER, 1, 0x02, t());
        assert_eq!(u.read(UART_IER, 1, t()), 0x02);
        u.write(UART_MCR, 1, MCR_OUT2 as u32, t());
        assert!(u.irq());
        assert_eq!(u.read(UART_IIR_FCR, 1, t()), IIR_THRE as u32);
        assert_eq!(u.read(UART_IIR_FCR, 1, t()), IIR_NO_INT as u32);
        u.write(UART_MCR, 1, 0x1f, t());
        assert_eq!(u.read(UART_MSR, 1, t()), 0xf0);
        u.write(UART_RBR_THR, 1, b'x' as u32, t());
        assert!(u.output.is_empty(), "loopback does not transmit");
    }

    #[test]
    fn invalid_offsets_read_ones() {
        let mut u = Uart16550::default();
        assert_eq!(u.read(8, 1, t()), 0xff);
        u.write(9, 1, 0x41, t());
        assert!(u.output.is_empty());
    }
}
