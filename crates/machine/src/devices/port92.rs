//! Port 0x92, "fast A20 and init" (PS/2 system control port A; ICH9 datasheet doc. 316972
//! §13.7.1 "PORT92"): bit 1 = ALT_A20_GATE, bit 0 = INIT_NOW (a 0 → 1 transition resets the
//! CPU). The device only records requests; the board applies A20 to the CPU and ends the run
//! on a reset.

use super::{ones, PortDevice};
use crate::clock::Ticks;

/// Bit 0: INIT_NOW (a 0-to-1 write resets the CPU).
pub const PORT92_INIT_NOW: u8 = 0x01;
/// Bit 1: the fast A20 gate.
pub const PORT92_ALT_A20_GATE: u8 = 0x02;

/// The register and its pending requests.
#[derive(Clone, Debug, Default)]
pub struct Port92 {
    value: u8,
    a20_changed: bool,
    reset: bool,
}

impl Port92 {
    /// A20 as this port drives it.
    pub fn a20(&self) -> bool {
        self.value & PORT92_ALT_A20_GATE != 0
    }

    /// Whether a write changed A20 since the last call.
    pub fn take_a20_change(&mut self) -> bool {
        std::mem::take(&mut self.a20_changed)
    }

    /// Whether the guest asked for a reset since the last call.
    pub fn take_reset(&mut self) -> bool {
        std::mem::take(&mut self.reset)
    }
}

impl PortDevice for Port92 {
    fn read(&mut self, offset: u16, size: u8, _now: Ticks) -> u32 {
        match offset {
            0 => self.value as u32 | (ones(size) & !0xff),
            _ => ones(size),
        }
    }

    fn write(&mut self, offset: u16, _size: u8, value: u32, _now: Ticks) {
        if offset != 0 {
            return;
        }
        let v = value as u8 & (PORT92_ALT_A20_GATE | PORT92_INIT_NOW);
        if (v ^ self.value) & PORT92_ALT_A20_GATE != 0 {
            self.a20_changed = true;
        }
        if v & PORT92_INIT_NOW != 0 && self.value & PORT92_INIT_NOW == 0 {
            self.reset = true;
        }
        self.value = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a20_bit_is_read_back_and_reported_once() {
        let mut p = Port92::default();
        assert_eq!(p.read(0, 1, Ticks(0)), 0);
        p.write(0, 1, 0x02, Ticks(0));
        assert!(p.a20() && p.take_a20_change() && !p.take_a20_change());
        assert_eq!(p.read(0, 1, Ticks(0)), 0x02);
        p.write(0, 1, 0x02, Ticks(0));
        assert!(!p.take_a20_change(), "no change, no request");
    }

    #[test]
    fn init_now_rising_edge_requests_reset() {
        let mut p = Port92::default();
        p.write(0, 1, 0x03, Ticks(0));
        assert!(p.take_reset());
        p.write(0, 1, 0x03, Ticks(0));
        assert!(!p.take_reset(), "bit already set: no edge");
    }

    #[test]
    fn invalid_offset_reads_ones() {
        let mut p = Port92::default();
        assert_eq!(p.read(1, 1, Ticks(0)), 0xff);
        p.write(1, 1, 0x02, Ticks(0));
        assert!(!p.a20());
        assert_eq!(p.read(0, 2, Ticks(0)), 0xff00);
    }
}
