//! Devices, one file per part. A device knows register offsets, not where it sits: the board
//! (`board/legacy.rs`, `board/ports.rs`, `board/memory_map.rs`) maps port ranges and MMIO
//! windows onto them and wires their interrupt lines.

pub mod ahci;
pub mod apm;
pub mod ata;
pub mod cmos_rtc;
pub mod debug_exit;
pub mod debugcon;
pub mod disk;
pub mod fw_cfg;
pub mod fw_cfg_file;
pub mod hwmon;
pub mod i8042;
pub mod ioapic;
pub mod isa_dma;
pub mod lapic;
pub mod option_rom;
pub mod pflash;
pub mod pflash_bank;
pub mod pic8259;
pub mod pit8254;
pub mod port92;
pub mod reset_control;
pub mod uart16550;
pub mod uhci_legacy;

use crate::clock::Ticks;

/// A device reached through I/O ports: `offset` is relative to the start of the range the
/// board mapped it at, `size` is 1, 2 or 4 bytes. Guest input never makes a device panic;
/// an access the device does not decode reads as all ones and is otherwise ignored.
pub trait PortDevice {
    /// Reads `size` bytes at `offset`; `now` is guest time (from the virtual clock).
    fn read(&mut self, offset: u16, size: u8, now: Ticks) -> u32;
    /// Writes the low `size` bytes of `value` at `offset`.
    fn write(&mut self, offset: u16, size: u8, value: u32, now: Ticks);
}

/// All ones in `size` bytes (what an undecoded read returns).
pub fn ones(size: u8) -> u32 {
    crate::pci::host::ones(size)
}
