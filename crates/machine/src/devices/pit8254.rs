//! The 8254 programmable interval timer (in the PIIX3 and the ICH9) and the NMI status and
//! control port 0x61 whose bits 4 and 5 reflect it.
//!
//! Registers from the Intel 82C54 datasheet (doc. 231244): counters 0-2 at offsets 0-2, the
//! control word at offset 3 (SC1:0, RW1:0, M2:0, BCD; counter latch RW = 00; read-back
//! SC = 11). Modes 0 (interrupt on terminal count), 2 (rate generator) and 3 (square wave)
//! are modelled exactly enough for firmware; modes 1, 4 and 5 count like mode 0. BCD
//! counting is not modelled (the count is binary). Port 0x61 from the ICH9 datasheet
//! (doc. 316972) §13.7.1 "NMI_SC": bit 0 = timer counter 2 gate, bit 1 = speaker data,
//! bit 4 = refresh cycle toggle (flips every 15.085 µs), bit 5 = counter 2 output.
//!
//! The counters run on the virtual clock at 1.193182 MHz; counter 0's output drives IRQ 0.

use super::ones;
use crate::clock::Ticks;

/// The PIT input clock.
pub const PIT_HZ: u64 = 1_193_182;
/// Control word offset.
pub const PIT_CONTROL: u16 = 3;
/// Control word: select counter (7:6); 11 = read-back.
pub const CW_SC_SHIFT: u32 = 6;
/// Select counter value 3: the read-back command.
pub const CW_SC_READBACK: u8 = 3;
/// Control word: read/write mode (5:4); 00 = counter latch.
pub const CW_RW_SHIFT: u32 = 4;
/// Read/write mode 0: latch the count.
pub const CW_RW_LATCH: u8 = 0;
/// Read/write mode 1: low byte only.
pub const CW_RW_LSB: u8 = 1;
/// Read/write mode 2: high byte only.
pub const CW_RW_MSB: u8 = 2;
/// Read/write mode 3: low byte, then high byte.
pub const CW_RW_LSB_MSB: u8 = 3;
/// Read-back: bit 5 = do not latch count, bit 4 = do not latch status.
pub const RB_NO_COUNT: u8 = 0x20;
/// Read-back bit 4: do not latch status.
pub const RB_NO_STATUS: u8 = 0x10;
/// Status byte bits.
pub const STATUS_OUT: u8 = 0x80;
/// Status NULL COUNT: the new count has not been loaded yet.
pub const STATUS_NULL_COUNT: u8 = 0x40;
/// Port 0x61 bits.
pub const NMI_SC_TIM_CNT2_EN: u8 = 0x01;
/// Port 0x61 bit 1: speaker data enable.
pub const NMI_SC_SPKR_DAT_EN: u8 = 0x02;
/// Port 0x61 bit 4: the refresh toggle (flips every 15.085 us).
pub const NMI_SC_REF_TOGGLE: u8 = 0x10;
/// Port 0x61 bit 5: counter 2's output.
pub const NMI_SC_TMR2_OUT_STS: u8 = 0x20;
/// Refresh toggle half-period in nanoseconds.
pub const REFRESH_NS: u64 = 15_085;

#[derive(Clone, Debug, Default)]
struct Counter {
    mode: u8,
    rw: u8,
    status_byte: u8,
    /// Reload value (0 counts as 65536).
    reload: u32,
    /// PIT cycle at which counting (re)started; None = no count written yet.
    start: Option<u64>,
    /// Low byte written, waiting for the high byte.
    lsb_pending: Option<u8>,
    /// Latched count and whether its MSB is next.
    latch: Option<u16>,
    latch_msb_next: bool,
    /// Read position for an unlatched LSB-then-MSB read.
    read_msb_next: bool,
    status: Option<u8>,
    gate: bool,
    /// The next PIT cycle at which the output makes an interrupt edge (counter 0).
    next_edge: Option<u64>,
}

impl Counter {
    fn period(&self) -> u64 {
        if self.reload == 0 {
            65536
        } else {
            self.reload as u64
        }
    }

    fn elapsed(&self, c: u64) -> Option<u64> {
        if !self.gate {
            return None;
        }
        self.start.map(|s| c.saturating_sub(s))
    }

    fn count(&self, c: u64) -> u16 {
        let p = self.period();
        let Some(e) = self.elapsed(c) else { return self.reload as u16 };
        match self.mode {
            2 => (p - e % p) as u16,
            3 => {
                // Decrements by two each cycle, twice per period.
                let half = e % p.div_ceil(2).max(1);
                (p.saturating_sub(2 * half)) as u16
            }
            _ => (p as i64 - e as i64).rem_euclid(65536) as u16,
        }
    }

    fn out(&self, c: u64) -> bool {
        let p = self.period();
        let Some(e) = self.elapsed(c) else {
            return self.mode != 0 || self.start.is_none();
        };
        match self.mode {
            2 => e % p != p - 1,
            3 => e % p < p.div_ceil(2),
            _ => e >= p,
        }
    }

