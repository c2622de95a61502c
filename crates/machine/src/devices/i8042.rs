//! The 8042 keyboard controller with a PS/2 keyboard and mouse attached (no keys are ever
//! pressed).
//!
//! Offsets from 0x60: 0 = data, 4 = status (read) / command (write). Commands and status
//! bits from the IBM PS/2 Hardware Technical Reference ("Keyboard/Auxiliary Device
//! Controller") and the ICH9 datasheet (doc. 316972) §13.7 for the A20/reset output port;
//! keyboard commands from the same reference ("Keyboard commands": 0xFF reset → 0xFA, 0xAA).
//! A20 and reset requests are recorded for the board.

use super::{ones, PortDevice};
use crate::clock::Ticks;
use std::collections::VecDeque;

/// Status register bits.
pub const STATUS_OBF: u8 = 0x01;
/// IBF: the controller has not read the last byte written yet.
pub const STATUS_IBF: u8 = 0x02;
/// SYS: the system flag (set after the self-test).
pub const STATUS_SYS: u8 = 0x04;
/// A2: the last write was a command (port 0x64).
pub const STATUS_CMD: u8 = 0x08;
/// INH: keyboard not inhibited (the keylock is open).
pub const STATUS_UNLOCKED: u8 = 0x10;
/// AUX_OBF: the output byte is from the mouse.
pub const STATUS_AUX_OBF: u8 = 0x20;
/// Command byte bits.
pub const CB_KBD_INT: u8 = 0x01;
/// Mouse interrupt enable.
pub const CB_AUX_INT: u8 = 0x02;
/// System flag.
pub const CB_SYS: u8 = 0x04;
/// Keyboard clock disabled.
pub const CB_KBD_DISABLE: u8 = 0x10;
/// Mouse clock disabled.
pub const CB_AUX_DISABLE: u8 = 0x20;
/// Scan-code set 2 to set 1 translation.
pub const CB_XLATE: u8 = 0x40;
/// Output port bits.
pub const OUTPORT_RESET_N: u8 = 0x01;
/// A20 gate.
pub const OUTPORT_A20: u8 = 0x02;
/// Controller commands.
pub const CMD_READ_CB: u8 = 0x20;
/// Write the command byte.
pub const CMD_WRITE_CB: u8 = 0x60;
/// Disable the mouse port.
pub const CMD_AUX_DISABLE: u8 = 0xa7;
/// Enable the mouse port.
pub const CMD_AUX_ENABLE: u8 = 0xa8;
/// Test the mouse port.
pub const CMD_AUX_TEST: u8 = 0xa9;
/// Controller self-test.
pub const CMD_SELF_TEST: u8 = 0xaa;
/// Test the keyboard port.
pub const CMD_KBD_TEST: u8 = 0xab;
/// Disable the keyboard port.
pub const CMD_KBD_DISABLE: u8 = 0xad;
/// Enable the keyboard port.
pub const CMD_KBD_ENABLE: u8 = 0xae;
/// Read the input port.
pub const CMD_READ_INPORT: u8 = 0xc0;
/// Read the output port.
pub const CMD_READ_OUTPORT: u8 = 0xd0;
/// Write the output port.
pub const CMD_WRITE_OUTPORT: u8 = 0xd1;
/// Put a byte in the output buffer as if from the keyboard.
pub const CMD_WRITE_KBD_OBUF: u8 = 0xd2;
/// Put a byte in the output buffer as if from the mouse.
pub const CMD_WRITE_AUX_OBUF: u8 = 0xd3;
/// Send the next byte to the mouse.
pub const CMD_WRITE_AUX: u8 = 0xd4;
/// A20 off (HP extension).
pub const CMD_A20_DISABLE: u8 = 0xdd;
/// A20 on (HP extension).
pub const CMD_A20_ENABLE: u8 = 0xdf;
/// The first of the output-port pulse commands 0xF0-0xFF (bit 0 pulses reset).
pub const CMD_PULSE_FIRST: u8 = 0xf0;
/// Self-test and interface-test answers.
pub const SELF_TEST_OK: u8 = 0x55;
/// Interface test passed.
pub const IFACE_TEST_OK: u8 = 0x00;
/// Device answers.
pub const DEV_ACK: u8 = 0xfa;
/// Resend.
pub const DEV_RESEND: u8 = 0xfe;
/// Basic assurance test passed.
pub const DEV_BAT_OK: u8 = 0xaa;

