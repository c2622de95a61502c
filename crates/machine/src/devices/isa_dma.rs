//! The two 8237 ISA DMA controllers and their page registers (ports 0x00-0x0F, 0x80-0x8F,
//! 0xC0-0xDF; Intel 8237A datasheet, ICH9 datasheet doc. 316972 §13.2) as a write sink:
//! firmware programs them (SeaBIOS writes the master-clear, mode and mask registers) but no
//! smmlab device does ISA DMA. Writes are accepted and dropped; reads return all ones. Port
//! 0x80 (the POST-code port, inside the page-register range) is kept readable: the last byte
//! written is recorded as the POST code.

use super::{ones, PortDevice};
use crate::clock::Ticks;

/// Offset of the POST-code port (0x80) from the page-register block at 0x80.
pub const POST_CODE_OFFSET: u16 = 0;

/// A sink that remembers the last POST code.
#[derive(Clone, Debug, Default)]
pub struct IsaDma {
    /// Always None: port 0x80 belongs to [`DmaPages`], which keeps the POST code.
    pub post_code: Option<u8>,
}

impl PortDevice for IsaDma {
    fn read(&mut self, _offset: u16, size: u8, _now: Ticks) -> u32 {
        ones(size)
    }

    fn write(&mut self, _offset: u16, _size: u8, _value: u32, _now: Ticks) {}
}

/// The page-register block at 0x80-0x8F, including the POST-code port.
#[derive(Clone, Debug, Default)]
pub struct DmaPages {
    /// The last byte written to port 0x80.
    pub post_code: Option<u8>,
}

impl PortDevice for DmaPages {
    fn read(&mut self, offset: u16, size: u8, _now: Ticks) -> u32 {
        match (offset, self.post_code) {
            (POST_CODE_OFFSET, Some(v)) => v as u32 | (ones(size) & !0xff),
            _ => ones(size),
        }
    }

    fn write(&mut self, offset: u16, _size: u8, value: u32, _now: Ticks) {
        if offset == POST_CODE_OFFSET {
            self.post_code = Some(value as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dma_registers_are_a_sink() {
        let mut d = IsaDma::default();
        d.write(0x0d, 1, 0, Ticks(0));
        assert_eq!(d.read(0x0d, 1, Ticks(0)), 0xff);
        assert_eq!(d.read(0x00, 2, Ticks(0)), 0xffff);
    }

    #[test]
    fn post_code_port_reads_back() {
        let mut p = DmaPages::default();
        assert_eq!(p.read(0, 1, Ticks(0)), 0xff);
        p.write(0, 1, 0x55, Ticks(0));
        assert_eq!(p.read(0, 1, Ticks(0)), 0x55);
        p.write(3, 1, 0x12, Ticks(0));
        assert_eq!(p.read(3, 1, Ticks(0)), 0xff);
    }
}
