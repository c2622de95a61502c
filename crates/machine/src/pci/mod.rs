//! PCI: configuration spaces with write masks and the host bridge's configuration mechanism #1.

pub mod bar;
pub mod config;
pub mod host;
pub mod slots;

/// A function on bus 0 that has a configuration space.
pub trait PciFunction {
    /// Reads `size` (1, 2 or 4) bytes at `offset`; bytes past 0xFF read as 0xFF.
    fn config_read(&self, offset: u8, size: u8) -> u32;
    /// Writes the low `size` bytes of `value` at `offset`; bytes past 0xFF are dropped.
    fn config_write(&mut self, offset: u8, size: u8, value: u32);
}
