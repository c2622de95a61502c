//! The system flash of the PC boards: the [`Pflash`] units stacked down from 4 GiB, unit 0
//! (the firmware code) ending at 4 GiB and each further unit (the variable store) right below
//! the one before, as QEMU 7.2 lays out `-drive if=pflash` units (`pc_system_flash_map` in
//! hw/i386/pc_sysfw.c). The top 128 KiB of unit 0 also appear in the legacy BIOS window
//! 0xE0000-0xFFFFF as a read-only copy made when the machine is built (QEMU's "isa-bios"
//! region is such a copy too).

use super::pflash::{Pflash, BLOCK_SIZE};
use std::ops::Range;
use std::path::{Path, PathBuf};

const FOUR_GIB: u64 = 1 << 32;
/// The most flash the boards map: QEMU 7.2 refuses a combined size above 8 MiB
/// (`FLASH_SIZE_LIMIT` in hw/i386/pc_sysfw.c).
pub const MAX_TOTAL: u64 = 8 << 20;
/// The size of the legacy BIOS window copy.
const ISA_BIOS_SIZE: u64 = 128 << 10;

/// What is wrong with a flash image.
#[derive(Debug, thiserror::Error)]
pub enum PflashError {
    /// The file cannot be read.
    #[error("cannot read pflash file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The size is not a whole number of flash blocks.
    #[error("pflash file {path} is {size} bytes; a flash unit must be a non-zero multiple of {BLOCK_SIZE} bytes (one erase block)")]
    Size {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The units together are larger than the boards map.
    #[error("the pflash units together are {size} bytes; the boards map at most {MAX_TOTAL} bytes (8 MiB) of flash below 4 GiB")]
    Total {
        /// Their combined size.
        size: u64,
    },
    /// No unit was given.
    #[error("no pflash unit given")]
    None,
}

/// One flash image as the host gave it.
#[derive(Clone, Debug)]
pub struct PflashImage {
    /// Where it came from (the write-back target).
    pub path: PathBuf,
    /// The bytes.
    pub data: Vec<u8>,
    /// The guest may not change it.
    pub readonly: bool,
}

impl PflashImage {
    /// Reads `path` and checks its size.
    pub fn open(path: &Path, readonly: bool) -> Result<Self, PflashError> {
        let data = crate::input::read_at_most(path, MAX_TOTAL).map_err(|source| match crate::input::too_large(&source) {
            Some(crate::input::TooLarge { size, .. }) => PflashError::Total { size: size.unwrap_or(u64::MAX) },
            None => PflashError::Read { path: path.to_owned(), source },
        })?;
        Self::from_bytes(path, data, readonly)
    }

    /// An image from bytes already read (named `path` in errors).
    pub fn from_bytes(path: &Path, data: Vec<u8>, readonly: bool) -> Result<Self, PflashError> {
        let size = data.len() as u64;
        if size == 0 || !size.is_multiple_of(BLOCK_SIZE) {
            return Err(PflashError::Size { path: path.to_owned(), size });
        }
        Ok(PflashImage { path: path.to_owned(), data, readonly })
    }
}

/// One mapped unit.
pub struct PflashUnit {
    /// Its first guest-physical address.
    pub base: u64,
    /// Where its image came from.
    pub path: PathBuf,
    /// The flash.
    pub flash: Pflash,
}

/// The units below 4 GiB.
pub struct PflashBank {
    units: Vec<PflashUnit>,
    range: Range<u64>,
}

impl PflashBank {
    /// Maps `images` in order from 4 GiB down; `secure` makes every unit writable only from SMM
    /// (QEMU's `cfi.pflash01` property `secure=on`).
    pub fn new(images: Vec<PflashImage>, secure: bool) -> Result<Self, PflashError> {
        if images.is_empty() {
            return Err(PflashError::None);
        }
        let total: u64 = images.iter().map(|i| i.data.len() as u64).sum();
        if total > MAX_TOTAL {
            return Err(PflashError::Total { size: total });
        }
        let mut top = FOUR_GIB;
        let units = images
            .into_iter()
            .map(|i| {
                top -= i.data.len() as u64;
                PflashUnit { base: top, flash: Pflash::new(&i.data, i.readonly, secure), path: i.path }
            })
            .collect();
        Ok(PflashBank { units, range: top..FOUR_GIB })
    }

