//! An optional record of the decoded blocks the CPU executes in SMM, for `smmlab disasm`.
//!
//! Off by default ([`crate::Cpu::smm_blocks`] is `None`): `run_block` then pays one check of
//! `Cpu::smm`. When on, every block started in SMM bumps a counter keyed by the block's start
//! physical address, its code size and the SMM entry it ran in (1-based, counted by
//! [`SmmBlockRecord::entered`] since the record was switched on). The first decoding of each
//! block is kept so it can be disassembled after the run, even if the memory has since been
//! overwritten or hidden.

use crate::decode::Block;
use std::collections::BTreeMap;
use std::rc::Rc;

/// One (block, SMI) pair.
#[derive(Clone)]
pub struct BlockRun {
    /// The block as first decoded.
    pub block: Rc<Block>,
    /// How often it was started in this SMI (a fault may cut a run short; it still counts).
    pub count: u64,
}

/// The record.
#[derive(Clone, Default)]
pub struct SmmBlockRecord {
    /// SMM entries seen since the record was switched on (the current SMI's number).
    pub smis: u32,
    /// SMBASE at each entry, in entry order (`smbases[n - 1]` for SMI n).
    pub smbases: Vec<u32>,
    /// (block start physical address, bitness, SMI number) -> run.
    pub runs: BTreeMap<(u64, u32, u32), BlockRun>,
    /// Blocks not recorded because the record was full.
    pub dropped: u64,
}

/// The most (block, SMI) pairs kept.
const LIMIT: usize = 1 << 20;

impl SmmBlockRecord {
    /// Called on every SMM entry.
    pub fn entered(&mut self, smbase: u32) {
        self.smis = self.smis.saturating_add(1);
        if self.smbases.len() < LIMIT {
            self.smbases.push(smbase);
        }
    }

    /// Called for every block started in SMM.
    pub fn record(&mut self, block: &Rc<Block>) {
        let key = (block.phys, block.bitness, self.smis);
        if let Some(r) = self.runs.get_mut(&key) {
            r.count += 1;
        } else if self.runs.len() < LIMIT {
            self.runs.insert(key, BlockRun { block: block.clone(), count: 1 });
        } else {
            self.dropped += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_blocks_per_smm_entry() {
        let a = Rc::new(Block { rip: 0x8000, phys: 0x38000, bitness: 16, insns: Vec::new() });
        let b = Rc::new(Block { rip: 0x8000, phys: 0xa8000, bitness: 16, insns: Vec::new() });
        let mut r = SmmBlockRecord::default();
        r.entered(0x30000);
        r.record(&a);
        r.record(&a);
        r.entered(0xa0000);
        r.record(&b);
        assert_eq!(r.smis, 2);
        assert_eq!(r.smbases, vec![0x30000, 0xa0000]);
        let runs: Vec<_> = r.runs.iter().map(|(k, v)| (*k, v.count)).collect();
        assert_eq!(runs, vec![((0x38000, 16, 1), 2), ((0xa8000, 16, 2), 1)]);
    }
}
