//! The parser's error type. Messages are sentence fragments that do not repeat their source;
//! the context variants (`Volume`, `File`, `Section`, `Decompressed`) chain so that a printed
//! error reads as a path down to the problem.

use crate::guid::Guid;

/// Why a firmware image could not be parsed. Offsets are relative to the buffer that holds the
/// structure: the image itself, or the data decompressed by an enclosing section.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FwError {
    /// No valid firmware volume header anywhere in the image.
    #[error("no valid firmware volume in {len:#x} bytes{}", rejected_note(*.rejected, .first_rejection))]
    NoVolume {
        /// Image length.
        len: usize,
        /// How many `_FVH` signatures were found with an invalid header.
        rejected: usize,
        /// Offset and reason for the first rejected candidate.
        first_rejection: Option<(usize, String)>,
    },
    /// Context: the error happened inside the firmware volume at `offset`.
    #[error("firmware volume at offset {offset:#x}")]
    Volume {
        /// Offset of the volume header.
        offset: usize,
        /// What went wrong.
        #[source]
        source: Box<FwError>,
    },
    /// Context: the error happened inside the FFS file at `offset`.
    #[error("FFS file {guid} at offset {offset:#x}")]
    File {
        /// Offset of the file header.
        offset: usize,
        /// The file's name GUID.
        guid: Guid,
        /// What went wrong.
        #[source]
        source: Box<FwError>,
    },
    /// Context: the error happened inside the section at `offset`.
    #[error("section at offset {offset:#x} (type {kind:#04x})")]
    Section {
        /// Offset of the section header.
        offset: usize,
        /// Section type.
        kind: u8,
        /// What went wrong.
        #[source]
        source: Box<FwError>,
    },
    /// Context: the error happened in decompressed data; inner offsets are relative to it.
    #[error("in its decompressed data ({len:#x} bytes; offsets below are relative to it)")]
    Decompressed {
        /// Length of the decompressed data.
        len: usize,
        /// What went wrong.
        #[source]
        source: Box<FwError>,
    },
    /// A structure runs past the end of its buffer.
    #[error("{what} at offset {offset:#x} needs {need:#x} bytes but only {available:#x} remain")]
    Truncated {
        /// The structure.
        what: &'static str,
        /// Where it starts.
        offset: usize,
        /// Bytes it needs.
        need: u64,
        /// Bytes left in the buffer from `offset`.
        available: usize,
    },
    /// A firmware volume header field is invalid (PI Vol. 3 §3.2.1).
    #[error("invalid volume header: {0}")]
    VolumeHeader(String),
    /// The 16-bit sum of the volume header is not zero (PI Vol. 3 §3.2.1, `Checksum`).
    #[error("volume header checksum is wrong (16-bit sum {sum:#06x}, expected 0)")]
    VolumeChecksum {
        /// The sum found.
        sum: u16,
    },
    /// `FvLength` points past the end of the data.
    #[error("volume length {length:#x} runs past the end of the data ({available:#x} bytes available): the image is truncated or corrupt")]
    VolumeLength {
        /// `FvLength`.
        length: u64,
        /// Bytes available from the header.
        available: usize,
    },
    /// An FFS file header field is invalid (PI Vol. 3 §2.2.3).
    #[error("invalid file header: {0}")]
    FileHeader(String),
    /// The 8-bit header checksum of an FFS file is wrong (PI Vol. 3 §2.2.3, `IntegrityCheck`).
    #[error("file header checksum is wrong (8-bit sum {sum:#04x}, expected 0)")]
    FileHeaderChecksum {
        /// The sum found.
        sum: u8,
    },
    /// The 8-bit data checksum of an FFS file is wrong (PI Vol. 3 §2.2.3, `IntegrityCheck`).
    #[error("file data checksum is wrong ({0})")]
    FileDataChecksum(String),
    /// A section header or its size is invalid (PI Vol. 3 §2.2.4).
    #[error("invalid section: {0}")]
    SectionHeader(String),
    /// Compressed data could not be decompressed.
    #[error("LZMA data is corrupt: {0}")]
    Lzma(String),
    /// Decompressed data would exceed the per-section limit.
    #[error("decompressed size {size:#x} exceeds the limit of {limit:#x} bytes")]
    DecompressedTooLarge {
        /// Size announced or reached.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// All decompressed data together would exceed the per-image limit.
    #[error("decompressed data in this image exceeds the total limit of {limit:#x} bytes")]
    DecompressionBudget {
        /// The limit.
        limit: u64,
    },
    /// Volumes and encapsulation sections are nested too deeply.
    #[error("volumes and sections are nested more than {limit} levels deep")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
}

fn rejected_note(rejected: usize, first: &Option<(usize, String)>) -> String {
    match first {
        Some((off, why)) => format!(
            " ({rejected} candidate header(s) rejected; the first, at offset {off:#x}: {why})"
        ),
        None => " (no `_FVH` signature found)".to_string(),
    }
}

impl FwError {
    pub(crate) fn truncated(what: &'static str, offset: usize, need: u64, buf: &[u8]) -> FwError {
        FwError::Truncated {
            what,
            offset,
            need,
            available: buf.len().saturating_sub(offset),
        }
    }
}
