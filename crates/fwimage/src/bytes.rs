//! Bounds-checked little-endian reads. Every read of firmware bytes goes through these, so a
//! field that points outside its buffer becomes `None` (and then a typed error), never a panic.

/// `len` bytes at `offset`, if they are all inside `data`.
pub(crate) fn slice(data: &[u8], offset: usize, len: usize) -> Option<&[u8]> {
    data.get(offset..offset.checked_add(len)?)
}

pub(crate) fn u8_at(data: &[u8], offset: usize) -> Option<u8> {
    data.get(offset).copied()
}

pub(crate) fn u16_at(data: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(slice(data, offset, 2)?.try_into().ok()?))
}

/// A 24-bit little-endian size field (FFS file and section headers).
pub(crate) fn u24_at(data: &[u8], offset: usize) -> Option<u32> {
    let b = slice(data, offset, 3)?;
    Some(
        b.iter()
            .rev()
            .fold(0u32, |acc, &x| (acc << 8) | u32::from(x)),
    )
}

pub(crate) fn u32_at(data: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(slice(data, offset, 4)?.try_into().ok()?))
}

pub(crate) fn u64_at(data: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(slice(data, offset, 8)?.try_into().ok()?))
}

/// Rounds `value` up to a multiple of `align` (a power of two); `None` on overflow.
pub(crate) fn align_up(value: usize, align: usize) -> Option<usize> {
    let mask = align.checked_sub(1)?;
    Some(value.checked_add(mask)? & !mask)
}

/// 8-bit wrapping sum of `data`.
pub(crate) fn sum8(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |acc, &x| acc.wrapping_add(x))
}

/// Decodes a NUL-terminated UTF-16LE string (USER_INTERFACE and VERSION sections). Stops at the
/// first NUL or at the end of `data`; an odd trailing byte is ignored.
pub(crate) fn utf16z(data: &[u8]) -> String {
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| {
            u16::from_le_bytes([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            ])
        })
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_outside_the_buffer_are_none() {
        let d = [1u8, 2, 3, 4];
        assert_eq!(u32_at(&d, 0), Some(0x0403_0201));
        assert_eq!(u32_at(&d, 1), None);
        assert_eq!(u24_at(&d, 1), Some(0x040302));
        assert_eq!(slice(&d, usize::MAX, 2), None);
        assert_eq!(align_up(usize::MAX, 8), None);
        assert_eq!(align_up(9, 8), Some(16));
    }

    #[test]
    fn utf16_strings_stop_at_nul() {
        let d = [b'P', 0, b'i', 0, 0, 0, b'x', 0];
        assert_eq!(utf16z(&d), "Pi");
        assert_eq!(utf16z(&[b'A', 0, b'B']), "A");
    }
}
