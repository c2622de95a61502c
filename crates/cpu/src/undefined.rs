//! What the manuals leave undefined, answered as each vendor's processors answer it.
//!
//! Intel's SDM and AMD's APM leave some results "undefined": flags after MUL, multi-bit shifts,
//! BSF/BSR, LZCNT/TZCNT and the BCD adjustments, the destination of a 16-bit SHLD/SHRD by more
//! than 16, which registers a REP string instruction with a 32-bit address size writes when the
//! count is zero, and how much of a stack slot a 32-bit PUSH of a segment register writes.
//! Real processors give fixed answers, and software (and the host-CPU differential test) sees
//! them, so they are a property of the CPU model.
//!
//! Sources:
//! - **Intel**: measured on an Intel Xeon, family 6 model 0xA7 (the project's CI host kind),
//!   one instruction at a time with all input flags clear and all set (the BCD adjustments for
//!   every AX and CF/AF, in compatibility mode); the differential suites
//!   (`crates/cpu/tests/differential.rs`, 64- and 32-bit) then compare every flag on Intel
//!   hosts.
//! - **AMD**: the APM (vol. 3, rev. 3.x) where it documents a result (BSF/BSR leave the
//!   destination unchanged for a zero source); REP with a zero count leaving RCX alone was
//!   measured by the same suite on the AMD hosts the project ran on before. Flags the APM
//!   leaves undefined have not been measured on AMD hardware: smmlab computes them as the SDM's
//!   single-step formulas do, and the differential suite does not compare them on AMD hosts
//!   (`SMMLAB_DIFF_UNMEASURED=1` makes it compare them, to measure them there).

use crate::cpuid::Vendor;

/// MUL and IMUL (every form): ZF. Intel clears ZF whatever the product (SF is the sign of the
/// low half, PF the parity of its low byte, AF 0). AMD (unmeasured): set from the low half.
#[inline]
pub fn mul_zf(vendor: Vendor, low_half_zero: bool) -> bool {
    match vendor {
        Vendor::Intel => false,
        Vendor::Amd => low_half_zero,
    }
}

/// How OF comes out of a shift or rotate by more than one bit (the count masked to 5 or 6 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MultiBitOf {
    /// As for the first one-bit step (the SDM's count-1 formula on the original operand): SHL,
    /// ROL and RCL give bit n-1 XOR bit n-2 of the operand, ROR bit 0 XOR bit n-1, RCR bit n-1
    /// XOR the old CF, SHLD bit n-1 XOR bit n-2 of the destination, SHRD bit n-1 of the
    /// destination XOR bit 0 of the source. SHR gives bit n-1 and SAR 0 in every case.
    FirstStep,
    /// OF keeps its old value.
    Unchanged,
    /// The count-1 formula applied to the final result.
    FinalResult,
}

/// See [`MultiBitOf`]. Intel: ROL and ROR of a register by an immediate count leave OF
/// unchanged; every other form (ROL/ROR of memory or by CL, RCL/RCR, SHL/SHR/SAR, SHLD/SHRD)
/// computes the first step. AMD (unmeasured): the final result.
#[inline]
pub fn multi_bit_of(vendor: Vendor, rol_or_ror: bool, register_by_immediate: bool) -> MultiBitOf {
    match vendor {
        Vendor::Intel if rol_or_ror && register_by_immediate => MultiBitOf::Unchanged,
        Vendor::Intel => MultiBitOf::FirstStep,
        Vendor::Amd => MultiBitOf::FinalResult,
    }
}

/// BSF/BSR flags beyond ZF (which is set exactly when the source is zero). Intel: CF, OF, SF
/// and AF cleared, PF the parity of the index written (of 0 when the source is zero, so set).
/// AMD (unmeasured): the other flags are left as they were. Returns the new arithmetic flags.
#[inline]
pub fn bit_scan_flags(vendor: Vendor, old: u64, source_zero: bool, index: u64) -> u64 {
    use crate::flags::bits::{PF, ZF};
    let zf = if source_zero { ZF } else { 0 };
    match vendor {
        Vendor::Intel => {
            let pf = if crate::flags::parity(index) { PF } else { 0 };
            zf | pf
        }
        Vendor::Amd => (old & !ZF) | zf,
    }
}

/// LZCNT/TZCNT: the flags other than CF and ZF. Intel clears OF, SF, AF and PF; AMD
/// (unmeasured) leaves them as they were. Returns the bits of `old` that survive.
#[inline]
pub fn count_zeros_kept_flags(vendor: Vendor, old: u64) -> u64 {
    use crate::flags::bits::{CF, ZF};
    match vendor {
        Vendor::Intel => 0,
        Vendor::Amd => old & !(CF | ZF),
    }
}

/// A 16-bit SHLD/SHRD whose count (masked to 5 bits) is 17 to 31. Intel shifts the 48-bit
/// pattern destination:source:destination, so bits of the destination come back in after the
/// source (`shld ax, dx, 17` gives `dx << 1 | ax >> 15`). AMD (unmeasured): the 32-bit
/// destination:source pair with zeros shifted in. Returns (result, CF).
pub fn double_shift16_over(vendor: Vendor, left: bool, dst: u64, src: u64, count: u32) -> (u64, bool) {
    let (dst, src) = (dst & 0xffff, src & 0xffff);
    let pattern = match vendor {
        Vendor::Intel => (dst << 32) | (src << 16) | dst,
        Vendor::Amd if left => (dst << 32) | (src << 16),
        Vendor::Amd => (src << 16) | dst,
    };
    if left {
        let shifted = pattern << count;
        ((shifted >> 32) & 0xffff, (shifted >> 48) & 1 != 0)
    } else {
        ((pattern >> count) & 0xffff, (pattern >> (count - 1)) & 1 != 0)
    }
}

