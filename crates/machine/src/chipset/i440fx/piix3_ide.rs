//! The PIIX3 IDE function, 00:01.1 (8086:7010), in legacy (compatibility) mode: it decodes the
//! primary channel at 0x1F0-0x1F7/0x3F6 and the secondary at 0x170-0x177/0x376 itself, drives
//! IRQ14/IRQ15, and has the bus-master IDE BAR (BAR4, 16 bytes of I/O). Intel 82371SB (PIIX3)
//! datasheet, doc. 290550, §2.4 (IDE configuration registers) and §2.7 (bus master IDE I/O
//! registers).
//!
//! A channel's ports are decoded only while PCICMD.IOSE and the channel's IDETIM.IDE (bit 15)
//! are set (§2.4.2, §2.4.9). Bus-master DMA is not implemented: the BAR is there for firmware
//! to size and assign, its registers read as all ones, and firmware falls back to PIO.

use crate::chipset::q35::mch::VENDOR_INTEL;
use crate::devices::ata::{AtaDisk, IdeChannel, Interface};
use crate::devices::disk::Disk;
use crate::pci::bar::{Bar, BarKind, COMMAND_IO};
use crate::pci::config::{ConfigSpace, COMMAND};
use crate::pci::slots::{Dma, PciDevice};
use crate::pci::PciFunction;

/// PIIX3 IDE device ID.
pub const PIIX3_IDE_DEVICE_ID: u16 = 0x7010;
/// Mass storage, IDE, programming interface 80h: bus-master capable, both channels in
/// compatibility mode with fixed modes.
pub const PIIX3_IDE_CLASS: u32 = 0x01_01_80;
/// IDETIM, primary channel (16 bits).
pub const IDETIM_PRIMARY: u8 = 0x40;
/// IDETIM, secondary channel (16 bits).
pub const IDETIM_SECONDARY: u8 = 0x42;
/// SIDETIM: slave IDE timing (8 bits).
pub const SIDETIM: u8 = 0x44;
/// IDETIM bit 15: IDE decode enable.
pub const IDETIM_IDE: u16 = 1 << 15;
/// IDETIM bits software may write (bits 11:10 are reserved).
const IDETIM_WMASK: u32 = 0xf3ff;

/// Legacy command block and control block ports of the two channels.
pub const PRIMARY_CMD: u16 = 0x1f0;
/// Primary channel control block (alternate status, device control).
pub const PRIMARY_CTL: u16 = 0x3f6;
/// Secondary channel command block.
pub const SECONDARY_CMD: u16 = 0x170;
/// Secondary channel control block.
pub const SECONDARY_CTL: u16 = 0x376;

const BARS: [Bar; 1] = [Bar { index: 4, kind: BarKind::Io, size: 16 }];

/// The IDE function with its two channels.
#[derive(Clone, Debug)]
pub struct Piix3Ide {
    cfg: ConfigSpace,
    /// The primary channel (IRQ 14).
    pub primary: IdeChannel,
    /// The secondary channel (IRQ 15).
    pub secondary: IdeChannel,
}

impl Default for Piix3Ide {
    fn default() -> Self {
        let mut cfg = ConfigSpace::new(VENDOR_INTEL, PIIX3_IDE_DEVICE_ID, 0, PIIX3_IDE_CLASS, 0);
        cfg.set_wmask(IDETIM_PRIMARY, 2, IDETIM_WMASK);
        cfg.set_wmask(IDETIM_SECONDARY, 2, IDETIM_WMASK);
        cfg.set_wmask(SIDETIM, 1, 0xff);
        // PCI status: medium DEVSEL timing, fast back-to-back capable (§2.4.4).
        cfg.set(0x06, 2, 0x0280);
        BARS[0].install(&mut cfg);
        Piix3Ide { cfg, primary: IdeChannel::default(), secondary: IdeChannel::default() }
    }
}

