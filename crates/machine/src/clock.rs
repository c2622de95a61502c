//! The virtual clock: guest time comes from the CPU's retired-instruction count at a fixed
//! rate ([`crate::MachineConfig::instructions_per_second`]), plus the time the machine skipped
//! while the CPU was halted waiting for a timer. Nothing reads the host clock, so the same
//! input gives the same result.

/// Guest time in ticks: one tick is the time one instruction takes at the configured rate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticks(pub u64);

/// Guest time in ticks and the conversions to and from nanoseconds and other clocks.
#[derive(Clone, Debug)]
pub struct Clock {
    ips: u64,
    icount: u64,
    idle: u64,
}

impl Clock {
    /// A clock at `instructions_per_second` (0 is treated as 1).
    pub fn new(instructions_per_second: u64) -> Self {
        Clock { ips: instructions_per_second.max(1), icount: 0, idle: 0 }
    }

    /// Instructions per second.
    pub fn rate(&self) -> u64 {
        self.ips
    }

    /// Now: retired instructions plus skipped idle time.
    pub fn now(&self) -> Ticks {
        Ticks(self.icount.saturating_add(self.idle))
    }

    /// Records the CPU's retired-instruction count (never moves time backwards).
    pub fn set_icount(&mut self, icount: u64) {
        self.icount = self.icount.max(icount);
    }

    /// The retired-instruction count last recorded.
    pub fn icount(&self) -> u64 {
        self.icount
    }

    /// Ticks skipped while the CPU was halted (or polling, see [`crate::poll`]).
    pub fn idle(&self) -> u64 {
        self.idle
    }

    /// Moves time forward to `t` without instructions retiring (the CPU is halted).
    pub fn skip_to(&mut self, t: Ticks) {
        let now = self.now().0;
        if t.0 > now {
            self.idle += t.0 - now;
        }
    }

    /// Ticks in `ns` nanoseconds (rounded up, at least 1 for a nonzero span).
    pub fn ticks_from_ns(&self, ns: u64) -> u64 {
        let t = (ns as u128 * self.ips as u128).div_ceil(1_000_000_000);
        u64::try_from(t).unwrap_or(u64::MAX)
    }

    /// Nanoseconds in `ticks`.
    pub fn ns_from_ticks(&self, ticks: u64) -> u64 {
        u64::try_from(ticks as u128 * 1_000_000_000 / self.ips as u128).unwrap_or(u64::MAX)
    }

    /// Cycles of a clock of `hz` elapsed by `t` (for example the 3.579545 MHz ACPI PM timer).
    pub fn cycles_at(&self, t: Ticks, hz: u64) -> u64 {
        (t.0 as u128 * hz as u128 / self.ips as u128) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_instructions_over_rate() {
        let mut c = Clock::new(1_000_000);
        c.set_icount(1_500);
        assert_eq!(c.now(), Ticks(1_500));
        assert_eq!(c.ns_from_ticks(c.now().0), 1_500_000);
        assert_eq!(c.ticks_from_ns(1_000_000), 1_000);
    }

    #[test]
    fn skipping_adds_idle_time_and_never_goes_back() {
        let mut c = Clock::new(100);
        c.set_icount(10);
        c.skip_to(Ticks(50));
        assert_eq!(c.now(), Ticks(50));
        c.skip_to(Ticks(20));
        assert_eq!(c.now(), Ticks(50));
        c.set_icount(5);
        assert_eq!(c.now(), Ticks(50));
        c.set_icount(12);
        assert_eq!(c.now(), Ticks(52));
    }

    #[test]
    fn pm_timer_frequency_from_ticks() {
        let c = Clock::new(1_000_000_000);
        // One second of guest time is 3,579,545 PM timer cycles.
        assert_eq!(c.cycles_at(Ticks(1_000_000_000), 3_579_545), 3_579_545);
    }
}
