//! Firmware volumes: the header (PI spec Vol. 3 §3.2.1 `EFI_FIRMWARE_VOLUME_HEADER`), its block
//! map, the extended header (§3.2.2 `EFI_FIRMWARE_VOLUME_EXT_HEADER`), and the search for volumes
//! in a flash image.

use crate::bytes::{align_up, slice, u16_at, u32_at, u64_at, u8_at};
use crate::error::FwError;
use crate::guid::Guid;

/// `Signature` value, `"_FVH"` (§3.2.1).
pub const FV_SIGNATURE: &[u8; 4] = b"_FVH";
/// Offset of `Signature` in the header (after ZeroVector[16], FileSystemGuid, FvLength).
pub const FV_SIGNATURE_OFFSET: usize = 40;
/// Offset of `BlockMap[]`: the end of the fixed part of the header.
pub const FV_BLOCK_MAP_OFFSET: usize = 56;
/// Size of one `EFI_FV_BLOCK_MAP_ENTRY` (NumBlocks: u32, Length: u32).
pub const FV_BLOCK_MAP_ENTRY_SIZE: usize = 8;
/// Volumes are searched for at this alignment in a flash image.
pub const FV_SCAN_ALIGN: usize = 8;
/// `EFI_FVB2_ERASE_POLARITY` attribute bit (§3.2.1.1): erased bytes read as 0xFF.
pub const EFI_FVB2_ERASE_POLARITY: u32 = 0x0000_0800;
/// Size of the fixed part of `EFI_FIRMWARE_VOLUME_EXT_HEADER` (FvName + ExtHeaderSize).
pub const FV_EXT_HEADER_SIZE: usize = 20;

/// `EFI_FIRMWARE_FILE_SYSTEM2_GUID` (§3.2.2, FFS2).
pub const EFI_FIRMWARE_FILE_SYSTEM2_GUID: Guid = Guid::from_fields(
    0x8c8ce578,
    0x8a3d,
    0x4f1c,
    [0x99, 0x35, 0x89, 0x61, 0x85, 0xc3, 0x2d, 0xd3],
);
/// `EFI_FIRMWARE_FILE_SYSTEM3_GUID` (§3.2.2, FFS3: large files allowed).
pub const EFI_FIRMWARE_FILE_SYSTEM3_GUID: Guid = Guid::from_fields(
    0x5473c07a,
    0x3dcb,
    0x4dca,
    [0xbd, 0x6f, 0x1e, 0x96, 0x89, 0xe7, 0x34, 0x9a],
);

/// The file system a volume declares in `FileSystemGuid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileSystem {
    /// FFS2: files up to 16 MiB.
    Ffs2,
    /// FFS3: FFS2 plus large files (`EFI_FFS_FILE_HEADER2`).
    Ffs3,
    /// Anything else (for example an NV variable store); its contents are not walked.
    Other(Guid),
}

impl FileSystem {
    /// Whether the volume holds FFS files.
    pub fn is_ffs(self) -> bool {
        matches!(self, FileSystem::Ffs2 | FileSystem::Ffs3)
    }
}

/// One run of equally sized blocks (`EFI_FV_BLOCK_MAP_ENTRY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockMapEntry {
    /// Number of blocks.
    pub num_blocks: u32,
    /// Size of each block.
    pub length: u32,
}

/// A validated firmware volume header.
#[derive(Debug, Clone)]
pub struct VolumeHeader {
    /// `FileSystemGuid`.
    pub file_system_guid: Guid,
    /// What `file_system_guid` means.
    pub file_system: FileSystem,
    /// `FvLength`: the whole volume, header included.
    pub length: u64,
    /// `Attributes` (`EFI_FVB_ATTRIBUTES_2`).
    pub attributes: u32,
    /// `HeaderLength`, block map included.
    pub header_length: u16,
    /// `ExtHeaderOffset` (0: none).
    pub ext_header_offset: u16,
    /// `Revision`.
    pub revision: u8,
    /// `BlockMap[]` without its `{0, 0}` terminator.
    pub block_map: Vec<BlockMapEntry>,
    /// `FvName` from the extended header, when there is one.
    pub name: Option<Guid>,
}

impl VolumeHeader {
    /// Whether erased flash reads as 0xFF in this volume.
    pub fn erase_polarity(&self) -> bool {
        self.attributes & EFI_FVB2_ERASE_POLARITY != 0
    }

    /// The erased-byte value.
    pub fn erase_byte(&self) -> u8 {
        if self.erase_polarity() {
            0xff
        } else {
            0
        }
    }

    /// Offset of the first file: the header, rounded up to 8 bytes (§2.1.4: files are 8-byte
    /// aligned relative to the volume).
    pub fn first_file_offset(&self) -> usize {
        align_up(usize::from(self.header_length), 8).unwrap_or(usize::MAX)
    }

