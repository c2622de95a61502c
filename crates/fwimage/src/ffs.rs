//! FFS files (PI spec Vol. 3 §2.2.3 `EFI_FFS_FILE_HEADER` / `EFI_FFS_FILE_HEADER2`, file types
//! §2.1.4.1, attributes §2.2.3.1, states §2.2.3.2) and the walk over a volume's files.

use crate::bytes::{align_up, slice, sum8, u24_at, u64_at, u8_at};
use crate::error::FwError;
use crate::fv::VolumeHeader;
use crate::guid::Guid;
use serde::{Serialize, Serializer};
use std::fmt;

/// Size of `EFI_FFS_FILE_HEADER`.
pub const FFS_HEADER_SIZE: usize = 24;
/// Size of `EFI_FFS_FILE_HEADER2` (adds a 64-bit `ExtendedSize`), FFS3 only.
pub const FFS_HEADER2_SIZE: usize = 32;
/// Files start at 8-byte boundaries relative to the volume (§2.1.4).
pub const FFS_ALIGN: usize = 8;

/// `FFS_ATTRIB_LARGE_FILE`: the header is `EFI_FFS_FILE_HEADER2`.
pub const FFS_ATTRIB_LARGE_FILE: u8 = 0x01;
/// `FFS_ATTRIB_FIXED`: the file must not move.
pub const FFS_ATTRIB_FIXED: u8 = 0x04;
/// `FFS_ATTRIB_DATA_ALIGNMENT`: bits 5:3.
pub const FFS_ATTRIB_DATA_ALIGNMENT: u8 = 0x38;
/// `FFS_ATTRIB_CHECKSUM`: `IntegrityCheck.File` is a checksum of the data.
pub const FFS_ATTRIB_CHECKSUM: u8 = 0x40;
/// `IntegrityCheck.File` value when `FFS_ATTRIB_CHECKSUM` is clear (`FFS_FIXED_CHECKSUM`).
pub const FFS_FIXED_CHECKSUM: u8 = 0xaa;

/// `EFI_FILE_HEADER_CONSTRUCTION` state bit (§2.2.3.2).
pub const EFI_FILE_HEADER_CONSTRUCTION: u8 = 0x01;
/// `EFI_FILE_HEADER_VALID`.
pub const EFI_FILE_HEADER_VALID: u8 = 0x02;
/// `EFI_FILE_DATA_VALID`.
pub const EFI_FILE_DATA_VALID: u8 = 0x04;
/// `EFI_FILE_MARKED_FOR_UPDATE`.
pub const EFI_FILE_MARKED_FOR_UPDATE: u8 = 0x08;
/// `EFI_FILE_DELETED`.
pub const EFI_FILE_DELETED: u8 = 0x10;
/// `EFI_FILE_HEADER_INVALID`.
pub const EFI_FILE_HEADER_INVALID: u8 = 0x20;

/// `EFI_FV_FILETYPE` (§2.1.4.1). "SMM" types were renamed "MM" in PI 1.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    /// 0x01 `EFI_FV_FILETYPE_RAW`: unformatted data, no sections.
    Raw,
    /// 0x02 `EFI_FV_FILETYPE_FREEFORM`.
    Freeform,
    /// 0x03 `EFI_FV_FILETYPE_SECURITY_CORE`.
    SecurityCore,
    /// 0x04 `EFI_FV_FILETYPE_PEI_CORE`.
    PeiCore,
    /// 0x05 `EFI_FV_FILETYPE_DXE_CORE`.
    DxeCore,
    /// 0x06 `EFI_FV_FILETYPE_PEIM`.
    Peim,
    /// 0x07 `EFI_FV_FILETYPE_DRIVER`.
    Driver,
    /// 0x08 `EFI_FV_FILETYPE_COMBINED_PEIM_DRIVER`.
    CombinedPeimDriver,
    /// 0x09 `EFI_FV_FILETYPE_APPLICATION`.
    Application,
    /// 0x0A `EFI_FV_FILETYPE_MM` (formerly SMM).
    Mm,
    /// 0x0B `EFI_FV_FILETYPE_FIRMWARE_VOLUME_IMAGE`.
    FirmwareVolumeImage,
    /// 0x0C `EFI_FV_FILETYPE_COMBINED_MM_DXE`.
    CombinedMmDxe,
    /// 0x0D `EFI_FV_FILETYPE_MM_CORE`.
    MmCore,
    /// 0x0E `EFI_FV_FILETYPE_MM_STANDALONE`.
    MmStandalone,
    /// 0x0F `EFI_FV_FILETYPE_MM_CORE_STANDALONE`.
    MmCoreStandalone,
    /// 0xF0 `EFI_FV_FILETYPE_FFS_PAD`.
    FfsPad,
    /// 0xC0-0xDF: OEM types.
    Oem(u8),
    /// 0xE0-0xEF: debug/test types.
    Debug(u8),
    /// 0xF1-0xFF: FFS-reserved types.
    Ffs(u8),
    /// Any other value (0x00, 0x10-0xBF).
    Unknown(u8),
}

