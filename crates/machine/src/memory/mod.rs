//! Guest RAM, the firmware ROM and PAM shadowing.

pub mod block;
pub mod map;
pub mod pam;
pub mod rom;

pub use block::MemoryBlock;

/// Guest RAM: one zeroed block, read and written only by copying in and out (see
/// [`block`] for why no slice over it is ever handed out).
///
/// Every write path goes through here (the CPU's and the host's writes, bus masters' DMA, and
/// the writable host pages the CPU caches: [`Ram::page_ptr`] for a write), so a snapshot can
/// keep a dirty-page log: [`Ram::snapshot`] starts it, the first write to a page after it
/// keeps a copy of the page as it was, and [`Ram::restore`] puts back the pages written since.
/// Without a snapshot a write pays one predictable branch.
pub struct Ram {
    bytes: MemoryBlock,
    log: Option<Box<DirtyLog>>,
}

/// The pages written since the snapshot and the snapshot's copies of every page written since
/// it was taken.
struct DirtyLog {
    /// One bit per 4 KiB page: written since the last restore.
    bits: Vec<u64>,
    /// The pages whose bit is set, in the order they were first written.
    dirty: Vec<u32>,
    /// The snapshot's bytes of each page written since it was taken (None: not yet written).
    saved: Vec<Option<Box<[u8; PAGE]>>>,
}

const PAGE: usize = 4096;

impl Ram {
    /// `size` bytes of zeroed RAM.
    pub fn new(size: u64) -> Self {
        Ram { bytes: MemoryBlock::zeroed(size as usize), log: None }
    }

    /// Notes a write to `[off, off + len)` before it lands.
    #[inline]
    fn touch(&mut self, off: u64, len: u64) {
        if let Some(log) = &mut self.log {
            log.touch(&self.bytes, off, len);
        }
    }

    /// Copies `data` to `off` (see [`MemoryBlock::write`]).
    pub fn write(&mut self, off: u64, data: &[u8]) -> bool {
        self.touch(off, data.len() as u64);
        self.bytes.write(off, data)
    }

    /// Writes `size` bytes of `v` at `off` (see [`MemoryBlock::write_le`]).
    #[inline]
    pub fn write_le(&mut self, off: u64, size: u8, v: u64) {
        self.touch(off, u64::from(size.clamp(1, 8)));
        self.bytes.write_le(off, size, v)
    }

    /// A host pointer to the page at `off` for the CPU's TLB (see [`MemoryBlock::page_ptr`]);
    /// for a write the page counts as written from now on (the CPU writes through the pointer
    /// without telling anyone, until its TLB is flushed).
    pub fn page_ptr(&mut self, off: u64, write: bool) -> Option<std::ptr::NonNull<u8>> {
        let p = self.bytes.page_ptr(off)?;
        if write {
            self.touch(off, PAGE as u64);
        }
        Some(p)
    }

    /// Takes a snapshot of RAM as it is now (a previous one is dropped): from now on every
    /// write is logged. The CPU must drop the writable host pages it holds (flush its TLB) so
    /// it asks again. Costs nothing until pages are written.
    pub fn snapshot(&mut self) {
        let pages = self.bytes.len().div_ceil(PAGE as u64) as usize;
        self.log = Some(Box::new(DirtyLog { bits: vec![0; pages.div_ceil(64)], dirty: Vec::new(), saved: (0..pages).map(|_| None).collect() }));
    }

    /// Puts back the snapshot's bytes of every page written since the snapshot or the last
    /// restore; returns their offsets (the CPU must drop the code it decoded there, and flush
    /// its TLB). Nothing without a snapshot.
    pub fn restore(&mut self) -> Vec<u64> {
        let Some(log) = &mut self.log else { return Vec::new() };
        let mut out = Vec::with_capacity(log.dirty.len());
        for p in log.dirty.drain(..) {
            let p = p as usize;
            log.bits[p / 64] &= !(1 << (p % 64));
            if let Some(b) = &log.saved[p] {
                self.bytes.write((p * PAGE) as u64, &b[..]);
            }
            out.push((p * PAGE) as u64);
        }
        out
    }

    /// [`Ram::restore`], also giving the bytes it changed: for each page put back, the span
    /// from its first to its last byte that differed from the snapshot's (none when the page
    /// was written back with what it held). Code decoded outside those spans is still right.
    pub fn restore_changed(&mut self) -> (usize, Vec<std::ops::Range<u64>>) {
        let Some(log) = &mut self.log else { return (0, Vec::new()) };
        let mut changed = Vec::new();
        let pages = log.dirty.len();
        let mut now = [0u8; PAGE];
        for p in log.dirty.drain(..) {
            let p = p as usize;
            log.bits[p / 64] &= !(1 << (p % 64));
            let Some(b) = &log.saved[p] else { continue };
            let at = (p * PAGE) as u64;
            self.bytes.read(at, &mut now);
            if let Some((f, l)) = differing_span(&now, &b[..]) {
                self.bytes.write(at, &b[..]);
                changed.push(at + f as u64..at + l as u64 + 1);
            }
        }
        (pages, changed)
    }

    /// Ends the snapshot: writes are no longer logged.
    pub fn drop_snapshot(&mut self) {
        self.log = None;
    }

    /// Whether a snapshot is being kept.
    pub fn has_snapshot(&self) -> bool {
        self.log.is_some()
    }

