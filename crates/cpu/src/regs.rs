//! General-purpose registers addressed through iced-x86's `Register`, and the stack.

use crate::bus::Bus;
use crate::exception::Exc;
use crate::{sreg, Cpu};
use iced_x86::Register;

pub const RAX: usize = 0;
pub const RCX: usize = 1;
pub const RDX: usize = 2;
pub const RBX: usize = 3;
pub const RSP: usize = 4;
pub const RBP: usize = 5;
pub const RSI: usize = 6;
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
    #[inline]
    pub fn reg(&self, r: Register) -> u64 {
        let n = r as usize;
        if n < R16_FIRST {
            if (R8_HIGH..R8_REX).contains(&n) {
                (self.regs[n - R8_HIGH] >> 8) & 0xff
            } else if n >= R8_REX {
                self.regs[n - R8_REX + 4] & 0xff
            } else {
                self.regs[n.wrapping_sub(R8_FIRST) & 15] & 0xff
            }
        } else if n < R32_FIRST {
            self.regs[n - R16_FIRST] & 0xffff
        } else if n < R64_FIRST {
            self.regs[n - R32_FIRST] & 0xffff_ffff
        } else if n < R64_FIRST + 16 {
            self.regs[n - R64_FIRST]
        } else if (SEG_FIRST..SEG_FIRST + 6).contains(&n) {
            self.seg[n - SEG_FIRST].selector as u64
        } else if r == Register::RIP || r == Register::EIP {
            self.rip
        } else {
            0
        }
    }

    /// Writes a general-purpose register with x86 partial-register rules: 8/16-bit writes merge,
    /// 32-bit writes zero the upper half.
    #[inline]
    pub fn set_reg(&mut self, r: Register, v: u64) {
        let n = r as usize;
        if n == 0 {
            return;
        }
        if n < R16_FIRST {
            if (R8_HIGH..R8_REX).contains(&n) {
                let x = &mut self.regs[n - R8_HIGH];
                *x = (*x & !0xff00) | ((v & 0xff) << 8);
            } else {
                let i = if n >= R8_REX { n - R8_REX + 4 } else { n.wrapping_sub(R8_FIRST) & 15 };
                let x = &mut self.regs[i];
                *x = (*x & !0xff) | (v & 0xff);
            }
        } else if n < R32_FIRST {
            let x = &mut self.regs[n - R16_FIRST];
            *x = (*x & !0xffff) | (v & 0xffff);
        } else if n < R64_FIRST {
            self.regs[n - R32_FIRST] = v & 0xffff_ffff;
        } else if n < R64_FIRST + 16 {
            self.regs[n - R64_FIRST] = v;
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
        let ss = self.stack_size();
        let sp = self.regs[RSP].wrapping_sub(size as u64);
        let sp = match ss {
            2 => sp & 0xffff,
            4 => sp & 0xffff_ffff,
            _ => sp,
        };
        self.write_seg(bus, sreg::SS, sp, size, v)?;
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
