//! The ICH9 SMBus host controller, 00:1F.3 (8086:2930, class 0C 05 00). Intel ICH9 datasheet
//! (doc. 316972) §18.1 (PCI configuration registers, D31:F3) and §18.2 (SMBus I/O registers).
//!
//! Configuration: SMB_BASE (BAR4, 32 bytes of I/O, §18.1.5) and HOSTC (§18.1.13). The I/O
//! block is the host interface only, with no devices on the bus: a transaction started through
//! HST_CNT.START finishes at once with HST_STS.DEV_ERR (no device acknowledged its address),
//! as a transaction to an empty address does. The slave and SMLink interfaces are not
//! modelled (their registers read 0 and ignore writes). No firmware in the targets uses the
//! bus; SeaBIOS enables the function (HOSTC.HST_EN) and maps its BAR.

use crate::chipset::q35::mch::VENDOR_INTEL;
use crate::pci::bar::{Bar, BarKind};
use crate::pci::config::{ConfigSpace, INTERRUPT_PIN};
use crate::pci::slots::{Dma, PciDevice};
use crate::pci::PciFunction;

/// ICH9 SMBus controller.
pub const ICH9_SMBUS_DEVICE_ID: u16 = 0x2930;
/// Serial bus controller, SMBus.
pub const ICH9_SMBUS_CLASS: u32 = 0x0c_05_00;
/// SMB_BASE: BAR4, 32 bytes of I/O (§18.1.5: bits 15:5 are the base).
pub const SMB_BASE: Bar = Bar { index: 4, kind: BarKind::Io, size: 0x20 };
const BARS: [Bar; 1] = [SMB_BASE];
/// HOSTC, host configuration (§18.1.13): HST_EN bit 0, SMB_SMI_EN bit 1, I2C_EN bit 2,
/// SSRESET bit 3, SPD_WD bit 4.
pub const HOSTC: u8 = 0x40;
const HOSTC_WMASK: u32 = 0x1f;
/// HST_STS, host status (§18.2.1): write 1 to clear bits 7:1 except INUSE_STS (bit 6,
/// cleared by writing 1, set by reading).
pub const HST_STS: u64 = 0x00;
/// HST_STS.INTR: the command completed.
pub const HST_STS_INTR: u8 = 1 << 1;
/// HST_STS.DEV_ERR: no device answered.
pub const HST_STS_DEV_ERR: u8 = 1 << 2;
/// HST_STS.INUSE_STS: the host semaphore.
pub const HST_STS_INUSE: u8 = 1 << 6;
/// HST_CNT, host control (§18.2.2): START is bit 6 and reads 0.
pub const HST_CNT: u64 = 0x02;
/// HST_CNT.START: starts the command.
pub const HST_CNT_START: u8 = 1 << 6;
/// Host registers after HST_CNT with plain read/write storage: HST_CMD, XMIT_SLVA, HST_D0,
/// HST_D1, HOST_BLOCK_DB, PEC (§18.2.3-18.2.8).
const HOST_DATA: std::ops::RangeInclusive<u64> = 0x03..=0x08;
/// AUX_CTL (§18.2.14) and AUX_STS (§18.2.13) are part of the 32-byte block; they read 0.
const REGS: usize = 0x20;

/// The SMBus function.
#[derive(Clone, Debug)]
pub struct Ich9Smbus {
    cfg: ConfigSpace,
    regs: [u8; REGS],
}

impl Default for Ich9Smbus {
    fn default() -> Self {
        let mut cfg = ConfigSpace::new(VENDOR_INTEL, ICH9_SMBUS_DEVICE_ID, 2, ICH9_SMBUS_CLASS, 0);
        cfg.set(INTERRUPT_PIN, 1, 2); // INTB# (D31IP.SMIP reset value)
        cfg.set_wmask(HOSTC, 1, HOSTC_WMASK);
        SMB_BASE.install(&mut cfg);
        Ich9Smbus { cfg, regs: [0; REGS] }
    }
}