    fn first_edge(&self) -> Option<u64> {
        let s = self.start?;
        Some(match self.mode {
            2 => s + self.period() - 1,
            3 => s + self.period(),
            _ => s + self.period(),
        })
    }

    fn load(&mut self, value: u32, c: u64) {
        self.reload = value & 0xffff;
        self.start = Some(c);
        self.next_edge = self.first_edge();
        self.status_byte &= !STATUS_NULL_COUNT;
    }
}

/// The three counters.
#[derive(Clone, Debug)]
pub struct Pit8254 {
    counters: [Counter; 3],
    ips: u64,
    speaker_data: bool,
}

impl Pit8254 {
    /// A PIT whose time base is a clock of `ips` ticks per second.
    pub fn new(ips: u64) -> Self {
        let mut counters: [Counter; 3] = Default::default();
        counters[0].gate = true;
        counters[1].gate = true;
        Pit8254 { counters, ips: ips.max(1), speaker_data: false }
    }

    fn cycle(&self, now: Ticks) -> u64 {
        (now.0 as u128 * PIT_HZ as u128 / self.ips as u128) as u64
    }

    fn ticks_of_cycle(&self, c: u64) -> Ticks {
        Ticks(u64::try_from((c as u128 * self.ips as u128).div_ceil(PIT_HZ as u128)).unwrap_or(u64::MAX))
    }

    /// When counter 0 next makes an IRQ 0 edge.
    pub fn next_deadline(&self) -> Option<Ticks> {
        self.counters[0].next_edge.map(|c| self.ticks_of_cycle(c))
    }

    /// Moves counter 0 to `now`: true if its output made an IRQ 0 edge since the last call.
    pub fn advance(&mut self, now: Ticks) -> bool {
        let c = self.cycle(now);
        let ch = &mut self.counters[0];
        let Some(edge) = ch.next_edge else { return false };
        if edge > c {
            return false;
        }
        ch.next_edge = match ch.mode {
            2 | 3 => {
                let p = ch.period();
                let missed = (c - edge) / p + 1;
                Some(edge + missed * p)
            }
            _ => None,
        };
        true
    }

    /// Reads a counter (offset 0-2); the control word (offset 3) reads as all ones.
    pub fn read(&mut self, offset: u16, size: u8, now: Ticks) -> u32 {
        let c = self.cycle(now);
        let Some(ch) = self.counters.get_mut(offset as usize) else { return ones(size) };
        let v = if let Some(s) = ch.status.take() {
            s
        } else if let Some(l) = ch.latch {
            if ch.rw == CW_RW_LSB_MSB && !ch.latch_msb_next {
                ch.latch_msb_next = true;
                l as u8
            } else {
                ch.latch = None;
                ch.latch_msb_next = false;
                if ch.rw == CW_RW_LSB {
                    l as u8
                } else {
                    (l >> 8) as u8
                }
            }
        } else {
            let n = ch.count(c);
            match ch.rw {
                CW_RW_LSB => n as u8,
                CW_RW_MSB => (n >> 8) as u8,
                _ => {
                    ch.read_msb_next = !ch.read_msb_next;
                    if ch.read_msb_next {
                        n as u8
                    } else {
                        (n >> 8) as u8
                    }
                }
            }
        };
        v as u32 | (ones(size) & !0xff)
    }

    /// Writes a counter or the control word.
    pub fn write(&mut self, offset: u16, _size: u8, value: u32, now: Ticks) {
        let c = self.cycle(now);
        let v = value as u8;
        if offset == PIT_CONTROL {
            let sc = v >> CW_SC_SHIFT;
            if sc == CW_SC_READBACK {
                for i in 0..3 {
                    if v & (2 << i) == 0 {
                        continue;
                    }
                    let out = self.counters[i].out(c);
                    let ch = &mut self.counters[i];
                    if v & RB_NO_COUNT == 0 && ch.latch.is_none() {
                        ch.latch = Some(ch.count(c));
                        ch.latch_msb_next = false;
                    }
                    if v & RB_NO_STATUS == 0 && ch.status.is_none() {
                        ch.status = Some(ch.status_byte | if out { STATUS_OUT } else { 0 });
                    }
                }
                return;
            }
            let ch = &mut self.counters[sc as usize];
            let rw = (v >> CW_RW_SHIFT) & 3;
            if rw == CW_RW_LATCH {
                if ch.latch.is_none() {
                    ch.latch = Some(ch.count(c));
                    ch.latch_msb_next = false;
                }
                return;
            }
            ch.rw = rw;
            let mode = (v >> 1) & 7;
            // Modes 6 and 7 are aliases of 2 and 3.
            ch.mode = if mode >= 6 { mode - 4 } else { mode };
            ch.status_byte = (v & 0x3f) | STATUS_NULL_COUNT;
            ch.start = None;
            ch.next_edge = None;
            ch.lsb_pending = None;
            ch.latch = None;
            ch.read_msb_next = false;
            return;
        }
        let Some(ch) = self.counters.get_mut(offset as usize) else { return };
        match ch.rw {
            CW_RW_LSB => ch.load(v as u32, c),
            CW_RW_MSB => ch.load((v as u32) << 8, c),
            CW_RW_LSB_MSB => match ch.lsb_pending.take() {
                None => ch.lsb_pending = Some(v),
                Some(lo) => ch.load(lo as u32 | (v as u32) << 8, c),
            },
            _ => {}
        }
    }