    /// Checks the signature, `HeaderLength` and the header checksum: enough to decide whether
    /// `data` starts with a volume at all (used when searching a flash image).
    pub fn check_signature_and_checksum(data: &[u8]) -> Result<(), FwError> {
        let sig = slice(data, FV_SIGNATURE_OFFSET, 4)
            .ok_or_else(|| FwError::truncated("volume header", 0, 56, data))?;
        if sig != FV_SIGNATURE {
            return Err(FwError::VolumeHeader("signature is not \"_FVH\"".into()));
        }
        let header_length =
            u16_at(data, 48).ok_or_else(|| FwError::truncated("volume header", 0, 56, data))?;
        let hl = usize::from(header_length);
        if hl < FV_BLOCK_MAP_OFFSET + FV_BLOCK_MAP_ENTRY_SIZE || hl % 2 != 0 {
            return Err(FwError::VolumeHeader(format!(
                "HeaderLength {hl:#x} is odd or smaller than the fixed header plus a block map"
            )));
        }
        let header = slice(data, 0, hl)
            .ok_or_else(|| FwError::truncated("volume header", 0, hl as u64, data))?;
        let sum = header.chunks_exact(2).fold(0u16, |acc, c| {
            acc.wrapping_add(u16::from_le_bytes([c[0], c[1]]))
        });
        if sum != 0 {
            return Err(FwError::VolumeChecksum { sum });
        }
        Ok(())
    }

    /// Parses and validates the volume header at the start of `data`. `data` may run past the
    /// volume; `FvLength` must fit in it.
    pub fn parse(data: &[u8]) -> Result<VolumeHeader, FwError> {
        Self::check_signature_and_checksum(data)?;
        let short = || FwError::truncated("volume header", 0, 56, data);
        let file_system_guid =
            Guid::from_bytes(slice(data, 16, 16).ok_or_else(short)?).ok_or_else(short)?;
        let length = u64_at(data, 32).ok_or_else(short)?;
        let attributes = u32_at(data, 44).ok_or_else(short)?;
        let header_length = u16_at(data, 48).ok_or_else(short)?;
        let ext_header_offset = u16_at(data, 52).ok_or_else(short)?;
        let revision = u8_at(data, 55).ok_or_else(short)?;

        let file_system = if file_system_guid == EFI_FIRMWARE_FILE_SYSTEM2_GUID {
            FileSystem::Ffs2
        } else if file_system_guid == EFI_FIRMWARE_FILE_SYSTEM3_GUID {
            FileSystem::Ffs3
        } else {
            FileSystem::Other(file_system_guid)
        };

        if length < u64::from(header_length) {
            return Err(FwError::VolumeHeader(format!(
                "FvLength {length:#x} is smaller than HeaderLength {header_length:#x}"
            )));
        }
        let length_usize = match usize::try_from(length) {
            Ok(l) if l <= data.len() => l,
            _ => {
                return Err(FwError::VolumeLength {
                    length,
                    available: data.len(),
                })
            }
        };

        // Block map: {NumBlocks, Length} runs ending with {0, 0}, inside HeaderLength.
        let mut block_map = Vec::new();
        let mut total: u64 = 0;
        let mut off = FV_BLOCK_MAP_OFFSET;
        loop {
            if off + FV_BLOCK_MAP_ENTRY_SIZE > usize::from(header_length) {
                return Err(FwError::VolumeHeader(
                    "block map has no {0, 0} terminator inside HeaderLength".into(),
                ));
            }
            let num_blocks = u32_at(data, off).ok_or_else(short)?;
            let len = u32_at(data, off + 4).ok_or_else(short)?;
            if num_blocks == 0 && len == 0 {
                break;
            }
            if num_blocks == 0 || len == 0 {
                return Err(FwError::VolumeHeader(format!(
                    "block map entry {{{num_blocks}, {len:#x}}} has a zero field"
                )));
            }
            total = total.saturating_add(u64::from(num_blocks) * u64::from(len));
            block_map.push(BlockMapEntry {
                num_blocks,
                length: len,
            });
            off += FV_BLOCK_MAP_ENTRY_SIZE;
        }
        if total != length {
            return Err(FwError::VolumeHeader(format!(
                "block map covers {total:#x} bytes but FvLength is {length:#x}"
            )));
        }

        // Extended header (§3.2.2): FvName, ExtHeaderSize, then entries; inside the volume.
        let name = if ext_header_offset == 0 {
            None
        } else {
            let eo = usize::from(ext_header_offset);
            if eo < usize::from(header_length) {
                return Err(FwError::VolumeHeader(format!(
                    "ExtHeaderOffset {eo:#x} points into the volume header"
                )));
            }
            let vol = slice(data, 0, length_usize).ok_or_else(short)?;
            let ext = slice(vol, eo, FV_EXT_HEADER_SIZE).ok_or_else(|| {
                FwError::truncated("extended volume header", eo, FV_EXT_HEADER_SIZE as u64, vol)
            })?;
            let ext_size = u32_at(ext, 16).unwrap_or(0);
            if (ext_size as usize) < FV_EXT_HEADER_SIZE
                || slice(vol, eo, ext_size as usize).is_none()
            {
                return Err(FwError::VolumeHeader(format!(
                    "ExtHeaderSize {ext_size:#x} at offset {eo:#x} does not fit in the volume"
                )));
            }
            Guid::from_bytes(ext)
        };

        Ok(VolumeHeader {
            file_system_guid,
            file_system,
            length,
            attributes,
            header_length,
            ext_header_offset,
            revision,
            block_map,
            name,
        })
    }
}

