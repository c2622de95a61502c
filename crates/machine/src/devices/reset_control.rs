//! The reset control register at 0xCF9 (PIIX3 datasheet §2.4.13 "RC"; ICH9 datasheet doc.
//! 316972 §13.7.5 "RST_CNT"): bit 1 = SYS_RST (full versus soft reset), bit 2 = RST_CPU (a
//! 0 → 1 transition starts the reset), bit 3 = FULL_RST. Byte access only: wider accesses at
//! 0xCF8 belong to PCI configuration mechanism #1.
//!
//! smmlab does not rebuild the machine on a reset: the board ends the run with exit reason
//! "reset", as QEMU does with `-no-reboot`.

use super::{ones, PortDevice};
use crate::clock::Ticks;

/// RST_CNT.SYS_RST: a full rather than a soft reset.
pub const RST_CNT_SYS_RST: u8 = 0x02;
/// RST_CNT.RST_CPU: a 0-to-1 write starts the reset.
pub const RST_CNT_RST_CPU: u8 = 0x04;
/// RST_CNT.FULL_RST: a full reset that also cycles power.
pub const RST_CNT_FULL_RST: u8 = 0x08;
const RST_CNT_MASK: u8 = RST_CNT_SYS_RST | RST_CNT_RST_CPU | RST_CNT_FULL_RST;

/// RST_CNT and its pending reset request.
#[derive(Clone, Debug, Default)]
pub struct ResetControl {
    value: u8,
    reset: bool,
}

impl ResetControl {
    /// Whether the guest asked for a reset since the last call.
    pub fn take_reset(&mut self) -> bool {
        std::mem::take(&mut self.reset)
    }
}

impl PortDevice for ResetControl {
    fn read(&mut self, offset: u16, size: u8, _now: Ticks) -> u32 {
        if offset == 0 && size == 1 {
            self.value as u32
        } else {
            ones(size)
        }
    }

    fn write(&mut self, offset: u16, size: u8, value: u32, _now: Ticks) {
        if offset != 0 || size != 1 {
            return;
        }
        let v = value as u8 & RST_CNT_MASK;
        if v & RST_CNT_RST_CPU != 0 && self.value & RST_CNT_RST_CPU == 0 {
            self.reset = true;
        }
        // RST_CPU self-clears once the reset starts.
        self.value = v & !RST_CNT_RST_CPU;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seabios_pci_reboot_sequence_requests_reset() {
        let mut r = ResetControl::default();
        r.write(0, 1, 0x02, Ticks(0));
        assert!(!r.take_reset());
        assert_eq!(r.read(0, 1, Ticks(0)), 0x02);
        r.write(0, 1, 0x06, Ticks(0));
        assert!(r.take_reset());
        assert!(!r.take_reset());
    }

    #[test]
    fn wide_accesses_are_not_this_register() {
        let mut r = ResetControl::default();
        r.write(0, 2, 0x0606, Ticks(0));
        assert!(!r.take_reset());
        assert_eq!(r.read(0, 2, Ticks(0)), 0xffff);
        assert_eq!(r.read(1, 1, Ticks(0)), 0xff);
    }
}
