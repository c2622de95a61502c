//! The PIIX4 power management function, 00:01.3 (8086:7113): PMBASE, the APM SMI enable and
//! the PM I/O block. Registers from the Intel 82371AB PCI-to-ISA/IDE Xcelerator (PIIX4)
//! datasheet (doc. 290562): §7.1 "PCI configuration registers (function 3)", §7.2 "Power
//! management I/O space registers".
//!
//! APMC_EN is DEVACTB (58h) bit 25, i.e. byte 5Bh bit 1: with it, a write to APM_CNT raises
//! an SMI; the commands 0xF1 (ACPI enable) and 0xF0 (ACPI disable) only set/clear SCI_EN.
//! GLBCTL (PMBASE+28h) is stored but its SMI_EN bit does not gate SMIs, as in QEMU and Bochs
//! (firmware such as the shared SMI benchmark never sets it). The APM SMI decision is
//! [`crate::smi::apm::piix4_apm_cnt`].

use crate::chipset::acpi_pm::AcpiPm;
use crate::chipset::q35::mch::VENDOR_INTEL;
use crate::clock::Ticks;
use crate::pci::config::{ConfigSpace, INTERRUPT_PIN};
use crate::pci::PciFunction;
use crate::smi::{apm, SmiLatch};

/// PIIX4 PM device ID.
pub const PM_DEVICE_ID: u16 = 0x7113;
/// Revision as QEMU presents it.
pub const PM_REVISION: u8 = 0x03;
/// Bridge-other class code.
pub const PM_CLASS: u32 = 0x06_80_00;
/// PMBA, PM base address (32 bits): bits 15:6 select a 64-byte I/O block, bit 0 reads 1.
pub const PM_PMBA: u8 = 0x40;
/// PMBA writable bits.
pub const PMBA_WMASK: u32 = 0x0000_ffc0;
/// PM I/O block size.
pub const PM_IO_SIZE: u16 = 64;
/// DEVACTA (32 bits, stored).
pub const PM_DEVACTA: u8 = 0x54;
/// DEVACTB (32 bits).
pub const PM_DEVACTB: u8 = 0x58;
/// DEVACTB.APMC_EN (bit 25; byte 5Bh bit 1).
pub const DEVACTB_APMC_EN: u32 = 1 << 25;
/// PMREGMISC (8 bits): bit 0 PMIOSE enables the PM I/O block.
pub const PM_PMREGMISC: u8 = 0x80;
/// PMREGMISC.PMIOSE.
pub const PMREGMISC_PMIOSE: u8 = 1;
/// SMBBA, SMBus base address (32 bits, stored).
pub const PM_SMBBA: u8 = 0x90;
/// SMBHSTCFG (8 bits, stored).
pub const PM_SMBHSTCFG: u8 = 0xd2;
/// GLBCTL offset in the PM I/O block (32 bits, stored).
pub const GLBCTL: u16 = 0x28;
/// APM command: ACPI enable.
pub const APM_CMD_ACPI_ENABLE: u8 = 0xf1;
/// APM command: ACPI disable.
pub const APM_CMD_ACPI_DISABLE: u8 = 0xf0;

/// The PM function and its I/O block.
#[derive(Clone, Debug)]
pub struct Piix4Pm {
    cfg: ConfigSpace,
    pm: AcpiPm,
    /// PMBASE+0Ch..3Fh: GPSTS, GPEN, PCNTRL, GLBSTS, DEVSTS, GLBEN, GLBCTL, DEVCTL, GPIREG,
    /// GPOREG, stored as plain bytes.
    regs: [u8; PM_IO_SIZE as usize],
    /// SUS_EN was written with SUS_TYP = soft off, until taken.
    power_off: bool,
}

/// PMCNTRL.SUS_TYP for soft off (S5) on the PIIX4 (datasheet §11.2.3: 000; the value the `pc`
/// DSDT's \_S5 package gives).
pub const SUS_TYP_SOFT_OFF: u8 = 0;

impl Piix4Pm {
    /// The function at reset.
    pub fn new(instructions_per_second: u64) -> Self {
        let mut cfg = ConfigSpace::new(VENDOR_INTEL, PM_DEVICE_ID, PM_REVISION, PM_CLASS, 0);
        // INTPIN (3Dh) reads 01h, INTA# (datasheet §7.1; QEMU 7.2 presents the same).
        cfg.set(INTERRUPT_PIN, 1, 1);
        cfg.set(PM_PMBA, 4, 1);
        cfg.set_wmask(PM_PMBA, 4, PMBA_WMASK);
        cfg.set_wmask(PM_DEVACTA, 4, u32::MAX);
        cfg.set_wmask(PM_DEVACTB, 4, u32::MAX);
        cfg.set_wmask(PM_PMREGMISC, 1, PMREGMISC_PMIOSE as u32);
        cfg.set(PM_SMBBA, 4, 1);
        cfg.set_wmask(PM_SMBBA, 4, 0x0000_fff0);
        cfg.set_wmask(PM_SMBHSTCFG, 1, 0x0f);
        Piix4Pm { cfg, pm: AcpiPm::new(instructions_per_second), regs: [0; PM_IO_SIZE as usize], power_off: false }
    }

    /// The PM I/O base, when PMIOSE enables it.
    pub fn pm_base(&self) -> Option<u16> {
        if self.cfg.byte(PM_PMREGMISC) & PMREGMISC_PMIOSE == 0 {
            return None;
        }
        Some((self.cfg.read(PM_PMBA, 4) & PMBA_WMASK) as u16)
    }

    /// Whether APM writes raise SMIs.
    pub fn apmc_en(&self) -> bool {
        self.cfg.read(PM_DEVACTB, 4) & DEVACTB_APMC_EN != 0
    }

