//! File sections (PI spec Vol. 3 §2.2.4 `EFI_COMMON_SECTION_HEADER` / `EFI_COMMON_SECTION_HEADER2`,
//! section types §2.1.5) and the walk over a section stream.

use crate::bytes::{align_up, slice, u16_at, u24_at, u32_at, u8_at};
use crate::error::FwError;
use crate::guid::Guid;

/// Size of `EFI_COMMON_SECTION_HEADER`.
pub const SECTION_HEADER_SIZE: usize = 4;
/// Size of `EFI_COMMON_SECTION_HEADER2` (adds a 32-bit `ExtendedSize`).
pub const SECTION_HEADER2_SIZE: usize = 8;
/// `Size` value that means "see `ExtendedSize`".
pub const SECTION_SIZE_EXTENDED: u32 = 0xff_ffff;
/// Sections start at 4-byte boundaries in their stream (§2.1.5).
pub const SECTION_ALIGN: usize = 4;

/// `EFI_SECTION_TYPE` values (§2.1.5.1).
pub mod kind {
    /// Encapsulation: `EFI_SECTION_COMPRESSION`.
    pub const COMPRESSION: u8 = 0x01;
    /// Encapsulation: `EFI_SECTION_GUID_DEFINED`.
    pub const GUID_DEFINED: u8 = 0x02;
    /// Encapsulation: `EFI_SECTION_DISPOSABLE`.
    pub const DISPOSABLE: u8 = 0x03;
    /// Leaf: `EFI_SECTION_PE32`.
    pub const PE32: u8 = 0x10;
    /// Leaf: `EFI_SECTION_PIC`.
    pub const PIC: u8 = 0x11;
    /// Leaf: `EFI_SECTION_TE`.
    pub const TE: u8 = 0x12;
    /// Leaf: `EFI_SECTION_DXE_DEPEX`.
    pub const DXE_DEPEX: u8 = 0x13;
    /// Leaf: `EFI_SECTION_VERSION`.
    pub const VERSION: u8 = 0x14;
    /// Leaf: `EFI_SECTION_USER_INTERFACE`.
    pub const USER_INTERFACE: u8 = 0x15;
    /// Leaf: `EFI_SECTION_COMPATIBILITY16`.
    pub const COMPATIBILITY16: u8 = 0x16;
    /// Leaf: `EFI_SECTION_FIRMWARE_VOLUME_IMAGE`.
    pub const FIRMWARE_VOLUME_IMAGE: u8 = 0x17;
    /// Leaf: `EFI_SECTION_FREEFORM_SUBTYPE_GUID`.
    pub const FREEFORM_SUBTYPE_GUID: u8 = 0x18;
    /// Leaf: `EFI_SECTION_RAW`.
    pub const RAW: u8 = 0x19;
    /// Leaf: `EFI_SECTION_PEI_DEPEX`.
    pub const PEI_DEPEX: u8 = 0x1b;
    /// Leaf: `EFI_SECTION_MM_DEPEX` (formerly SMM_DEPEX).
    pub const MM_DEPEX: u8 = 0x1c;
}

/// `EFI_GUIDED_SECTION_PROCESSING_REQUIRED` (§2.2.4, GUID-defined section `Attributes`).
pub const EFI_GUIDED_SECTION_PROCESSING_REQUIRED: u16 = 0x01;
/// `EFI_GUIDED_SECTION_AUTH_STATUS_VALID`.
pub const EFI_GUIDED_SECTION_AUTH_STATUS_VALID: u16 = 0x02;

/// `CompressionType` of a COMPRESSION section: the data is not compressed.
pub const EFI_NOT_COMPRESSED: u8 = 0x00;
/// `CompressionType`: EFI standard compression (UEFI spec "Compression Algorithm Specification").
pub const EFI_STANDARD_COMPRESSION: u8 = 0x01;

/// A section header.
#[derive(Debug, Clone, Copy)]
pub struct SectionHeader {
    /// `Type`.
    pub kind: u8,
    /// Size of the whole section, header included.
    pub size: usize,
    /// 4 or 8.
    pub header_size: usize,
}

