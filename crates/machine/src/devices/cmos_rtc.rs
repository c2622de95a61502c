//! The MC146818-compatible CMOS RAM and real-time clock (the PIIX3/ICH9 "RTC" function).
//!
//! Ports (offsets from 0x70): 0 = index (bit 7 masks NMI, bits 6:0 select one of 128 bytes),
//! 1 = data. Registers from the Motorola MC146818A datasheet ("Address map", "Register A-D")
//! and the ICH9 datasheet (doc. 316972, §13.6 "Real Time Clock Registers"). The memory-size
//! and boot bytes are the PC/AT CMOS layout as QEMU fills it (`hw/i386/pc.c`
//! `pc_cmos_init`, facts only): SeaBIOS and the Bochs BIOS read them.
//!
//! Time comes only from the virtual clock: the clock reads [`RTC_EPOCH`] (2024-01-01
//! 00:00:00, a Monday) at guest time 0 and advances with guest time, so runs are
//! deterministic. Guest writes to the time registers set an offset from that clock.
//!
//! Interrupts (MC146818A "Interrupts", ICH9 §13.6.2): the periodic flag PF at the rate that
//! register A's RS3:RS0 select from the 32.768 kHz time base (RS = 1, 2: 256 and 128 Hz;
//! RS = n >= 3: 65536 >> n Hz), the update-ended flag UF at each second boundary, and the
//! alarm flag AF when the updated time matches the alarm bytes (a byte of 0xC0-0xFF matches
//! any value). The flags are set whether or not enabled; IRQF (register C bit 7) and the IRQ 8
//! line follow `flag & enable` for PIE/AIE/UIE in register B. Reading register C clears all
//! four flags and drops IRQ 8. With register B's SET bit the clock does not update, so UF and
//! AF stop.

use super::{ones, PortDevice};
use crate::clock::Ticks;