    /// PMCNTRL.SCI_EN.
    pub fn sci_en(&self) -> bool {
        self.pm.sci_en()
    }

    /// A write of `cmd` to APM_CNT.
    pub fn apm_command(&mut self, cmd: u8, data: u8, now: Ticks, smi: &mut SmiLatch) {
        match cmd {
            APM_CMD_ACPI_ENABLE => self.pm.set_sci_en(true),
            APM_CMD_ACPI_DISABLE => self.pm.set_sci_en(false),
            _ => apm::piix4_apm_cnt(self.apmc_en(), cmd, data, now, smi),
        }
    }

    /// Reads the PM I/O block at `offset`.
    pub fn pm_read(&self, offset: u16, size: u8, now: Ticks) -> u32 {
        let mut v = 0u32;
        for k in 0..size.min(4) as u16 {
            let o = offset + k;
            let b = match self.pm.read_byte(o, now) {
                Some(b) => b,
                None => self.regs.get(o as usize).copied().unwrap_or(0xff),
            };
            v |= (b as u32) << (8 * k);
        }
        v
    }

    /// Writes the PM I/O block at `offset`.
    pub fn pm_write(&mut self, offset: u16, size: u8, value: u32) {
        for k in 0..size.min(4) as u16 {
            let o = offset + k;
            let b = (value >> (8 * k)) as u8;
            if !self.pm.write_byte(o, b) {
                if let Some(r) = self.regs.get_mut(o as usize) {
                    *r = b;
                }
            }
        }
        if let Some(typ) = self.pm.take_sleep() {
            self.power_off |= typ == SUS_TYP_SOFT_OFF;
        }
    }

    /// Whether the guest asked for soft off (S5) since the last call.
    pub fn take_power_off(&mut self) -> bool {
        std::mem::take(&mut self.power_off)
    }
}

impl PciFunction for Piix4Pm {
    fn config_read(&self, offset: u8, size: u8) -> u32 {
        self.cfg.read(offset, size)
    }

    fn config_write(&mut self, offset: u8, size: u8, value: u32) {
        self.cfg.write(offset, size, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::config::DEVICE_ID;

    fn pm() -> Piix4Pm {
        Piix4Pm::new(1_000_000)
    }

    #[test]
    fn sus_en_with_soft_off_powers_off_and_other_types_do_not() {
        let mut p = pm();
        p.pm_write(0x04, 2, 5 << 10 | 1 << 13);
        assert!(!p.take_power_off(), "SUS_TYP 5 (suspend) is not soft off");
        p.pm_write(0x04, 2, 0);
        assert!(!p.take_power_off(), "SUS_TYP 0 without SUS_EN does nothing");
        p.pm_write(0x05, 1, 1 << 5);
        assert!(p.take_power_off());
        assert!(!p.take_power_off());
    }

    #[test]
    fn identifies_as_8086_7113() {
        assert_eq!(pm().config_read(DEVICE_ID, 2), 0x7113);
    }

    /// SeaBIOS gives the function an MP-table interrupt entry because of it.
    #[test]
    fn interrupt_pin_is_inta_and_read_only() {
        let mut p = pm();
        assert_eq!(p.config_read(INTERRUPT_PIN, 1), 1);
        p.config_write(INTERRUPT_PIN, 1, 0);
        assert_eq!(p.config_read(INTERRUPT_PIN, 1), 1);
    }

    #[test]
    fn pmbase_0x601_decodes_with_pmiose() {
        let mut p = pm();
        p.config_write(PM_PMBA, 4, 0x601);
        assert_eq!(p.pm_base(), None);
        p.config_write(PM_PMREGMISC, 1, 0xff);
        assert_eq!(p.config_read(PM_PMREGMISC, 1), 1);
        assert_eq!(p.pm_base(), Some(0x600));
        assert_eq!(p.config_read(PM_PMBA, 4), 0x601);
    }

    #[test]
    fn apm_write_raises_smi_only_with_apmc_en() {
        use crate::smi::SmiCause;
        let mut p = pm();
        let mut s = SmiLatch::default();
        p.apm_command(0x01, 0, Ticks(1), &mut s);
        assert!(!s.is_pending());
        // The shared benchmark ROM: read dword 0x58, OR bit 25, write it back.
        let v = p.config_read(PM_DEVACTB, 4);
        p.config_write(PM_DEVACTB, 4, v | 0x0200_0000);
        assert_eq!(p.config_read(0x5b, 1), 0x02);
        p.apm_command(0x01, 0x33, Ticks(2), &mut s);
        assert_eq!(s.drain_raised().collect::<Vec<_>>(), vec![(SmiCause::Apm { cmd: 1, data: 0x33 }, Ticks(2))]);
    }

    #[test]
    fn acpi_commands_toggle_sci_en_without_smi() {
        let mut p = pm();
        let mut s = SmiLatch::default();
        p.config_write(0x5b, 1, 0x02);
        p.apm_command(APM_CMD_ACPI_ENABLE, 0, Ticks(0), &mut s);
        assert!(p.sci_en() && !s.is_pending());
        p.apm_command(APM_CMD_ACPI_DISABLE, 0, Ticks(0), &mut s);
        assert!(!p.sci_en() && !s.is_pending());
    }

    #[test]
    fn pm_io_block_registers_and_past_the_end() {
        let mut p = pm();
        p.pm_write(GLBCTL, 4, 0x0000_0001);
        assert_eq!(p.pm_read(GLBCTL, 4, Ticks(0)), 1);
        assert_eq!(p.pm_read(0x3e, 4, Ticks(0)), 0xffff_0000);
        p.pm_write(0x3f, 4, u32::MAX);
        assert_eq!(p.pm_read(8, 4, Ticks(1_000_000)), 3_579_545);
    }
}
