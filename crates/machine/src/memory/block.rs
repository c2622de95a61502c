//! A block of guest memory bytes (RAM or the ROM image) with one owner and one access
//! discipline, sound while the CPU holds host pointers into it.
//!
//! The CPU's soft TLB keeps raw pointers into these bytes ([`cpu::Bus::host_page`]) and reads
//! and writes through them between calls into the board, while the board and the bus masters
//! read and write the same bytes. Rust references to the bytes would assert exclusivity (or
//! immutability) that those pointers break, so this type never creates one:
//!
//! * the bytes live in a raw heap allocation that only this type owns and frees;
//! * every access here copies in or out through raw pointers derived from that allocation's
//!   base pointer, the same way the CPU's host pointers are derived ([`MemoryBlock::page_ptr`]),
//!   so all of them share one provenance and none invalidates another;
//! * there is no method that returns `&[u8]` or `&mut [u8]` over the bytes.
//!
//! Accesses are never concurrent: the type is neither `Send` nor `Sync` (it holds a raw
//! pointer), and the CPU only touches its pointers while it runs on the same thread with the
//! board lent to it.

use std::alloc::{self, Layout};
use std::ops::Range;
use std::ptr::NonNull;

const PAGE: usize = 4096;

/// Guest memory bytes, zeroed at creation.
pub struct MemoryBlock {
    base: NonNull<u8>,
    len: usize,
}

impl MemoryBlock {
    /// `len` zero bytes.
    ///
    /// # Panics
    /// If the host cannot allocate them (as `vec![0; len]` would).
    pub fn zeroed(len: usize) -> Self {
        if len == 0 {
            return MemoryBlock { base: NonNull::dangling(), len };
        }
        let layout = Self::layout(len);
        // SAFETY: `layout` has a nonzero size (len > 0).
        let p = unsafe { alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(p) else { alloc::handle_alloc_error(layout) };
        MemoryBlock { base, len }
    }

    /// A block holding a copy of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut b = Self::zeroed(bytes.len());
        b.write(0, bytes);
        b
    }

    fn layout(len: usize) -> Layout {
        // Byte alignment, as a Vec<u8> has: the allocator then takes zeroed pages from the OS
        // lazily (calloc), so gigabytes of guest RAM cost nothing until touched. The CPU reads
        // host pages unaligned.
        Layout::array::<u8>(len).unwrap_or_else(|_| alloc::handle_alloc_error(Layout::new::<u8>()))
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// Whether the block has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The byte range `[off, off + n)` as usize offsets, if it lies inside the block.
    fn span(&self, off: u64, n: usize) -> Option<usize> {
        let o = usize::try_from(off).ok()?;
        (o.checked_add(n)? <= self.len).then_some(o)
    }

    /// Copies `buf.len()` bytes at `off` into `buf`; false (and `buf` untouched) if the range
    /// does not lie inside the block.
    pub fn read(&self, off: u64, buf: &mut [u8]) -> bool {
        let Some(o) = self.span(off, buf.len()) else { return false };
        // SAFETY: o + buf.len() <= len, so the source lies inside the live allocation; `buf` is
        // a distinct Rust buffer (the block never hands out references), so they do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(self.base.as_ptr().add(o), buf.as_mut_ptr(), buf.len()) };
        true
    }

    /// Copies `data` to `off`; false (and nothing written) if the range does not lie inside
    /// the block.
    pub fn write(&mut self, off: u64, data: &[u8]) -> bool {
        let Some(o) = self.span(off, data.len()) else { return false };
        // SAFETY: as in `read`, with the roles swapped.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.as_ptr().add(o), data.len()) };
        true
    }

    /// A copy of the bytes in `r` (bytes past the end are left out).
    pub fn to_vec(&self, r: Range<u64>) -> Vec<u8> {
        let end = r.end.min(self.len());
        let mut v = vec![0; end.saturating_sub(r.start) as usize];
        self.read(r.start, &mut v);
        v
    }

    /// `size` (1..=8) bytes little-endian at `off`; bytes past the end read as 0xFF.
    #[inline]
    pub fn read_le(&self, off: u64, size: u8) -> u64 {
        let n = size.clamp(1, 8) as usize;
        if let Some(o) = self.span(off, n) {
            // SAFETY: o + n <= len: the read lies inside the live allocation (unaligned loads).
            unsafe {
                let p = self.base.as_ptr().add(o);
                match n {
                    1 => return p.read() as u64,
                    2 => return u16::from_le((p as *const u16).read_unaligned()) as u64,
                    4 => return u32::from_le((p as *const u32).read_unaligned()) as u64,
                    8 => return u64::from_le((p as *const u64).read_unaligned()),
                    _ => {}
                }
            }
        }
        let mut b = [0xffu8; 8];
        if !self.read(off, &mut b[..n]) {
            for (k, x) in b[..n].iter_mut().enumerate() {
                let mut one = [0xff];
                self.read(off.wrapping_add(k as u64), &mut one);
                *x = one[0];
            }
        }
        u64::from_le_bytes(b) & (u64::MAX >> (64 - 8 * n as u32))
    }

    /// Writes the low `size` (1..=8) bytes of `v` little-endian at `off`; bytes past the end
    /// are dropped.
    #[inline]
    pub fn write_le(&mut self, off: u64, size: u8, v: u64) {
        let n = size.clamp(1, 8) as usize;
        if let Some(o) = self.span(off, n) {
            // SAFETY: o + n <= len: the write lies inside the live allocation (unaligned stores).
            unsafe {
                let p = self.base.as_ptr().add(o);
                match n {
                    1 => return p.write(v as u8),
                    2 => return (p as *mut u16).write_unaligned((v as u16).to_le()),
                    4 => return (p as *mut u32).write_unaligned((v as u32).to_le()),
                    8 => return (p as *mut u64).write_unaligned(v.to_le()),
                    _ => {}
                }
            }
        }
        let b = v.to_le_bytes();
        if !self.write(off, &b[..n]) {
            for (k, x) in b[..n].iter().enumerate() {
                self.write(off.wrapping_add(k as u64), std::slice::from_ref(x));
            }
        }
    }

    /// A host pointer to the 4 KiB page at `off`, for the CPU's TLB: valid until the block is
    /// dropped. The caller reads and writes through it only while no call into this block is
    /// in progress (the CPU runs on the thread that owns the block, between board calls).
    pub fn page_ptr(&self, off: u64) -> Option<NonNull<u8>> {
        let o = self.span(off, PAGE)?;
        // SAFETY: o + PAGE <= len: the pointer stays inside the allocation. It is derived from
        // the base pointer without creating a reference, like every access above.
        Some(unsafe { self.base.add(o) })
    }
}

impl Clone for MemoryBlock {
    fn clone(&self) -> Self {
        let b = Self::zeroed(self.len);
        if self.len > 0 {
            // SAFETY: both allocations are live, distinct and `len` bytes long.
            unsafe { std::ptr::copy_nonoverlapping(self.base.as_ptr(), b.base.as_ptr(), self.len) };
        }
        b
    }
}

impl std::fmt::Debug for MemoryBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryBlock({} bytes)", self.len)
    }
}

