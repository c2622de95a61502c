//! EFI GUIDs (UEFI spec Appendix A): stored as a little-endian `u32`, two little-endian `u16`s
//! and eight bytes, printed in the lowercase 8-4-4-4-12 form.

use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A GUID in its on-disk (mixed-endian) byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Builds a GUID from its four fields as the specifications write them.
    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Guid {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
            d4[5], d4[6], d4[7],
        ])
    }

    /// Reads a GUID from the first 16 bytes of `bytes`; `None` when fewer remain.
    pub fn from_bytes(bytes: &[u8]) -> Option<Guid> {
        let raw: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
        Some(Guid(raw))
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        let d1 = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let d2 = u16::from_le_bytes([b[4], b[5]]);
        let d3 = u16::from_le_bytes([b[6], b[7]]);
        write!(f, "{d1:08x}-{d2:04x}-{d3:04x}-{:02x}{:02x}-", b[8], b[9])?;
        for x in &b[10..16] {
            write!(f, "{x:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

/// The text was not a GUID in the 8-4-4-4-12 form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a GUID in the 8-4-4-4-12 hexadecimal form")]
pub struct GuidParseError;

impl FromStr for Guid {
    type Err = GuidParseError;

    fn from_str(s: &str) -> Result<Guid, GuidParseError> {
        let parts: Vec<&str> = s.split('-').collect();
        let lens = [8, 4, 4, 4, 12];
        if parts.len() != 5
            || parts.iter().zip(lens).any(|(p, l)| p.len() != l)
            || !parts
                .iter()
                .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(GuidParseError);
        }
        let hex = |t: &str| u64::from_str_radix(t, 16).map_err(|_| GuidParseError);
        let d1 = u32::try_from(hex(parts[0])?).map_err(|_| GuidParseError)?;
        let d2 = u16::try_from(hex(parts[1])?).map_err(|_| GuidParseError)?;
        let d3 = u16::try_from(hex(parts[2])?).map_err(|_| GuidParseError)?;
        let tail = (hex(parts[3])? << 48) | hex(parts[4])?;
        Ok(Guid::from_fields(d1, d2, d3, tail.to_be_bytes()))
    }
}

impl Serialize for Guid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_mixed_endian_fields_in_lowercase() {
        let g = Guid::from_fields(
            0x8c8ce578,
            0x8a3d,
            0x4f1c,
            [0x99, 0x35, 0x89, 0x61, 0x85, 0xc3, 0x2d, 0xd3],
        );
        assert_eq!(g.0[..4], [0x78, 0xe5, 0x8c, 0x8c]);
        assert_eq!(g.to_string(), "8c8ce578-8a3d-4f1c-9935-896185c32dd3");
        assert_eq!(
            "8C8CE578-8a3d-4f1c-9935-896185c32dd3".parse::<Guid>(),
            Ok(g)
        );
    }

    #[test]
    fn rejects_malformed_text() {
        assert!("8c8ce578-8a3d-4f1c-9935".parse::<Guid>().is_err());
        assert!("8c8ce578-8a3d-4f1c-9935-896185c32dzz"
            .parse::<Guid>()
            .is_err());
        assert!("+c8ce578-8a3d-4f1c-9935-896185c32dd3"
            .parse::<Guid>()
            .is_err());
    }
}
