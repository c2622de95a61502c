//! The hardware monitor of the built-in platform: a CPU temperature sensor and a fan, behind
//! an index/data pair at 0x295/0x296 in the style of a Super I/O environment controller. The
//! register map is smmlab's own (docs/builtin-platform.md).
//!
//! Thermal model, sampled every 1 ms of guest time while START is set: `load` is the fraction
//! of the millisecond the CPU was not halted (from the clock's idle time), and
//! `target = 35 + 70 x load x heat - 40 x duty/100 x fan_ok` degrees C. Each sample moves the
//! temperature `T += (target - T) / 20` (a 20 ms time constant), all in integer
//! milli-degrees, so runs are deterministic. Crossing HIGH upward (re-armed 5 degrees below)
//! or CRIT sets INT_STS; with SMI_EN the monitor's SMI# wire (ICH9 GPI 1) asserts.

use crate::clock::{Clock, Ticks};

/// The index port; the data port follows.
pub const PORT_INDEX: u16 = 0x295;
/// The data port.
pub const PORT_DATA: u16 = 0x296;
/// CONFIG: bit 0 START, bit 1 SMI_EN.
pub const REG_CONFIG: u8 = 0x00;
/// CONFIG.START: the monitor samples.
pub const CONFIG_START: u8 = 1 << 0;
/// CONFIG.SMI_EN: a crossing raises an SMI.
pub const CONFIG_SMI_EN: u8 = 1 << 1;
/// INT_STS (write one to clear): bit 0 HIGH crossed upward, bit 1 CRIT crossed.
pub const REG_INT_STS: u8 = 0x01;
/// INT_STS.HIGH: the HIGH limit was crossed upward.
pub const INT_HIGH: u8 = 1 << 0;
/// INT_STS.CRIT: the CRIT limit was crossed.
pub const INT_CRIT: u8 = 1 << 1;
/// TEMP, whole degrees C (RO).
pub const REG_TEMP: u8 = 0x10;
/// HIGH limit (reset 70).
pub const REG_HIGH: u8 = 0x11;
/// CRIT limit (reset 100).
pub const REG_CRIT: u8 = 0x12;
/// FAN_DUTY, 0-100 % (reset 30).
pub const REG_FAN_DUTY: u8 = 0x20;
/// Tachometer, rpm, low and high byte (RO).
pub const REG_FAN_RPM_LO: u8 = 0x21;
/// Tachometer high byte.
pub const REG_FAN_RPM_HI: u8 = 0x22;
/// The temperature at reset, milli-degrees.
pub const T_START_MC: i64 = 35_000;
/// Degrees below a limit at which it re-arms.
const HYSTERESIS_MC: i64 = 5_000;
/// Sample period.
const SAMPLE_NS: u64 = 1_000_000;
/// Time constant in samples.
const TAU_SAMPLES: i64 = 20;

/// A limit the temperature reached at a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitCrossed {
    /// Whole degrees when it happened.
    pub temp_c: u8,
    /// CRIT (true) or HIGH.
    pub crit: bool,
    /// Whether the monitor's SMI# asserted for it (START and SMI_EN).
    pub smi: bool,
    /// The sample's guest time.
    pub at: Ticks,
}

/// The monitor.
#[derive(Clone, Debug)]
pub struct HwMonitor {
    index: u8,
    config: u8,
    int_sts: u8,
    high: u8,
    crit: u8,
    duty: u8,
    /// Temperature, milli-degrees C.
    t_mc: i64,
    high_armed: bool,
    crit_armed: bool,
    /// Scenario knobs: heat in permille (1000 = 1.0) and whether the fan works.
    pub heat_permille: u32,
    /// Whether the fan turns (false: the `--fan-fail` scenario).
    pub fan_ok: bool,
    period: u64,
    /// The next sample while START is set.
    next: Option<Ticks>,
    /// Guest time and idle ticks at the last update (for the load).
    last_now: u64,
    last_idle: u64,
}

impl HwMonitor {
    /// A monitor at reset; `instructions_per_second` sets the sample period in ticks.
    pub fn new(instructions_per_second: u64) -> Self {
        HwMonitor {
            index: 0,
            config: 0,
            int_sts: 0,
            high: 70,
            crit: 100,
            duty: 30,
            t_mc: T_START_MC,
            high_armed: true,
            crit_armed: true,
            heat_permille: 1000,
            fan_ok: true,
            period: Clock::new(instructions_per_second).ticks_from_ns(SAMPLE_NS).max(1),
            next: None,
            last_now: 0,
            last_idle: 0,
        }
    }