/// Seconds, minutes, hours, day of week, day of month, month, year (MC146818A address map).
pub const RTC_SECONDS: u8 = 0x00;
/// Seconds alarm.
pub const RTC_SECONDS_ALARM: u8 = 0x01;
/// Minutes.
pub const RTC_MINUTES: u8 = 0x02;
/// Minutes alarm.
pub const RTC_MINUTES_ALARM: u8 = 0x03;
/// Hours.
pub const RTC_HOURS: u8 = 0x04;
/// Hours alarm.
pub const RTC_HOURS_ALARM: u8 = 0x05;
/// Day of the week (1 = Sunday).
pub const RTC_DAY_OF_WEEK: u8 = 0x06;
/// Day of the month.
pub const RTC_DAY_OF_MONTH: u8 = 0x07;
/// Month.
pub const RTC_MONTH: u8 = 0x08;
/// Year within the century.
pub const RTC_YEAR: u8 = 0x09;
/// Register A: UIP (bit 7), divider (6:4), rate select (3:0).
pub const RTC_REG_A: u8 = 0x0a;
/// Register B: SET, PIE, AIE, UIE, SQWE, DM (binary), 24/12, DSE.
pub const RTC_REG_B: u8 = 0x0b;
/// Register C: IRQF, PF, AF, UF (read-only, cleared by reading).
pub const RTC_REG_C: u8 = 0x0c;
/// Register D: VRT (valid RAM and time).
pub const RTC_REG_D: u8 = 0x0d;
/// Register A UIP: an update is in progress.
pub const REG_A_UIP: u8 = 0x80;
/// Register A reset value: 32.768 kHz divider, 1024 Hz rate (what firmware programs).
pub const REG_A_RESET: u8 = 0x26;
/// Register B SET: updates are stopped while the time is set.
pub const REG_B_SET: u8 = 0x80;
/// Register B interrupt enables: periodic, alarm, update-ended.
pub const REG_B_PIE: u8 = 0x40;
/// Register B AIE: alarm interrupt enable.
pub const REG_B_AIE: u8 = 0x20;
/// Register B UIE: update-ended interrupt enable.
pub const REG_B_UIE: u8 = 0x10;
/// Register C flags: IRQF, PF, AF, UF.
pub const REG_C_IRQF: u8 = 0x80;
/// Register C PF: periodic interrupt flag.
pub const REG_C_PF: u8 = 0x40;
/// Register C AF: alarm flag.
pub const REG_C_AF: u8 = 0x20;
/// Register C UF: update-ended flag.
pub const REG_C_UF: u8 = 0x10;
/// Register A rate-select bits.
pub const REG_A_RS_MASK: u8 = 0x0f;
/// The time base the periodic rate divides (Hz).
pub const RTC_TIME_BASE_HZ: u64 = 32_768;
/// Alarm bytes at or above this value match every time value ("don't care").
pub const ALARM_DONT_CARE: u8 = 0xc0;
/// Seconds of skipped time the alarm search looks through (one day covers every alarm).
const ALARM_SEARCH_SECONDS: u64 = 86_400;
/// Register B DM: binary (not BCD) time and date.
pub const REG_B_DM_BINARY: u8 = 0x04;
/// Register B 24/12: 24-hour mode.
pub const REG_B_24H: u8 = 0x02;
/// Register B reset value: 24-hour mode, BCD.
pub const REG_B_RESET: u8 = REG_B_24H;
/// Register D VRT: the RAM and time are valid.
pub const REG_D_VRT: u8 = 0x80;
/// PC/AT CMOS bytes.
pub const CMOS_SHUTDOWN_STATUS: u8 = 0x0f;
/// Floppy drive types.
pub const CMOS_FLOPPY_TYPES: u8 = 0x10;
/// Equipment byte.
pub const CMOS_EQUIPMENT: u8 = 0x14;
/// Base memory in KiB, low byte.
pub const CMOS_BASE_MEM_LOW: u8 = 0x15;
/// Base memory in KiB, high byte.
pub const CMOS_BASE_MEM_HIGH: u8 = 0x16;
/// Memory from 1 MiB to 64 MiB in KiB, low byte.
pub const CMOS_EXT_MEM_LOW: u8 = 0x17;
/// Memory from 1 MiB to 64 MiB in KiB, high byte.
pub const CMOS_EXT_MEM_HIGH: u8 = 0x18;
/// Copy of `CMOS_EXT_MEM_LOW`.
pub const CMOS_EXT_MEM_LOW2: u8 = 0x30;
/// Copy of `CMOS_EXT_MEM_HIGH`.
pub const CMOS_EXT_MEM_HIGH2: u8 = 0x31;
/// Century, BCD.
pub const CMOS_CENTURY: u8 = 0x32;
/// Memory from 16 MiB to 4 GiB in 64 KiB units, low byte.
pub const CMOS_MEM_16M_LOW: u8 = 0x34;
/// Memory from 16 MiB to 4 GiB in 64 KiB units, high byte.
pub const CMOS_MEM_16M_HIGH: u8 = 0x35;
/// Boot flag 1: bits 7:4 third boot device, bit 0 = skip the floppy signature check.
pub const CMOS_BOOTFLAG1: u8 = 0x38;
/// Boot flag 2: bits 7:4 second, 3:0 first boot device (1 floppy, 2 disk, 3 CD-ROM).
pub const CMOS_BOOTFLAG2: u8 = 0x3d;
/// Memory above 4 GiB in 64 KiB units, bits 7:0 (QEMU's layout).
pub const CMOS_MEM_4G_LOW: u8 = 0x5b;
/// Memory above 4 GiB in 64 KiB units, bits 15:8.
pub const CMOS_MEM_4G_MID: u8 = 0x5c;
/// Memory above 4 GiB in 64 KiB units, bits 23:16.
pub const CMOS_MEM_4G_HIGH: u8 = 0x5d;
/// Number of CPUs minus one.
pub const CMOS_SMP_COUNT: u8 = 0x5f;
/// Index port bit 7: NMI disabled.
pub const INDEX_NMI_MASK: u8 = 0x80;
/// Seconds from 1970-01-01 to 2024-01-01 00:00:00 UTC, the time the RTC shows at power-on.
pub const RTC_EPOCH: u64 = 1_704_067_200;
/// Update-in-progress lasts 244 µs before each second boundary (MC146818A, "UIP").
const UIP_NS: u64 = 244_000;