impl SectionHeader {
    /// Parses the header at the start of `data` (the rest of the stream) and checks that the
    /// section fits.
    pub fn parse(data: &[u8]) -> Result<SectionHeader, FwError> {
        let short = |n: usize| FwError::truncated("section header", 0, n as u64, data);
        let size24 = u24_at(data, 0).ok_or_else(|| short(SECTION_HEADER_SIZE))?;
        let kind = u8_at(data, 3).ok_or_else(|| short(SECTION_HEADER_SIZE))?;
        let (size, header_size) = if size24 == SECTION_SIZE_EXTENDED {
            let ext = u32_at(data, 4).ok_or_else(|| short(SECTION_HEADER2_SIZE))?;
            (ext, SECTION_HEADER2_SIZE)
        } else {
            (size24, SECTION_HEADER_SIZE)
        };
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size < header_size {
            return Err(FwError::SectionHeader(format!(
                "size {size:#x} is smaller than the {header_size}-byte header"
            )));
        }
        if size > data.len() {
            return Err(FwError::SectionHeader(format!(
                "size {size:#x} runs past the end of its container ({:#x} bytes left)",
                data.len()
            )));
        }
        Ok(SectionHeader {
            kind,
            size,
            header_size,
        })
    }
}

/// One section of a stream.
#[derive(Debug, Clone, Copy)]
pub struct SectionEntry {
    /// Offset of the header from the start of the stream.
    pub offset: usize,
    /// The header.
    pub header: SectionHeader,
}

/// Lists the sections of a stream (a file body or the body of an encapsulation section).
pub fn sections(stream: &[u8]) -> Result<Vec<SectionEntry>, FwError> {
    let mut out = Vec::new();
    let mut off = 0usize;
    loop {
        off = match align_up(off, SECTION_ALIGN) {
            Some(o) if o < stream.len() => o,
            _ => break,
        };
        let rest = stream.get(off..).unwrap_or(&[]);
        let header = SectionHeader::parse(rest).map_err(|e| FwError::Section {
            offset: off,
            kind: u8_at(rest, 3).unwrap_or(0),
            source: Box::new(e),
        })?;
        out.push(SectionEntry {
            offset: off,
            header,
        });
        off = off.saturating_add(header.size);
    }
    Ok(out)
}

/// The fields of an `EFI_GUID_DEFINED_SECTION` after the common header.
#[derive(Debug, Clone, Copy)]
pub struct GuidDefined {
    /// `SectionDefinitionGuid`.
    pub guid: Guid,
    /// `DataOffset`: from the start of the section to its data.
    pub data_offset: usize,
    /// `Attributes`.
    pub attributes: u16,
}

impl GuidDefined {
    /// Parses the GUID-defined header of `section` (the whole section).
    pub fn parse(section: &[u8], header: &SectionHeader) -> Result<GuidDefined, FwError> {
        let at = header.header_size;
        let fields = slice(section, at, 20).ok_or_else(|| {
            FwError::SectionHeader("GUID-defined section is too short for its header".into())
        })?;
        let guid = Guid::from_bytes(fields).unwrap_or_default();
        let data_offset = usize::from(u16_at(fields, 16).unwrap_or(0));
        let attributes = u16_at(fields, 18).unwrap_or(0);
        if data_offset < at + 20 || data_offset > header.size {
            return Err(FwError::SectionHeader(format!(
                "GUID-defined section DataOffset {data_offset:#x} is outside {:#x}..={:#x}",
                at + 20,
                header.size
            )));
        }
        Ok(GuidDefined {
            guid,
            data_offset,
            attributes,
        })
    }
}

/// The fields of an `EFI_COMPRESSION_SECTION` after the common header.
#[derive(Debug, Clone, Copy)]
pub struct Compression {
    /// `UncompressedLength`.
    pub uncompressed_length: u32,
    /// `CompressionType`.
    pub compression_type: u8,
    /// Offset of the compressed data from the start of the section.
    pub data_offset: usize,
}

impl Compression {
    /// Parses the compression header of `section` (the whole section).
    pub fn parse(section: &[u8], header: &SectionHeader) -> Result<Compression, FwError> {
        let at = header.header_size;
        let bad =
            || FwError::SectionHeader("compression section is too short for its header".into());
        let uncompressed_length = u32_at(section, at).ok_or_else(bad)?;
        let compression_type = u8_at(section, at + 4).ok_or_else(bad)?;
        Ok(Compression {
            uncompressed_length,
            compression_type,
            data_offset: at + 5,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_aligned_sections() {
        // A 6-byte UI section, 2 bytes of alignment padding, then an extended-size RAW section.
        let mut s = vec![6, 0, 0, kind::USER_INTERFACE, b'A', 0, 0, 0];
        s.extend_from_slice(&[0xff, 0xff, 0xff, kind::RAW, 10, 0, 0, 0, 1, 2]);
        let v = sections(&s).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].offset, 8);
        assert_eq!((v[1].header.size, v[1].header.header_size), (10, 8));
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert!(sections(&[2, 0, 0, kind::RAW]).is_err());
        assert!(sections(&[9, 0, 0, kind::RAW, 0]).is_err());
        assert!(sections(&[0xff, 0xff, 0xff, kind::RAW, 1, 0]).is_err());
    }
}