impl FileType {
    /// Decodes a `Type` byte.
    pub fn from_u8(v: u8) -> FileType {
        use FileType::*;
        match v {
            0x01 => Raw,
            0x02 => Freeform,
            0x03 => SecurityCore,
            0x04 => PeiCore,
            0x05 => DxeCore,
            0x06 => Peim,
            0x07 => Driver,
            0x08 => CombinedPeimDriver,
            0x09 => Application,
            0x0a => Mm,
            0x0b => FirmwareVolumeImage,
            0x0c => CombinedMmDxe,
            0x0d => MmCore,
            0x0e => MmStandalone,
            0x0f => MmCoreStandalone,
            0xf0 => FfsPad,
            0xc0..=0xdf => Oem(v),
            0xe0..=0xef => Debug(v),
            0xf1..=0xff => Ffs(v),
            _ => Unknown(v),
        }
    }

    /// The `Type` byte.
    pub fn as_u8(self) -> u8 {
        use FileType::*;
        match self {
            Raw => 0x01,
            Freeform => 0x02,
            SecurityCore => 0x03,
            PeiCore => 0x04,
            DxeCore => 0x05,
            Peim => 0x06,
            Driver => 0x07,
            CombinedPeimDriver => 0x08,
            Application => 0x09,
            Mm => 0x0a,
            FirmwareVolumeImage => 0x0b,
            CombinedMmDxe => 0x0c,
            MmCore => 0x0d,
            MmStandalone => 0x0e,
            MmCoreStandalone => 0x0f,
            FfsPad => 0xf0,
            Oem(v) | Debug(v) | Ffs(v) | Unknown(v) => v,
        }
    }

    /// Whether modules of this type run in MM (SMM): MM, COMBINED_MM_DXE, MM_CORE,
    /// MM_STANDALONE and MM_CORE_STANDALONE.
    pub fn is_mm(self) -> bool {
        matches!(
            self,
            FileType::Mm
                | FileType::CombinedMmDxe
                | FileType::MmCore
                | FileType::MmStandalone
                | FileType::MmCoreStandalone
        )
    }

    /// Whether the file body is a section stream (§2.1.4.1: every defined type but RAW and PAD).
    pub fn has_sections(self) -> bool {
        (0x02..=0x0f).contains(&self.as_u8())
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FileType::*;
        let s = match self {
            Raw => "RAW",
            Freeform => "FREEFORM",
            SecurityCore => "SECURITY_CORE",
            PeiCore => "PEI_CORE",
            DxeCore => "DXE_CORE",
            Peim => "PEIM",
            Driver => "DRIVER",
            CombinedPeimDriver => "COMBINED_PEIM_DRIVER",
            Application => "APPLICATION",
            Mm => "MM",
            FirmwareVolumeImage => "FIRMWARE_VOLUME_IMAGE",
            CombinedMmDxe => "COMBINED_MM_DXE",
            MmCore => "MM_CORE",
            MmStandalone => "MM_STANDALONE",
            MmCoreStandalone => "MM_CORE_STANDALONE",
            FfsPad => "FFS_PAD",
            Oem(v) => return write!(f, "OEM_{v:#04X}"),
            Debug(v) => return write!(f, "DEBUG_{v:#04X}"),
            Ffs(v) => return write!(f, "FFS_{v:#04X}"),
            Unknown(v) => return write!(f, "UNKNOWN_{v:#04X}"),
        };
        f.write_str(s)
    }
}