    /// Pages written since the snapshot or the last restore.
    pub fn dirty_pages(&self) -> usize {
        self.log.as_ref().map_or(0, |l| l.dirty.len())
    }
}

/// The first and last index at which two pages differ. Compared a cache line at a time (slice
/// equality is a memcmp), then byte by byte in the first and last lines that differ: most
/// restored pages differ in a few bytes or none, and this runs for every page of every input.
fn differing_span(a: &[u8; PAGE], b: &[u8]) -> Option<(usize, usize)> {
    const LINE: usize = 64;
    let lines = || a.chunks_exact(LINE).zip(b.chunks_exact(LINE)).enumerate();
    let (fi, (fa, fb)) = lines().find(|(_, (x, y))| x != y)?;
    let (li, (la, lb)) = lines().rev().find(|(_, (x, y))| x != y)?;
    let f = fi * LINE + fa.iter().zip(fb).position(|(x, y)| x != y)?;
    let l = li * LINE + la.iter().zip(lb).rposition(|(x, y)| x != y)?;
    Some((f, l))
}

impl DirtyLog {
    #[cold]
    #[inline(never)]
    fn touch(&mut self, bytes: &MemoryBlock, off: u64, len: u64) {
        let first = off / PAGE as u64;
        let last = off.saturating_add(len.max(1) - 1) / PAGE as u64;
        for p in first..=last {
            let Some(word) = self.bits.get_mut((p / 64) as usize) else { break };
            let bit = 1u64 << (p % 64);
            if *word & bit != 0 {
                continue;
            }
            *word |= bit;
            let pi = p as usize;
            self.dirty.push(p as u32);
            if self.saved[pi].is_none() {
                let mut b = Box::new([0u8; PAGE]);
                bytes.read(p * PAGE as u64, &mut b[..]);
                self.saved[pi] = Some(b);
            }
        }
    }
}

impl std::ops::Deref for Ram {
    type Target = MemoryBlock;
    fn deref(&self) -> &MemoryBlock {
        &self.bytes
    }
}

/// Reads `size` bytes little-endian from `buf` at `off` (bytes past the end read as 0xFF).
pub fn read_le(buf: &[u8], off: usize, size: u8) -> u64 {
    let mut v = 0u64;
    for k in 0..size as usize {
        let b = buf.get(off + k).copied().unwrap_or(0xff);
        v |= (b as u64) << (8 * k);
    }
    v
}

/// Writes `size` bytes little-endian into `buf` at `off` (bytes past the end are dropped).
pub fn write_le(buf: &mut [u8], off: usize, size: u8, v: u64) {
    for k in 0..size as usize {
        if let Some(b) = buf.get_mut(off + k) {
            *b = (v >> (8 * k)) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_puts_back_exactly_the_pages_written_since_the_snapshot() {
        let mut r = Ram::new(16 * 4096);
        r.write(0x1000, &[1; 8]);
        r.snapshot();
        assert_eq!(r.dirty_pages(), 0);
        // Every write path: a CPU/host write, a bus master's copy across two pages, and a
        // writable host page (written through the pointer, as the CPU's TLB does).
        r.write_le(0x1004, 4, 0xdead_beef);
        r.write(0x2ffe, &[9; 4]);
        let p = r.page_ptr(0x5000, true).unwrap();
        // SAFETY: p is a live 4 KiB page of `r`; no call into `r` is in progress.
        unsafe { p.as_ptr().add(3).write(0x77) };
        assert!(r.page_ptr(0x6000, false).is_some(), "a read-only page is not written");
        assert_eq!(r.dirty_pages(), 4);
        let mut back = r.restore();
        back.sort();
        assert_eq!(back, [0x1000, 0x2000, 0x3000, 0x5000]);
        assert_eq!(r.to_vec(0x1000..0x1008), [1; 8]);
        assert_eq!(r.to_vec(0x2ffe..0x3002), [0; 4]);
        assert_eq!(r.read_le(0x5003, 1), 0);
        // Again from the same snapshot, and nothing written: nothing to put back.
        r.write_le(0x1000, 1, 5);
        assert_eq!(r.restore(), [0x1000]);
        assert_eq!(r.read_le(0x1000, 1), 1);
        assert!(r.restore().is_empty());
        r.drop_snapshot();
        r.write_le(0x1000, 1, 5);
        assert_eq!(r.dirty_pages(), 0);
        assert!(r.restore().is_empty(), "no snapshot, no restore");
        assert_eq!(r.read_le(0x1000, 1), 5);
    }

    #[test]
    fn the_differing_span_runs_from_the_first_to_the_last_changed_byte() {
        let a = [0u8; PAGE];
        assert_eq!(differing_span(&a, &a), None);
        for (f, l) in [(0, 0), (63, 64), (5, 4095), (4095, 4095), (100, 3000)] {
            let mut b = a;
            b[f] = 1;
            b[l] = 2;
            assert_eq!(differing_span(&a, &b), Some((f, l)), "{f} {l}");
        }
        let mut r = Ram::new(4 * 4096);
        r.snapshot();
        r.write(0x1010, &[7; 3]);
        r.write_le(0x2000, 1, 0);
        let (pages, changed) = r.restore_changed();
        assert_eq!(pages, 2);
        assert_eq!(changed.len(), 1, "the zero written over zero changed nothing: {changed:?}");
        assert_eq!(changed[0], 0x1010..0x1013);
    }
}
