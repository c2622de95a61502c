//! The square root FSQRT needs, correctly rounded in every mode (the soft-float crate has none):
//! the integer square root of the significand, scaled to 66 bits of result, with the remainder
//! folded into a sticky bit, so that one rounding of the 67-bit value to 64 (or fewer) bits
//! gives the correctly rounded root.

use super::float::{Wide, F};
use rustc_apfloat::Float;

/// The integer square root of the 136-bit number `hi:lo` (hi holds bits 135:128) and whether
/// it is exact. Bit-by-bit, two radicand bits per step.
fn isqrt136(hi: u8, lo: u128) -> (u128, bool) {
    let mut rem: u128 = 0;
    let mut root: u128 = 0;
    for k in (0..68).rev() {
        // The next two bits of the radicand, from the top.
        let pos = 2 * k;
        let two = if pos >= 128 { (hi >> (pos - 128)) & 3 } else { ((lo >> pos) & 3) as u8 };
        rem = (rem << 2) | two as u128;
        let trial = (root << 2) | 1;
        root <<= 1;
        if rem >= trial {
            rem -= trial;
            root |= 1;
        }
    }
    (root, rem == 0)
}

/// sqrt(`x`) for a positive finite nonzero `x`, as a wide value carrying 66 significant bits
/// and a sticky bit, and whether the root is exact.
pub fn sqrt_wide(x: F) -> (Wide, bool) {
    // x = m * 2^e with m the 64-bit integer significand.
    let e = x.ilogb() - 63;
    let m = x.scalbn(-e);
    let mut exact = true;
    let mut m = m.to_u128_r(64, rustc_apfloat::Round::TowardZero, &mut exact).value;
    let mut e = e;
    if e & 1 != 0 {
        m <<= 1;
        e -= 1;
    }
    // m has 64 or 65 bits; m * 2^70 has up to 135 bits and its root up to 68.
    let shift = 70u32;
    let lo = m << shift;
    let hi = (m >> (128 - shift)) as u8;
    let (root, exact) = isqrt136(hi, lo);
    let sticky = (!exact) as u128;
    let w = Wide::from_u128((root << 1) | sticky).value;
    (w.scalbn(e / 2 - shift as i32 / 2 - 1), exact)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustc_apfloat::FloatConvert;

    #[test]
    fn integer_square_roots() {
        assert_eq!(isqrt136(0, 144), (12, true));
        assert_eq!(isqrt136(0, 145), (12, false));
        assert_eq!(isqrt136(1, 0), (1 << 64, true));
        assert_eq!(isqrt136(0, u128::MAX), (u64::MAX as u128, false));
    }

    #[test]
    fn roots_of_squares_are_exact() {
        let nine = F::from_u128(9).value;
        let (r, exact) = sqrt_wide(nine);
        assert!(exact);
        let mut lossy = false;
        let r: F = r.convert(&mut lossy).value;
        assert!(r.bitwise_eq(F::from_u128(3).value));
    }
}