impl Drop for MemoryBlock {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: `base` came from `alloc_zeroed` with this same layout and is freed once.
            // Host pointers the CPU may still hold are never used after the board (the owner)
            // is gone: the machine owns both and drops the CPU's TLB with it.
            unsafe { alloc::dealloc(self.base.as_ptr(), Self::layout(self.len)) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_in_and_out_and_refuses_ranges_past_the_end() {
        let mut m = MemoryBlock::zeroed(8192);
        assert!(m.write(4094, &[1, 2, 3, 4]));
        let mut b = [0u8; 4];
        assert!(m.read(4094, &mut b));
        assert_eq!(b, [1, 2, 3, 4]);
        assert!(!m.write(8190, &[9; 4]), "runs past the end");
        assert_eq!(m.to_vec(8188..9000), [0; 4], "nothing of a refused write lands");
        assert!(!m.read(u64::MAX - 1, &mut b), "no wrap-around");
        assert_eq!(m.read_le(4094, 4), 0x0403_0201);
        assert_eq!(m.read_le(8190, 4), 0xffff_0000, "bytes past the end read as all ones");
        m.write_le(8190, 4, 0x1122_3344);
        assert_eq!(m.to_vec(8190..8192), [0x44, 0x33], "bytes past the end are dropped");
        assert!(m.page_ptr(4096).is_some());
        assert!(m.page_ptr(4097).is_none());
    }

    #[test]
    fn host_pointers_and_accessors_see_each_other() {
        let mut m = MemoryBlock::zeroed(2 * 4096);
        let p = m.page_ptr(4096).unwrap();
        // SAFETY: p points at a live 4 KiB page of `m`; no call into `m` is in progress.
        unsafe { p.as_ptr().add(5).write(0xab) };
        assert_eq!(m.read_le(4096 + 5, 1), 0xab);
        m.write_le(4096 + 6, 1, 0xcd);
        // SAFETY: as above.
        assert_eq!(unsafe { p.as_ptr().add(6).read() }, 0xcd);
        let c = m.clone();
        assert_eq!(c.to_vec(4096 + 5..4096 + 7), [0xab, 0xcd]);
        assert!(MemoryBlock::zeroed(0).is_empty());
        assert_eq!(MemoryBlock::from_bytes(&[7; 3]).to_vec(0..3), [7; 3]);
    }
}
