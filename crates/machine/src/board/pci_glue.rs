//! The [`Platform`]'s PCI glue: configuration mechanism #1 (0xCF8/0xCFC) and ECAM reach the
//! chipset's functions and the hosted ones ([`crate::pci::slots::PciSlots`]) on bus 0; the
//! hosted functions' BARs and ports are reached with DMA to RAM for the duration of the access
//! ([`super::dma::DmaView`]), and their interrupt lines go to the PICs afterwards.

use super::dma::DmaView;
use super::platform::Platform;
use crate::chipset::Chipset;
use crate::pci::host::ones;

impl<C: Chipset> Platform<C> {
    /// A configuration read on bus 0-255 (shared by 0xCF8/0xCFC and ECAM); `None` if no
    /// function answers. `offset` above 0xFF (PCIe extended space) reads as absent.
    pub(super) fn config_read(&mut self, bus: u8, device: u8, function: u8, offset: u16, size: u8) -> Option<u32> {
        if bus != 0 || offset > 0xff {
            return None;
        }
        self.chipset.config_read(device, function, offset as u8, size).or_else(|| self.pci_slots.config_read(device, function, offset as u8, size))
    }

    /// A configuration write (shared by 0xCF8/0xCFC and ECAM).
    pub(super) fn config_write(&mut self, bus: u8, device: u8, function: u8, offset: u16, size: u8, value: u32) {
        if bus != 0 || offset > 0xff {
            return;
        }
        let now = self.clock.now();
        if !self.pci_slots.config_write(device, function, offset as u8, size, value) {
            self.chipset.config_write(device, function, offset as u8, size, value, now, &mut self.smi);
        }
        self.refresh_decode();
        self.after_device_call();
    }

    /// A read of CONFIG_ADDRESS or CONFIG_DATA (0xCF8-0xCFF).
    pub(super) fn pci_read(&mut self, port: u16, size: u8) -> u32 {
        if let Some(v) = self.pci.read_address(port, size) {
            return v;
        }
        let Some(t) = self.pci.target(port, size) else { return ones(size) };
        let v = self.config_read(t.bus, t.device, t.function, t.offset as u16, t.size);
        let v = v.unwrap_or(ones(t.size));
        // Bytes of a straddling access past 0xCFF read as all ones.
        v | (ones(size) & !ones(t.size))
    }

    /// A write of CONFIG_ADDRESS or CONFIG_DATA (0xCF8-0xCFF).
    pub(super) fn pci_write(&mut self, port: u16, size: u8, value: u32) {
        if self.pci.write_address(port, size, value) {
            return;
        }
        if let Some(t) = self.pci.target(port, size) {
            self.config_write(t.bus, t.device, t.function, t.offset as u16, t.size, value);
        }
    }

    /// A memory access (read if `value` is None) to a hosted function's BAR, with DMA to RAM
    /// for the duration of the access.
    pub(super) fn slot_access(&mut self, addr: u64, size: u8, value: Option<u32>) -> u32 {
        let size = size.clamp(1, 4);
        let (map, watch) = (self.dram_map(), self.open_tseg());
        let mut dma = DmaView::new(&mut self.ram, map).watching(watch);
        let v = match value {
            None => self.pci_slots.mmio_read(addr, size, &mut dma).unwrap_or(ones(size)),
            Some(v) => {
                self.pci_slots.mmio_write(addr, size, v, &mut dma);
                0
            }
        };
        let (written, watched) = (dma.written, dma.watched);
        self.after_dma(&written, &watched);
        self.after_slot_access();
        v
    }

    /// A port access (read if `value` is None) to a hosted function; `None` if none claims it.
    pub(super) fn slot_io(&mut self, port: u16, size: u8, value: Option<u32>) -> Option<u32> {
        let (map, watch) = (self.dram_map(), self.open_tseg());
        let mut dma = DmaView::new(&mut self.ram, map).watching(watch);
        let v = match value {
            None => self.pci_slots.io_read(port, size, &mut dma),
            Some(v) => self.pci_slots.io_write(port, size, v, &mut dma).then_some(0),
        };
        let (written, watched) = (dma.written, dma.watched);
        self.after_dma(&written, &watched);
        if v.is_some() {
            self.after_slot_access();
        }
        v
    }

    /// After an access to a hosted function: interrupt lines may have changed.
    pub(super) fn after_slot_access(&mut self) {
        let irqs = self.pci_slots.isa_irqs();
        for irq in [14u8, 15] {
            self.legacy.pics.set_irq(irq, irqs & (1 << irq) != 0);
        }
    }
}
