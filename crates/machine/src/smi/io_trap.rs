//! I/O traps: port ranges whose reads or writes raise an SMI (as the ICH9 I/O trapping
//! registers IOTR0-3 do, ICH9 datasheet §10.1.49). A scenario or test configures them through
//! this API. A trapped access still completes to whatever device is at the port; the SMI is
//! raised synchronously, so the CPU takes it right after the instruction and records the
//! I/O-restart state ([`cpu::Pending::IO_TRAP`]).

use std::ops::RangeInclusive;

/// One trapped range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoTrapRange {
    /// Ports covered.
    pub ports: RangeInclusive<u16>,
    /// Trap reads (IN/INS).
    pub on_read: bool,
    /// Trap writes (OUT/OUTS).
    pub on_write: bool,
}

/// The configured traps.
#[derive(Clone, Debug, Default)]
pub struct IoTraps {
    ranges: Vec<IoTrapRange>,
}

impl IoTraps {
    /// Adds a trap on `ports` for reads and/or writes.
    pub fn add(&mut self, ports: RangeInclusive<u16>, on_read: bool, on_write: bool) {
        self.ranges.push(IoTrapRange { ports, on_read, on_write });
    }

    /// Removes every trap.
    pub fn clear(&mut self) {
        self.ranges.clear();
    }

    /// The configured traps.
    pub fn ranges(&self) -> &[IoTrapRange] {
        &self.ranges
    }

    /// Whether an access of `size` bytes at `port` hits a trap.
    pub fn hits(&self, port: u16, size: u8, write: bool) -> bool {
        if self.ranges.is_empty() {
            return false;
        }
        let first = port as u32;
        let last = first + size.max(1) as u32 - 1;
        self.ranges.iter().any(|r| {
            (if write { r.on_write } else { r.on_read }) && first <= *r.ports.end() as u32 && last >= *r.ports.start() as u32
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trap_matches_overlapping_accesses_of_its_direction() {
        let mut t = IoTraps::default();
        t.add(0x80..=0x80, false, true);
        assert!(t.hits(0x80, 1, true));
        assert!(t.hits(0x7f, 2, true));
        assert!(!t.hits(0x7c, 4, true) && !t.hits(0x81, 1, true));
        assert!(!t.hits(0x80, 1, false));
    }

    #[test]
    fn no_traps_no_hits_even_at_the_top_port() {
        let mut t = IoTraps::default();
        assert!(!t.hits(0xffff, 4, true));
        t.add(0xfffe..=0xffff, true, true);
        assert!(t.hits(0xffff, 4, false));
    }
}
