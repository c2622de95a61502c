//! PCI functions a board hosts beyond the chipset's own registers: each answers
//! configuration cycles at a bus-0 device/function, decodes the BARs firmware assigned (and,
//! for legacy-mode controllers, fixed ports), may master DMA into guest memory through a
//! [`Dma`] the board lends it for the duration of an access, and drives interrupt lines.

use super::bar::{Bar, COMMAND_BUS_MASTER, COMMAND_INTX_DISABLE};
use super::config::{ConfigSpace, COMMAND};
use super::PciFunction;

/// Guest memory as a bus master sees it. A transfer to or from an address nothing claims is
/// a master abort: reads return all ones, writes are dropped, and the call returns false.
pub trait Dma {
    /// Reads `buf.len()` bytes at physical `addr`; false on a master abort.
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool;
    /// Writes `data` at physical `addr`; false on a master abort.
    fn write(&mut self, addr: u64, data: &[u8]) -> bool;
}

/// A DMA that reaches nothing (used where a device is accessed outside the board).
pub struct NoDma;

impl Dma for NoDma {
    fn read(&mut self, _addr: u64, buf: &mut [u8]) -> bool {
        buf.fill(0xff);
        false
    }
    fn write(&mut self, _addr: u64, _data: &[u8]) -> bool {
        false
    }
}

/// A flat memory from address 0, for tests and simple boards.
impl Dma for Vec<u8> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        let ok = addr.checked_add(buf.len() as u64).is_some_and(|e| e <= self.len() as u64);
        for (k, b) in buf.iter_mut().enumerate() {
            let at = usize::try_from(addr).ok().and_then(|a| a.checked_add(k));
            *b = at.and_then(|a| self.get(a)).copied().unwrap_or(0xff);
        }
        ok
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> bool {
        let ok = addr.checked_add(data.len() as u64).is_some_and(|e| e <= self.len() as u64);
        if ok {
            self.as_mut_slice()[addr as usize..addr as usize + data.len()].copy_from_slice(data);
        }
        ok
    }
}

/// A PCI function with BARs.
pub trait PciDevice: PciFunction {
    /// The configuration space (for BAR decoding and the command register).
    fn config(&self) -> &ConfigSpace;
    /// The BARs the function implements.
    fn bars(&self) -> &[Bar];
    /// A read at `offset` in BAR `bar`.
    fn bar_read(&mut self, bar: u8, offset: u64, size: u8, dma: &mut dyn Dma) -> u32;
    /// A write at `offset` in BAR `bar`.
    fn bar_write(&mut self, bar: u8, offset: u64, size: u8, value: u32, dma: &mut dyn Dma);
    /// A read of a fixed (legacy) port the function decodes itself; `None` if not claimed.
    fn legacy_io_read(&mut self, _port: u16, _size: u8) -> Option<u32> {
        None
    }
    /// A write to a fixed port; false if not claimed.
    fn legacy_io_write(&mut self, _port: u16, _size: u8, _value: u32) -> bool {
        false
    }
    /// The INTx# line level (before the command register's interrupt disable).
    fn intx(&self) -> bool {
        false
    }
    /// ISA IRQ lines the function drives directly (bit n = IRQn), as legacy-mode IDE does.
    fn isa_irqs(&self) -> u16 {
        0
    }
    /// A storage controller takes `disk` at `position` (IDE: 0 primary master .. 3 secondary
    /// slave; AHCI: the port). False if the function has no such position.
    fn attach_disk(&mut self, _position: usize, _disk: crate::devices::disk::Disk) -> bool {
        false
    }
}

struct Slot {
    device: u8,
    function: u8,
    dev: Box<dyn PciDevice>,
}

/// The hosted functions on bus 0.
#[derive(Default)]
pub struct PciSlots {
    slots: Vec<Slot>,
}

impl std::fmt::Debug for PciSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.slots.iter().map(|s| (s.device, s.function))).finish()
    }
}

/// Whether a function may master the bus.
pub fn bus_master(cfg: &ConfigSpace) -> bool {
    cfg.read(COMMAND, 2) as u16 & COMMAND_BUS_MASTER != 0
}

