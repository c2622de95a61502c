//! edk2's dynamic PCD databases, as the PCD drivers carry them (PcdPeim's and PcdDxe's RAW
//! section): the default values of the platform's dynamic PCDs, by token number. Layout:
//! edk2-stable202211 `MdeModulePkg/Include/Guid/PcdDataBaseSignatureGuid.h` (database version
//! 7): PCD_DATABASE_INIT {Signature GUID 0x00, BuildVersion 0x10, Length 0x14, SystemSkuId
//! (u64) 0x18, LengthForAllSkus 0x20, UninitDataBaseSize 0x24, LocalTokenNumberTableOffset
//! 0x28, ExMapTableOffset 0x2c, GuidTableOffset 0x30, StringTableOffset 0x34, SizeTableOffset
//! 0x38, SkuIdTableOffset 0x3c, PcdNameTableOffset 0x40, LocalTokenCount (u16) 0x44,
//! ExTokenCount 0x46, GuidTableCount 0x48}. Each LocalTokenNumberTable entry is an offset in
//! the database (the low 20 bits) with the PCD's type (bits 31:28: DATA 0, STRING 1, VPD 4,
//! HII 8) and datum type (bits 27:24: pointer 0, UINT8 1, UINT16 2, UINT32 4, UINT64 8; bit 20
//! BOOLEAN). Offsets past Length are the zero-initialised part. Token numbers count the PEI
//! database's tokens first, then the DXE database's (PcdDxe's GetXxx: TokenNumber - 1 below
//! the PEI count is a PEI token).

use crate::bytes::{u16_at, u32_at};
use crate::{Guid, Image};

/// PCD_DATA_BASE_SIGNATURE_GUID.
pub const SIGNATURE: Guid = Guid::from_fields(0x3c7d193c, 0x682c, 0x4c14, [0xa6, 0x8f, 0x55, 0x2d, 0xea, 0x4f, 0x43, 0x7e]);
/// The layout version read here.
pub const VERSION: u32 = 7;

const TYPE_SHIFT: u32 = 28;
const TYPE_DATA: u32 = 0;
const TYPE_HII: u32 = 8;
const DATUM_SHIFT: u32 = 24;
const BOOLEAN: u32 = 1 << 20;
const OFFSET_MASK: u32 = (1 << 20) - 1;

/// One database (PEI's or DXE's).
#[derive(Clone, Debug)]
pub struct Database {
    bytes: Vec<u8>,
    length: usize,
    tokens: Vec<u32>,
}

/// A PCD's default value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    /// A number of this many bytes (1 for a BOOLEAN).
    Number {
        /// The value.
        value: u64,
        /// Its size in bytes.
        size: u8,
    },
    /// A pointer PCD (a string or a buffer), not read here.
    Pointer,
}

impl Database {
    /// Reads a database from a RAW section's bytes; None when they are not one of version 7
    /// or their tables do not fit.
    pub fn parse(bytes: &[u8]) -> Option<Database> {
        if Guid::from_bytes(bytes.get(..16)?)? != SIGNATURE || u32_at(bytes, 0x10)? != VERSION {
            return None;
        }
        let length = (u32_at(bytes, 0x14)? as usize).min(bytes.len());
        let table = u32_at(bytes, 0x28)? as usize;
        let count = u16_at(bytes, 0x44)? as usize;
        let tokens = (0..count).map(|i| u32_at(bytes, table.checked_add(4 * i)?)).collect::<Option<Vec<u32>>>()?;
        Some(Database { bytes: bytes[..length].to_vec(), length, tokens })
    }

    /// Tokens in the database.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// The default value of local token `index` (0-based).
    pub fn value(&self, index: usize) -> Option<Value> {
        let t = *self.tokens.get(index)?;
        let offset = (t & OFFSET_MASK) as usize;
        let size: u8 = if t & BOOLEAN != 0 {
            1
        } else {
            match (t >> DATUM_SHIFT) & 0xf {
                1 => 1,
                2 => 2,
                4 => 4,
                8 => 8,
                _ => return Some(Value::Pointer),
            }
        };
        let at = match t >> TYPE_SHIFT {
            TYPE_DATA => offset,
            // VARIABLE_HEAD: StringIndex, DefaultValueOffset, ...: the default is used while
            // the variable does not exist.
            TYPE_HII => u32_at(&self.bytes, offset.checked_add(4)?)? as usize,
            _ => return None,
        };
        let value = match self.bytes.get(at..at + size as usize) {
            Some(b) => b.iter().rev().fold(0u64, |v, &x| v << 8 | x as u64),
            None if at >= self.length => 0,
            None => return None,
        };
        Some(Value::Number { value, size })
    }
}

