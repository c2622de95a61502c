//! A re-arming deadline timer for SMI sources driven by the virtual clock (the ICH9 periodic
//! SMI and software SMI timers). It knows deadlines in [`Ticks`]; the owner decides what an
//! expiry does.

use crate::clock::Ticks;

/// A timer that expires `period` ticks after it is armed, and then every `period` ticks if
/// periodic.
#[derive(Clone, Debug)]
pub struct SmiTimer {
    period: u64,
    periodic: bool,
    deadline: Option<Ticks>,
}

impl SmiTimer {
    /// A disarmed timer.
    pub fn new(period: u64, periodic: bool) -> Self {
        SmiTimer { period: period.max(1), periodic, deadline: None }
    }

    /// The period in ticks.
    pub fn period(&self) -> u64 {
        self.period
    }

    /// Changes the period; an armed timer restarts from `now`.
    pub fn set_period(&mut self, period: u64, now: Ticks) {
        let period = period.max(1);
        if period != self.period {
            self.period = period;
            if self.deadline.is_some() {
                self.arm(now);
            }
        }
    }

    /// Starts the timer from `now`.
    pub fn arm(&mut self, now: Ticks) {
        self.deadline = Some(Ticks(now.0.saturating_add(self.period)));
    }

    /// Stops the timer.
    pub fn disarm(&mut self) {
        self.deadline = None;
    }

    /// When the timer expires next.
    pub fn deadline(&self) -> Option<Ticks> {
        self.deadline
    }

    /// Whether the timer expired by `now`. A periodic timer re-arms (skipping periods that
    /// passed, so one late check is one expiry); a one-shot timer disarms.
    pub fn expire(&mut self, now: Ticks) -> bool {
        match self.deadline {
            Some(d) if d <= now => {
                if self.periodic {
                    let missed = (now.0 - d.0) / self.period;
                    self.deadline = Some(Ticks(d.0.saturating_add((missed + 1).saturating_mul(self.period))));
                } else {
                    self.deadline = None;
                }
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_timer_fires_every_period() {
        let mut t = SmiTimer::new(100, true);
        t.arm(Ticks(0));
        assert!(!t.expire(Ticks(99)));
        assert!(t.expire(Ticks(100)));
        assert_eq!(t.deadline(), Some(Ticks(200)));
        assert!(t.expire(Ticks(350)));
        assert_eq!(t.deadline(), Some(Ticks(400)));
    }

    #[test]
    fn one_shot_timer_fires_once() {
        let mut t = SmiTimer::new(10, false);
        t.arm(Ticks(5));
        assert!(t.expire(Ticks(15)));
        assert!(!t.expire(Ticks(100)));
        assert_eq!(t.deadline(), None);
    }

    #[test]
    fn changing_the_period_restarts_an_armed_timer() {
        let mut t = SmiTimer::new(10, true);
        t.arm(Ticks(0));
        t.set_period(50, Ticks(7));
        assert_eq!(t.deadline(), Some(Ticks(57)));
    }
}