/// The CMOS RAM and clock.
#[derive(Clone, Debug)]
pub struct CmosRtc {
    ram: [u8; 128],
    index: u8,
    nmi_masked: bool,
    ips: u64,
    /// Seconds added to the virtual clock by guest writes to the time registers.
    offset: i64,
    /// Guest time up to which the interrupt flags are up to date.
    events_at: Ticks,
}

impl CmosRtc {
    /// A CMOS with the memory-size bytes for `low_ram` bytes below 4 GiB and `high_ram` above,
    /// for a clock at `ips` ticks per second.
    pub fn new(low_ram: u64, high_ram: u64, ips: u64) -> Self {
        let mut ram = [0u8; 128];
        ram[RTC_REG_A as usize] = REG_A_RESET;
        ram[RTC_REG_B as usize] = REG_B_RESET;
        ram[RTC_REG_D as usize] = REG_D_VRT;
        // 640 KiB of base memory.
        ram[CMOS_BASE_MEM_LOW as usize] = 0x80;
        ram[CMOS_BASE_MEM_HIGH as usize] = 0x02;
        // KiB above 1 MiB, capped at 0xFFFF.
        let ext = (low_ram / 1024).saturating_sub(1024).min(0xffff) as u16;
        for (lo, hi) in [(CMOS_EXT_MEM_LOW, CMOS_EXT_MEM_HIGH), (CMOS_EXT_MEM_LOW2, CMOS_EXT_MEM_HIGH2)] {
            ram[lo as usize] = ext as u8;
            ram[hi as usize] = (ext >> 8) as u8;
        }
        // 64 KiB units above 16 MiB, capped at 0xFFFF.
        let m16 = (low_ram.saturating_sub(16 << 20) / 65536).min(0xffff) as u16;
        ram[CMOS_MEM_16M_LOW as usize] = m16 as u8;
        ram[CMOS_MEM_16M_HIGH as usize] = (m16 >> 8) as u8;
        // 64 KiB units above 4 GiB (24 bits).
        let m4g = (high_ram / 65536).min(0xff_ffff) as u32;
        ram[CMOS_MEM_4G_LOW as usize] = m4g as u8;
        ram[CMOS_MEM_4G_MID as usize] = (m4g >> 8) as u8;
        ram[CMOS_MEM_4G_HIGH as usize] = (m4g >> 16) as u8;
        ram[CMOS_SMP_COUNT as usize] = 0;
        // FPU present, PS/2 mouse present.
        ram[CMOS_EQUIPMENT as usize] = 0x06;
        // QEMU's default boot order "cad": disk, floppy, CD-ROM; floppy signature checked.
        ram[CMOS_BOOTFLAG2 as usize] = 0x12;
        ram[CMOS_BOOTFLAG1 as usize] = 0x30;
        CmosRtc { ram, index: 0, nmi_masked: false, ips: ips.max(1), offset: 0, events_at: Ticks(0) }
    }

    /// Whether the guest masked NMI through index bit 7.
    pub fn nmi_masked(&self) -> bool {
        self.nmi_masked
    }

    /// A CMOS byte as stored (no clock update), for the board and tests.
    pub fn byte(&self, index: u8) -> u8 {
        self.ram[index as usize & 0x7f]
    }

    /// Sets a CMOS byte (board configuration such as disk types).
    pub fn set_byte(&mut self, index: u8, value: u8) {
        self.ram[index as usize & 0x7f] = value;
    }

    fn ns(&self, now: Ticks) -> u64 {
        (now.0 as u128 * 1_000_000_000 / self.ips as u128) as u64
    }

    fn seconds(&self, now: Ticks) -> u64 {
        (RTC_EPOCH as i64 + (self.ns(now) / 1_000_000_000) as i64 + self.offset).max(0) as u64
    }

    fn encode(&self, v: u32) -> u8 {
        if self.ram[RTC_REG_B as usize] & REG_B_DM_BINARY != 0 {
            v as u8
        } else {
            (((v / 10) << 4) | (v % 10)) as u8
        }
    }

    fn decode(&self, v: u8) -> u32 {
        if self.ram[RTC_REG_B as usize] & REG_B_DM_BINARY != 0 {
            v as u32
        } else {
            (v >> 4) as u32 * 10 + (v & 0xf) as u32
        }
    }

