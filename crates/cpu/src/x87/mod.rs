//! The x87 FPU's state: eight 80-bit physical registers used as a stack (TOP in the status
//! word), the control, status and tag words, and the last instruction and operand pointers
//! (Intel SDM vol. 1, chapter 8). The arithmetic is in [`float`]; the instructions in
//! [`crate::exec::x87`].

pub mod float;
pub mod sqrt;

/// Control word bits (SDM vol. 1, 8.1.5).
pub mod fcw {
    /// The six exception masks (IM, DM, ZM, OM, UM, PM).
    pub const MASKS: u16 = 0x3f;
    /// Precision control, bits 9:8 (00 single, 10 double, 11 extended).
    pub const PC_SHIFT: u16 = 8;
    /// Rounding control, bits 11:10.
    pub const RC_SHIFT: u16 = 10;
}

/// Status word bits (SDM vol. 1, 8.1.3).
pub mod fsw {
    /// Invalid operation.
    pub const IE: u16 = 1 << 0;
    /// Denormal operand.
    pub const DE: u16 = 1 << 1;
    /// Zero divide.
    pub const ZE: u16 = 1 << 2;
    /// Overflow.
    pub const OE: u16 = 1 << 3;
    /// Underflow.
    pub const UE: u16 = 1 << 4;
    /// Precision (inexact result).
    pub const PE: u16 = 1 << 5;
    /// Stack fault (with IE; C1 says overflow (1) or underflow (0)).
    pub const SF: u16 = 1 << 6;
    /// Error summary: an unmasked exception is pending.
    pub const ES: u16 = 1 << 7;
    /// Condition code C0.
    pub const C0: u16 = 1 << 8;
    /// Condition code C1.
    pub const C1: u16 = 1 << 9;
    /// Condition code C2.
    pub const C2: u16 = 1 << 10;
    /// TOP, bits 13:11.
    pub const TOP_SHIFT: u16 = 11;
    /// TOP's mask in place.
    pub const TOP: u16 = 7 << TOP_SHIFT;
    /// Condition code C3.
    pub const C3: u16 = 1 << 14;
    /// FPU busy (mirrors ES).
    pub const B: u16 = 1 << 15;
    /// The six exception flags.
    pub const EXCEPTIONS: u16 = 0x3f;
    /// C0-C3.
    pub const CC: u16 = C0 | C1 | C2 | C3;
}

/// A register's 2-bit tag (SDM vol. 1, 8.1.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    /// A normal finite value.
    Valid = 0,
    /// +0 or -0.
    Zero = 1,
    /// NaN, infinity, denormal or an unsupported encoding.
    Special = 2,
    /// No value.
    Empty = 3,
}

/// The x87 FPU's architectural state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct X87 {
    /// Physical registers R0-R7 (80 bits each, in the low bits); ST(i) is R((TOP + i) & 7).
    pub regs: [u128; 8],
    /// Control word.
    pub fcw: u16,
    /// Status word with TOP in bits 13:11.
    pub fsw: u16,
    /// The full tag word, two bits per physical register (R0 in bits 1:0).
    pub ftw: u16,
    /// Last x87 instruction: the 11-bit opcode, its offset and CS selector.
    pub fop: u16,
    /// Offset of the last non-control x87 instruction.
    pub fip: u64,
    /// CS selector of that instruction.
    pub fcs: u16,
    /// Offset of its memory operand, if any.
    pub fdp: u64,
    /// Segment selector of that operand.
    pub fds: u16,
}

impl X87 {
    /// The state after power-on or RESET (SDM vol. 3, table 10-1): FCW 0040h, FSW 0, tags
    /// 5555h (every register +0.0, tagged zero).
    pub fn reset() -> Self {
        X87 { regs: [0; 8], fcw: 0x40, fsw: 0, ftw: 0x5555, fop: 0, fip: 0, fcs: 0, fdp: 0, fds: 0 }
    }

