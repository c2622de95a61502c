//! Option ROM files handed to the firmware through fw_cfg, as QEMU's `-option-rom FILE` does.
//!
//! Facts (QEMU 7.2 `hw/core/loader.c` `rom_add_option`/`rom_add_file`, `hw/nvram/fw_cfg.c`;
//! SeaBIOS 1.16.2 `src/optionroms.c`, `src/romfile.c`, `src/fw/paravirt.c`):
//! - each file becomes the fw_cfg file `genroms/<basename>` (the part of the path after the
//!   last '/'); fw_cfg names hold at most 55 bytes and a name may appear only once (QEMU stops
//!   with "duplicate fw_cfg file name");
//! - fw_cfg lists files in name order; SeaBIOS adds each directory entry to the front of its
//!   list, so `run_file_roms("genroms/")` deploys the ROMs in reverse name order, each in the
//!   next free 2 KiB-aligned slot from 0xC0000;
//! - SeaBIOS calls a ROM's init vector (offset 3) at once only if it has a PnP header; a
//!   legacy ROM (QEMU's `kvmvapic.bin` is one) is registered as a BCV instead and called at
//!   boot, where it prints "Running option rom at c000:0003".
//!
//! QEMU adds `kvmvapic.bin` by itself (the APIC's VAPIC, TCG included); smmlab adds no ROM
//! unless asked. The kvmvapic ROM's init code writes its VAPIC offset to I/O port 0x7E and
//! returns without reading anything back; smmlab decodes nothing at 0x7E, so the write is
//! dropped, which changes nothing SeaBIOS prints (QEMU answers it by patching the ROM for
//! its TPR acceleration, which only matters to a 32-bit guest OS that touches the TPR).
//!
//! QEMU itself loads any file; smmlab also refuses files SeaBIOS would not run: empty, not
//! whole 512-byte blocks, no 0x55AA signature, or a header length of 0 or beyond the file.

use std::path::{Path, PathBuf};

/// The fw_cfg directory QEMU puts `-option-rom` files in.
pub const GENROMS_DIR: &str = "genroms";
/// Longest fw_cfg file name (56 bytes with the terminating NUL).
pub const MAX_NAME: usize = 55;
/// Option ROMs are counted in 512-byte blocks.
pub const BLOCK: usize = 512;

/// Why an option ROM file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OptionRomError {
    /// The file cannot be read.
    #[error("cannot read option ROM {path}")]
    Read {
        /// The ROM file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is empty.
    #[error("option ROM {path} is empty")]
    Empty {
        /// The ROM file.
        path: PathBuf,
    },
    /// The file is not whole 512-byte blocks.
    #[error("option ROM {path} is {size} bytes, not a multiple of 512 (option ROMs are whole 512-byte blocks)")]
    Size {
        /// The ROM file.
        path: PathBuf,
        /// Its size in bytes.
        size: usize,
    },
    /// The file does not start with 0x55 0xAA.
    #[error("option ROM {path} has no 0x55AA signature (first bytes {first:02x?})")]
    Signature {
        /// The ROM file.
        path: PathBuf,
        /// Its first bytes.
        first: Vec<u8>,
    },
    /// The header's length byte disagrees with the file size.
    #[error("option ROM {path} declares {blocks} blocks of 512 bytes in its header (byte 2) but the file holds {size} bytes")]
    Length {
        /// The ROM file.
        path: PathBuf,
        /// Header byte 2: the length in 512-byte blocks.
        blocks: u8,
        /// The file size in bytes.
        size: usize,
    },
    /// The file name does not make a valid fw_cfg name.
    #[error("option ROM {path}: the fw_cfg name {name:?} needs a UTF-8 file name of at most {max} bytes", max = MAX_NAME - GENROMS_DIR.len() - 1)]
    Name {
        /// The ROM file.
        path: PathBuf,
        /// The fw_cfg name it would get.
        name: String,
    },
    /// Two option ROMs with the same file name.
    #[error("option ROM {path}: fw_cfg already has a file named {name} (two option ROMs with the same file name)")]
    Duplicate {
        /// The second ROM file.
        path: PathBuf,
        /// The fw_cfg name both would get.
        name: String,
    },
}

/// A checked option ROM and the fw_cfg name it goes under.
#[derive(Clone, Debug)]
pub struct OptionRom {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    /// `genroms/<basename>`.
    pub name: String,
    /// The ROM image.
    pub data: Vec<u8>,
}