    /// Temperature in milli-degrees C.
    pub fn temperature_mc(&self) -> i64 {
        self.t_mc
    }

    /// Whole degrees as TEMP reads (clamped to 0..=255).
    pub fn temp_c(&self) -> u8 {
        (self.t_mc.div_euclid(1000)).clamp(0, 255) as u8
    }

    /// FAN_DUTY.
    pub fn fan_duty(&self) -> u8 {
        self.duty
    }

    /// The tachometer, rpm.
    pub fn fan_rpm(&self) -> u16 {
        if self.fan_ok {
            self.duty as u16 * 60
        } else {
            0
        }
    }

    /// INT_STS.
    pub fn int_sts(&self) -> u8 {
        self.int_sts
    }

    /// The next sample (None unless START is set).
    pub fn next_deadline(&self) -> Option<Ticks> {
        self.next
    }

    /// Reads port 0x295 (`offset` 0) or 0x296 (1); other sizes read byte by byte.
    pub fn io_read(&self, offset: u16) -> u8 {
        match offset {
            0 => self.index,
            1 => self.reg(self.index),
            _ => 0xff,
        }
    }

    fn reg(&self, i: u8) -> u8 {
        match i {
            REG_CONFIG => self.config,
            REG_INT_STS => self.int_sts,
            REG_TEMP => self.temp_c(),
            REG_HIGH => self.high,
            REG_CRIT => self.crit,
            REG_FAN_DUTY => self.duty,
            REG_FAN_RPM_LO => self.fan_rpm() as u8,
            REG_FAN_RPM_HI => (self.fan_rpm() >> 8) as u8,
            _ => 0,
        }
    }

    /// Writes port 0x295 (`offset` 0) or 0x296 (1) at guest time `now` with `idle` ticks of
    /// halted time so far.
    pub fn io_write(&mut self, offset: u16, b: u8, now: Ticks, idle: u64) {
        match offset {
            0 => self.index = b,
            1 => match self.index {
                REG_CONFIG => {
                    let was = self.config & CONFIG_START != 0;
                    self.config = b & (CONFIG_START | CONFIG_SMI_EN);
                    match (was, self.config & CONFIG_START != 0) {
                        (false, true) => {
                            self.next = Some(Ticks(now.0.saturating_add(self.period)));
                            self.last_now = now.0;
                            self.last_idle = idle;
                        }
                        (true, false) => self.next = None,
                        _ => {}
                    }
                }
                REG_INT_STS => self.int_sts &= !b,
                REG_HIGH => self.high = b,
                REG_CRIT => self.crit = b,
                REG_FAN_DUTY => self.duty = b.min(100),
                _ => {}
            },
            _ => {}
        }
    }

    /// Takes the samples due by `now`; `idle` is the clock's total halted time. Returns the
    /// limits crossed, in order.
    pub fn advance(&mut self, now: Ticks, idle: u64) -> Vec<LimitCrossed> {
        let mut out = Vec::new();
        let Some(mut next) = self.next else { return out };
        if next > now {
            return out;
        }
        // The load over the interval since the last update applies to every sample in it.
        let span = now.0.saturating_sub(self.last_now).max(1);
        let halted = idle.saturating_sub(self.last_idle).min(span);
        let load_pm = ((span - halted) as u128 * 1000 / span as u128) as i64;
        self.last_now = now.0;
        self.last_idle = idle;
        let fan = if self.fan_ok { 400 * self.duty as i64 } else { 0 };
        let target = T_START_MC + 70 * load_pm * self.heat_permille as i64 / 1000 - fan;
        let mut steady = false;
        while next <= now {
            if !steady {
                let step = (target - self.t_mc) / TAU_SAMPLES;
                self.t_mc += step;
                // Nothing changes any more until the load does: skip to the last sample.
                steady = step == 0;
                self.check_limits(next, &mut out);
            }
            next = Ticks(next.0.saturating_add(self.period));
        }
        self.next = Some(next);
        out
    }

