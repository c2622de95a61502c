//! A raw disk image as the disk controllers see it: 512-byte sectors held in memory. The
//! image is read once when the machine is built; guest writes change only this copy, never
//! the user's file.

use std::path::{Path, PathBuf};

/// Bytes per logical sector.
pub const SECTOR_SIZE: usize = 512;

/// The largest image: 2 GiB (it is held in memory).
pub const MAX_SIZE: u64 = 2 << 30;

/// Why a disk image cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The image file cannot be read.
    #[error("cannot read disk image {path}")]
    Read {
        /// The image file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The image file is empty.
    #[error("disk image {path} is empty")]
    Empty {
        /// The image file.
        path: PathBuf,
    },
    /// The image is not whole sectors.
    #[error("disk image {path} is {size} bytes, not a multiple of 512 (raw images hold whole 512-byte sectors)")]
    Size {
        /// The image file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
}

/// An in-memory raw disk.
#[derive(Clone, Debug)]
pub struct Disk {
    data: Vec<u8>,
}

impl Disk {
    /// A disk holding `data`; `None` if it is empty or not whole sectors.
    pub fn from_bytes(data: Vec<u8>) -> Option<Self> {
        (!data.is_empty() && data.len().is_multiple_of(SECTOR_SIZE)).then_some(Disk { data })
    }

    /// Reads a raw image file into memory.
    pub fn open(path: &Path) -> Result<Self, DiskError> {
        let data = crate::input::read_at_most(path, MAX_SIZE).map_err(|source| DiskError::Read { path: path.to_owned(), source })?;
        if data.is_empty() {
            return Err(DiskError::Empty { path: path.to_owned() });
        }
        let size = data.len() as u64;
        Disk::from_bytes(data).ok_or(DiskError::Size { path: path.to_owned(), size })
    }

    /// Number of sectors.
    pub fn sectors(&self) -> u64 {
        (self.data.len() / SECTOR_SIZE) as u64
    }

    /// Whether sectors `lba..lba + count` exist.
    pub fn contains(&self, lba: u64, count: u64) -> bool {
        lba.checked_add(count).is_some_and(|end| end <= self.sectors())
    }

    /// The bytes of sectors `lba..lba + count`, if they exist.
    pub fn read(&self, lba: u64, count: u64) -> Option<&[u8]> {
        if !self.contains(lba, count) {
            return None;
        }
        let start = lba as usize * SECTOR_SIZE;
        Some(&self.data[start..start + count as usize * SECTOR_SIZE])
    }

    /// Overwrites whole sectors starting at `lba`; false (and nothing written) if `data` is not
    /// whole sectors or runs past the end.
    pub fn write(&mut self, lba: u64, data: &[u8]) -> bool {
        if !data.len().is_multiple_of(SECTOR_SIZE) || !self.contains(lba, (data.len() / SECTOR_SIZE) as u64) {
            return false;
        }
        let start = lba as usize * SECTOR_SIZE;
        self.data[start..start + data.len()].copy_from_slice(data);
        true
    }

    /// The whole image.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_whole_sectors_in_range_only() {
        let mut d = Disk::from_bytes(vec![0; 4 * 512]).unwrap();
        assert_eq!(d.sectors(), 4);
        assert!(d.write(3, &[7; 512]));
        assert!(!d.write(3, &[7; 1024]));
        assert!(!d.write(0, &[7; 100]));
        assert_eq!(d.read(3, 1).unwrap()[511], 7);
        assert!(d.read(4, 1).is_none());
        assert!(d.read(u64::MAX, 2).is_none());
        assert!(Disk::from_bytes(vec![]).is_none());
        assert!(Disk::from_bytes(vec![0; 513]).is_none());
    }

    #[test]
    fn open_names_the_file_in_errors() {
        let dir = std::env::temp_dir().join(format!("smmlab-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("odd.img");
        std::fs::write(&p, [0u8; 700]).unwrap();
        let e = Disk::open(&p).unwrap_err().to_string();
        assert!(e.contains("odd.img") && e.contains("700"), "{e}");
        std::fs::write(&p, []).unwrap();
        assert!(Disk::open(&p).unwrap_err().to_string().contains("empty"));
        assert!(Disk::open(&dir.join("missing.img")).unwrap_err().to_string().contains("missing.img"));
    }
}