/// Result of searching a buffer for volumes.
#[derive(Debug, Default)]
pub struct Scan {
    /// Offsets of candidate headers that passed the signature and checksum checks, in order.
    /// A candidate inside an earlier volume's extent is not reported.
    pub volumes: Vec<usize>,
    /// Candidates with the signature whose header failed the checks: (offset, reason).
    pub rejected: Vec<(usize, String)>,
}

/// Searches `data` for volume headers at 8-byte alignment. After an accepted header the search
/// skips the volume's `FvLength`, so that volumes nested in it are found by walking it, not
/// a second time here.
pub fn scan(data: &[u8]) -> Scan {
    let mut out = Scan::default();
    let mut off = 0usize;
    while let Some(sig_at) = off.checked_add(FV_SIGNATURE_OFFSET) {
        if sig_at.checked_add(4).is_none_or(|e| e > data.len()) {
            break;
        }
        let rest = data.get(off..).unwrap_or(&[]);
        if slice(rest, FV_SIGNATURE_OFFSET, 4) != Some(FV_SIGNATURE.as_slice()) {
            off += FV_SCAN_ALIGN;
            continue;
        }
        match VolumeHeader::check_signature_and_checksum(rest) {
            Ok(()) => {
                out.volumes.push(off);
                // Skip the volume's extent when FvLength is sane; otherwise the caller reports
                // the bad length and we just keep searching after the header.
                let len = u64_at(rest, 32)
                    .and_then(|l| usize::try_from(l).ok())
                    .filter(|&l| l >= FV_SCAN_ALIGN && l <= rest.len())
                    .unwrap_or(FV_SCAN_ALIGN);
                off = match off
                    .checked_add(len)
                    .and_then(|o| align_up(o, FV_SCAN_ALIGN))
                {
                    Some(o) => o,
                    None => break,
                };
            }
            Err(e) => {
                out.rejected.push((off, e.to_string()));
                off += FV_SCAN_ALIGN;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u64, blocks: u32, block_len: u32) -> Vec<u8> {
        let mut h = vec![0u8; 72];
        h[16..32].copy_from_slice(&EFI_FIRMWARE_FILE_SYSTEM2_GUID.0);
        h[32..40].copy_from_slice(&len.to_le_bytes());
        h[40..44].copy_from_slice(FV_SIGNATURE);
        h[44..48].copy_from_slice(&0x0004_feffu32.to_le_bytes());
        h[48..50].copy_from_slice(&72u16.to_le_bytes());
        h[55] = 2;
        h[56..60].copy_from_slice(&blocks.to_le_bytes());
        h[60..64].copy_from_slice(&block_len.to_le_bytes());
        let sum = h.chunks(2).fold(0u16, |a, c| {
            a.wrapping_add(u16::from_le_bytes([c[0], c[1]]))
        });
        h[50..52].copy_from_slice(&0u16.wrapping_sub(sum).to_le_bytes());
        h.resize(len as usize, 0xff);
        h
    }

    #[test]
    fn parses_a_minimal_volume() {
        let v = header(0x100, 1, 0x100);
        let h = VolumeHeader::parse(&v).unwrap();
        assert_eq!(h.file_system, FileSystem::Ffs2);
        assert_eq!(h.length, 0x100);
        assert!(h.erase_polarity());
        assert_eq!(h.first_file_offset(), 72);
        assert_eq!(scan(&v).volumes, vec![0]);
    }

    #[test]
    fn length_past_the_end_is_an_error() {
        let v = header(0x100, 1, 0x100);
        let e = VolumeHeader::parse(&v[..0x80]).unwrap_err();
        assert!(
            matches!(
                e,
                FwError::VolumeLength {
                    length: 0x100,
                    available: 0x80
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn block_map_must_cover_the_volume() {
        let v = header(0x100, 2, 0x100);
        assert!(matches!(
            VolumeHeader::parse(&v),
            Err(FwError::VolumeHeader(_))
        ));
    }

    #[test]
    fn a_bad_checksum_is_rejected_by_the_scan() {
        let mut v = header(0x100, 1, 0x100);
        v[44] ^= 1;
        let s = scan(&v);
        assert!(s.volumes.is_empty());
        assert_eq!(s.rejected.len(), 1);
    }
}