    fn check_limits(&mut self, at: Ticks, out: &mut Vec<LimitCrossed>) {
        let smi = crate::smi::thermal::monitor_asserts(self.config);
        for (crit, limit) in [(false, self.high), (true, self.crit)] {
            let limit_mc = limit as i64 * 1000;
            let armed = if crit { &mut self.crit_armed } else { &mut self.high_armed };
            if *armed && self.t_mc >= limit_mc {
                *armed = false;
                self.int_sts |= if crit { INT_CRIT } else { INT_HIGH };
                out.push(LimitCrossed { temp_c: self.temp_c(), crit, smi, at });
            } else if !*armed && self.t_mc <= limit_mc - HYSTERESIS_MC {
                *armed = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPS: u64 = 1_000_000; // 1 ms = 1000 ticks

    fn set(m: &mut HwMonitor, reg: u8, v: u8, now: u64, idle: u64) {
        m.io_write(0, reg, Ticks(now), idle);
        m.io_write(1, v, Ticks(now), idle);
    }

    fn get(m: &mut HwMonitor, reg: u8) -> u8 {
        m.io_write(0, reg, Ticks(0), 0);
        m.io_read(1)
    }

    #[test]
    fn reset_values_and_idle_without_start() {
        let mut m = HwMonitor::new(IPS);
        assert_eq!((get(&mut m, REG_TEMP), get(&mut m, REG_HIGH), get(&mut m, REG_CRIT)), (35, 70, 100));
        assert_eq!(get(&mut m, REG_FAN_DUTY), 30);
        assert_eq!(get(&mut m, REG_FAN_RPM_LO) as u16 | (get(&mut m, REG_FAN_RPM_HI) as u16) << 8, 1800);
        assert_eq!(m.next_deadline(), None, "no timer until START");
        assert!(m.advance(Ticks(1_000_000), 0).is_empty());
        assert_eq!(m.temperature_mc(), T_START_MC);
        m.fan_ok = false;
        assert_eq!(get(&mut m, REG_FAN_RPM_LO), 0);
        set(&mut m, REG_FAN_DUTY, 200, 0, 0);
        assert_eq!(get(&mut m, REG_FAN_DUTY), 100);
    }

    #[test]
    fn one_busy_sample_follows_the_formula() {
        let mut m = HwMonitor::new(IPS);
        set(&mut m, REG_CONFIG, CONFIG_START, 0, 0);
        assert_eq!(m.next_deadline(), Some(Ticks(1000)));
        m.advance(Ticks(1000), 0);
        // target = 35 + 70 - 12 = 93 degrees; step = (93000 - 35000) / 20 = 2900.
        assert_eq!(m.temperature_mc(), 37_900);
        assert_eq!(m.next_deadline(), Some(Ticks(2000)));
        // Half the next millisecond halted: target = 35 + 35 - 12 = 58.
        m.advance(Ticks(2000), 500);
        assert_eq!(m.temperature_mc(), 37_900 + (58_000 - 37_900) / 20);
    }

    #[test]
    fn busy_cpu_crosses_high_then_crit_with_a_failed_fan_and_hysteresis_rearms() {
        let mut m = HwMonitor::new(IPS);
        set(&mut m, REG_CONFIG, CONFIG_START | CONFIG_SMI_EN, 0, 0);
        let mut hits = m.advance(Ticks(200_000), 0);
        // Fan working, fully busy: target 93 C: HIGH only.
        assert_eq!(hits.len(), 1);
        assert!(!hits[0].crit && hits[0].smi && (70..72).contains(&hits[0].temp_c), "{hits:?}");
        assert_eq!(m.int_sts(), INT_HIGH);
        m.fan_ok = false;
        m.heat_permille = 1000;
        hits = m.advance(Ticks(400_000), 0);
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert!(hits[0].crit && hits[0].temp_c >= 100);
        assert_eq!(m.int_sts(), INT_HIGH | INT_CRIT);
        set(&mut m, REG_INT_STS, INT_HIGH | INT_CRIT, 400_000, 0);
        assert_eq!(m.int_sts(), 0);
        // Idle for 0.2 s: cools to 35 C, both limits re-arm; busy again crosses HIGH again.
        m.fan_ok = true;
        assert!(m.advance(Ticks(600_000), 200_000).is_empty());
        assert!(m.temp_c() < 40, "{}", m.temp_c());
        let hits = m.advance(Ticks(800_000), 200_000);
        assert_eq!(hits.iter().filter(|h| !h.crit).count(), 1);
    }

    #[test]
    fn stopping_clears_the_deadline_and_smi_needs_smi_en() {
        let mut m = HwMonitor::new(IPS);
        set(&mut m, REG_HIGH, 36, 0, 0);
        set(&mut m, REG_CONFIG, CONFIG_START, 0, 0);
        let hits = m.advance(Ticks(5_000), 0);
        assert!(hits.len() == 1 && !hits[0].smi);
        set(&mut m, REG_CONFIG, 0, 5_000, 0);
        assert_eq!(m.next_deadline(), None);
        let t = m.temperature_mc();
        assert!(m.advance(Ticks(50_000), 0).is_empty());
        assert_eq!(m.temperature_mc(), t);
        assert_eq!(m.io_read(7), 0xff);
    }
}