/// What the next data-port write means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DataTarget {
    Keyboard,
    CommandByte,
    OutputPort,
    KbdObuf,
    AuxObuf,
    Aux,
}

/// The controller, the keyboard and the mouse.
#[derive(Clone, Debug)]
pub struct I8042 {
    out: VecDeque<(u8, bool)>,
    command_byte: u8,
    outport: u8,
    status_cmd: bool,
    sys: bool,
    next: DataTarget,
    /// A keyboard command waiting for its parameter byte.
    kbd_param: Option<u8>,
    /// A mouse command waiting for its parameter byte.
    aux_param: Option<u8>,
    a20_changed: bool,
    reset: bool,
}

impl Default for I8042 {
    fn default() -> Self {
        I8042 {
            out: VecDeque::new(),
            command_byte: CB_KBD_INT | CB_AUX_INT | CB_XLATE,
            outport: OUTPORT_RESET_N | OUTPORT_A20,
            status_cmd: false,
            sys: false,
            next: DataTarget::Keyboard,
            kbd_param: None,
            aux_param: None,
            a20_changed: false,
            reset: false,
        }
    }
}

impl I8042 {
    /// A20 as the output port drives it.
    pub fn a20(&self) -> bool {
        self.outport & OUTPORT_A20 != 0
    }

    /// Whether the output port's A20 bit changed since the last call.
    pub fn take_a20_change(&mut self) -> bool {
        std::mem::take(&mut self.a20_changed)
    }

    /// Whether the guest pulsed the reset line since the last call.
    pub fn take_reset(&mut self) -> bool {
        std::mem::take(&mut self.reset)
    }

    /// IRQ 1 level (keyboard byte waiting, keyboard interrupt enabled).
    pub fn irq1(&self) -> bool {
        matches!(self.out.front(), Some((_, false))) && self.command_byte & CB_KBD_INT != 0
    }

    /// IRQ 12 level (mouse byte waiting, mouse interrupt enabled).
    pub fn irq12(&self) -> bool {
        matches!(self.out.front(), Some((_, true))) && self.command_byte & CB_AUX_INT != 0
    }

    fn push(&mut self, b: u8, aux: bool) {
        // A real controller has a one-byte buffer; the devices queue behind it.
        if self.out.len() < 16 {
            self.out.push_back((b, aux));
        }
    }

    fn status(&self) -> u8 {
        let mut s = STATUS_UNLOCKED;
        if let Some((_, aux)) = self.out.front() {
            s |= STATUS_OBF;
            if *aux {
                s |= STATUS_AUX_OBF;
            }
        }
        if self.sys {
            s |= STATUS_SYS;
        }
        if self.status_cmd {
            s |= STATUS_CMD;
        }
        s
    }

    fn set_outport(&mut self, v: u8) {
        if (v ^ self.outport) & OUTPORT_A20 != 0 {
            self.a20_changed = true;
        }
        if v & OUTPORT_RESET_N == 0 {
            self.reset = true;
        }
        self.outport = v | OUTPORT_RESET_N;
    }