    /// FNINIT: FCW 037Fh (all masked, extended precision, round to nearest), FSW 0, all tags
    /// empty, pointers cleared; the registers keep their contents.
    pub fn init(&mut self) {
        self.fcw = 0x37f;
        self.fsw = 0;
        self.ftw = 0xffff;
        self.fop = 0;
        self.fip = 0;
        self.fcs = 0;
        self.fdp = 0;
        self.fds = 0;
    }

    /// TOP.
    pub fn top(&self) -> u8 {
        ((self.fsw & fsw::TOP) >> fsw::TOP_SHIFT) as u8
    }

    /// Sets TOP.
    pub fn set_top(&mut self, top: u8) {
        self.fsw = (self.fsw & !fsw::TOP) | (((top & 7) as u16) << fsw::TOP_SHIFT);
    }

    /// The physical register number of ST(i).
    pub fn phys(&self, i: u8) -> usize {
        ((self.top() + i) & 7) as usize
    }

    /// The tag of physical register `p`.
    pub fn tag(&self, p: usize) -> Tag {
        match (self.ftw >> (2 * p)) & 3 {
            0 => Tag::Valid,
            1 => Tag::Zero,
            2 => Tag::Special,
            _ => Tag::Empty,
        }
    }

    /// Sets the tag of physical register `p`.
    pub fn set_tag(&mut self, p: usize, t: Tag) {
        self.ftw = (self.ftw & !(3 << (2 * p))) | ((t as u16) << (2 * p));
    }

    /// Whether ST(i) is empty.
    pub fn is_empty(&self, i: u8) -> bool {
        self.tag(self.phys(i)) == Tag::Empty
    }

    /// ST(i)'s contents (whatever they are; check [`X87::is_empty`] first).
    pub fn st(&self, i: u8) -> u128 {
        self.regs[self.phys(i)]
    }

    /// Writes ST(i) and tags it from its contents.
    pub fn set_st(&mut self, i: u8, v: u128) {
        let p = self.phys(i);
        self.regs[p] = v & float::MASK80;
        self.set_tag(p, float::tag_of(v));
    }

    /// Marks ST(0) empty and increments TOP.
    pub fn pop(&mut self) {
        let p = self.phys(0);
        self.set_tag(p, Tag::Empty);
        self.set_top(self.top().wrapping_add(1));
    }

    /// Decrements TOP and writes the new ST(0).
    pub fn push(&mut self, v: u128) {
        self.set_top(self.top().wrapping_sub(1));
        self.set_st(0, v);
    }

    /// The abridged tag byte of FXSAVE: bit p set when physical register p is not empty.
    pub fn abridged_tags(&self) -> u8 {
        (0..8).filter(|&p| self.tag(p) != Tag::Empty).fold(0u8, |t, p| t | 1 << p)
    }

    /// Restores the tags from FXRSTOR's abridged byte: empty registers stay empty, the others
    /// are tagged from their contents (SDM vol. 1, 10.5.1.1).
    pub fn set_abridged_tags(&mut self, tags: u8) {
        for p in 0..8 {
            let t = if tags & (1 << p) == 0 { Tag::Empty } else { float::tag_of(self.regs[p]) };
            self.set_tag(p, t);
        }
    }

    /// The tag word as FSTENV/FSAVE store it: every non-empty register tagged from its
    /// contents (the stored word is recomputed, SDM vol. 1, 8.1.7).
    pub fn full_tags(&self) -> u16 {
        (0..8).fold(0u16, |w, p| {
            let t = if self.tag(p) == Tag::Empty { Tag::Empty } else { float::tag_of(self.regs[p]) };
            w | (t as u16) << (2 * p)
        })
    }

    /// MMX register `n` (the low 64 bits of physical register n).
    pub fn mmx(&self, n: usize) -> u64 {
        self.regs[n & 7] as u64
    }

    /// Writes MMX register `n`: the exponent field becomes all ones, TOP 0 and every tag valid
    /// (SDM vol. 1, 9.5.1).
    pub fn set_mmx(&mut self, n: usize, v: u64) {
        self.regs[n & 7] = (0xffffu128 << 64) | v as u128;
        self.set_top(0);
        self.ftw = 0;
    }
}

impl Default for X87 {
    fn default() -> Self {
        Self::reset()
    }
}