impl PciSlots {
    /// Hosts `dev` at 00:`device`.`function` (replacing what was there).
    pub fn add(&mut self, device: u8, function: u8, dev: Box<dyn PciDevice>) {
        self.slots.retain(|s| (s.device, s.function) != (device, function));
        self.slots.push(Slot { device, function, dev });
    }

    /// The function at 00:`device`.`function`.
    pub fn get(&self, device: u8, function: u8) -> Option<&dyn PciDevice> {
        self.slots.iter().find(|s| (s.device, s.function) == (device, function)).map(|s| s.dev.as_ref())
    }

    /// The function at 00:`device`.`function`, mutably.
    pub fn get_mut(&mut self, device: u8, function: u8) -> Option<&mut (dyn PciDevice + 'static)> {
        self.slots.iter_mut().find(|s| (s.device, s.function) == (device, function)).map(|s| s.dev.as_mut())
    }

    /// Reads `size` bytes of function `device`.`function`'s configuration space at `offset`, if the
    /// function exists.
    pub fn config_read(&self, device: u8, function: u8, offset: u8, size: u8) -> Option<u32> {
        self.get(device, function).map(|d| d.config_read(offset, size))
    }

    /// Returns false if no function answers.
    pub fn config_write(&mut self, device: u8, function: u8, offset: u8, size: u8, value: u32) -> bool {
        self.get_mut(device, function).map(|d| d.config_write(offset, size, value)).is_some()
    }

    fn find(&self, addr: u64, io: bool) -> Option<(usize, u8, u64)> {
        for (i, s) in self.slots.iter().enumerate() {
            for b in s.dev.bars() {
                if (b.kind == super::bar::BarKind::Io) == io {
                    if let Some(o) = b.decode(s.dev.config(), addr) {
                        return Some((i, b.index, o));
                    }
                }
            }
        }
        None
    }

    /// Whether a memory BAR decodes `addr`.
    pub fn claims_mmio(&self, addr: u64) -> bool {
        !self.slots.is_empty() && self.find(addr, false).is_some()
    }

    /// A memory read claimed by a memory BAR, if any.
    pub fn mmio_read(&mut self, addr: u64, size: u8, dma: &mut dyn Dma) -> Option<u32> {
        let (i, bar, o) = self.find(addr, false)?;
        Some(self.slots[i].dev.bar_read(bar, o, size, dma))
    }

    /// A memory write claimed by a memory BAR; false if none claims it.
    pub fn mmio_write(&mut self, addr: u64, size: u8, value: u32, dma: &mut dyn Dma) -> bool {
        match self.find(addr, false) {
            Some((i, bar, o)) => {
                self.slots[i].dev.bar_write(bar, o, size, value, dma);
                true
            }
            None => false,
        }
    }

    /// A port read: I/O BARs first, then fixed ports.
    pub fn io_read(&mut self, port: u16, size: u8, dma: &mut dyn Dma) -> Option<u32> {
        if let Some((i, bar, o)) = self.find(port as u64, true) {
            return Some(self.slots[i].dev.bar_read(bar, o, size, dma));
        }
        self.slots.iter_mut().find_map(|s| s.dev.legacy_io_read(port, size))
    }

    /// A port write: I/O BARs first, then fixed ports; false if none claims it.
    pub fn io_write(&mut self, port: u16, size: u8, value: u32, dma: &mut dyn Dma) -> bool {
        if let Some((i, bar, o)) = self.find(port as u64, true) {
            self.slots[i].dev.bar_write(bar, o, size, value, dma);
            return true;
        }
        self.slots.iter_mut().any(|s| s.dev.legacy_io_write(port, size, value))
    }

    /// ISA IRQ lines driven by hosted functions.
    pub fn isa_irqs(&self) -> u16 {
        self.slots.iter().fold(0, |m, s| m | s.dev.isa_irqs())
    }

    /// INTx# levels: (device, function, interrupt pin register, asserted) for each function
    /// whose line is asserted and not disabled in its command register.
    pub fn intx(&self) -> Vec<(u8, u8, u8)> {
        self.slots
            .iter()
            .filter(|s| s.dev.intx() && s.dev.config().read(COMMAND, 2) as u16 & COMMAND_INTX_DISABLE == 0)
            .map(|s| (s.device, s.function, s.dev.config().byte(super::config::INTERRUPT_PIN)))
            .collect()
    }
}