    fn command(&mut self, c: u8) {
        self.next = DataTarget::Keyboard;
        match c {
            CMD_READ_CB => self.push(self.command_byte, false),
            CMD_WRITE_CB => self.next = DataTarget::CommandByte,
            CMD_AUX_DISABLE => self.command_byte |= CB_AUX_DISABLE,
            CMD_AUX_ENABLE => self.command_byte &= !CB_AUX_DISABLE,
            CMD_AUX_TEST | CMD_KBD_TEST => self.push(IFACE_TEST_OK, false),
            CMD_SELF_TEST => {
                self.sys = true;
                self.push(SELF_TEST_OK, false);
            }
            CMD_KBD_DISABLE => self.command_byte |= CB_KBD_DISABLE,
            CMD_KBD_ENABLE => self.command_byte &= !CB_KBD_DISABLE,
            CMD_READ_INPORT => self.push(0x80, false),
            CMD_READ_OUTPORT => self.push(self.outport, false),
            CMD_WRITE_OUTPORT => self.next = DataTarget::OutputPort,
            CMD_WRITE_KBD_OBUF => self.next = DataTarget::KbdObuf,
            CMD_WRITE_AUX_OBUF => self.next = DataTarget::AuxObuf,
            CMD_WRITE_AUX => self.next = DataTarget::Aux,
            CMD_A20_DISABLE => self.set_outport(self.outport & !OUTPORT_A20),
            CMD_A20_ENABLE => self.set_outport(self.outport | OUTPORT_A20),
            // Pulse output-port bits whose mask bit is 0 low for 6 µs; bit 0 is reset.
            CMD_PULSE_FIRST..=0xff if c & OUTPORT_RESET_N == 0 => self.reset = true,
            _ => {}
        }
    }

    fn keyboard(&mut self, b: u8) {
        if let Some(cmd) = self.kbd_param.take() {
            // 0xF0 with parameter 0 reports the scan-code set.
            self.push(DEV_ACK, false);
            if cmd == 0xf0 && b == 0 {
                self.push(0x02, false);
            }
            return;
        }
        match b {
            0xff => {
                self.push(DEV_ACK, false);
                self.push(DEV_BAT_OK, false);
            }
            0xf2 => {
                self.push(DEV_ACK, false);
                self.push(0xab, false);
                self.push(0x83, false);
            }
            0xee => self.push(0xee, false),
            0xed | 0xf3 | 0xf0 => {
                self.kbd_param = Some(b);
                self.push(DEV_ACK, false);
            }
            0xf4..=0xfa => self.push(DEV_ACK, false),
            _ => self.push(DEV_RESEND, false),
        }
    }

    fn aux(&mut self, b: u8) {
        if self.aux_param.take().is_some() {
            self.push(DEV_ACK, true);
            return;
        }
        match b {
            0xff => {
                self.push(DEV_ACK, true);
                self.push(DEV_BAT_OK, true);
                self.push(0x00, true);
            }
            0xf2 => {
                self.push(DEV_ACK, true);
                self.push(0x00, true);
            }
            0xe9 => {
                self.push(DEV_ACK, true);
                for _ in 0..3 {
                    self.push(0x00, true);
                }
            }
            0xe8 | 0xf3 => {
                self.aux_param = Some(b);
                self.push(DEV_ACK, true);
            }
            0xe6 | 0xe7 | 0xea | 0xf0 | 0xf4 | 0xf5 | 0xf6 => self.push(DEV_ACK, true),
            _ => self.push(DEV_RESEND, true),
        }
    }
}

impl PortDevice for I8042 {
    fn read(&mut self, offset: u16, size: u8, _now: Ticks) -> u32 {
        let v = match offset {
            0 => match self.out.pop_front() {
                Some((b, _)) => b,
                // An empty buffer reads the last byte on hardware; 0 here.
                None => 0,
            },
            4 => self.status(),
            _ => return ones(size),
        };
        v as u32 | (ones(size) & !0xff)
    }