/// AAA/AAS: OF, SF, ZF and PF, given the old flags and the new AL. Intel sets ZF and PF from
/// AL and clears SF and OF; AMD (unmeasured) leaves them as they were. Returns those four bits.
#[inline]
pub fn ascii_adjust_flags(vendor: Vendor, old: u64, al: u64) -> u64 {
    use crate::flags::bits::{OF, PF, SF, ZF};
    match vendor {
        Vendor::Intel => {
            let zf = if al & 0xff == 0 { ZF } else { 0 };
            let pf = if crate::flags::parity(al) { PF } else { 0 };
            let sf = if al & 0x80 != 0 { SF } else { 0 };
            zf | pf | sf
        }
        Vendor::Amd => old & (OF | SF | ZF | PF),
    }
}

/// DAA/DAS: OF. Intel clears it; AMD (unmeasured): `sign_flip`, whether the adjustment turned
/// AL's sign bit on (DAA) or off (DAS).
#[inline]
pub fn decimal_adjust_of(vendor: Vendor, sign_flip: bool) -> bool {
    match vendor {
        Vendor::Intel => false,
        Vendor::Amd => sign_flip,
    }
}

/// AAD: CF, AF and OF. Intel gives those of the byte addition AL + AH * base that AAD does;
/// AMD (unmeasured): cleared. `al` and `product` are the two addends (bytes).
#[inline]
pub fn aad_flags(vendor: Vendor, al: u64, product: u64) -> u64 {
    use crate::flags::bits::{AF, CF, OF};
    match vendor {
        Vendor::Intel => {
            let (a, b) = (al & 0xff, product & 0xff);
            let sum = a + b;
            let mut f = 0;
            if sum > 0xff {
                f |= CF;
            }
            if (a & 0xf) + (b & 0xf) > 0xf {
                f |= AF;
            }
            if (a ^ sum) & (b ^ sum) & 0x80 != 0 {
                f |= OF;
            }
            f
        }
        Vendor::Amd => 0,
    }
}

/// A REP string instruction with a 32-bit address size in 64-bit mode whose count (ECX) is
/// zero: which registers it still writes, as 32-bit registers (zero-extending into the upper
/// half). Intel writes ECX always, and MOVS also ESI and EDI, STOS also EDI (LODS, CMPS and SCAS
/// leave their index registers alone; INS/OUTS, not measured, are taken to write only ECX).
/// AMD writes nothing: the instruction does not execute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZeroCountWrites {
    /// ECX.
    pub count: bool,
    /// ESI.
    pub source_index: bool,
    /// EDI.
    pub destination_index: bool,
}

/// See [`ZeroCountWrites`]; `movs` and `stos` say which string instruction it is.
#[inline]
pub fn rep_a32_zero_count_writes(vendor: Vendor, movs: bool, stos: bool) -> ZeroCountWrites {
    match vendor {
        Vendor::Intel => ZeroCountWrites { count: true, source_index: movs, destination_index: movs || stos },
        Vendor::Amd => ZeroCountWrites { count: false, source_index: false, destination_index: false },
    }
}

/// How much of its stack slot a PUSH of a segment register with a 32-bit operand size writes.
/// The SDM allows either: Intel's recent cores write the 16-bit selector and leave the upper
/// two bytes as they were (measured too); AMD (unmeasured) is taken to zero-extend.
#[inline]
pub fn push_sreg32_writes_word(vendor: Vendor) -> bool {
    vendor == Vendor::Intel
}

/// A task switch to a 16-bit TSS loads the low halves of the general registers: the SDM
/// (vol. 3, 8.6) says only that the upper halves "are modified and not maintained". Both
/// models set them to ones, as 386-class processors load them (unmeasured on current parts).
#[inline]
pub fn task16_upper_register_halves(_vendor: Vendor) -> u64 {
    0xffff_0000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intel_shld16_over_16_brings_the_destination_back_in() {
        // Measured: shld ax, dx, 17 with ax = 0x4870, dx = 0x83c1 gives 0x0782, CF = 1.
        assert_eq!(double_shift16_over(Vendor::Intel, true, 0x4870, 0x83c1, 17), (0x0782, true));
        // shrd ax, dx, 31 with ax = 0xdb58, dx = 0xd082 gives 0xb6b1, CF = 1.
        assert_eq!(double_shift16_over(Vendor::Intel, false, 0xdb58, 0xd082, 31), (0xb6b1, true));
        // shrd ax, dx, 24 with ax = 0x9f11, dx = 0x2b93 gives 0x112b, CF = 1.
        assert_eq!(double_shift16_over(Vendor::Intel, false, 0x9f11, 0x2b93, 24), (0x112b, true));
    }

    #[test]
    fn intel_bit_scan_flags_are_those_of_a_logic_result() {
        use crate::flags::bits::{ARITH, PF, ZF};
        assert_eq!(bit_scan_flags(Vendor::Intel, ARITH, true, 0), ZF | PF);
        assert_eq!(bit_scan_flags(Vendor::Intel, ARITH, false, 48), PF);
        assert_eq!(bit_scan_flags(Vendor::Intel, ARITH, false, 62), 0);
        assert_eq!(bit_scan_flags(Vendor::Amd, ARITH, false, 62), ARITH & !ZF);
    }
}
