//! Guest RAM, the firmware ROM and PAM shadowing.

pub mod pam;
pub mod rom;

/// Guest RAM: one zeroed block.
pub struct Ram {
    bytes: Vec<u8>,
}

impl Ram {
    /// `size` bytes of zeroed RAM.
    pub fn new(size: u64) -> Self {
        Ram { bytes: vec![0; size as usize] }
    }
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
    /// Whether the size is zero.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }
    /// The bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
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