    /// The addresses the units cover.
    pub fn range(&self) -> Range<u64> {
        self.range.clone()
    }

    /// The units, unit 0 first.
    pub fn units(&self) -> &[PflashUnit] {
        &self.units
    }

    /// The units, to change.
    pub fn units_mut(&mut self) -> &mut [PflashUnit] {
        &mut self.units
    }

    /// The unit at `addr` and the offset into it.
    pub fn locate(&self, addr: u64) -> Option<(usize, u64)> {
        if !self.range.contains(&addr) {
            return None;
        }
        self.units.iter().position(|u| addr >= u.base).map(|i| (i, addr - self.units[i].base))
    }

    /// What the legacy BIOS window shows: the top 128 KiB of unit 0 (all of it if smaller).
    pub fn isa_bios(&self) -> Vec<u8> {
        let f = &self.units[0].flash;
        let len = f.len().min(ISA_BIOS_SIZE);
        f.contents()[(f.len() - len) as usize..].to_vec()
    }

    /// Whether any unit left read-array mode or changed its array since the last call (the
    /// CPU's direct pages and the code decoded from flash are stale).
    pub fn take_stale(&mut self) -> bool {
        self.units.iter_mut().fold(false, |stale, u| stale | u.flash.take_mode_change() | u.flash.take_dirty())
    }

    /// Writes taken from SMM, over every unit.
    pub fn writes_smm(&self) -> u64 {
        self.units.iter().map(|u| u.flash.writes_smm).sum()
    }

    /// Writes from outside SMM refused by a secure unit, over every unit.
    pub fn writes_refused(&self) -> u64 {
        self.units.iter().map(|u| u.flash.writes_refused).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(kib: usize, fill: u8, readonly: bool) -> PflashImage {
        PflashImage::from_bytes(Path::new("t.fd"), vec![fill; kib << 10], readonly).unwrap()
    }

    #[test]
    fn units_stack_down_from_4_gib_code_on_top() {
        // OVMF_CODE_4M (3568 KiB) and OVMF_VARS_4M (528 KiB), as QEMU maps them.
        let b = PflashBank::new(vec![image(3568, 1, true), image(528, 2, false)], true).unwrap();
        assert_eq!(b.units()[0].base, 0xffc8_4000);
        assert_eq!(b.units()[1].base, 0xffc0_0000);
        assert_eq!(b.range(), 0xffc0_0000..1 << 32);
        assert_eq!(b.locate(0xffff_fff0), Some((0, 0x37_bff0)));
        assert_eq!(b.locate(0xffc0_0010), Some((1, 0x10)));
        assert_eq!(b.locate(0xffbf_ffff), None);
        assert_eq!(b.isa_bios().len(), 128 << 10);
    }

    #[test]
    fn sizes_are_checked() {
        let e = PflashImage::from_bytes(Path::new("v.fd"), vec![0; 1000], false).err().unwrap();
        assert_eq!(e.to_string(), "pflash file v.fd is 1000 bytes; a flash unit must be a non-zero multiple of 4096 bytes (one erase block)");
        assert!(PflashImage::from_bytes(Path::new("v.fd"), vec![], false).is_err());
        let e = PflashBank::new(vec![image(8192, 0, true), image(4, 0, false)], true).err().unwrap();
        assert!(matches!(e, PflashError::Total { size } if size == (8 << 20) + 4096), "{e}");
        assert!(matches!(PflashBank::new(vec![], true), Err(PflashError::None)));
    }
}