    /// The broken-down time now: (sec, min, hour, weekday 1-7 Sunday=1, day, month, year).
    fn now_fields(&self, now: Ticks) -> [u32; 7] {
        let s = self.seconds(now);
        let days = s / 86400;
        let rem = s % 86400;
        let (y, m, d) = civil_from_days(days as i64);
        // 1970-01-01 was a Thursday (weekday 5 with Sunday = 1).
        let wday = ((days + 4) % 7) as u32 + 1;
        [(rem % 60) as u32, (rem / 60 % 60) as u32, (rem / 3600) as u32, wday, d, m, y as u32]
    }

    /// The periodic interrupt's divisor of the time base (None: RS = 0, no periodic flag).
    fn periodic_divisor(&self) -> Option<u64> {
        match self.ram[RTC_REG_A as usize] & REG_A_RS_MASK {
            0 => None,
            rs @ 1..=2 => Some(1 << (rs + 6)),
            rs => Some(1 << (rs - 1)),
        }
    }

    /// How many periodic ticks have happened by `t` since power-on.
    fn periodic_index(&self, t: Ticks, div: u64) -> u128 {
        t.0 as u128 * RTC_TIME_BASE_HZ as u128 / (div as u128 * self.ips as u128)
    }

    /// How many second boundaries have passed by `t`.
    fn second_index(&self, t: Ticks) -> u64 {
        t.0 / self.ips
    }

    fn alarm_matches(&self, second: u64) -> bool {
        let t = Ticks(second.saturating_mul(self.ips));
        let f = self.now_fields(t);
        [RTC_SECONDS_ALARM, RTC_MINUTES_ALARM, RTC_HOURS_ALARM].iter().all(|&i| {
            let a = self.ram[i as usize];
            a >= ALARM_DONT_CARE || a == self.read_time_byte(i, &f)
        })
    }

    /// The current time field that alarm byte `alarm` compares with, in the current format.
    fn read_time_byte(&self, alarm: u8, f: &[u32; 7]) -> u8 {
        match alarm {
            RTC_SECONDS_ALARM => self.encode(f[0]),
            RTC_MINUTES_ALARM => self.encode(f[1]),
            _ => self.hours_byte(f[2]),
        }
    }

    fn hours_byte(&self, h24: u32) -> u8 {
        if self.ram[RTC_REG_B as usize] & REG_B_24H != 0 {
            self.encode(h24)
        } else {
            let h = h24 % 12;
            self.encode(if h == 0 { 12 } else { h }) | if h24 >= 12 { 0x80 } else { 0 }
        }
    }

    /// Sets the flags for the events between the last update and `now`.
    pub fn advance(&mut self, now: Ticks) {
        let last = self.events_at;
        if now <= last {
            return;
        }
        self.events_at = now;
        let mut flags = 0;
        if let Some(div) = self.periodic_divisor() {
            if self.periodic_index(now, div) > self.periodic_index(last, div) {
                flags |= REG_C_PF;
            }
        }
        if self.ram[RTC_REG_B as usize] & REG_B_SET == 0 {
            let (a, b) = (self.second_index(last), self.second_index(now));
            if b > a {
                flags |= REG_C_UF;
                let first = a + 1 + (b - a).saturating_sub(ALARM_SEARCH_SECONDS);
                if (first..=b).any(|sec| self.alarm_matches(sec)) {
                    flags |= REG_C_AF;
                }
            }
        }
        self.ram[RTC_REG_C as usize] |= flags;
        self.update_irqf();
    }

    fn update_irqf(&mut self) {
        let b = self.ram[RTC_REG_B as usize];
        let c = &mut self.ram[RTC_REG_C as usize];
        let enabled = (b & REG_B_PIE != 0 && *c & REG_C_PF != 0) || (b & REG_B_AIE != 0 && *c & REG_C_AF != 0) || (b & REG_B_UIE != 0 && *c & REG_C_UF != 0);
        if enabled {
            *c |= REG_C_IRQF;
        }
    }

    /// The IRQ 8 line.
    pub fn irq(&self) -> bool {
        self.ram[RTC_REG_C as usize] & REG_C_IRQF != 0
    }