    fn write(&mut self, offset: u16, _size: u8, value: u32, _now: Ticks) {
        let b = value as u8;
        match offset {
            0 => {
                self.status_cmd = false;
                let target = std::mem::replace(&mut self.next, DataTarget::Keyboard);
                match target {
                    DataTarget::Keyboard => self.keyboard(b),
                    DataTarget::CommandByte => {
                        self.command_byte = b;
                        self.sys = b & CB_SYS != 0;
                    }
                    DataTarget::OutputPort => self.set_outport(b),
                    DataTarget::KbdObuf => self.push(b, false),
                    DataTarget::AuxObuf => self.push(b, true),
                    DataTarget::Aux => self.aux(b),
                }
            }
            4 => {
                self.status_cmd = true;
                self.command(b);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(k: &mut I8042, c: u8) {
        k.write(4, 1, c as u32, Ticks(0));
    }
    fn data(k: &mut I8042, d: u8) {
        k.write(0, 1, d as u32, Ticks(0));
    }
    fn rd(k: &mut I8042) -> u8 {
        k.read(0, 1, Ticks(0)) as u8
    }
    fn st(k: &mut I8042) -> u8 {
        k.read(4, 1, Ticks(0)) as u8
    }

    #[test]
    fn self_test_and_interface_tests() {
        let mut k = I8042::default();
        assert_eq!(st(&mut k) & STATUS_OBF, 0);
        cmd(&mut k, CMD_SELF_TEST);
        assert_eq!(st(&mut k) & (STATUS_OBF | STATUS_SYS), STATUS_OBF | STATUS_SYS);
        assert_eq!(rd(&mut k), SELF_TEST_OK);
        cmd(&mut k, CMD_KBD_TEST);
        assert_eq!(rd(&mut k), IFACE_TEST_OK);
        cmd(&mut k, CMD_AUX_TEST);
        assert_eq!(rd(&mut k), IFACE_TEST_OK);
        assert_eq!(st(&mut k) & STATUS_OBF, 0);
    }

    #[test]
    fn command_byte_read_write() {
        let mut k = I8042::default();
        cmd(&mut k, CMD_WRITE_CB);
        data(&mut k, 0x30);
        cmd(&mut k, CMD_READ_CB);
        assert_eq!(rd(&mut k), 0x30);
        assert!(!k.irq1());
    }

    #[test]
    fn output_port_a20_and_reset_pulse() {
        let mut k = I8042::default();
        cmd(&mut k, CMD_READ_OUTPORT);
        assert_eq!(rd(&mut k) & OUTPORT_A20, OUTPORT_A20);
        cmd(&mut k, CMD_WRITE_OUTPORT);
        data(&mut k, 0x01);
        assert!(k.take_a20_change() && !k.a20());
        assert!(!k.take_reset());
        cmd(&mut k, 0xfe);
        assert!(k.take_reset());
    }

    #[test]
    fn keyboard_reset_answers_ack_and_bat() {
        let mut k = I8042::default();
        data(&mut k, 0xff);
        assert!(k.irq1());
        assert_eq!(rd(&mut k), DEV_ACK);
        assert_eq!(rd(&mut k), DEV_BAT_OK);
        data(&mut k, 0xed);
        assert_eq!(rd(&mut k), DEV_ACK);
        data(&mut k, 0x02);
        assert_eq!(rd(&mut k), DEV_ACK);
        cmd(&mut k, CMD_WRITE_AUX);
        data(&mut k, 0xf2);
        assert_eq!(st(&mut k) & STATUS_AUX_OBF, STATUS_AUX_OBF);
        assert!(k.irq12());
        assert_eq!(rd(&mut k), DEV_ACK);
        assert_eq!(rd(&mut k), 0x00);
    }

    #[test]
    fn invalid_accesses() {
        let mut k = I8042::default();
        assert_eq!(k.read(1, 1, Ticks(0)), 0xff);
        k.write(2, 1, 0xaa, Ticks(0));
        assert_eq!(st(&mut k) & STATUS_OBF, 0);
        data(&mut k, 0x42); // unknown keyboard command
        assert_eq!(rd(&mut k), DEV_RESEND);
        assert_eq!(rd(&mut k), 0, "empty buffer");
    }
}