    /// Port 0x61 as read: gate and speaker bits as written, refresh toggle, counter 2 output.
    pub fn port61_read(&self, now: Ticks) -> u8 {
        let ns = (now.0 as u128 * 1_000_000_000 / self.ips as u128) as u64;
        let mut v = 0;
        if self.counters[2].gate {
            v |= NMI_SC_TIM_CNT2_EN;
        }
        if self.speaker_data {
            v |= NMI_SC_SPKR_DAT_EN;
        }
        if (ns / REFRESH_NS) & 1 != 0 {
            v |= NMI_SC_REF_TOGGLE;
        }
        if self.counters[2].out(self.cycle(now)) {
            v |= NMI_SC_TMR2_OUT_STS;
        }
        v
    }

    /// Port 0x61 write: counter 2 gate (a rising edge restarts the count) and speaker data.
    pub fn port61_write(&mut self, value: u8, now: Ticks) {
        let c = self.cycle(now);
        let gate = value & NMI_SC_TIM_CNT2_EN != 0;
        let ch = &mut self.counters[2];
        if gate && !ch.gate && ch.start.is_some() {
            ch.start = Some(c);
        }
        ch.gate = gate;
        self.speaker_data = value & NMI_SC_SPKR_DAT_EN != 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock where one tick is one PIT cycle.
    fn pit() -> Pit8254 {
        Pit8254::new(PIT_HZ)
    }

    #[test]
    fn mode_2_rate_generator_raises_irq0_every_period() {
        let mut p = pit();
        p.write(3, 1, 0x34, Ticks(0)); // counter 0, LSB/MSB, mode 2
        p.write(0, 1, 0x00, Ticks(0));
        p.write(0, 1, 0x10, Ticks(0)); // 0x1000
        assert_eq!(p.next_deadline(), Some(Ticks(0xfff)));
        assert!(!p.advance(Ticks(0xffe)));
        assert!(p.advance(Ticks(0xfff)));
        assert_eq!(p.next_deadline(), Some(Ticks(0x1fff)));
        assert!(p.advance(Ticks(0x5000)), "missed periods fold into one edge");
        assert_eq!(p.next_deadline(), Some(Ticks(0x5fff)));
    }

    #[test]
    fn mode_0_counts_down_once_and_latch_reads_lsb_then_msb() {
        let mut p = pit();
        p.write(3, 1, 0x30, Ticks(0)); // counter 0, LSB/MSB, mode 0
        p.write(0, 1, 0x34, Ticks(0));
        p.write(0, 1, 0x12, Ticks(0));
        p.write(3, 1, 0x00, Ticks(0x34)); // latch
        assert_eq!(p.read(0, 1, Ticks(0x100)), 0x00);
        assert_eq!(p.read(0, 1, Ticks(0x100)), 0x12);
        assert!(p.advance(Ticks(0x1234)));
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn mode_3_square_wave_and_readback_status() {
        let mut p = pit();
        p.write(3, 1, 0xb6, Ticks(0)); // counter 2, LSB/MSB, mode 3
        p.port61_write(NMI_SC_TIM_CNT2_EN, Ticks(0));
        p.write(2, 1, 100, Ticks(0));
        p.write(2, 1, 0, Ticks(0));
        assert_ne!(p.port61_read(Ticks(10)) & NMI_SC_TMR2_OUT_STS, 0);
        assert_eq!(p.port61_read(Ticks(60)) & NMI_SC_TMR2_OUT_STS, 0);
        p.write(3, 1, 0xe8, Ticks(60)); // read-back status of counter 2
        assert_eq!(p.read(2, 1, Ticks(60)), 0x36);
    }

    #[test]
    fn port_61_refresh_bit_toggles_with_time() {
        let p = Pit8254::new(1_000_000_000);
        let a = p.port61_read(Ticks(0)) & NMI_SC_REF_TOGGLE;
        let b = p.port61_read(Ticks(REFRESH_NS)) & NMI_SC_REF_TOGGLE;
        let c = p.port61_read(Ticks(2 * REFRESH_NS)) & NMI_SC_REF_TOGGLE;
        assert_ne!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn invalid_accesses() {
        let mut p = pit();
        assert_eq!(p.read(3, 1, Ticks(0)), 0xff, "control word is write-only");
        assert_eq!(p.read(7, 1, Ticks(0)), 0xff);
        p.write(9, 1, 0x34, Ticks(0));
        p.write(0, 1, 5, Ticks(0)); // no control word written yet: ignored
        assert_eq!(p.next_deadline(), None);
    }
}
