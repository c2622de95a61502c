//! What the [`Platform`] watches for the auditor: writes from outside SMM to TSEG while it is
//! open (one [`MachineEvent::SmramWrittenOutsideSmm`] per page) and SMM later fetching code
//! from such a page ([`MachineEvent::SmmRanCodeWrittenOutsideSmm`]), the RAM bus masters
//! write (reported to the machine so the CPU drops code it decoded there, and checked against
//! the open TSEG as CPU writes are), and the SMM access observer.

use super::dma::DmaWrites;
use super::memory_map::Target;
use super::platform::Platform;
use crate::chipset::Chipset;
use crate::events::MachineEvent;
use crate::smram::{self, Visibility};
use cpu::{Access, AccessKind};
use std::ops::Range;

impl<C: Chipset> Platform<C> {
    /// Follows the TSEG range for [`MachineEvent::SmramWrittenOutsideSmm`]: watched once
    /// TSEG has been enabled, open while writes from outside SMM reach its RAM.
    pub(super) fn watch_tseg(&mut self) {
        let c = self.smram;
        if c.tseg().is_some() || self.tseg_watch.is_some() {
            let start = c.low_ram_top.saturating_sub(c.tseg_size);
            self.tseg_watch = Some(start..c.low_ram_top);
            self.tseg_open = start < c.low_ram_top && matches!(self.route(start, AccessKind::Write, false), Target::Ram(_));
        }
    }

    /// Whether `addr` is in the watched TSEG range while writes from outside SMM reach it.
    pub(super) fn in_open_tseg(&self, addr: u64) -> bool {
        self.tseg_open && self.tseg_watch.as_ref().is_some_and(|r| r.contains(&addr))
    }

    /// The watched TSEG range while writes from outside SMM reach it.
    pub(super) fn open_tseg(&self) -> Option<Range<u64>> {
        self.tseg_open.then(|| self.tseg_watch.clone()).flatten()
    }

    /// A RAM write from outside SMM landed at `addr` in the open TSEG range.
    pub(super) fn tseg_written_outside_smm(&mut self, addr: u64) {
        if self.tseg_written.insert(addr & !0xfff) {
            self.events.push(MachineEvent::SmramWrittenOutsideSmm { addr, icount: self.clock.now().0 });
        }
    }

    /// An SMM instruction fetch from `page`: reports a page written from outside SMM.
    pub(super) fn smm_fetch(&mut self, page: u64) {
        if self.tseg_written.contains(&page) && self.foreign_code_seen.insert(page) {
            self.events.push(MachineEvent::SmmRanCodeWrittenOutsideSmm { addr: page, icount: self.clock.now().0 });
        }
    }

    /// After a bus master wrote `written`: the CPU may have decoded code from those bytes (it
    /// sees only its own writes), and writes that landed in an open TSEG (`watched`) are
    /// reported as CPU writes from outside SMM are.
    pub(super) fn after_dma(&mut self, written: &DmaWrites, watched: &[u64]) {
        if written.is_empty() {
            return;
        }
        self.dma_writes.merge(written);
        for &a in watched {
            self.tseg_written_outside_smm(a);
        }
    }

    /// The RAM bus masters wrote since the last call: the machine drops the code the CPU
    /// decoded there ([`DmaWrites::invalidate`]) before the CPU runs on.
    pub fn take_dma_writes(&mut self) -> DmaWrites {
        std::mem::take(&mut self.dma_writes)
    }

    /// Records an SMM access when the observer is on.
    /// Whether SMM's reads of the whole page at `page` reach SMRAM (as [`Self::observe`]
    /// decides for each access; SMRAM's ranges are page-aligned).
    pub(super) fn smram_page(&self, page: u64) -> bool {
        let page = page & !0xfff;
        smram::covers(&self.smram, page) && smram::covers(&self.smram, page | 0xfff) && matches!(smram::route(&self.smram, page, AccessKind::Read, true), Visibility::Ram(_))
    }

    pub(super) fn observe(&mut self, a: &Access, kind: AccessKind) {
        let in_smram = smram::covers(&self.smram, a.addr) && matches!(smram::route(&self.smram, a.addr, kind, true), Visibility::Ram(_));
        self.smm_observer.record(kind, a.addr, a.size, in_smram);
    }
}