    /// The next time an enabled interrupt sets IRQF (None when none is enabled or IRQF is
    /// already set: nothing changes until register C is read).
    pub fn next_deadline(&self) -> Option<Ticks> {
        if self.irq() {
            return None;
        }
        let b = self.ram[RTC_REG_B as usize];
        let mut next: Option<Ticks> = None;
        let mut consider = |t: Ticks| next = Some(next.map_or(t, |n| n.min(t)));
        let now = self.events_at;
        if b & REG_B_PIE != 0 {
            if let Some(div) = self.periodic_divisor() {
                let k = self.periodic_index(now, div) + 1;
                let denom = RTC_TIME_BASE_HZ as u128;
                let t = (k * div as u128 * self.ips as u128).div_ceil(denom);
                consider(Ticks(t.min(u64::MAX as u128) as u64));
            }
        }
        if b & (REG_B_UIE | REG_B_AIE) != 0 && b & REG_B_SET == 0 {
            consider(Ticks((self.second_index(now) + 1).saturating_mul(self.ips)));
        }
        next
    }

    fn read_reg(&mut self, idx: u8, now: Ticks) -> u8 {
        let f = self.now_fields(now);
        match idx {
            RTC_SECONDS => self.encode(f[0]),
            RTC_MINUTES => self.encode(f[1]),
            RTC_HOURS => self.hours_byte(f[2]),
            RTC_DAY_OF_WEEK => self.encode(f[3]),
            RTC_DAY_OF_MONTH => self.encode(f[4]),
            RTC_MONTH => self.encode(f[5]),
            RTC_YEAR => self.encode(f[6] % 100),
            CMOS_CENTURY => self.encode(f[6] / 100),
            RTC_REG_A => {
                let in_second = self.ns(now) % 1_000_000_000;
                let uip = self.ram[RTC_REG_B as usize] & REG_B_SET == 0 && in_second >= 1_000_000_000 - UIP_NS;
                self.ram[RTC_REG_A as usize] & !REG_A_UIP | if uip { REG_A_UIP } else { 0 }
            }
            RTC_REG_C => {
                self.advance(now);
                std::mem::take(&mut self.ram[RTC_REG_C as usize])
            }
            _ => self.ram[idx as usize],
        }
    }

    fn write_reg(&mut self, idx: u8, v: u8, now: Ticks) {
        let time_field = match idx {
            RTC_SECONDS => Some(0),
            RTC_MINUTES => Some(1),
            RTC_HOURS => Some(2),
            RTC_DAY_OF_MONTH => Some(4),
            RTC_MONTH => Some(5),
            RTC_YEAR => Some(6),
            _ => None,
        };
        // Flags up to now follow the old rates and enables.
        self.advance(now);
        match idx {
            RTC_REG_A => self.ram[idx as usize] = v & !REG_A_UIP,
            RTC_REG_B => {
                self.ram[idx as usize] = v;
                // Enabling an interrupt whose flag is already set raises IRQF at once.
                self.update_irqf();
            }
            RTC_REG_C | RTC_REG_D => {} // read-only
            _ if time_field.is_some() => {
                let mut f = self.now_fields(now);
                let i = time_field.unwrap_or(0);
                let mut val = self.decode(v & if i == 2 { 0x7f } else { 0xff });
                if i == 6 {
                    val += f[6] / 100 * 100;
                }
                f[i] = val;
                if let Some(target) = seconds_from_fields(&f) {
                    let current = self.seconds(now) as i64;
                    self.offset += target - current;
                }
            }
            _ => self.ram[idx as usize] = v,
        }
    }
}

impl PortDevice for CmosRtc {
    fn read(&mut self, offset: u16, size: u8, now: Ticks) -> u32 {
        match offset {
            // The index register is write-only on the ICH9; reads return all ones.
            0 => ones(size),
            1 => self.read_reg(self.index, now) as u32 | (ones(size) & !0xff),
            _ => ones(size),
        }
    }

    fn write(&mut self, offset: u16, _size: u8, value: u32, now: Ticks) {
        match offset {
            0 => {
                self.nmi_masked = value as u8 & INDEX_NMI_MASK != 0;
                self.index = value as u8 & 0x7f;
            }
            1 => self.write_reg(self.index, value as u8, now),
            _ => {}
        }
    }
}