impl Ich9Smbus {
    fn read_byte(&mut self, offset: u64) -> u8 {
        let Some(&v) = self.regs.get(offset as usize) else { return 0xff };
        if offset == HST_STS {
            // Reading HST_STS claims the host (INUSE_STS reads 0 once, then 1 until cleared).
            self.regs[HST_STS as usize] |= HST_STS_INUSE;
        }
        v
    }

    fn write_byte(&mut self, offset: u64, v: u8) {
        match offset {
            HST_STS => self.regs[HST_STS as usize] &= !(v & 0xfe),
            HST_CNT => {
                self.regs[HST_CNT as usize] = v & !HST_CNT_START;
                if v & HST_CNT_START != 0 {
                    // Nobody answers on the bus: the cycle ends with a device error.
                    self.regs[HST_STS as usize] |= HST_STS_DEV_ERR | HST_STS_INTR;
                }
            }
            o if HOST_DATA.contains(&o) => self.regs[o as usize] = v,
            _ => {}
        }
    }
}

impl PciFunction for Ich9Smbus {
    fn config_read(&self, offset: u8, size: u8) -> u32 {
        self.cfg.read(offset, size)
    }
    fn config_write(&mut self, offset: u8, size: u8, value: u32) {
        self.cfg.write(offset, size, value);
    }
}

impl PciDevice for Ich9Smbus {
    fn config(&self) -> &ConfigSpace {
        &self.cfg
    }
    fn bars(&self) -> &[Bar] {
        &BARS
    }
    fn bar_read(&mut self, _bar: u8, offset: u64, size: u8, _dma: &mut dyn Dma) -> u32 {
        (0..size.min(4) as u64).fold(0, |acc, k| acc | (self.read_byte(offset.saturating_add(k)) as u32) << (8 * k))
    }
    fn bar_write(&mut self, _bar: u8, offset: u64, size: u8, value: u32, _dma: &mut dyn Dma) {
        for k in 0..size.min(4) as u64 {
            self.write_byte(offset.saturating_add(k), (value >> (8 * k)) as u8);
        }
    }
    fn intx(&self) -> bool {
        // SMBus interrupts go to INTx# when HOSTC.SMB_SMI_EN is clear and HST_CNT.INTREN set.
        let hostc = self.cfg.byte(HOSTC);
        hostc & 1 != 0 && hostc & 2 == 0 && self.regs[HST_CNT as usize] & 1 != 0 && self.regs[HST_STS as usize] & 0x1e != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::slots::NoDma;

    #[test]
    fn identity_bar_and_hostc() {
        let mut f = Ich9Smbus::default();
        assert_eq!(f.config_read(0, 4), 0x2930_8086);
        assert_eq!(f.config_read(0x08, 4) >> 8, ICH9_SMBUS_CLASS);
        f.config_write(0x20, 4, u32::MAX);
        assert_eq!(f.config_read(0x20, 4), 0xffff_ffe1);
        f.config_write(HOSTC, 1, 0xff);
        assert_eq!(f.config_read(HOSTC, 1), 0x1f);
    }

    #[test]
    fn transactions_end_with_device_error() {
        let mut f = Ich9Smbus::default();
        let mut d = NoDma;
        assert_eq!(f.bar_read(4, HST_STS, 1, &mut d), 0);
        assert_eq!(f.bar_read(4, HST_STS, 1, &mut d) as u8, HST_STS_INUSE);
        f.bar_write(4, 0x04, 1, 0xa1, &mut d);
        f.bar_write(4, HST_CNT, 1, 0x48, &mut d);
        assert_eq!(f.bar_read(4, HST_CNT, 1, &mut d), 0x08, "START reads 0");
        let st = f.bar_read(4, HST_STS, 1, &mut d) as u8;
        assert_eq!(st & (HST_STS_DEV_ERR | HST_STS_INTR), HST_STS_DEV_ERR | HST_STS_INTR);
        f.bar_write(4, HST_STS, 1, 0xff, &mut d);
        assert_eq!(f.bar_read(4, HST_STS, 1, &mut d), 0);
        assert_eq!(f.bar_read(4, 0x04, 1, &mut d), 0xa1);
        assert_eq!(f.bar_read(4, 0x40, 1, &mut d), 0xff);
    }
}
