//! The i440FX chipset: the 82441FX PCI and memory controller (PMC) and the PIIX4 power
//! management function (as QEMU's `pc` machine pairs them). [`I440fx`] is the chipset the
//! `pc` board drives: the PMC is its host bridge, the PIIX3 ISA bridge and the PIIX4 PM
//! function its southbridge.

pub mod piix3_ide;
pub mod piix3_isa;
pub mod piix4_pm;
pub mod pmc;

use crate::chipset::{HostBridge, Southbridge};
use crate::clock::Ticks;
use crate::memory::pam::Pam;
use crate::pci::PciFunction;
use crate::smi::SmiLatch;
use crate::smram::SmramConfig;
use piix3_isa::Piix3Isa;
use piix4_pm::{Piix4Pm, PM_IO_SIZE};
use pmc::Pmc;

/// The i440FX + PIIX chipset.
#[derive(Clone, Debug)]
pub struct I440fx {
    /// The i440FX PMC (host bridge: PAM and SMRAM at 0x72).
    pub pmc: Pmc,
    /// The PIIX3 PCI-to-ISA bridge.
    pub isa: Piix3Isa,
    /// The PIIX4 power management function (APM SMIs, PM timer).
    pub pm: Piix4Pm,
}

impl I440fx {
    /// The southbridge function at `device.function`.
    fn function(&self, device: u8, function: u8) -> Option<&dyn PciFunction> {
        match (device, function) {
            (1, 0) => Some(&self.isa),
            (1, 3) => Some(&self.pm),
            _ => None,
        }
    }

    /// The southbridge function at `device.function`, to write.
    fn function_mut(&mut self, device: u8, function: u8) -> Option<&mut dyn PciFunction> {
        match (device, function) {
            (1, 0) => Some(&mut self.isa),
            (1, 3) => Some(&mut self.pm),
            _ => None,
        }
    }

    /// The offset of `port` in the PM I/O block, while it decodes.
    fn pm_offset(&self, port: u16) -> Option<u16> {
        let base = self.pm.pm_base()?;
        (base..base.saturating_add(PM_IO_SIZE)).contains(&port).then(|| port - base)
    }
}

/// The PMC at 00:00.0.
impl HostBridge for I440fx {
    fn host_config_read(&self, device: u8, function: u8, offset: u8, size: u8) -> Option<u32> {
        ((device, function) == (0, 0)).then(|| self.pmc.config_read(offset, size))
    }

    fn host_config_write(&mut self, device: u8, function: u8, offset: u8, size: u8, value: u32, _now: Ticks) {
        if (device, function) == (0, 0) {
            self.pmc.config_write(offset, size, value);
        }
    }

    fn smram(&self, low_ram_top: u64) -> SmramConfig {
        self.pmc.smram(low_ram_top)
    }

    fn pam(&self) -> Pam {
        self.pmc.pam()
    }
}

/// The PIIX3 ISA bridge at 00:01.0 and the PIIX4 PM function at 00:01.3 (PM I/O block, APM).
impl Southbridge for I440fx {
    fn south_config_read(&self, device: u8, function: u8, offset: u8, size: u8) -> Option<u32> {
        self.function(device, function).map(|f| f.config_read(offset, size))
    }

    fn south_config_write(&mut self, device: u8, function: u8, offset: u8, size: u8, value: u32, _now: Ticks, _smi: &mut SmiLatch) {
        if let Some(f) = self.function_mut(device, function) {
            f.config_write(offset, size, value);
        }
    }

    fn take_power_off(&mut self) -> bool {
        self.pm.take_power_off()
    }

    fn io_read(&mut self, port: u16, size: u8, now: Ticks) -> Option<u32> {
        self.pm_offset(port).map(|o| self.pm.pm_read(o, size, now))
    }

    fn io_write(&mut self, port: u16, size: u8, value: u32, _now: Ticks, _smi: &mut SmiLatch) -> bool {
        match self.pm_offset(port) {
            Some(o) => {
                self.pm.pm_write(o, size, value);
                true
            }
            None => false,
        }
    }

    fn apm_command(&mut self, cmd: u8, data: u8, now: Ticks, smi: &mut SmiLatch) {
        self.pm.apm_command(cmd, data, now, smi);
    }

    fn pm_timer_port(&self) -> Option<u16> {
        self.pm.pm_base().map(|b| b + crate::chipset::acpi_pm::PM_TMR)
    }

    fn next_deadline(&self) -> Option<Ticks> {
        None
    }

    fn next_wake(&self) -> Option<Ticks> {
        None
    }

    fn advance(&mut self, _now: Ticks, _smi: &mut SmiLatch) {}
}
