//! Guest RAM, the firmware ROM and PAM shadowing.

pub mod block;
pub mod map;
pub mod pam;
pub mod rom;

pub use block::MemoryBlock;

/// Guest RAM: one zeroed block, read and written only by copying in and out (see
/// [`block`] for why no slice over it is ever handed out).
pub struct Ram {
    bytes: MemoryBlock,
}

impl Ram {
    /// `size` bytes of zeroed RAM.
    pub fn new(size: u64) -> Self {
        Ram { bytes: MemoryBlock::zeroed(size as usize) }
    }
}

impl std::ops::Deref for Ram {
    type Target = MemoryBlock;
    fn deref(&self) -> &MemoryBlock {
        &self.bytes
    }
}

impl std::ops::DerefMut for Ram {
    fn deref_mut(&mut self) -> &mut MemoryBlock {
        &mut self.bytes
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
