//! The two allocators behind the services: the SMRAM heap (SmmAllocatePool/-Pages, images,
//! the runner's own SMM records) and the DXE heap (gBS->AllocatePool/-Pages). Pools grow up
//! from the bottom, pages come down from the top, as edk2's SMM core hands out images
//! top-down. Nothing is reused after a free: a freed block stays poisoned-free, so a
//! use-after-free reads what it wrote, and every allocation is listed in the report.

use std::ops::Range;

/// One allocator over `range`.
#[derive(Clone, Debug)]
pub struct Heap {
    range: Range<u64>,
    low: u64,
    high: u64,
    /// Live allocations: (start, bytes, pages?).
    pub live: Vec<(u64, u64, bool)>,
}

impl Heap {
    /// An empty heap over `range`.
    pub fn new(range: Range<u64>) -> Self {
        Heap { low: range.start, high: range.end, range, live: Vec::new() }
    }

    /// A pool block of `size` bytes, 16-aligned; None when the heap is full.
    pub fn pool(&mut self, size: u64) -> Option<u64> {
        let at = self.low.checked_add(15)? & !15;
        let end = at.checked_add(size.max(1))?;
        if end > self.high {
            return None;
        }
        self.low = end;
        self.live.push((at, size, false));
        Some(at)
    }

    /// `pages` 4 KiB pages at the top, aligned to `align` (a power of two, at least 4 KiB), at
    /// or below `max` (AllocateMaxAddress); None when they do not fit.
    pub fn pages(&mut self, pages: u64, align: u64, max: Option<u64>) -> Option<u64> {
        let size = pages.checked_mul(0x1000)?;
        let top = match max {
            Some(m) => self.high.min(m.checked_add(1)?),
            None => self.high,
        };
        let at = top.checked_sub(size)? & !(align.max(0x1000) - 1);
        if at < self.low || at < self.range.start {
            return None;
        }
        self.high = self.high.min(at);
        self.live.push((at, size, true));
        Some(at)
    }

    /// Frees the block at `at`; false if no live block starts there.
    pub fn free(&mut self, at: u64) -> bool {
        match self.live.iter().position(|b| b.0 == at) {
            Some(i) => {
                self.live.remove(i);
                true
            }
            None => false,
        }
    }

    /// The heap's address range.
    pub fn range(&self) -> Range<u64> {
        self.range.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_grow_up_pages_come_down_and_they_never_meet() {
        let mut h = Heap::new(0x10000..0x20000);
        assert_eq!(h.pool(10), Some(0x10000));
        assert_eq!(h.pool(1), Some(0x10010));
        assert_eq!(h.pages(2, 0x1000, None), Some(0x1e000));
        assert_eq!(h.pages(1, 0x4000, None), Some(0x1c000), "aligned down to 16 KiB");
        assert_eq!(h.pages(100, 0x1000, None), None);
        assert!(h.free(0x10010) && !h.free(0x10010));
        assert_eq!(h.pages(1, 0x1000, Some(0x12fff)), Some(0x12000), "at or below the maximum address");
    }
}
