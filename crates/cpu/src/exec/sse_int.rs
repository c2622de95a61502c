//! Lane arithmetic of the SSE/SSE2 integer and bitwise instructions on 128-bit values, shared by
//! every two-operand form (xmm, xmm/m128 [, imm8] and xmm, imm8). Semantics follow each
//! instruction's entry in the Intel SDM vol. 2.

use iced_x86::Mnemonic as M;

#[inline]
fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// Lane `k` of width `bits` of `v`, zero-extended.
#[inline]
fn lane(v: u128, bits: u32, k: u32) -> u64 {
    ((v >> (bits * k)) as u64) & mask(bits)
}

/// Sign-extends the low `bits` bits of `v`.
#[inline]
fn sx(v: u64, bits: u32) -> i64 {
    let sh = 64 - bits;
    ((v << sh) as i64) >> sh
}

/// Signed saturation of `v` to `bits` bits.
#[inline]
fn sat_s(v: i64, bits: u32) -> u64 {
    let max = (1i64 << (bits - 1)) - 1;
    (v.clamp(-max - 1, max) as u64) & mask(bits)
}

/// Unsigned saturation of `v` to `bits` bits.
#[inline]
fn sat_u(v: i64, bits: u32) -> u64 {
    v.clamp(0, mask(bits) as i64) as u64
}

/// Applies `f` to each pair of `bits`-wide lanes.
fn map(a: u128, b: u128, bits: u32, f: impl Fn(u64, u64) -> u64) -> u128 {
    let mut r = 0u128;
    for k in 0..128 / bits {
        r |= ((f(lane(a, bits, k), lane(b, bits, k)) & mask(bits)) as u128) << (bits * k);
    }
    r
}

/// PUNPCKL*/PUNPCKH*/UNPCK*: interleaves the low (or high) halves of `a` and `b`, `a` first.
fn unpack(a: u128, b: u128, bits: u32, high: bool) -> u128 {
    let n = 64 / bits;
    let base = if high { n } else { 0 };
    let mut r = 0u128;
    for k in 0..n {
        r |= (lane(a, bits, base + k) as u128) << (bits * 2 * k);
        r |= (lane(b, bits, base + k) as u128) << (bits * (2 * k + 1));
    }
    r
}

/// PACKSS*/PACKUS*: narrows the `bits`-wide lanes of `a` (low half) then `b` (high half).
fn pack(a: u128, b: u128, bits: u32, f: impl Fn(u64) -> u64) -> u128 {
    let n = 128 / bits;
    let half = bits / 2;
    let mut r = 0u128;
    for k in 0..n {
        r |= ((f(lane(a, bits, k)) & mask(half)) as u128) << (half * k);
        r |= ((f(lane(b, bits, k)) & mask(half)) as u128) << (half * (n + k));
    }
    r
}

/// PSLL/PSRL/PSRA by the 64-bit count `c`: logical shifts by more than the lane width give
/// zero, arithmetic ones fill with the sign bit (SDM vol. 2, PSLLW/PSRAW).
fn shift(a: u128, c: u64, bits: u32, kind: u8) -> u128 {
    match kind {
        0 if c >= bits as u64 => 0,
        0 => map(a, 0, bits, |x, _| x << c),
        1 if c >= bits as u64 => 0,
        1 => map(a, 0, bits, |x, _| x >> c),
        _ => {
            let c = c.min(bits as u64 - 1);
            map(a, 0, bits, |x, _| (sx(x, bits) >> c) as u64)
        }
    }
}

/// Selects four `bits`-wide lanes of `src` from 2-bit fields of `imm` (PSHUFD/PSHUFLW/PSHUFHW).
fn shuf4(src: u128, bits: u32, imm: u8) -> u128 {
    let mut r = 0u128;
    for k in 0..4 {
        let sel = ((imm >> (2 * k)) & 3) as u32;
        r |= (lane(src, bits, sel) as u128) << (bits * k as u32);
    }
    r
}

