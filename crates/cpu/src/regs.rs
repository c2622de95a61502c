//! General-purpose registers addressed through iced-x86's `Register`, and the stack.

use crate::bus::Bus;
use crate::exception::Exc;
use crate::{sreg, Cpu};
use iced_x86::Register;

/// RAX's encoding number (its index in [`Cpu::regs`]).
pub const RAX: usize = 0;
/// RCX's encoding number.
pub const RCX: usize = 1;
/// RDX's encoding number.
pub const RDX: usize = 2;
/// RBX's encoding number.
pub const RBX: usize = 3;
/// RSP's encoding number.
pub const RSP: usize = 4;
/// RBP's encoding number.
pub const RBP: usize = 5;
/// RSI's encoding number.
pub const RSI: usize = 6;
/// RDI's encoding number.
pub const RDI: usize = 7;

// iced-x86 numbers its registers in a fixed order: AL..BH, SPL..R15L, AX..R15W, EAX..R15D,
// RAX..R15, EIP, RIP, ES..GS. The test below pins the values this module relies on.
const R8_FIRST: usize = Register::AL as usize;
const R8_HIGH: usize = Register::AH as usize;
const R8_REX: usize = Register::SPL as usize;
const R16_FIRST: usize = Register::AX as usize;
const R32_FIRST: usize = Register::EAX as usize;
const R64_FIRST: usize = Register::RAX as usize;
const SEG_FIRST: usize = Register::ES as usize;
const XMM_FIRST: usize = Register::XMM0 as usize;

const K_NONE: u8 = 0;
const K_LO8: u8 = 1;
const K_HI8: u8 = 2;
const K_16: u8 = 3;
const K_32: u8 = 4;
const K_64: u8 = 5;
const K_SEG: u8 = 6;
const K_IP: u8 = 7;

/// For each iced `Register` value: kind (high nibble) and register number (low nibble).
static REG_TABLE: [u8; 256] = build_reg_table();

const fn build_reg_table() -> [u8; 256] {
    let mut t = [K_NONE << 4; 256];
    let mut n = 0;
    while n < 256 {
        t[n] = if n >= R8_FIRST && n < R8_HIGH {
            (K_LO8 << 4) | (n - R8_FIRST) as u8
        } else if n >= R8_HIGH && n < R8_REX {
            (K_HI8 << 4) | (n - R8_HIGH) as u8
        } else if n >= R8_REX && n < R16_FIRST {
            (K_LO8 << 4) | (n - R8_REX + 4) as u8
        } else if n >= R16_FIRST && n < R32_FIRST {
            (K_16 << 4) | (n - R16_FIRST) as u8
        } else if n >= R32_FIRST && n < R64_FIRST {
            (K_32 << 4) | (n - R32_FIRST) as u8
        } else if n >= R64_FIRST && n < R64_FIRST + 16 {
            (K_64 << 4) | (n - R64_FIRST) as u8
        } else if n >= SEG_FIRST && n < SEG_FIRST + 6 {
            (K_SEG << 4) | (n - SEG_FIRST) as u8
        } else if n == Register::EIP as usize || n == Register::RIP as usize {
            K_IP << 4
        } else {
            K_NONE << 4
        };
        n += 1;
    }
    t
}

/// A general-purpose register resolved at decode time: kind in the high nibble, number in the
/// low nibble (see [`Cpu::get_r`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegRef(pub u8);

impl RegRef {
    /// No register.
    pub const NONE: RegRef = RegRef(0);
    /// The resolved form of iced-x86 register `r` (NONE for anything not a GPR).
    #[inline(always)]
    pub fn of(r: Register) -> Self {
        RegRef(REG_TABLE[r as usize & 0xff])
    }
}

/// Size in bytes of a general-purpose register (0 for anything else).
#[inline]
pub fn gpr_size(r: Register) -> u8 {
    let n = r as usize;
    if (R8_FIRST..R16_FIRST).contains(&n) {
        1
    } else if (R16_FIRST..R32_FIRST).contains(&n) {
        2
    } else if (R32_FIRST..R64_FIRST).contains(&n) {
        4
    } else if (R64_FIRST..R64_FIRST + 16).contains(&n) {
        8
    } else {
        0
    }
}

/// Index 0-15 of a general-purpose register of any size (AH..BH give 0..3).
#[inline]
pub fn gpr_index(r: Register) -> usize {
    let n = r as usize;
    if n < R16_FIRST {
        if (R8_HIGH..R8_REX).contains(&n) {
            n - R8_HIGH
        } else if n >= R8_REX {
            n - R8_REX + 4
        } else {
            n - R8_FIRST
        }
    } else if n < R32_FIRST {
        n - R16_FIRST
    } else if n < R64_FIRST {
        n - R32_FIRST
    } else {
        (n - R64_FIRST) & 15
    }
}

/// Segment register number of ES..GS.
#[inline]
pub fn seg_index(r: Register) -> usize {
    (r as usize).wrapping_sub(SEG_FIRST).min(5)
}

/// XMM register number.
#[inline]
pub fn xmm_index(r: Register) -> usize {
    ((r as usize).wrapping_sub(XMM_FIRST)) & 15
}

impl Cpu {
    /// Reads a general-purpose or segment register, zero-extended.
    #[inline(always)]
    pub fn reg(&self, r: Register) -> u64 {
        self.get_r(RegRef::of(r))
    }

    /// Writes a general-purpose register with x86 partial-register rules: 8/16-bit writes merge,
    /// 32-bit writes zero the upper half. Other registers are ignored.
    #[inline(always)]
    pub fn set_reg(&mut self, r: Register, v: u64) {
        self.set_r(RegRef::of(r), v)
    }

