//! RFLAGS with lazily computed arithmetic flags.
//!
//! Arithmetic instructions record their operands, result and kind; CF/PF/AF/ZF/SF/OF are computed
//! only when something reads them (a Jcc, PUSHF, an interrupt...). Most results are overwritten
//! before that happens.

/// RFLAGS bit positions (Intel SDM vol. 1, 3.4.3).
pub mod bits {
    /// Carry.
    pub const CF: u64 = 1 << 0;
    /// Parity (of the low byte).
    pub const PF: u64 = 1 << 2;
    /// Auxiliary carry (out of bit 3).
    pub const AF: u64 = 1 << 4;
    /// Zero.
    pub const ZF: u64 = 1 << 6;
    /// Sign.
    pub const SF: u64 = 1 << 7;
    /// Trap (single step).
    pub const TF: u64 = 1 << 8;
    /// Interrupt enable.
    pub const IF: u64 = 1 << 9;
    /// Direction (string instructions count down).
    pub const DF: u64 = 1 << 10;
    /// Overflow.
    pub const OF: u64 = 1 << 11;
    /// I/O privilege level (two bits).
    pub const IOPL: u64 = 3 << 12;
    /// Nested task.
    pub const NT: u64 = 1 << 14;
    /// Resume (suppresses instruction breakpoints once).
    pub const RF: u64 = 1 << 16;
    /// Virtual-8086 mode.
    pub const VM: u64 = 1 << 17;
    /// Alignment check.
    pub const AC: u64 = 1 << 18;
    /// Virtual interrupt flag.
    pub const VIF: u64 = 1 << 19;
    /// Virtual interrupt pending.
    pub const VIP: u64 = 1 << 20;
    /// CPUID available (writable).
    pub const ID: u64 = 1 << 21;
    /// The six arithmetic status flags.
    pub const ARITH: u64 = CF | PF | AF | ZF | SF | OF;
    /// Bit 1 always reads as one.
    pub const FIXED: u64 = 1 << 1;
}

/// Which operation produced the pending flag state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagOp {
    /// Flags are all in `base`.
    None,
    /// ADD (and ADC with carry in 0).
    Add,
    /// ADC with carry in 1 (ADC with carry 0 is recorded as Add).
    Adc1,
    /// SUB, CMP, NEG, CMPXCHG (and SBB with borrow in 0).
    Sub,
    /// SBB with borrow in 1.
    Sbb1,
    /// AND/OR/XOR/TEST: CF=OF=0, AF=0.
    Logic,
    /// INC: CF is kept in `base`.
    Inc,
    /// DEC: CF is kept in `base`.
    Dec,
}

/// RFLAGS with the arithmetic part possibly pending.
#[derive(Clone, Copy, Debug)]
pub struct Flags {
    base: u64,
    op: FlagOp,
    size: u8,
    a: u64,
    b: u64,
    res: u64,
}

impl Default for Flags {
    fn default() -> Self {
        Flags { base: bits::FIXED, op: FlagOp::None, size: 4, a: 0, b: 0, res: 0 }
    }
}

/// Mask of an operand of `size` bytes.
#[inline(always)]
pub fn mask(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size as u32 * 8)) - 1
    }
}

/// Sign bit of an operand of `size` bytes.
#[inline(always)]
pub fn sign_bit(size: u8) -> u64 {
    1u64 << (size as u32 * 8 - 1)
}

/// PF of a result: whether its low byte has an even number of set bits.
#[inline(always)]
pub(crate) fn parity(v: u64) -> bool {
    (v as u8).count_ones().is_multiple_of(2)
}

impl Flags {
    /// Records an arithmetic result; `a`, `b` and `res` must already be masked to `size`.
    #[inline(always)]
    pub fn set_lazy(&mut self, op: FlagOp, size: u8, a: u64, b: u64, res: u64) {
        if matches!(op, FlagOp::Inc | FlagOp::Dec) && !matches!(self.op, FlagOp::None | FlagOp::Inc | FlagOp::Dec) {
            // INC/DEC keep CF: pin it down before the old state is lost.
            let cf = self.cf();
            self.base = (self.base & !bits::CF) | cf as u64;
        }
        self.op = op;
        self.size = size;
        self.a = a;
        self.b = b;
        self.res = res;
    }

    /// Sets the arithmetic flags eagerly from a mask of bits to set (the rest of ARITH cleared).
    #[inline]
    pub fn set_arith(&mut self, value: u64) {
        self.base = (self.base & !bits::ARITH) | (value & bits::ARITH);
        self.op = FlagOp::None;
    }

    /// Sets or clears individual flags, materialising the lazy ones first.
    #[inline]
    pub fn set_bit(&mut self, bit: u64, on: bool) {
        if bit & bits::ARITH != 0 {
            self.materialize();
        }
        if on {
            self.base |= bit
        } else {
            self.base &= !bit
        }
    }

    fn materialize(&mut self) {
        if self.op != FlagOp::None {
            let v = self.arith();
            self.base = (self.base & !bits::ARITH) | v;
            self.op = FlagOp::None;
        }
    }

