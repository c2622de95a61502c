//! The external SMI# pin: a scenario schedules assertions at guest times. No enable or status
//! bit gates it: the pin is the CPU's SMI# input (Intel SDM vol. 3C §34.2 "System Management
//! Interrupt"), so a due assertion raises [`SmiCause::Pin`] on the latch directly. All
//! assertions due at one check merge into one request.

use super::{SmiCause, SmiLatch};
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

    /// Raises the pin's SMI at `now` if an assertion was due by then.
    pub fn raise_due(&mut self, now: Ticks, smi: &mut SmiLatch) {
        if self.expire(now) {
            smi.raise(SmiCause::Pin, now);
        }
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

    #[test]
    fn a_due_assertion_raises_the_pin_smi_once() {
        let (mut p, mut s) = (SmiPin::default(), SmiLatch::default());
        p.raise_at(Ticks(10));
        p.raise_at(Ticks(10));
        p.raise_due(Ticks(9), &mut s);
        assert!(!s.is_pending());
        p.raise_due(Ticks(10), &mut s);
        p.raise_due(Ticks(11), &mut s);
        assert_eq!(s.drain_raised().collect::<Vec<_>>(), vec![(SmiCause::Pin, Ticks(10))]);
    }
}
