//! SMRAM as the chipset decodes it, read as SMM sees it.

use machine::Machine;
use std::ops::Range;

/// The SMRAM ranges in force: the A/B segment (or HSEG) when G_SMRAME, and TSEG when enabled.
pub fn ranges(m: &Machine) -> Vec<Range<u64>> {
    let Some(c) = m.board.smram_config() else { return vec![] };
    let mut r = Vec::new();
    if c.g_smrame {
        r.push(if c.h_smrame { machine::smram::HSEG } else { machine::smram::AB_SEG });
    }
    if let Some(t) = c.tseg() {
        r.push(t);
    }
    r
}

/// The largest SMRAM range, as (base, size).
pub fn largest(m: &Machine) -> Option<(u64, u64)> {
    ranges(m).into_iter().max_by_key(|r| r.end - r.start).map(|r| (r.start, r.end - r.start))
}

/// SMRAM's `ranges`, read as SMM sees them, as a snapshot to walk (crates/uefi).
pub fn snapshot_of(m: &mut Machine, ranges: &[Range<u64>]) -> uefi_smm::Smram {
    uefi_smm::Smram::new(ranges.iter().map(|r| (r.start, m.read_phys(r.start, (r.end - r.start) as usize, true))).collect())
}

/// The SMRAM ranges in force, read as SMM sees them.
pub fn snapshot(m: &mut Machine) -> uefi_smm::Smram {
    let rs = ranges(m);
    snapshot_of(m, &rs)
}

/// The bytes of every range, in order.
pub fn dump(m: &mut Machine) -> (Vec<Range<u64>>, Vec<u8>) {
    let rs = ranges(m);
    let mut out = Vec::new();
    for r in &rs {
        out.extend(m.read_phys(r.start, (r.end - r.start) as usize, true));
    }
    (rs, out)
}
