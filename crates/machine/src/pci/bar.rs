//! Base address registers of type-0 headers (PCI Local Bus Specification 3.0, §6.2.5.1):
//! bit 0 tells I/O from memory, the low bits that cannot be written give the size, so that
//! firmware sizes a BAR by writing all ones and reading it back. The write mask of
//! [`ConfigSpace`] is exactly that behaviour.

use super::config::{ConfigSpace, COMMAND};

/// Offset of BAR0.
pub const BAR0: u8 = 0x10;
/// Command register bit 0: I/O space decoding.
pub const COMMAND_IO: u16 = 1 << 0;
/// Command register bit 1: memory space decoding.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command register bit 2: bus master (the function may start DMA).
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Command register bit 10: INTx# disabled.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;

/// What a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// I/O space (16-bit ports).
    Io,
    /// 32-bit non-prefetchable memory.
    Mem32,
}

/// One BAR: its index (0-5), kind and size (a power of two; at least 4 for I/O, 16 for memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// BAR number, 0-5.
    pub index: u8,
    /// I/O or memory.
    pub kind: BarKind,
    /// Size in bytes.
    pub size: u32,
}

impl Bar {
    /// Its configuration-space offset.
    pub fn offset(&self) -> u8 {
        BAR0 + 4 * self.index
    }

    /// The address bits software may write.
    fn mask(&self) -> u32 {
        let size = self.size.next_power_of_two();
        match self.kind {
            // All 32 address bits are writable, as firmware sizes I/O BARs over 32 bits
            // (§6.2.5.1); a base above 0xFFFF never matches a 16-bit port.
            BarKind::Io => !(size.max(4) - 1),
            BarKind::Mem32 => !(size.max(16) - 1),
        }
    }

    /// Sets the BAR's read-only type bits and its write mask in `cfg`.
    pub fn install(&self, cfg: &mut ConfigSpace) {
        let flags = match self.kind {
            BarKind::Io => 1,
            BarKind::Mem32 => 0,
        };
        cfg.set(self.offset(), 4, flags);
        cfg.set_wmask(self.offset(), 4, self.mask());
    }

    /// The base address the BAR decodes, if its space is enabled in the command register and
    /// it has been assigned (a zero base decodes nothing).
    pub fn base(&self, cfg: &ConfigSpace) -> Option<u64> {
        let cmd = cfg.read(COMMAND, 2) as u16;
        let enabled = match self.kind {
            BarKind::Io => cmd & COMMAND_IO != 0,
            BarKind::Mem32 => cmd & COMMAND_MEMORY != 0,
        };
        let base = cfg.read(self.offset(), 4) & self.mask();
        (enabled && base != 0).then_some(base as u64)
    }

    /// The offset of `addr` in the BAR, if the BAR decodes it.
    pub fn decode(&self, cfg: &ConfigSpace, addr: u64) -> Option<u64> {
        let base = self.base(cfg)?;
        (addr >= base && addr - base < self.size as u64).then(|| addr - base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizing_and_decoding() {
        let mut c = ConfigSpace::new(0x8086, 1, 0, 0x01_06_01, 0);
        let m = Bar { index: 5, kind: BarKind::Mem32, size: 0x800 };
        let i = Bar { index: 4, kind: BarKind::Io, size: 16 };
        m.install(&mut c);
        i.install(&mut c);
        c.write(0x24, 4, u32::MAX);
        assert_eq!(c.read(0x24, 4), 0xffff_f800);
        c.write(0x20, 4, u32::MAX);
        assert_eq!(c.read(0x20, 4), 0xffff_fff1);
        c.write(0x24, 4, 0xfebf_1000);
        c.write(0x20, 4, 0xc040);
        assert_eq!(m.decode(&c, 0xfebf_1004), None, "memory decoding off");
        c.write(COMMAND, 2, (COMMAND_IO | COMMAND_MEMORY) as u32);
        assert_eq!(m.decode(&c, 0xfebf_1004), Some(4));
        assert_eq!(m.decode(&c, 0xfebf_1800), None);
        assert_eq!(i.decode(&c, 0xc04f), Some(15));
    }
}