impl OptionRom {
    /// Reads and checks an option ROM file.
    pub fn open(path: &Path) -> Result<Self, OptionRomError> {
        // 16 MiB, like a system ROM (several images can follow one another).
        let data = crate::input::read_at_most(path, 16 << 20).map_err(|source| OptionRomError::Read { path: path.to_owned(), source })?;
        Self::from_bytes(path, data)
    }

    /// Checks `data` as the contents of `path`.
    pub fn from_bytes(path: &Path, data: Vec<u8>) -> Result<Self, OptionRomError> {
        let p = || path.to_owned();
        if data.is_empty() {
            return Err(OptionRomError::Empty { path: p() });
        }
        if !data.len().is_multiple_of(BLOCK) {
            return Err(OptionRomError::Size { path: p(), size: data.len() });
        }
        if data[..2] != [0x55, 0xaa] {
            return Err(OptionRomError::Signature { path: p(), first: data[..2].to_vec() });
        }
        let blocks = data[2];
        if blocks == 0 || blocks as usize * BLOCK > data.len() {
            return Err(OptionRomError::Length { path: p(), blocks, size: data.len() });
        }
        let base = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let name = format!("{GENROMS_DIR}/{base}");
        if base.is_empty() || name.len() > MAX_NAME {
            return Err(OptionRomError::Name { path: p(), name });
        }
        Ok(OptionRom { path: p(), name, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rom(blocks: u8, len: usize) -> Vec<u8> {
        let mut d = vec![0u8; len];
        d[..3].copy_from_slice(&[0x55, 0xaa, blocks]);
        d
    }

    #[test]
    fn a_good_rom_is_named_after_its_basename() {
        let r = OptionRom::from_bytes(Path::new("/usr/share/qemu/kvmvapic.bin"), rom(18, 18 * 512)).unwrap();
        assert_eq!(r.name, "genroms/kvmvapic.bin");
        assert_eq!(r.data.len(), 9216);
        // A file longer than its header says is fine (SeaBIOS uses the header's length).
        assert!(OptionRom::from_bytes(Path::new("x.rom"), rom(1, 1024)).is_ok());
    }

    #[test]
    fn bad_roms_are_refused_with_the_file_named() {
        let p = Path::new("dir/bad.rom");
        let cases: [(Vec<u8>, &str); 6] = [
            (vec![], "is empty"),
            (rom(1, 513), "not a multiple of 512"),
            (vec![0u8; 512], "no 0x55AA signature"),
            ({ let mut d = rom(1, 512); d[1] = 0x55; d }, "no 0x55AA"),
            (rom(0, 512), "declares 0 blocks"),
            (rom(3, 1024), "declares 3 blocks"),
        ];
        for (data, what) in cases {
            let e = OptionRom::from_bytes(p, data).unwrap_err().to_string();
            assert!(e.contains(what) && e.contains("dir/bad.rom"), "{e}");
        }
        let long = format!("{}.bin", "a".repeat(60));
        let e = OptionRom::from_bytes(Path::new(&long), rom(1, 512)).unwrap_err().to_string();
        assert!(e.contains("fw_cfg name"), "{e}");
    }

    #[test]
    fn roms_go_into_fw_cfg_once_each_and_only_on_boards_with_fw_cfg() {
        use crate::{Machine, MachineConfig, MachineError};
        let rom_image = vec![0xf4u8; 0x10000];
        let mut m = Machine::pc(MachineConfig::default(), rom_image.clone()).unwrap();
        let a = OptionRom::from_bytes(Path::new("/a/b.bin"), rom(1, 512)).unwrap();
        m.add_option_rom(a.clone()).unwrap();
        let fw = &mut m.board.legacy().unwrap().fw_cfg;
        assert_eq!(fw.file("genroms/b.bin").map(<[u8]>::len), Some(512));
        // Same basename from another directory: refused, as QEMU refuses a duplicate name.
        let b = OptionRom::from_bytes(Path::new("/c/b.bin"), rom(1, 512)).unwrap();
        let e = m.add_option_rom(b).unwrap_err().to_string();
        assert!(e.contains("/c/b.bin") && e.contains("genroms/b.bin"), "{e}");
        let mut min = Machine::minimal(MachineConfig::default(), rom_image).unwrap();
        assert!(matches!(min.add_option_rom(a), Err(MachineError::NoFwCfg(_))));
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let e = OptionRom::open(Path::new("/nonexistent/smmlab/x.rom")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/smmlab/x.rom"), "{e}");
    }
}