impl Serialize for FileType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A validated FFS file header.
#[derive(Debug, Clone)]
pub struct FileHeader {
    /// `Name`.
    pub name: Guid,
    /// `Type`.
    pub file_type: FileType,
    /// `Attributes`.
    pub attributes: u8,
    /// `State`, with the erase polarity undone (bits as §2.2.3.2 defines them).
    pub state: u8,
    /// Size of the whole file, header included (`Size` or `ExtendedSize`).
    pub size: u64,
    /// 24 or 32.
    pub header_size: usize,
}

impl FileHeader {
    /// Whether the file is live: its data is valid and it is neither deleted nor has an invalid
    /// header (§2.2.3.2).
    pub fn is_valid(&self) -> bool {
        self.state & EFI_FILE_DATA_VALID != 0
            && self.state & (EFI_FILE_DELETED | EFI_FILE_HEADER_INVALID) == 0
    }

    /// Parses the header at the start of `data` (which runs to the end of the volume) and checks
    /// its size. Checksums are checked by [`FileHeader::verify`].
    pub fn parse(
        data: &[u8],
        large_allowed: bool,
        erase_polarity: bool,
    ) -> Result<FileHeader, FwError> {
        let short = || FwError::truncated("file header", 0, FFS_HEADER_SIZE as u64, data);
        let name = Guid::from_bytes(data).ok_or_else(short)?;
        let file_type = FileType::from_u8(u8_at(data, 18).ok_or_else(short)?);
        let attributes = u8_at(data, 19).ok_or_else(short)?;
        let size24 = u24_at(data, 20).ok_or_else(short)?;
        let raw_state = u8_at(data, 23).ok_or_else(short)?;
        let state = if erase_polarity {
            !raw_state
        } else {
            raw_state
        };

        let (size, header_size) = if attributes & FFS_ATTRIB_LARGE_FILE != 0 {
            if !large_allowed {
                return Err(FwError::FileHeader(
                    "FFS_ATTRIB_LARGE_FILE set in a volume that is not FFS3".into(),
                ));
            }
            let ext = u64_at(data, FFS_HEADER_SIZE).ok_or_else(|| {
                FwError::truncated("large file header", 0, FFS_HEADER2_SIZE as u64, data)
            })?;
            (ext, FFS_HEADER2_SIZE)
        } else {
            (u64::from(size24), FFS_HEADER_SIZE)
        };
        if size < header_size as u64 {
            return Err(FwError::FileHeader(format!(
                "size {size:#x} is smaller than the {header_size}-byte header"
            )));
        }
        if !usize::try_from(size).is_ok_and(|s| s <= data.len()) {
            return Err(FwError::FileHeader(format!(
                "size {size:#x} runs past the end of the volume ({:#x} bytes left)",
                data.len()
            )));
        }
        Ok(FileHeader {
            name,
            file_type,
            attributes,
            state,
            size,
            header_size,
        })
    }

    /// Checks `IntegrityCheck` (§2.2.3): the header sums to zero with `State` and
    /// `IntegrityCheck.File` taken as zero; the data sums with `IntegrityCheck.File` to zero when
    /// `FFS_ATTRIB_CHECKSUM` is set, else `IntegrityCheck.File` is 0xAA. `file` is the whole file.
    pub fn verify(&self, file: &[u8]) -> Result<(), FwError> {
        let header = slice(file, 0, self.header_size)
            .ok_or_else(|| FwError::truncated("file header", 0, self.header_size as u64, file))?;
        let file_check = u8_at(header, 17).unwrap_or(0);
        let raw_state = u8_at(header, 23).unwrap_or(0);
        let sum = sum8(header)
            .wrapping_sub(file_check)
            .wrapping_sub(raw_state);
        if sum != 0 {
            return Err(FwError::FileHeaderChecksum { sum });
        }
        let data = file.get(self.header_size..).unwrap_or(&[]);
        if self.attributes & FFS_ATTRIB_CHECKSUM != 0 {
            let s = sum8(data).wrapping_add(file_check);
            if s != 0 {
                return Err(FwError::FileDataChecksum(format!(
                    "8-bit sum {s:#04x}, expected 0"
                )));
            }
        } else if file_check != FFS_FIXED_CHECKSUM {
            return Err(FwError::FileDataChecksum(format!(
                "IntegrityCheck.File is {file_check:#04x}, expected {FFS_FIXED_CHECKSUM:#04x} without FFS_ATTRIB_CHECKSUM"
            )));
        }
        Ok(())
    }
}