/// (year, month 1-12, day 1-31) of day `z` after 1970-01-01 (the proleptic Gregorian
/// calendar; days-from-civil arithmetic after H. Hinnant's published algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn seconds_from_fields(f: &[u32; 7]) -> Option<i64> {
    if f[0] > 59 || f[1] > 59 || f[2] > 23 || !(1..=12).contains(&f[5]) || !(1..=31).contains(&f[4]) {
        return None;
    }
    Some(days_from_civil(f[6] as i64, f[5], f[4]) * 86400 + f[2] as i64 * 3600 + f[1] as i64 * 60 + f[0] as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPS: u64 = 1_000_000;

    fn rd(c: &mut CmosRtc, idx: u8, now: u64) -> u8 {
        c.write(0, 1, idx as u32, Ticks(now));
        c.read(1, 1, Ticks(now)) as u8
    }

    #[test]
    fn time_registers_start_at_the_fixed_date_in_bcd() {
        let mut c = CmosRtc::new(128 << 20, 0, IPS);
        assert_eq!(rd(&mut c, RTC_SECONDS, 0), 0x00);
        assert_eq!(rd(&mut c, RTC_MINUTES, 0), 0x00);
        assert_eq!(rd(&mut c, RTC_HOURS, 0), 0x00);
        assert_eq!(rd(&mut c, RTC_DAY_OF_WEEK, 0), 2, "Monday");
        assert_eq!(rd(&mut c, RTC_DAY_OF_MONTH, 0), 0x01);
        assert_eq!(rd(&mut c, RTC_MONTH, 0), 0x01);
        assert_eq!(rd(&mut c, RTC_YEAR, 0), 0x24);
        assert_eq!(rd(&mut c, CMOS_CENTURY, 0), 0x20);
        // 61 s of guest time later.
        assert_eq!(rd(&mut c, RTC_SECONDS, 61 * IPS), 0x01);
        assert_eq!(rd(&mut c, RTC_MINUTES, 61 * IPS), 0x01);
    }

    #[test]
    fn binary_mode_and_guest_time_writes() {
        let mut c = CmosRtc::new(128 << 20, 0, IPS);
        c.write(0, 1, RTC_REG_B as u32, Ticks(0));
        c.write(1, 1, (REG_B_24H | REG_B_DM_BINARY) as u32, Ticks(0));
        assert_eq!(rd(&mut c, RTC_YEAR, 0), 24);
        c.write(0, 1, RTC_HOURS as u32, Ticks(0));
        c.write(1, 1, 13, Ticks(0));
        assert_eq!(rd(&mut c, RTC_HOURS, 0), 13);
        assert_eq!(rd(&mut c, RTC_DAY_OF_MONTH, 0), 1);
    }

    #[test]
    fn status_registers_a_to_d() {
        let mut c = CmosRtc::new(128 << 20, 0, IPS);
        assert_eq!(rd(&mut c, RTC_REG_A, 0), REG_A_RESET);
        assert_eq!(rd(&mut c, RTC_REG_A, IPS - 100) & REG_A_UIP, REG_A_UIP, "UIP before the second ends");
        assert_eq!(rd(&mut c, RTC_REG_B, 0), REG_B_RESET);
        assert_eq!(rd(&mut c, RTC_REG_C, 0), 0);
        assert_eq!(rd(&mut c, RTC_REG_D, 0), REG_D_VRT);
        c.write(0, 1, RTC_REG_D as u32, Ticks(0));
        c.write(1, 1, 0, Ticks(0));
        assert_eq!(rd(&mut c, RTC_REG_D, 0), REG_D_VRT, "register D is read-only");
    }

    #[test]
    fn memory_size_bytes_for_128_mib() {
        let mut c = CmosRtc::new(128 << 20, 0, IPS);
        assert_eq!([rd(&mut c, 0x15, 0), rd(&mut c, 0x16, 0)], [0x80, 0x02]);
        assert_eq!([rd(&mut c, 0x17, 0), rd(&mut c, 0x18, 0)], [0xff, 0xff]);
        assert_eq!([rd(&mut c, 0x30, 0), rd(&mut c, 0x31, 0)], [0xff, 0xff]);
        assert_eq!([rd(&mut c, 0x34, 0), rd(&mut c, 0x35, 0)], [0x00, 0x07]);
        assert_eq!([rd(&mut c, 0x5b, 0), rd(&mut c, 0x5c, 0), rd(&mut c, 0x5d, 0)], [0, 0, 0]);
        assert_eq!(rd(&mut c, CMOS_SMP_COUNT, 0), 0);
        let mut small = CmosRtc::new(16 << 20, 1 << 32, IPS);
        assert_eq!([rd(&mut small, 0x30, 0), rd(&mut small, 0x31, 0)], [0x00, 0x3c]);
        assert_eq!([rd(&mut small, 0x34, 0), rd(&mut small, 0x35, 0)], [0, 0]);
        assert_eq!([rd(&mut small, 0x5b, 0), rd(&mut small, 0x5c, 0), rd(&mut small, 0x5d, 0)], [0, 0, 1]);
    }

    #[test]
    fn index_bit_7_masks_nmi_and_ram_is_read_write() {
        let mut c = CmosRtc::new(128 << 20, 0, IPS);
        c.write(0, 1, 0x8f, Ticks(0));
        assert!(c.nmi_masked());
        c.write(1, 1, 0x5a, Ticks(0));
        assert_eq!(c.byte(0x0f), 0x5a);
        c.write(0, 1, 0x0f, Ticks(0));
        assert!(!c.nmi_masked());
        assert_eq!(c.read(1, 1, Ticks(0)), 0x5a);
    }

    #[test]
    fn invalid_accesses_read_ones() {
        let mut c = CmosRtc::new(128 << 20, 0, IPS);
        assert_eq!(c.read(0, 1, Ticks(0)), 0xff);
        assert_eq!(c.read(5, 1, Ticks(0)), 0xff);
        c.write(7, 1, 0x12, Ticks(0));
        assert_eq!(c.read(1, 2, Ticks(0)) & 0xff00, 0xff00);
    }

    fn wr(c: &mut CmosRtc, idx: u8, v: u8, now: u64) {
        c.write(0, 1, idx as u32, Ticks(now));
        c.write(1, 1, v as u32, Ticks(now));
    }

    #[test]
    fn update_and_alarm_interrupts() {
        let s = 1_000_000_000u64;
        let mut c = CmosRtc::new(128 << 20, 0, s);
        // Flags are set without enables, but no IRQ and no deadline.
        c.advance(Ticks(s + 5));
        assert!(!c.irq());
        assert_eq!(rd(&mut c, RTC_REG_C, s + 5), REG_C_UF | REG_C_PF);
        assert_eq!(c.next_deadline(), None);
        // Alarm at 00:00:03 (BCD), AIE: no UIE, so only the alarm second raises IRQ 8.
        wr(&mut c, RTC_SECONDS_ALARM, 0x03, s + 10);
        wr(&mut c, RTC_MINUTES_ALARM, 0x00, s + 10);
        wr(&mut c, RTC_HOURS_ALARM, 0xff, s + 10);
        wr(&mut c, RTC_REG_B, REG_B_24H | REG_B_AIE, s + 10);
        assert_eq!(c.next_deadline(), Some(Ticks(2 * s)));
        c.advance(Ticks(2 * s));
        assert!(!c.irq(), "00:00:02 does not match");
        assert_eq!(rd(&mut c, RTC_REG_C, 2 * s), REG_C_UF | REG_C_PF, "PF at 1024 Hz (RS = 6)");
        c.advance(Ticks(3 * s));
        assert!(c.irq());
        assert_eq!(rd(&mut c, RTC_REG_C, 3 * s), REG_C_IRQF | REG_C_AF | REG_C_UF | REG_C_PF);
        assert!(!c.irq());
        // UIE; SET stops updates.
        wr(&mut c, RTC_REG_B, REG_B_24H | REG_B_UIE | REG_B_SET, 3 * s);
        assert_eq!(c.next_deadline(), None);
        wr(&mut c, RTC_REG_B, REG_B_24H | REG_B_UIE, 3 * s);
        assert_eq!(c.next_deadline(), Some(Ticks(4 * s)));
    }

    #[test]
    fn civil_round_trip() {
        for d in [0i64, 59, 365, 11_016, 19_723, 40_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }
}