    /// The six arithmetic flags as RFLAGS bits.
    fn arith(&self) -> u64 {
        let mut v = 0;
        if self.cf() {
            v |= bits::CF
        }
        if self.pf() {
            v |= bits::PF
        }
        if self.af() {
            v |= bits::AF
        }
        if self.zf() {
            v |= bits::ZF
        }
        if self.sf() {
            v |= bits::SF
        }
        if self.of() {
            v |= bits::OF
        }
        v
    }

    /// The full RFLAGS value.
    #[inline]
    pub fn get(&self) -> u64 {
        if self.op == FlagOp::None {
            self.base
        } else {
            (self.base & !bits::ARITH) | self.arith()
        }
    }

    /// Replaces RFLAGS wholesale (bit 1 forced on).
    #[inline]
    pub fn set(&mut self, v: u64) {
        self.base = (v & !0x8028) | bits::FIXED;
        self.op = FlagOp::None;
    }

    /// A non-arithmetic flag (IF, DF, TF, ...), read without materialising.
    #[inline(always)]
    pub fn sys(&self, bit: u64) -> bool {
        self.base & bit != 0
    }

    /// The carry flag.
    #[inline]
    pub fn cf(&self) -> bool {
        match self.op {
            FlagOp::None | FlagOp::Inc | FlagOp::Dec => self.base & bits::CF != 0,
            FlagOp::Add => self.res < self.a,
            FlagOp::Adc1 => self.res <= self.a,
            FlagOp::Sub => self.a < self.b,
            FlagOp::Sbb1 => self.a <= self.b,
            FlagOp::Logic => false,
        }
    }
    /// The zero flag.
    #[inline]
    pub fn zf(&self) -> bool {
        match self.op {
            FlagOp::None => self.base & bits::ZF != 0,
            _ => self.res == 0,
        }
    }
    /// The sign flag.
    #[inline]
    pub fn sf(&self) -> bool {
        match self.op {
            FlagOp::None => self.base & bits::SF != 0,
            _ => self.res & sign_bit(self.size) != 0,
        }
    }
    /// The overflow flag.
    #[inline]
    pub fn of(&self) -> bool {
        let s = sign_bit(self.size);
        match self.op {
            FlagOp::None => self.base & bits::OF != 0,
            FlagOp::Add | FlagOp::Adc1 => (self.a ^ self.res) & (self.b ^ self.res) & s != 0,
            FlagOp::Sub | FlagOp::Sbb1 => (self.a ^ self.b) & (self.a ^ self.res) & s != 0,
            FlagOp::Logic => false,
            FlagOp::Inc => self.res == s,
            FlagOp::Dec => self.res == s - 1,
        }
    }
    /// The auxiliary-carry flag.
    #[inline]
    pub fn af(&self) -> bool {
        match self.op {
            FlagOp::None => self.base & bits::AF != 0,
            FlagOp::Logic => false,
            _ => (self.a ^ self.b ^ self.res) & 0x10 != 0,
        }
    }
    /// The parity flag.
    #[inline]
    pub fn pf(&self) -> bool {
        match self.op {
            FlagOp::None => self.base & bits::PF != 0,
            _ => parity(self.res),
        }
    }

    /// Evaluates condition code `cc` (the low nibble of Jcc/SETcc/CMOVcc opcodes).
    #[inline(always)]
    pub fn cond(&self, cc: u8) -> bool {
        let r = match cc >> 1 {
            0 => self.of(),
            1 => self.cf(),
            2 => self.zf(),
            3 => self.cf() || self.zf(),
            4 => self.sf(),
            5 => self.pf(),
            6 => self.sf() != self.of(),
            _ => self.zf() || (self.sf() != self.of()),
        };
        r ^ (cc & 1 != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eager_sub(size: u8, a: u64, b: u64, cin: bool) -> u64 {
        let m = mask(size);
        let res = a.wrapping_sub(b).wrapping_sub(cin as u64) & m;
        let wide = (a as u128).wrapping_sub(b as u128).wrapping_sub(cin as u128);
        let mut f = 0;
        if (a as u128) < (b as u128) + cin as u128 {
            f |= bits::CF;
        }
        let _ = wide;
        if res == 0 {
            f |= bits::ZF
        }
        if res & sign_bit(size) != 0 {
            f |= bits::SF
        }
        if (a ^ b) & (a ^ res) & sign_bit(size) != 0 {
            f |= bits::OF
        }
        if (a ^ b ^ res) & 0x10 != 0 {
            f |= bits::AF
        }
        if parity(res) {
            f |= bits::PF
        }
        f
    }

    #[test]
    fn sbb_carry_matches_wide_arithmetic() {
        for &(a, b) in &[(0u64, 0u64), (0, 0xff), (0xff, 0xff), (5, 4), (4, 5), (0x80, 0x7f)] {
            let mut f = Flags::default();
            let res = a.wrapping_sub(b).wrapping_sub(1) & 0xff;
            f.set_lazy(FlagOp::Sbb1, 1, a, b, res);
            assert_eq!(f.get() & bits::ARITH, eager_sub(1, a, b, true), "sbb {a:#x},{b:#x}");
        }
    }
}
