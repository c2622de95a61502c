//! Decompression of encapsulated sections. edk2's LZMA GUID-defined section
//! (`EE4E5898-3914-4259-9D6E-DC7BD79403CF`) holds a classic `.lzma` stream: 5 bytes of
//! properties, a 64-bit little-endian uncompressed size, then the range-coded data. Output is
//! capped, so a section that announces or produces too much data is an error, not an
//! allocation.

use crate::bytes::u64_at;
use crate::error::FwError;
use crate::guid::Guid;
use std::io::{self, Write};

/// edk2 `LZMA_CUSTOM_DECOMPRESS_GUID`.
pub const LZMA_CUSTOM_DECOMPRESS_GUID: Guid = Guid::from_fields(
    0xee4e5898,
    0x3914,
    0x4259,
    [0x9d, 0x6e, 0xdc, 0x7b, 0xd7, 0x94, 0x03, 0xcf],
);
/// edk2 `LZMAF86_CUSTOM_DECOMPRESS_GUID` (LZMA plus the x86 branch filter; not supported).
pub const LZMAF86_CUSTOM_DECOMPRESS_GUID: Guid = Guid::from_fields(
    0xd42ae6bd,
    0x1352,
    0x4bfb,
    [0x90, 0x9a, 0xca, 0x72, 0xa6, 0xea, 0xe8, 0x89],
);
/// edk2 `TIANO_CUSTOM_DECOMPRESS_GUID` (not supported).
pub const TIANO_CUSTOM_DECOMPRESS_GUID: Guid = Guid::from_fields(
    0xa31280ad,
    0x481e,
    0x41b6,
    [0x95, 0xe8, 0x12, 0x7f, 0x4c, 0x98, 0x47, 0x79],
);
/// edk2 `BROTLI_CUSTOM_DECOMPRESS_GUID` (not supported).
pub const BROTLI_CUSTOM_DECOMPRESS_GUID: Guid = Guid::from_fields(
    0x3d532050,
    0x5cda,
    0x4fd0,
    [0x87, 0x9e, 0x0f, 0x7f, 0x63, 0x0d, 0x5a, 0xfb],
);
/// `EFI_CRC32_GUIDED_SECTION_EXTRACTION_GUID` (PI Vol. 3 §2.2.4): a CRC32 followed by
/// untransformed sections.
pub const CRC32_GUIDED_SECTION_GUID: Guid = Guid::from_fields(
    0xfc1bcdb0,
    0x7d31,
    0x49aa,
    [0x93, 0x6a, 0xa4, 0x60, 0x0d, 0x9d, 0xd0, 0x83],
);

/// Default cap on one section's decompressed size.
pub const DEFAULT_MAX_DECOMPRESSED: u64 = 64 << 20;

/// Size of the `.lzma` header: properties (5) and uncompressed size (8).
const LZMA_HEADER_SIZE: usize = 13;

/// A `Write` that refuses to grow past `limit` bytes.
struct CappedVec {
    buf: Vec<u8>,
    limit: usize,
}

impl Write for CappedVec {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > self.limit {
            return Err(io::Error::other("decompressed data exceeds the limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Decompresses an edk2 LZMA section body, producing at most `limit` bytes.
pub fn lzma(data: &[u8], limit: u64) -> Result<Vec<u8>, FwError> {
    let size = u64_at(data, 5)
        .ok_or_else(|| FwError::truncated("LZMA header", 0, LZMA_HEADER_SIZE as u64, data))?;
    // u64::MAX means "unknown, an end marker follows"; anything else is the exact size.
    if size != u64::MAX && size > limit {
        return Err(FwError::DecompressedTooLarge { size, limit });
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut out = CappedVec {
        buf: Vec::new(),
        limit: limit_usize,
    };
    let opts = lzma_rs::decompress::Options {
        unpacked_size: lzma_rs::decompress::UnpackedSize::ReadFromHeader,
        memlimit: Some(limit_usize),
        allow_incomplete: false,
    };
    let mut input = data;
    match lzma_rs::lzma_decompress_with_options(&mut input, &mut out, &opts) {
        Ok(()) => {}
        Err(_) if out.buf.len() >= limit_usize => {
            return Err(FwError::DecompressedTooLarge {
                size: out.buf.len() as u64,
                limit,
            })
        }
        Err(e) => return Err(FwError::Lzma(lzma_error(&e))),
    }
    if size != u64::MAX && out.buf.len() as u64 != size {
        return Err(FwError::Lzma(format!(
            "header announces {size:#x} bytes but the stream holds {:#x}",
            out.buf.len()
        )));
    }
    Ok(out.buf)
}

fn lzma_error(e: &lzma_rs::error::Error) -> String {
    match e {
        lzma_rs::error::Error::IoError(e) => e.to_string(),
        lzma_rs::error::Error::HeaderTooShort(_) => "header too short".into(),
        lzma_rs::error::Error::LzmaError(s) | lzma_rs::error::Error::XzError(s) => s.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let opts = lzma_rs::compress::Options {
            unpacked_size: lzma_rs::compress::UnpackedSize::WriteToHeader(Some(data.len() as u64)),
        };
        lzma_rs::lzma_compress_with_options(&mut &data[..], &mut out, &opts).unwrap();
        out
    }

    #[test]
    fn round_trips() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            lzma(&compress(&data), DEFAULT_MAX_DECOMPRESSED).unwrap(),
            data
        );
    }

    #[test]
    fn announced_size_over_the_limit_is_refused() {
        let data = vec![0u8; 4096];
        let c = compress(&data);
        assert!(matches!(
            lzma(&c, 1000),
            Err(FwError::DecompressedTooLarge { size: 4096, .. })
        ));
    }

    #[test]
    fn truncated_streams_are_errors() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
        let c = compress(&data);
        assert!(lzma(&c[..c.len() / 2], DEFAULT_MAX_DECOMPRESSED).is_err());
        assert!(lzma(&c[..7], DEFAULT_MAX_DECOMPRESSED).is_err());
    }
}
