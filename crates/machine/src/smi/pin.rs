//! The external SMI# pin: a scenario schedules assertions at guest times.

use crate::clock::Ticks;
use std::collections::BTreeMap;

/// Scheduled assertions of the SMI# pin.
#[derive(Clone, Debug, Default)]
pub struct SmiPin {
    schedule: BTreeMap<Ticks, u32>,
}

impl SmiPin {
    /// Asserts the pin at guest time `at` (now or in the past means at the next check).
    pub fn raise_at(&mut self, at: Ticks) {
        *self.schedule.entry(at).or_default() += 1;
    }

    /// The next scheduled assertion.
    pub fn deadline(&self) -> Option<Ticks> {
        self.schedule.keys().next().copied()
    }

    /// Whether an assertion was due by `now` (all due assertions are consumed: they merge
    /// into one SMI# request).
    pub fn expire(&mut self, now: Ticks) -> bool {
        let later = self.schedule.split_off(&Ticks(now.0.saturating_add(1)));
        let due = std::mem::replace(&mut self.schedule, later);
        !due.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pin_fires_at_its_time() {
        let mut p = SmiPin::default();
        p.raise_at(Ticks(100));
        p.raise_at(Ticks(50));
        assert_eq!(p.deadline(), Some(Ticks(50)));
        assert!(!p.expire(Ticks(49)));
        assert!(p.expire(Ticks(60)));
        assert_eq!(p.deadline(), Some(Ticks(100)));
        assert!(p.expire(Ticks(100)));
        assert_eq!(p.deadline(), None);
    }
}
