//! Poll fast-forward: guest time runs faster while the guest only busy-waits on the ACPI PM
//! timer.
//!
//! Guest time is the retired-instruction count at a fixed rate (see [`crate::clock`]), so a
//! firmware delay measured on the PM timer costs the emulator as many instructions as the
//! delay is long: SeaBIOS's 10 ms AHCI link timeout on q35 is 10 M instructions at 1 GIPS,
//! two thirds of its whole boot. A halted CPU already skips time to the next timer; this does
//! the same for a CPU that polls.
//!
//! The rule depends only on the instruction stream, so the same input gives the same run:
//! - A *poll* is a PM timer read outside SMM less than [`MAX_GAP`] instructions after the
//!   previous one, with no port write, device MMIO write, interrupt acknowledge or SMM entry
//!   in between (any of those is a [`PollForward::disturb`] and ends the streak).
//! - After [`START`] polls in a row, each further poll moves guest time forward by
//!   `gap × (factor − 1)` ticks on top of the `gap` instructions, as if each instruction of the
//!   loop took `factor` ticks. The factor starts at 2 and doubles every [`STEP`] polls up to
//!   [`MAX_FACTOR`], so a short delay overshoots by a few percent at most, and a long one
//!   costs a few thousand loop iterations.
//! - The platform never skips past the next timer deadline (a timer that is due fires at its
//!   own guest time, as when halted), and the skipped ticks are counted (summary JSON
//!   `poll_skipped_ns`).
//!
//! To the guest this looks like a CPU that runs its polling loop more slowly: every device
//! keeps its timing in guest time. The TSC still counts retired instructions (as while
//! halted). [`crate::MachineConfig::poll_forward`] turns it off (`smmlab run --exact-time`).

/// Polls in a row before time is sped up.
pub const START: u32 = 16;
/// Polls per doubling of the factor.
pub const STEP: u32 = 32;
/// The largest factor.
pub const MAX_FACTOR: u64 = 1024;
/// The longest gap, in instructions, between two timer reads of one polling loop.
pub const MAX_GAP: u64 = 20_000;

/// The fast-forward state of a board.
#[derive(Clone, Debug)]
pub struct PollForward {
    /// Whether polls may skip time.
    pub enabled: bool,
    /// Retired-instruction count at the previous poll, None after a disturbance.
    last: Option<u64>,
    streak: u32,
    skipped: u64,
}

impl Default for PollForward {
    fn default() -> Self {
        PollForward { enabled: true, last: None, streak: 0, skipped: 0 }
    }
}

impl PollForward {
    /// Something other than waiting happened (a write, an interrupt, SMM): start over.
    #[inline]
    pub fn disturb(&mut self) {
        self.last = None;
        self.streak = 0;
    }

    /// A PM timer read at retired-instruction count `icount`: the ticks the guest may skip
    /// before the read (the caller caps them at the next timer deadline and reports what it
    /// skipped with [`PollForward::skipped`]).
    pub fn timer_read(&mut self, icount: u64) -> u64 {
        if !self.enabled {
            return 0;
        }
        let gap = match self.last.replace(icount) {
            Some(l) if icount >= l && icount - l <= MAX_GAP => icount - l,
            _ => {
                self.streak = 0;
                return 0;
            }
        };
        self.streak = self.streak.saturating_add(1);
        if self.streak < START {
            return 0;
        }
        let doublings = ((self.streak - START) / STEP + 1).min(MAX_FACTOR.trailing_zeros());
        gap * ((1u64 << doublings) - 1)
    }

    /// Records `ticks` actually skipped.
    pub fn add_skipped(&mut self, ticks: u64) {
        self.skipped = self.skipped.saturating_add(ticks);
    }

    /// Ticks skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tight_loop_speeds_up_after_the_start_and_doubles() {
        let mut p = PollForward::default();
        let mut skips = Vec::new();
        for i in 0..(START + 2 * STEP + 1) as u64 {
            skips.push(p.timer_read(100 * i));
        }
        assert!(skips[..START as usize].iter().all(|&s| s == 0), "{skips:?}");
        assert_eq!(skips[START as usize], 100, "factor 2: one more gap");
        assert_eq!(skips[(START + STEP) as usize], 300, "factor 4");
        assert_eq!(skips[(START + 2 * STEP) as usize], 700, "factor 8");
    }

    #[test]
    fn the_factor_is_capped() {
        let mut p = PollForward::default();
        let mut last = 0;
        for i in 0..10_000u64 {
            last = p.timer_read(10 * i);
        }
        assert_eq!(last, 10 * (MAX_FACTOR - 1));
    }

    #[test]
    fn disturbances_long_gaps_and_off_reset_the_streak() {
        let mut p = PollForward::default();
        for i in 0..100u64 {
            p.timer_read(50 * i);
        }
        assert!(p.timer_read(5_000) > 0);
        p.disturb();
        assert_eq!(p.timer_read(5_050), 0);
        for i in 0..100u64 {
            p.timer_read(6_000 + 50 * i);
        }
        assert_eq!(p.timer_read(6_000 + 50 * 100 + MAX_GAP + 1), 0, "a long gap is not a poll");
        let mut off = PollForward { enabled: false, ..Default::default() };
        assert!((0..100u64).all(|i| off.timer_read(50 * i) == 0));
    }
}
