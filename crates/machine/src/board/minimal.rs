//! The `minimal` board: RAM from 0, a flat ROM ending at 4 GiB whose last 64 KiB also appear at
//! 0xF0000-0xFFFFF (as on a PC), debugcon on 0x402, isa-debug-exit on 0xF4. Unmapped memory
//! reads as all ones; unmapped ports read as all ones and ignore writes.

use super::platform::PlatformPort;
use super::port_map::{PortMap, PortOverlap};
use crate::devices::{debug_exit::DebugExit, debugcon::Debugcon};
use crate::memory::{MemoryBlock, Ram};
use cpu::{Access, AccessKind, Bus, Pending};
use std::ptr::NonNull;

/// The debugcon port.
pub const PORT_DEBUGCON: u16 = 0x402;
/// The isa-debug-exit port.
pub const PORT_DEBUG_EXIT: u16 = 0xf4;
const LOW_ROM_BASE: u64 = 0xf0000;
const FOUR_GIB: u64 = 1 << 32;

/// The `minimal` board: RAM from 0, the ROM at the top of 4 GiB (its last 64 KiB also below
/// 1 MiB), debugcon and isa-debug-exit. No chipset, so no SMI source and no SMRAM.
pub struct Minimal {
    /// Guest RAM.
    pub ram: Ram,
    /// The ROM image.
    pub rom: MemoryBlock,
    /// Port 0x402 output.
    pub debugcon: Debugcon,
    /// Port 0xF4.
    pub debug_exit: DebugExit,
    /// The two ports ([`minimal_ports`]).
    ports: PortMap<PlatformPort>,
}

/// The board's ports, registered: debugcon and isa-debug-exit.
pub fn minimal_ports() -> Result<PortMap<PlatformPort>, PortOverlap<PlatformPort>> {
    let mut m = PortMap::new();
    m.register(PORT_DEBUGCON..=PORT_DEBUGCON, PlatformPort::Debugcon)?;
    m.register(PORT_DEBUG_EXIT..=PORT_DEBUG_EXIT, PlatformPort::DebugExit)?;
    Ok(m)
}

enum Target {
    Ram(u64),
    Rom(u64),
    None,
}

impl Minimal {
    /// A board with `ram_size` bytes of RAM and `rom`.
    pub fn new(ram_size: u64, rom: Vec<u8>) -> Self {
        Minimal {
            ram: Ram::new(ram_size),
            rom: MemoryBlock::from_bytes(&rom),
            debugcon: Debugcon::default(),
            debug_exit: DebugExit::default(),
            ports: minimal_ports().expect("the minimal board's port ranges do not overlap"),
        }
    }

    fn route(&self, addr: u64) -> Target {
        let rom_len = self.rom.len();
        if (LOW_ROM_BASE..LOW_ROM_BASE + 0x10000).contains(&addr) && rom_len >= 0x10000 {
            return Target::Rom(rom_len - 0x10000 + (addr - LOW_ROM_BASE));
        }
        if addr < self.ram.len() {
            return Target::Ram(addr);
        }
        if addr < FOUR_GIB && addr >= FOUR_GIB - rom_len {
            return Target::Rom(addr - (FOUR_GIB - rom_len));
        }
        Target::None
    }
}

impl Bus for Minimal {
    fn read(&mut self, a: Access) -> u64 {
        match self.route(a.addr) {
            Target::Ram(o) => self.ram.read_le(o, a.size),
            Target::Rom(o) => self.rom.read_le(o, a.size),
            Target::None => u64::MAX >> (64 - 8 * a.size as u32),
        }
    }

    fn write(&mut self, a: Access, value: u64) {
        if let Target::Ram(o) = self.route(a.addr) {
            self.ram.write_le(o, a.size, value);
        }
    }

    fn io_in(&mut self, a: Access) -> u32 {
        match self.ports.lookup(a.addr as u16) {
            Some((PlatformPort::Debugcon, _)) => Debugcon::READBACK,
            _ => u32::MAX >> (32 - 8 * a.size as u32),
        }
    }

    fn io_out(&mut self, a: Access, value: u32) {
        match self.ports.lookup(a.addr as u16) {
            Some((PlatformPort::Debugcon, _)) => self.debugcon.write(value as u8),
            Some((PlatformPort::DebugExit, _)) => self.debug_exit.write(value),
            _ => {}
        }
    }

    fn host_page(&mut self, page: u64, kind: AccessKind, _smm: bool) -> Option<NonNull<u8>> {
        match self.route(page) {
            Target::Ram(o) => self.ram.page_ptr(o, kind == AccessKind::Write),
            Target::Rom(o) if kind != AccessKind::Write => self.rom.page_ptr(o),
            _ => None,
        }
    }

    fn pending(&mut self) -> Pending {
        if self.debug_exit.code().is_some() {
            Pending(Pending::STOP)
        } else {
            Pending(0)
        }
    }
}
