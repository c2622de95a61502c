//! The ICH9 SATA controller in AHCI mode, 00:1F.2 (8086:2922, class 01 06 01): a PCI function
//! whose BAR5 (ABAR) holds the AHCI registers of [`crate::devices::ahci`], six ports. Intel
//! ICH9 datasheet (doc. 316972) §14.1 (SATA configuration registers, D31:F2). BAR4 is the
//! 32-byte I/O block of §14.2 ("Bus Master IDE I/O Registers"): the bus-master IDE registers
//! at 00h-0Fh (unused in AHCI mode here: they read 0 and ignore writes) and the AHCI
//! index/data pair (AIR at 10h, AIDR at 14h) that reaches ABAR's registers through I/O space.
//! The legacy BARs (BAR0-BAR3) are not implemented, nor the MSI and power-management
//! capabilities: firmware finds the controller by class code and uses ABAR.

use crate::chipset::q35::mch::VENDOR_INTEL;
use crate::devices::ahci::Ahci;
use crate::devices::ata::{AtaDisk, Interface};
use crate::devices::disk::Disk;
use crate::pci::bar::{Bar, BarKind};
use crate::pci::config::{ConfigSpace, INTERRUPT_PIN};
use crate::pci::slots::{bus_master, Dma, PciDevice};
use crate::pci::PciFunction;

/// ICH9 SATA, AHCI mode, 6 ports.
pub const ICH9_AHCI_DEVICE_ID: u16 = 0x2922;
/// Mass storage, SATA, AHCI 1.0 programming interface.
pub const ICH9_AHCI_CLASS: u32 = 0x01_06_01;
/// Ports of the ICH9 SATA controller.
pub const ICH9_SATA_PORTS: usize = 6;
/// ABAR: BAR5, 2 KiB of memory (§14.1.13: bits 10:0 read as 0).
pub const ABAR: Bar = Bar { index: 5, kind: BarKind::Mem32, size: 0x800 };
/// BAR4: bus-master IDE registers and the AHCI index/data pair, 32 bytes of I/O (§14.1.12).
pub const SIDPBA: Bar = Bar { index: 4, kind: BarKind::Io, size: 0x20 };
/// AIR, AHCI Index Register: bits 10:2 select the ABAR dword AIDR reaches (§14.2.7).
pub const AIR: u64 = 0x10;
/// AIDR, AHCI Index Data Register (§14.2.8).
pub const AIDR: u64 = 0x14;
/// The writable bits of AIR.
const AIR_MASK: u32 = 0x7fc;
const BARS: [Bar; 2] = [SIDPBA, ABAR];

/// The SATA function.
#[derive(Clone, Debug)]
pub struct Ich9Sata {
    cfg: ConfigSpace,
    /// The AHCI host bus adapter behind ABAR.
    pub hba: Ahci,
    /// AIR.
    index: u32,
}

impl Default for Ich9Sata {
    fn default() -> Self {
        let mut cfg = ConfigSpace::new(VENDOR_INTEL, ICH9_AHCI_DEVICE_ID, 2, ICH9_AHCI_CLASS, 0);
        cfg.set(INTERRUPT_PIN, 1, 1); // INTA#
        SIDPBA.install(&mut cfg);
        ABAR.install(&mut cfg);
        Ich9Sata { cfg, hba: Ahci::new(ICH9_SATA_PORTS), index: 0 }
    }
}

impl PciFunction for Ich9Sata {
    fn config_read(&self, offset: u8, size: u8) -> u32 {
        self.cfg.read(offset, size)
    }
    fn config_write(&mut self, offset: u8, size: u8, value: u32) {
        self.cfg.write(offset, size, value);
    }
}

impl PciDevice for Ich9Sata {
    fn config(&self) -> &ConfigSpace {
        &self.cfg
    }
    fn bars(&self) -> &[Bar] {
        &BARS
    }
    fn bar_read(&mut self, bar: u8, offset: u64, size: u8, _dma: &mut dyn Dma) -> u32 {
        if bar != SIDPBA.index {
            return self.hba.read(offset, size);
        }
        match (offset, size) {
            (AIR, 4) => self.index,
            (AIDR, 4) => self.hba.read(self.index as u64, 4),
            _ => 0,
        }
    }
    fn bar_write(&mut self, bar: u8, offset: u64, size: u8, value: u32, dma: &mut dyn Dma) {
        let bm = bus_master(&self.cfg);
        if bar != SIDPBA.index {
            self.hba.write(offset, size, value, dma, bm);
            return;
        }
        match (offset, size) {
            (AIR, 4) => self.index = value & AIR_MASK,
            (AIDR, 4) => self.hba.write(self.index as u64, 4, value, dma, bm),
            _ => {}
        }
    }
    fn attach_disk(&mut self, position: usize, disk: Disk) -> bool {
        if position >= self.hba.ports.len() {
            return false;
        }
        self.hba.attach(position, AtaDisk::new(disk, Interface { sata: true, dma: true }, position as u32 + 1));
        true
    }

    fn intx(&self) -> bool {
        self.hba.irq()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_abar_sizing() {
        let mut f = Ich9Sata::default();
        assert_eq!(f.config_read(0, 4), 0x2922_8086);
        assert_eq!(f.config_read(0x08, 4) >> 8, ICH9_AHCI_CLASS);
        f.config_write(0x24, 4, u32::MAX);
        assert_eq!(f.config_read(0x24, 4), 0xffff_f800);
        assert_eq!(f.config_read(0x10, 4), 0, "no legacy BARs");
        f.config_write(0x20, 4, u32::MAX);
        assert_eq!(f.config_read(0x20, 4), 0xffff_ffe1, "BAR4: 32 bytes of I/O");
        assert_eq!(f.config_read(INTERRUPT_PIN, 1), 1);
    }

    #[test]
    fn index_data_pair_reaches_abar() {
        let mut f = Ich9Sata::default();
        let mut dma = crate::pci::slots::NoDma;
        let direct = f.bar_read(ABAR.index, 0x0c, 4, &mut dma); // PI
        f.bar_write(SIDPBA.index, AIR, 4, 0xffff_000c, &mut dma);
        assert_eq!(f.bar_read(SIDPBA.index, AIR, 4, &mut dma), 0x0c);
        assert_eq!(f.bar_read(SIDPBA.index, AIDR, 4, &mut dma), direct);
        assert_ne!(direct, 0);
    }
}
