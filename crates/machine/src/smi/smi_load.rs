//! A replayed SMI load: SMIs measured on a real machine (`smmlab host --json`), asserted on
//! SMI# at their recorded guest times, each keeping the CPU in SMM for its recorded length.
//!
//! The SMIs enter through the SMI# pin, as a platform's SMIs the guest cannot see the cause of
//! ([`SmiCause::Load`]); no enable or status bit gates them. The handler's duration is
//! guest time the board lets pass at SMM entry, on top of the handler's own instructions (see
//! [`crate::board`]'s `smm_entered`), as for `--smm-entry-ns`: the OS sees it as a gap. SMIs
//! due at one check merge into one SMI# request, and their lengths add up.
//!
//! The pattern starts when the firmware locks SMRAM (D_LCK): from then on the firmware's SMM
//! is set up and the OS's time begins, as on the measured machine (an SMI before SMBASE
//! relocation would run whatever lies at the default SMBASE). It repeats with its period (the
//! recording's length) until the run ends, so a recording of a few seconds loads a run of any
//! length. Times are guest ticks.

use super::{SmiCause, SmiLatch};
use crate::clock::Ticks;

/// The recorded SMIs and where the replay stands.
#[derive(Clone, Debug, Default)]
pub struct SmiLoad {
    /// (start, length) in ticks from the start of the pattern, sorted by start.
    pattern: Vec<(u64, u64)>,
    /// The pattern's period in ticks (0: play once).
    period: u64,
    /// The next entry of `pattern` and the start of its repetition.
    next: usize,
    base: u64,
    /// Length of the SMIs raised and not yet served by an SMM entry.
    owed: u64,
    /// SMIs raised so far.
    raised: u64,
    /// Whether the pattern has started.
    started: bool,
}

impl SmiLoad {
    /// A load of SMIs at `(start, length)` ticks, repeating every `period` ticks (0: once).
    /// Entries past the period are dropped; the period is at least the last SMI's end.
    pub fn new(mut pattern: Vec<(u64, u64)>, period: u64) -> SmiLoad {
        pattern.sort_unstable();
        let period = if period == 0 { 0 } else { pattern.iter().map(|&(s, l)| s.saturating_add(l).saturating_add(1)).max().unwrap_or(0).max(period) };
        SmiLoad { pattern, period, ..Default::default() }
    }

    /// Starts the pattern at `now` (once; later calls do nothing).
    pub fn start(&mut self, now: Ticks) {
        if !self.started {
            self.started = true;
            self.base = now.0;
        }
    }

    /// The next SMI's time (None before [`SmiLoad::start`]).
    pub fn deadline(&self) -> Option<Ticks> {
        if !self.started {
            return None;
        }
        let (s, _) = self.pattern.get(self.next)?;
        Some(Ticks(self.base.saturating_add(*s)))
    }

    fn advance(&mut self) {
        self.next += 1;
        if self.next == self.pattern.len() && self.period > 0 {
            self.next = 0;
            self.base = self.base.saturating_add(self.period);
        }
    }

    /// Raises the load's SMI at `now` if any were due; their lengths are owed to the next SMM
    /// entry.
    pub fn raise_due(&mut self, now: Ticks, smi: &mut SmiLatch) {
        let mut due = false;
        while self.deadline().is_some_and(|d| d <= now) {
            self.owed = self.owed.saturating_add(self.pattern[self.next].1);
            self.raised += 1;
            due = true;
            self.advance();
        }
        if due {
            smi.raise(SmiCause::Load, now);
        }
    }

    /// At SMM entry: the time the handlers of the SMIs raised so far take.
    pub fn take_owed(&mut self) -> u64 {
        std::mem::take(&mut self.owed)
    }

    /// SMIs raised so far.
    pub fn raised(&self) -> u64 {
        self.raised
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smis_fire_at_their_times_and_repeat_with_the_period() {
        let (mut l, mut s) = (SmiLoad::new(vec![(300, 20), (100, 10)], 1000), SmiLatch::default());
        assert_eq!(l.deadline(), None, "not before the start");
        l.start(Ticks(0));
        l.start(Ticks(7));
        assert_eq!(l.deadline(), Some(Ticks(100)));
        l.raise_due(Ticks(99), &mut s);
        assert!(!s.is_pending());
        l.raise_due(Ticks(100), &mut s);
        assert!(s.is_pending());
        assert_eq!(l.take_owed(), 10);
        assert_eq!(l.deadline(), Some(Ticks(300)));
        s.ack();
        l.raise_due(Ticks(300), &mut s);
        assert_eq!((l.take_owed(), l.deadline()), (20, Some(Ticks(1100))));
        assert_eq!(s.drain_raised().map(|r| r.1).collect::<Vec<_>>(), vec![Ticks(100), Ticks(300)]);
    }

    #[test]
    fn smis_due_together_merge_and_their_lengths_add_up() {
        let (mut l, mut s) = (SmiLoad::new(vec![(10, 5), (20, 7)], 0), SmiLatch::default());
        l.start(Ticks(30));
        assert_eq!(l.deadline(), Some(Ticks(40)));
        l.raise_due(Ticks(80), &mut s);
        assert_eq!((l.take_owed(), l.raised(), l.deadline()), (12, 2, None));
        assert_eq!(s.drain_raised().count(), 1);
    }

    #[test]
    fn the_period_covers_the_whole_pattern() {
        let l = SmiLoad::new(vec![(900, 500)], 1000);
        assert_eq!(l.period, 1401);
        assert_eq!(SmiLoad::new(vec![], 1000).deadline(), None);
    }
}