    /// Reads a register resolved at decode time.
    #[inline(always)]
    pub fn get_r(&self, r: RegRef) -> u64 {
        let i = (r.0 & 15) as usize;
        match r.0 >> 4 {
            K_LO8 => self.regs[i] & 0xff,
            K_HI8 => (self.regs[i] >> 8) & 0xff,
            K_16 => self.regs[i] & 0xffff,
            K_32 => self.regs[i] & 0xffff_ffff,
            K_64 => self.regs[i],
            K_SEG => self.seg[i.min(5)].selector as u64,
            K_IP => self.rip,
            _ => 0,
        }
    }

    /// Writes a register resolved at decode time: 8/16-bit writes merge, 32-bit writes zero
    /// the upper half, anything but a GPR is ignored.
    #[inline(always)]
    pub fn set_r(&mut self, r: RegRef, v: u64) {
        let x = &mut self.regs[(r.0 & 15) as usize];
        match r.0 >> 4 {
            K_LO8 => *x = (*x & !0xff) | (v & 0xff),
            K_HI8 => *x = (*x & !0xff00) | ((v & 0xff) << 8),
            K_16 => *x = (*x & !0xffff) | (v & 0xffff),
            K_32 => *x = v & 0xffff_ffff,
            K_64 => *x = v,
            _ => {}
        }
    }

    /// Writes register `idx` with an operand of `size` bytes.
    #[inline]
    pub fn set_gpr(&mut self, idx: usize, size: u8, v: u64) {
        let x = &mut self.regs[idx & 15];
        *x = match size {
            1 => (*x & !0xff) | (v & 0xff),
            2 => (*x & !0xffff) | (v & 0xffff),
            4 => v & 0xffff_ffff,
            _ => v,
        };
    }

    /// Stack address size in bytes (SS.B in legacy modes, 8 in 64-bit mode).
    #[inline]
    pub fn stack_size(&self) -> u8 {
        if self.mode64() {
            8
        } else if self.seg[sreg::SS].big() {
            4
        } else {
            2
        }
    }

    /// Pushes `size` bytes.
    pub fn push(&mut self, bus: &mut dyn Bus, size: u8, v: u64) -> Result<(), Exc> {
        self.push_into_slot(bus, size, size, v)
    }

    /// Pushes a `slot`-byte stack slot of which only the low `write` bytes are written (the
    /// rest keep what memory held there): a PUSH of a segment register with a 32-bit operand
    /// on CPUs that do a 16-bit move.
    pub fn push_into_slot(&mut self, bus: &mut dyn Bus, slot: u8, write: u8, v: u64) -> Result<(), Exc> {
        let ss = self.stack_size();
        let sp = self.regs[RSP].wrapping_sub(slot as u64);
        let sp = match ss {
            2 => sp & 0xffff,
            4 => sp & 0xffff_ffff,
            _ => sp,
        };
        self.write_seg(bus, sreg::SS, sp, write, v)?;
        self.set_gpr(RSP, ss, sp);
        Ok(())
    }

    /// Pops `size` bytes.
    pub fn pop(&mut self, bus: &mut dyn Bus, size: u8) -> Result<u64, Exc> {
        let v = self.peek_stack(bus, 0, size)?;
        let ss = self.stack_size();
        let sp = self.regs[RSP].wrapping_add(size as u64);
        self.set_gpr(RSP, ss, sp);
        Ok(v)
    }

    /// Reads the stack at `depth` bytes above the stack pointer, without popping.
    pub fn peek_stack(&mut self, bus: &mut dyn Bus, depth: u64, size: u8) -> Result<u64, Exc> {
        let ss = self.stack_size();
        let sp = self.regs[RSP].wrapping_add(depth);
        let sp = match ss {
            2 => sp & 0xffff,
            4 => sp & 0xffff_ffff,
            _ => sp,
        };
        self.read_seg(bus, sreg::SS, sp, size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iced_register_numbering_is_what_this_module_assumes() {
        assert_eq!(Register::AH as usize - Register::AL as usize, 4);
        assert_eq!(Register::SPL as usize - Register::AL as usize, 8);
        assert_eq!(Register::R15L as usize + 1, Register::AX as usize);
        assert_eq!(Register::R15W as usize + 1, Register::EAX as usize);
        assert_eq!(Register::R15D as usize + 1, Register::RAX as usize);
        assert_eq!(Register::GS as usize - Register::ES as usize, 5);
        assert_eq!(Register::XMM15 as usize - Register::XMM0 as usize, 15);
        assert_eq!(gpr_index(Register::R12L), 12);
        assert_eq!(gpr_index(Register::BH), 3);
        assert_eq!(gpr_index(Register::DIL), 7);
        assert_eq!(gpr_index(Register::R9D), 9);
    }

    #[test]
    fn partial_register_writes_follow_x86_rules() {
        let mut cpu = Cpu::new(crate::CpuModel::default());
        cpu.regs[RAX] = 0x1122_3344_5566_7788;
        cpu.set_reg(Register::AH, 0xaa);
        assert_eq!(cpu.regs[RAX], 0x1122_3344_5566_aa88);
        cpu.set_reg(Register::AX, 0xbbcc);
        assert_eq!(cpu.regs[RAX], 0x1122_3344_5566_bbcc);
        cpu.set_reg(Register::EAX, 0xdead_beef);
        assert_eq!(cpu.regs[RAX], 0xdead_beef);
        assert_eq!(cpu.reg(Register::AH), 0xbe);
    }
}