/// The platform's dynamic PCDs: the PEI database's tokens, then the DXE database's.
#[derive(Clone, Debug)]
pub struct Pcds {
    /// PcdPeim's database, if found.
    pub pei: Option<Database>,
    /// PcdDxe's database.
    pub dxe: Database,
}

impl Pcds {
    /// The databases in `image`: RAW sections that start with [`SIGNATURE`], PEI's (in a PEIM
    /// file) and DXE's (in a DRIVER file). None without a DXE database.
    pub fn from_image(image: &Image) -> Option<Pcds> {
        let mut pei = None;
        let mut dxe = None;
        for m in &image.modules {
            for raw in &m.raw {
                let Some(db) = Database::parse(raw) else { continue };
                match m.file_type {
                    crate::ffs::FileType::Peim => pei = pei.or(Some(db)),
                    _ => dxe = dxe.or(Some(db)),
                }
            }
        }
        Some(Pcds { pei, dxe: dxe? })
    }

    /// The default value of token `token` (1-based, as PcdGetXx's TokenNumber).
    pub fn value(&self, token: u64) -> Option<Value> {
        let i = usize::try_from(token.checked_sub(1)?).ok()?;
        let pei = self.pei.as_ref().map_or(0, Database::token_count);
        match &self.pei {
            Some(p) if i < pei => p.value(i),
            _ => self.dxe.value(i - pei),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-7 database of three tokens: a UINT32 of 64, a BOOLEAN of 1, a UINT64 in the
    /// zero-initialised part past Length, and an HII UINT16 whose default is 0x1234.
    fn db() -> Vec<u8> {
        let mut d = vec![0u8; 0x80];
        d[..16].copy_from_slice(&SIGNATURE.0);
        d[0x10..0x14].copy_from_slice(&VERSION.to_le_bytes());
        d[0x14..0x18].copy_from_slice(&0x80u32.to_le_bytes());
        d[0x28..0x2c].copy_from_slice(&0x60u32.to_le_bytes());
        d[0x44..0x46].copy_from_slice(&4u16.to_le_bytes());
        d[0x50..0x54].copy_from_slice(&64u32.to_le_bytes());
        d[0x54] = 1;
        // VARIABLE_HEAD at 0x58: StringIndex, DefaultValueOffset = 0x70.
        d[0x5c..0x60].copy_from_slice(&0x70u32.to_le_bytes());
        d[0x70..0x72].copy_from_slice(&0x1234u16.to_le_bytes());
        for (i, t) in [0x0400_0050u32, 0x0110_0054, 0x0800_0100, 0x8200_0058].iter().enumerate() {
            d[0x60 + 4 * i..0x64 + 4 * i].copy_from_slice(&t.to_le_bytes());
        }
        d
    }

    #[test]
    fn values_come_from_the_data_the_zero_part_and_the_hii_default() {
        let d = Database::parse(&db()).expect("a database");
        assert_eq!(d.token_count(), 4);
        assert_eq!(d.value(0), Some(Value::Number { value: 64, size: 4 }));
        assert_eq!(d.value(1), Some(Value::Number { value: 1, size: 1 }));
        assert_eq!(d.value(2), Some(Value::Number { value: 0, size: 8 }));
        assert_eq!(d.value(3), Some(Value::Number { value: 0x1234, size: 2 }));
        assert_eq!(d.value(4), None);
        // Token numbers are 1-based, the PEI database's first.
        let p = Pcds { pei: Some(d.clone()), dxe: d };
        assert_eq!(p.value(0), None);
        assert_eq!(p.value(5), Some(Value::Number { value: 64, size: 4 }));
    }

    #[test]
    fn truncated_or_foreign_bytes_are_no_database() {
        let full = db();
        for len in 0..0x64 {
            assert!(Database::parse(&full[..len]).is_none(), "{len} bytes");
        }
        let mut v6 = full.clone();
        v6[0x10] = 6;
        assert!(Database::parse(&v6).is_none());
        // A token table pointing past the end.
        let mut wild = full;
        wild[0x28..0x2c].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert!(Database::parse(&wild).is_none());
    }
}
