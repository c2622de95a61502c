//! A snapshot of SMRAM: its ranges and their bytes, read as SMM sees them.

use fwimage::Guid;

/// Memory the SMM core's records can be read from: a snapshot, or the machine itself.
pub trait Memory {
    /// The little-endian u64 at `addr`.
    fn u64(&self, addr: u64) -> Option<u64>;
    /// The GUID at `addr`.
    fn guid(&self, addr: u64) -> Option<Guid>;
}

impl Memory for Smram {
    fn u64(&self, addr: u64) -> Option<u64> {
        Smram::u64(self, addr)
    }
    fn guid(&self, addr: u64) -> Option<Guid> {
        Smram::guid(self, addr)
    }
}

/// SMRAM's ranges and bytes at one moment.
#[derive(Clone, Debug, Default)]
pub struct Smram {
    ranges: Vec<(u64, Vec<u8>)>,
}

impl Smram {
    /// A snapshot from `(base, bytes)` ranges.
    pub fn new(ranges: Vec<(u64, Vec<u8>)>) -> Self {
        Smram { ranges }
    }

    /// The ranges as (base, bytes).
    pub fn ranges(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.ranges.iter().map(|(b, d)| (*b, d.as_slice()))
    }

    /// Whether `addr` is in SMRAM.
    pub fn contains(&self, addr: u64) -> bool {
        self.bytes(addr, 1).is_some()
    }

    /// `len` bytes at `addr`, if they all lie in one range.
    pub fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
        self.ranges.iter().find_map(|(base, d)| {
            let off = usize::try_from(addr.checked_sub(*base)?).ok()?;
            d.get(off..off.checked_add(len)?)
        })
    }

    /// The bytes from `addr` to the end of its range.
    pub fn tail(&self, addr: u64) -> Option<&[u8]> {
        self.ranges.iter().find_map(|(base, d)| d.get(usize::try_from(addr.checked_sub(*base)?).ok()?..))
    }

    /// The little-endian u64 at `addr`.
    pub fn u64(&self, addr: u64) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(addr, 8)?.try_into().ok()?))
    }

    /// The GUID at `addr`.
    pub fn guid(&self, addr: u64) -> Option<Guid> {
        Guid::from_bytes(self.bytes(addr, 16)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stay_inside_one_range() {
        let s = Smram::new(vec![(0x1000, vec![1; 16]), (0x8000, (0..32).collect())]);
        assert_eq!(s.u64(0x8008), Some(u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15])));
        assert_eq!(s.u64(0x100c), None, "runs past the end of its range");
        assert_eq!(s.u64(0x2000), None);
        assert!(s.contains(0x801f) && !s.contains(0x8020));
        assert_eq!(s.tail(0x801e), Some(&[30u8, 31][..]));
    }
}