impl Piix3Ide {
    /// Which channel (and whether the control block) `port` hits, if decoded.
    fn decode(&mut self, port: u16) -> Option<(&mut IdeChannel, Option<u16>)> {
        if self.cfg.read(COMMAND, 2) as u16 & COMMAND_IO == 0 {
            return None;
        }
        let enabled = |reg: u8, cfg: &ConfigSpace| cfg.read(reg, 2) as u16 & IDETIM_IDE != 0;
        let (pri, sec) = (enabled(IDETIM_PRIMARY, &self.cfg), enabled(IDETIM_SECONDARY, &self.cfg));
        match port {
            p if pri && (PRIMARY_CMD..PRIMARY_CMD + 8).contains(&p) => Some((&mut self.primary, Some(p - PRIMARY_CMD))),
            PRIMARY_CTL if pri => Some((&mut self.primary, None)),
            p if sec && (SECONDARY_CMD..SECONDARY_CMD + 8).contains(&p) => Some((&mut self.secondary, Some(p - SECONDARY_CMD))),
            SECONDARY_CTL if sec => Some((&mut self.secondary, None)),
            _ => None,
        }
    }
}

impl PciFunction for Piix3Ide {
    fn config_read(&self, offset: u8, size: u8) -> u32 {
        self.cfg.read(offset, size)
    }
    fn config_write(&mut self, offset: u8, size: u8, value: u32) {
        self.cfg.write(offset, size, value);
    }
}

impl PciDevice for Piix3Ide {
    fn config(&self) -> &ConfigSpace {
        &self.cfg
    }
    fn bars(&self) -> &[Bar] {
        &BARS
    }
    fn bar_read(&mut self, _bar: u8, _offset: u64, size: u8, _dma: &mut dyn Dma) -> u32 {
        crate::pci::host::ones(size)
    }
    fn bar_write(&mut self, _bar: u8, _offset: u64, _size: u8, _value: u32, _dma: &mut dyn Dma) {}

    fn legacy_io_read(&mut self, port: u16, size: u8) -> Option<u32> {
        let (ch, reg) = self.decode(port)?;
        Some(match reg {
            Some(r) => ch.read(r, size),
            None => ch.read_control(0),
        })
    }

    fn legacy_io_write(&mut self, port: u16, size: u8, value: u32) -> bool {
        let Some((ch, reg)) = self.decode(port) else { return false };
        match reg {
            Some(r) => ch.write(r, size, value),
            None => ch.write_control(0, value as u8),
        }
        true
    }

    fn attach_disk(&mut self, position: usize, disk: Disk) -> bool {
        let ch = match position / 2 {
            0 => &mut self.primary,
            1 => &mut self.secondary,
            _ => return false,
        };
        ch.attach(position % 2, AtaDisk::new(disk, Interface { sata: false, dma: false }, position as u32 + 1));
        true
    }

    fn isa_irqs(&self) -> u16 {
        (u16::from(self.primary.irq()) << 14) | (u16::from(self.secondary.irq()) << 15)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_decode_only_with_iose_and_idetim() {
        let mut f = Piix3Ide::default();
        f.primary.attach(0, AtaDisk::new(Disk::from_bytes(vec![0; 4096]).unwrap(), Interface { sata: false, dma: false }, 1));
        assert_eq!(f.config_read(0, 4), 0x7010_8086);
        assert_eq!(f.config_read(0x08, 4) >> 8, PIIX3_IDE_CLASS);
        assert_eq!(f.legacy_io_read(0x1f7, 1), None);
        f.config_write(COMMAND, 2, 1);
        assert_eq!(f.legacy_io_read(0x1f7, 1), None, "IDETIM.IDE clear");
        f.config_write(IDETIM_PRIMARY, 2, 0x8000);
        f.config_write(IDETIM_SECONDARY, 2, 0xffff);
        assert_eq!(f.config_read(IDETIM_SECONDARY, 2), 0xf3ff);
        assert_eq!(f.legacy_io_read(0x1f7, 1), Some(0x50));
        assert_eq!(f.legacy_io_read(0x177, 1), Some(0x7f), "empty secondary");
        assert_eq!(f.legacy_io_read(0x376, 1), Some(0x7f));
        f.config_write(0x20, 4, u32::MAX);
        assert_eq!(f.config_read(0x20, 4), 0xffff_fff1, "BM-DMA BAR: 16 bytes of I/O");
        assert!(f.legacy_io_write(0x1f7, 1, 0xef));
        assert_eq!(f.isa_irqs(), 1 << 14);
    }
}