/// The result of the lane operation `mn` with destination `a`, source `b` (for the imm8 shift
/// forms, the count) and immediate `imm`; None if `mn` is not such an operation.
pub fn compute(mn: M, a: u128, b: u128, imm: u8) -> Option<u128> {
    let c = b as u64;
    let lo64 = (1u128 << 64) - 1;
    Some(match mn {
        M::Pxor | M::Xorps | M::Xorpd => a ^ b,
        M::Pand | M::Andps | M::Andpd => a & b,
        M::Pandn | M::Andnps | M::Andnpd => !a & b,
        M::Por | M::Orps | M::Orpd => a | b,
        M::Paddb => map(a, b, 8, u64::wrapping_add),
        M::Paddw => map(a, b, 16, u64::wrapping_add),
        M::Paddd => map(a, b, 32, u64::wrapping_add),
        M::Paddq => map(a, b, 64, u64::wrapping_add),
        M::Psubb => map(a, b, 8, u64::wrapping_sub),
        M::Psubw => map(a, b, 16, u64::wrapping_sub),
        M::Psubd => map(a, b, 32, u64::wrapping_sub),
        M::Psubq => map(a, b, 64, u64::wrapping_sub),
        M::Paddusb => map(a, b, 8, |x, y| sat_u((x + y) as i64, 8)),
        M::Paddusw => map(a, b, 16, |x, y| sat_u((x + y) as i64, 16)),
        M::Psubusb | M::Psubusw => map(a, b, if mn == M::Psubusb { 8 } else { 16 }, u64::saturating_sub),
        M::Paddsb => map(a, b, 8, |x, y| sat_s(sx(x, 8) + sx(y, 8), 8)),
        M::Paddsw => map(a, b, 16, |x, y| sat_s(sx(x, 16) + sx(y, 16), 16)),
        M::Psubsb => map(a, b, 8, |x, y| sat_s(sx(x, 8) - sx(y, 8), 8)),
        M::Psubsw => map(a, b, 16, |x, y| sat_s(sx(x, 16) - sx(y, 16), 16)),
        M::Pcmpeqb | M::Pcmpeqw | M::Pcmpeqd => {
            let bits = match mn {
                M::Pcmpeqb => 8,
                M::Pcmpeqw => 16,
                _ => 32,
            };
            map(a, b, bits, |x, y| if x == y { u64::MAX } else { 0 })
        }
        M::Pcmpgtb | M::Pcmpgtw | M::Pcmpgtd => {
            let bits = match mn {
                M::Pcmpgtb => 8,
                M::Pcmpgtw => 16,
                _ => 32,
            };
            map(a, b, bits, |x, y| if sx(x, bits) > sx(y, bits) { u64::MAX } else { 0 })
        }
        M::Pminub => map(a, b, 8, u64::min),
        M::Pmaxub => map(a, b, 8, u64::max),
        M::Pminsw => map(a, b, 16, |x, y| if sx(x, 16) <= sx(y, 16) { x } else { y }),
        M::Pmaxsw => map(a, b, 16, |x, y| if sx(x, 16) >= sx(y, 16) { x } else { y }),
        M::Pmullw => map(a, b, 16, |x, y| x * y),
        M::Pmulhw => map(a, b, 16, |x, y| ((sx(x, 16) * sx(y, 16)) >> 16) as u64),
        M::Pmulhuw => map(a, b, 16, |x, y| (x * y) >> 16),
        // PMULUDQ: the low dword of each quadword, unsigned, into a 64-bit product.
        M::Pmuludq => map(a, b, 64, |x, y| (x & 0xffff_ffff) * (y & 0xffff_ffff)),
        M::Pavgb => map(a, b, 8, |x, y| (x + y + 1) >> 1),
        M::Pavgw => map(a, b, 16, |x, y| (x + y + 1) >> 1),
        // PSADBW: per quadword, the sum of absolute byte differences in bits 0-15, rest zero.
        M::Psadbw => map(a, b, 64, |x, y| (0..8).map(|k| ((x >> (8 * k)) & 0xff).abs_diff((y >> (8 * k)) & 0xff)).sum()),
        // PMADDWD: the only overflow (all four words 0x8000) wraps to 0x80000000.
        M::Pmaddwd => map(a, b, 32, |x, y| (sx(x, 16) * sx(y, 16) + sx(x >> 16, 16) * sx(y >> 16, 16)) as u64),
        M::Punpcklbw => unpack(a, b, 8, false),
        M::Punpcklwd => unpack(a, b, 16, false),
        M::Punpckldq | M::Unpcklps => unpack(a, b, 32, false),
        M::Punpcklqdq | M::Unpcklpd => unpack(a, b, 64, false),
        M::Punpckhbw => unpack(a, b, 8, true),
        M::Punpckhwd => unpack(a, b, 16, true),
        M::Punpckhdq | M::Unpckhps => unpack(a, b, 32, true),
        M::Punpckhqdq | M::Unpckhpd => unpack(a, b, 64, true),
        M::Packsswb => pack(a, b, 16, |v| sat_s(sx(v, 16), 8)),
        M::Packssdw => pack(a, b, 32, |v| sat_s(sx(v, 32), 16)),
        M::Packuswb => pack(a, b, 16, |v| sat_u(sx(v, 16), 8)),
        M::Psllw => shift(a, c, 16, 0),
        M::Pslld => shift(a, c, 32, 0),
        M::Psllq => shift(a, c, 64, 0),
        M::Psrlw => shift(a, c, 16, 1),
        M::Psrld => shift(a, c, 32, 1),
        M::Psrlq => shift(a, c, 64, 1),
        M::Psraw => shift(a, c, 16, 2),
        M::Psrad => shift(a, c, 32, 2),
        // PSLLDQ/PSRLDQ: byte shifts of the whole register; counts above 15 clear it.
        M::Pslldq if c > 15 => 0,
        M::Pslldq => a << (8 * c),
        M::Psrldq if c > 15 => 0,
        M::Psrldq => a >> (8 * c),
        M::Pshufd => shuf4(b, 32, imm),
        M::Pshuflw => (b & !lo64) | shuf4(b & lo64, 16, imm),
        M::Pshufhw => (b & lo64) | (shuf4(b >> 64, 16, imm) << 64),
        // SHUFPS: the low two dwords come from the destination, the high two from the source.
        M::Shufps => (shuf4(a, 32, imm) & lo64) | (shuf4(b, 32, imm) & !lo64),
        M::Shufpd => lane(a, 64, (imm & 1) as u32) as u128 | (lane(b, 64, ((imm >> 1) & 1) as u32) as u128) << 64,
        _ => return None,
    })
}
