//! The ACPI fixed-hardware PM1 event and control registers and the PM timer at the start of
//! the PM I/O block, laid out the same on the PIIX4 (datasheet doc. 290562 §7.2.1-7.2.4:
//! PMSTS, PMEN, PMCNTRL, PMTMR) and the ICH9 (datasheet doc. 316972 §13.8.3.1-13.8.3.4:
//! PM1_STS, PM1_EN, PM1_CNT, PM1_TMR), and in the ACPI specification (6.5 §4.8.3).
//! The PM timer counts at 3.579545 MHz from the virtual clock and is 24 bits wide.

use crate::clock::{Clock, Ticks};

/// PM1_STS offset (16 bits, write one to clear).
pub const PM1_STS: u16 = 0x00;
/// PM1_EN offset (16 bits).
pub const PM1_EN: u16 = 0x02;
/// PM1_CNT offset (32 bits on ICH9, 16 on PIIX4).
pub const PM1_CNT: u16 = 0x04;
/// PM_TMR offset (32 bits, read-only).
pub const PM_TMR: u16 = 0x08;
/// End of the PM1 and timer registers.
pub const PM1_END: u16 = 0x0c;
/// PM1_EN writable bits: TMROF_EN 0, GBL_EN 5, PWRBTN_EN 8, RTC_EN 10.
pub const PM1_EN_WMASK: u16 = 0x0521;
/// PM1_CNT.SCI_EN (bit 0).
pub const PM1_CNT_SCI_EN: u32 = 1 << 0;
/// PM1_CNT writable bits: SCI_EN 0, BM_RLD 1, SLP_TYP 12:10 (GBL_RLS and SLP_EN are
/// write-only strobes and read 0).
pub const PM1_CNT_WMASK: u32 = 0x1c03;
/// PM1_CNT.SLP_EN (bit 13): write-only strobe, enters the sleep state SLP_TYP says.
pub const PM1_CNT_SLP_EN: u32 = 1 << 13;
/// PM1_CNT.SLP_TYP (bits 12:10).
pub const PM1_CNT_SLP_TYP_SHIFT: u32 = 10;
/// PM timer frequency in Hz.
pub const PM_TIMER_HZ: u64 = 3_579_545;

/// PM1 registers and the PM timer.
#[derive(Clone, Debug)]
pub struct AcpiPm {
    sts: u16,
    en: u16,
    cnt: u32,
    clock: Clock,
    /// SLP_TYP of the last SLP_EN write, until taken.
    sleep: Option<u8>,
}

impl AcpiPm {
    /// Registers at reset; `instructions_per_second` converts guest ticks to timer counts.
    pub fn new(instructions_per_second: u64) -> Self {
        AcpiPm { sts: 0, en: 0, cnt: 0, clock: Clock::new(instructions_per_second), sleep: None }
    }

    /// The 24-bit PM timer value at `now`.
    pub fn timer(&self, now: Ticks) -> u32 {
        (self.clock.cycles_at(now, PM_TIMER_HZ) & 0x00ff_ffff) as u32
    }

    /// Reads the byte at `offset` (0..PM1_END), or `None` past the PM1 registers.
    pub fn read_byte(&self, offset: u16, now: Ticks) -> Option<u8> {
        let (reg, shift) = match offset {
            0..=1 => (self.sts as u32, offset),
            2..=3 => (self.en as u32, offset - 2),
            4..=7 => (self.cnt, offset - 4),
            8..=11 => (self.timer(now), offset - 8),
            _ => return None,
        };
        Some((reg >> (8 * shift)) as u8)
    }

    /// Writes the byte at `offset`; false past the PM1 registers.
    pub fn write_byte(&mut self, offset: u16, b: u8) -> bool {
        match offset {
            0..=1 => self.sts &= !((b as u16) << (8 * offset)),
            2..=3 => {
                let m = (0xffu16 << (8 * (offset - 2))) & PM1_EN_WMASK;
                self.en = (self.en & !m) | (((b as u16) << (8 * (offset - 2))) & m);
            }
            4..=7 => {
                let m = (0xffu32 << (8 * (offset - 4))) & PM1_CNT_WMASK;
                let v = (b as u32) << (8 * (offset - 4));
                self.cnt = (self.cnt & !m) | (v & m);
                if v & PM1_CNT_SLP_EN != 0 {
                    self.sleep = Some(((self.cnt >> PM1_CNT_SLP_TYP_SHIFT) & 7) as u8);
                }
            }
            8..=11 => {}
            _ => return false,
        }
        true
    }

    /// PM1_CNT.SCI_EN.
    pub fn sci_en(&self) -> bool {
        self.cnt & PM1_CNT_SCI_EN != 0
    }

    /// The SLP_TYP of an SLP_EN write since the last call.
    pub fn take_sleep(&mut self) -> Option<u8> {
        self.sleep.take()
    }

    /// Sets or clears SCI_EN (the APM "ACPI enable/disable" commands).
    pub fn set_sci_en(&mut self, on: bool) {
        if on {
            self.cnt |= PM1_CNT_SCI_EN;
        } else {
            self.cnt &= !PM1_CNT_SCI_EN;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pm_timer_counts_at_3_58_mhz_of_guest_time() {
        let pm = AcpiPm::new(1_000_000);
        // 1 ms of guest time at 1 MIPS is 1000 ticks: 3579 timer counts.
        assert_eq!(pm.timer(Ticks(1_000)), 3_579);
        assert_eq!(pm.read_byte(PM_TMR, Ticks(1_000)), Some((3_579 & 0xff) as u8));
        // 24 bits wide: wraps after 2^24 counts.
        // 2^24 counts take 4.687 s: 4,687,000 ticks are 16,777,327 counts, 111 after the wrap.
        assert_eq!(pm.timer(Ticks(4_687_000)), 111);
    }

    #[test]
    fn pm_timer_is_read_only() {
        let mut pm = AcpiPm::new(1_000);
        assert!(pm.write_byte(PM_TMR, 0x55));
        assert_eq!(pm.read_byte(PM_TMR, Ticks(0)), Some(0));
    }

    #[test]
    fn sci_en_is_writable_and_reserved_bits_are_not() {
        let mut pm = AcpiPm::new(1_000);
        pm.write_byte(PM1_CNT, 0xff);
        assert!(pm.sci_en());
        assert_eq!(pm.read_byte(PM1_CNT, Ticks(0)), Some(0x03));
        pm.set_sci_en(false);
        assert!(!pm.sci_en());
    }

    #[test]
    fn offsets_past_the_block_are_not_claimed() {
        let mut pm = AcpiPm::new(1_000);
        assert_eq!(pm.read_byte(PM1_END, Ticks(0)), None);
        assert!(!pm.write_byte(PM1_END, 0));
    }
}
