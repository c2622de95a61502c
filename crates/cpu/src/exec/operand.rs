//! Operand access for handlers: effective addresses, and reading and writing the operands
//! iced-x86 decoded (register, memory, immediate).

use crate::bus::Bus;
use crate::decode::{Insn, NO_REG};
use crate::exception::Exc;
use crate::flags::mask;
use crate::Cpu;
use iced_x86::OpKind;

impl Cpu {
    /// The effective address (segment offset) of the memory operand, wrapped to the address size.
    #[inline(always)]
    pub fn ea(&self, d: &Insn) -> u64 {
        let m = &d.mem;
        let mut a = m.disp;
        if m.base != NO_REG {
            a = a.wrapping_add(self.regs[(m.base & 15) as usize]);
        }
        if m.index != NO_REG {
            a = a.wrapping_add(self.regs[(m.index & 15) as usize].wrapping_mul(m.scale as u64));
        }
        match d.asize {
            2 => a & 0xffff,
            4 => a & 0xffff_ffff,
            _ => a,
        }
    }

    /// The segment register of the memory operand.
    #[inline(always)]
    pub fn mem_seg(&self, d: &Insn) -> usize {
        d.mem.seg as usize
    }

    /// The linear address of the memory operand, checked for an access of `size` bytes.
    #[inline(always)]
    pub fn mem_linear(&self, d: &Insn, size: u8, write: bool) -> Result<u64, Exc> {
        self.seg_linear(self.mem_seg(d), self.ea(d), size, write)
    }

    /// Reads the memory operand.
    #[inline(always)]
    pub fn read_mem(&mut self, bus: &mut dyn Bus, d: &Insn, size: u8) -> Result<u64, Exc> {
        let lin = self.mem_linear(d, size, false)?;
        self.read_lin(bus, lin, size)
    }

    /// Writes the memory operand.
    #[inline(always)]
    pub fn write_mem(&mut self, bus: &mut dyn Bus, d: &Insn, size: u8, v: u64) -> Result<(), Exc> {
        let lin = self.mem_linear(d, size, true)?;
        self.write_lin(bus, lin, size, v)
    }

    /// Reads 16 bytes at the memory operand (SSE).
    pub fn read_mem128(&mut self, bus: &mut dyn Bus, d: &Insn, aligned: bool) -> Result<u128, Exc> {
        let lin = self.mem_linear(d, 16, false)?;
        if aligned && lin & 15 != 0 {
            return Err(Exc::gp0());
        }
        let lo = self.read_lin(bus, lin, 8)?;
        let hi = self.read_lin(bus, lin.wrapping_add(8), 8)?;
        Ok(lo as u128 | (hi as u128) << 64)
    }

    /// Writes 16 bytes at the memory operand (SSE).
    pub fn write_mem128(&mut self, bus: &mut dyn Bus, d: &Insn, v: u128, aligned: bool) -> Result<(), Exc> {
        let lin = self.mem_linear(d, 16, true)?;
        if aligned && lin & 15 != 0 {
            return Err(Exc::gp0());
        }
        // Probe the second half first so a fault leaves memory unchanged.
        let hi_lin = lin.wrapping_add(8);
        let old_hi = self.read_lin(bus, hi_lin, 8)?;
        self.write_lin(bus, hi_lin, 8, old_hi)?;
        self.write_lin(bus, lin, 8, v as u64)?;
        self.write_lin(bus, hi_lin, 8, (v >> 64) as u64)
    }

    /// Reads operand `n` as a `size`-byte value (immediates are sign-extended then truncated).
    #[inline(always)]
    pub fn read_op(&mut self, bus: &mut dyn Bus, d: &Insn, n: u32, size: u8) -> Result<u64, Exc> {
        match d.i.op_kind(n) {
            OpKind::Register => Ok(self.reg(d.i.op_register(n)) & mask(size)),
            OpKind::Memory => self.read_mem(bus, d, size),
            _ => Ok(d.i.immediate(n) & mask(size)),
        }
    }

    /// Writes operand `n` (a register or memory).
    #[inline(always)]
    pub fn write_op(&mut self, bus: &mut dyn Bus, d: &Insn, n: u32, size: u8, v: u64) -> Result<(), Exc> {
        match d.i.op_kind(n) {
            OpKind::Register => {
                self.set_reg(d.i.op_register(n), v);
                Ok(())
            }
            _ => self.write_mem(bus, d, size, v),
        }
    }
}
