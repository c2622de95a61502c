//! An optional record of the memory accesses the CPU makes in SMM, for `smmlab audit`: code
//! fetched outside SMRAM (call-outs), data read and written outside SMRAM (pointers the caller
//! passed, double fetches) and data written inside SMRAM. Off by default; when on, the board
//! hands the CPU no direct page pointers in SMM, so every SMM access reaches it.

use cpu::AccessKind;

/// What an SMM access did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmmAccessKind {
    /// An instruction fetch.
    Fetch,
    /// A data read.
    Read,
    /// A data write.
    Write,
}

/// One memory access made in SMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmmAccess {
    /// Position among all SMM accesses since the observer was last drained (fetches inside
    /// SMRAM, which are not kept, count too).
    pub seq: u64,
    /// Fetch, read or write.
    pub kind: SmmAccessKind,
    /// Physical address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u8,
    /// The access reached SMRAM (the chipset decoded it to SMRAM DRAM).
    pub smram: bool,
    /// The instruction that made it (for a fetch: the last one run before it, the branch that
    /// led there); 0 when the CPU does not report instructions.
    pub rip: u64,
}

/// A write another agent (a second CPU, a DMA engine) makes to memory right after SMM's first
/// read of `addr`: the race a double fetch loses, staged to prove it matters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaceWrite {
    /// The byte SMM reads first.
    pub addr: u64,
    /// What is written from `addr` once that read is done.
    pub bytes: Vec<u8>,
}

/// The record. Fetches inside SMRAM are counted but not kept.
#[derive(Clone, Debug, Default)]
pub struct SmmObserver {
    /// Whether accesses are recorded.
    pub enabled: bool,
    accesses: Vec<SmmAccess>,
    seq: u64,
    /// Accesses dropped because the record was full.
    pub dropped: u64,
    /// The instruction running now ([`cpu::Bus::smm_instruction`]).
    pub rip: u64,
    /// A race write waiting for SMM's first read of its address.
    pub race: Option<RaceWrite>,
    /// The fuzzer's mode ([`crate::Machine::fuzz_mode`]): fetches take no sequence number,
    /// and SMM reads and fetches of SMRAM pages go the CPU's fast path unrecorded.
    pub fuzz_mode: bool,
}

/// The most accesses kept between two drains.
const LIMIT: usize = 1 << 20;

impl SmmObserver {
    /// Where the record stands: the next access's sequence number and the instruction the
    /// accesses are attributed to (a snapshot keeps it, so a restored machine numbers and
    /// attributes its accesses as it did the first time).
    pub(crate) fn position(&self) -> (u64, u64) {
        (self.seq, self.rip)
    }

    /// Goes back to a [`SmmObserver::position`].
    pub(crate) fn set_position(&mut self, (seq, rip): (u64, u64)) {
        (self.seq, self.rip) = (seq, rip);
    }

    /// Records an SMM access (the caller checks `enabled`).
    pub fn record(&mut self, kind: AccessKind, addr: u64, size: u8, smram: bool) {
        let kind = match kind {
            AccessKind::Fetch => SmmAccessKind::Fetch,
            AccessKind::Write => SmmAccessKind::Write,
            _ => SmmAccessKind::Read,
        };
        let seq = self.seq;
        if kind != SmmAccessKind::Fetch || !self.fuzz_mode {
            self.seq += 1;
        }
        if kind == SmmAccessKind::Fetch && smram {
            return;
        }
        if self.accesses.len() >= LIMIT {
            self.dropped += 1;
            return;
        }
        self.accesses.push(SmmAccess { seq, kind, addr, size, smram, rip: self.rip });
    }

    /// The race write due after an SMM data read of `[addr, addr+size)`, taken (it happens
    /// once).
    pub fn race_due(&mut self, kind: AccessKind, addr: u64, size: u8) -> Option<RaceWrite> {
        let hit = self.race.as_ref().is_some_and(|r| kind == AccessKind::Read && r.addr >= addr && r.addr < addr + u64::from(size));
        if hit {
            self.race.take()
        } else {
            None
        }
    }

    /// The accesses recorded since the last call.
    pub fn drain(&mut self) -> Vec<SmmAccess> {
        self.seq = 0;
        std::mem::take(&mut self.accesses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_all_but_smram_fetches_and_counts_them() {
        let mut o = SmmObserver { enabled: true, ..Default::default() };
        o.record(AccessKind::Fetch, 0x1000, 1, true);
        o.record(AccessKind::Fetch, 0x2000, 1, false);
        o.record(AccessKind::Write, 0x3000, 8, true);
        o.record(AccessKind::Read, 0x4000, 4, false);
        let a = o.drain();
        assert_eq!(a.len(), 3);
        assert_eq!((a[0].seq, a[0].kind), (1, SmmAccessKind::Fetch));
        assert_eq!((a[1].seq, a[1].kind, a[1].smram), (2, SmmAccessKind::Write, true));
        assert_eq!((a[2].seq, a[2].kind), (3, SmmAccessKind::Read));
        assert!(o.drain().is_empty());
    }

    #[test]
    fn unnumbered_fetches_leave_the_numbers_to_data_accesses() {
        let mut o = SmmObserver { enabled: true, fuzz_mode: true, ..Default::default() };
        o.record(AccessKind::Fetch, 0x1000, 1, true);
        o.record(AccessKind::Fetch, 0x2000, 1, false);
        o.record(AccessKind::Write, 0x3000, 8, true);
        o.record(AccessKind::Read, 0x4000, 4, false);
        let a = o.drain();
        assert_eq!(a.iter().map(|a| a.seq).collect::<Vec<_>>(), [0, 0, 1]);
    }
}