/// One file found in a volume.
#[derive(Debug, Clone)]
pub struct FileEntry {
    /// Offset of the header from the start of the volume.
    pub offset: usize,
    /// The header.
    pub header: FileHeader,
}

/// Lists the files of the volume `fv` (the whole volume, `FvLength` bytes) whose header is
/// `hdr`. Stops at free space (a header-sized run of erased bytes, §2.1.4). Valid files are
/// checksum-verified; deleted and invalid ones are skipped over.
pub fn files(fv: &[u8], hdr: &VolumeHeader) -> Result<Vec<FileEntry>, FwError> {
    let erase = hdr.erase_byte();
    let large = hdr.file_system == crate::fv::FileSystem::Ffs3;
    let mut out = Vec::new();
    let mut off = hdr.first_file_offset();
    while off < fv.len() {
        let rest = fv.get(off..).unwrap_or(&[]);
        let head = rest.get(..FFS_HEADER_SIZE.min(rest.len())).unwrap_or(&[]);
        if head.iter().all(|&b| b == erase) {
            break; // free space to the end of the volume
        }
        let guid = Guid::from_bytes(rest).unwrap_or_default();
        let ctx = |e: FwError| FwError::File {
            offset: off,
            guid,
            source: Box::new(e),
        };
        let header = FileHeader::parse(rest, large, hdr.erase_polarity()).map_err(ctx)?;
        // `parse` checked that the size fits in `rest`.
        let end = usize::try_from(header.size).unwrap_or(usize::MAX);
        let file = rest.get(..end).unwrap_or(&[]);
        if header.is_valid() {
            header.verify(file).map_err(ctx)?;
            out.push(FileEntry {
                offset: off,
                header,
            });
        }
        off = match off.checked_add(end).and_then(|o| align_up(o, FFS_ALIGN)) {
            Some(o) => o,
            None => break,
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_follow_the_spec() {
        assert_eq!(FileType::from_u8(0x0a).to_string(), "MM");
        assert_eq!(FileType::from_u8(0x0c).to_string(), "COMBINED_MM_DXE");
        assert_eq!(FileType::from_u8(0xc1).to_string(), "OEM_0xC1");
        for v in 0..=255u8 {
            assert_eq!(FileType::from_u8(v).as_u8(), v);
        }
        let mm: Vec<u8> = (0..=255u8)
            .filter(|&v| FileType::from_u8(v).is_mm())
            .collect();
        assert_eq!(mm, vec![0x0a, 0x0c, 0x0d, 0x0e, 0x0f]);
        assert!(!FileType::Raw.has_sections() && !FileType::FfsPad.has_sections());
        assert!(FileType::Driver.has_sections());
    }

    fn file(kind: u8, data: &[u8]) -> Vec<u8> {
        let size = (FFS_HEADER_SIZE + data.len()) as u32;
        let mut f = vec![0x11u8; 16];
        f.extend_from_slice(&[0, FFS_FIXED_CHECKSUM, kind, 0]);
        f.extend_from_slice(&size.to_le_bytes()[..3]);
        f.push(0);
        f[16] = 0u8.wrapping_sub(sum8(&f).wrapping_sub(FFS_FIXED_CHECKSUM));
        f[23] = !0x07; // header construction, header valid, data valid; polarity 1
        f.extend_from_slice(data);
        f
    }

    #[test]
    fn header_checksum_ignores_state_and_file_check() {
        let f = file(0x07, b"abcd");
        let h = FileHeader::parse(&f, false, true).unwrap();
        assert!(h.is_valid());
        assert_eq!(h.size, 28);
        h.verify(&f).unwrap();
        let mut bad = f.clone();
        bad[0] ^= 1;
        assert!(matches!(
            h.verify(&bad),
            Err(FwError::FileHeaderChecksum { .. })
        ));
    }

    #[test]
    fn size_past_the_volume_is_an_error() {
        let f = file(0x07, b"abcd");
        assert!(matches!(
            FileHeader::parse(&f[..26], false, true),
            Err(FwError::FileHeader(_))
        ));
        let mut large = f.clone();
        large[19] = FFS_ATTRIB_LARGE_FILE;
        assert!(FileHeader::parse(&large, false, true).is_err());
        assert!(FileHeader::parse(&large, true, true).is_err());
    }
}
