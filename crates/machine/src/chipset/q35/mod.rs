//! The q35 chipset: the 3 Series (Bearlake) MCH host bridge and the ICH9 LPC bridge, SATA (AHCI)
//! and SMBus functions. [`Q35Chipset`] is the MCH (its host bridge half, with the MCH's
//! memory error injector) and the ICH9 LPC bridge (its southbridge half), as the `q35` board
//! drives them; the board adds the SATA and SMBus functions as hosted PCI functions.

pub mod ich9_lpc;
pub mod ich9_sata;
pub mod ich9_smbus;
pub mod mch;

use crate::chipset::{HostBridge, Southbridge};
use crate::clock::Ticks;
use crate::events::{Events, MachineEvent};
use crate::memory::pam::Pam;
use crate::pci::PciFunction;
use crate::smi::SmiLatch;
use crate::smram::SmramConfig;
use ich9_lpc::{Ich9Lpc, PM_IO_SIZE, RCBA_SIZE};
use mch::Mch;

/// A memory error the host scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduledError {
    /// When the error appears.
    pub at: Ticks,
    /// Physical address of the error.
    pub addr: u64,
    /// Whether ECC cannot correct it.
    pub uncorrectable: bool,
}

/// The q35 chipset: the MCH and the ICH9 LPC bridge (with the MCH's error injector).
#[derive(Clone, Debug)]
pub struct Q35Chipset {
    /// The MCH (host bridge: PAM, SMRAM, ESMRAMC, TSEG).
    pub mch: Mch,
    /// The ICH9 LPC bridge (SMI logic, PM registers, BIOS_CNTL).
    pub lpc: Ich9Lpc,
    /// The error injector's schedule, by time.
    errors: Vec<ScheduledError>,
    /// Events waiting for the platform's queue.
    events: Vec<MachineEvent>,
}

impl Q35Chipset {
    /// `mch` and `lpc` together, no memory error scheduled.
    pub fn new(mch: Mch, lpc: Ich9Lpc) -> Self {
        Q35Chipset { mch, lpc, errors: Vec::new(), events: Vec::new() }
    }

    /// The offset of `port` in the PM I/O block, while it decodes.
    fn pm_offset(&self, port: u16) -> Option<u16> {
        let base = self.lpc.pm_base()?;
        (base..base.saturating_add(PM_IO_SIZE)).contains(&port).then(|| port - base)
    }

    /// Schedules a DRAM ECC error at `addr` for guest time `at`.
    pub fn inject_memory_error(&mut self, at: Ticks, addr: u64, uncorrectable: bool) {
        let i = self.errors.partition_point(|e| e.at <= at);
        self.errors.insert(i, ScheduledError { at, addr, uncorrectable });
    }

    /// The errors scheduled and not yet injected.
    pub fn scheduled_errors(&self) -> &[ScheduledError] {
        &self.errors
    }

    /// The offset of `addr` in the RCBA window, while it decodes.
    fn rcba_offset(&self, addr: u64) -> Option<u64> {
        let base = self.lpc.rcba_base()?;
        (base..base + RCBA_SIZE).contains(&addr).then(|| addr - base)
    }
}

/// The MCH at 00:00.0.
impl HostBridge for Q35Chipset {
    fn host_config_read(&self, device: u8, function: u8, offset: u8, size: u8) -> Option<u32> {
        ((device, function) == (0, 0)).then(|| self.mch.config_read(offset, size))
    }

    fn host_config_write(&mut self, device: u8, function: u8, offset: u8, size: u8, value: u32, now: Ticks) {
        if (device, function) == (0, 0) {
            self.mch.config_write(offset, size, value);
            for register in self.mch.take_lock_violations() {
                self.events.push(MachineEvent::SmramLockViolation { register, icount: now.0 });
            }
        }
    }

    fn smram(&self, low_ram_top: u64) -> SmramConfig {
        self.mch.smram(low_ram_top)
    }

    fn pam(&self) -> Pam {
        self.mch.pam()
    }

    fn ecam(&self) -> Option<(u64, u64)> {
        self.mch.ecam()
    }
}

/// The ICH9 LPC bridge at 00:1F.0 (PM I/O block, APM, timers, IOTRn, RCBA, BIOS_CNTL), and
/// the injected memory errors the MCH reports to it over DMI.
impl Southbridge for Q35Chipset {
    fn south_config_read(&self, device: u8, function: u8, offset: u8, size: u8) -> Option<u32> {
        ((device, function) == (0x1f, 0)).then(|| self.lpc.config_read(offset, size))
    }

    fn south_config_write(&mut self, device: u8, function: u8, offset: u8, size: u8, value: u32, now: Ticks, smi: &mut SmiLatch) {
        if (device, function) == (0x1f, 0) {
            self.lpc.config_write_at(offset, size, value, now, smi);
        }
    }

    fn io_read(&mut self, port: u16, size: u8, now: Ticks) -> Option<u32> {
        self.pm_offset(port).map(|o| self.lpc.pm_read(o, size, now))
    }

    fn io_write(&mut self, port: u16, size: u8, value: u32, now: Ticks, _smi: &mut SmiLatch) -> bool {
        let Some(o) = self.pm_offset(port) else { return false };
        self.lpc.pm_write(o, size, value, now);
        true
    }

    fn apm_command(&mut self, cmd: u8, data: u8, now: Ticks, smi: &mut SmiLatch) {
        self.lpc.apm_command(cmd, data, now, smi);
    }

    fn pm_timer_port(&self) -> Option<u16> {
        self.lpc.pm_base().map(|b| b + crate::chipset::acpi_pm::PM_TMR)
    }

    fn next_deadline(&self) -> Option<Ticks> {
        [self.lpc.next_deadline(), self.errors.first().map(|e| e.at)].into_iter().flatten().min()
    }

    fn next_wake(&self) -> Option<Ticks> {
        // A memory error can raise an SMI that wakes a halted CPU.
        [self.lpc.next_wake(), self.errors.first().map(|e| e.at)].into_iter().flatten().min()
    }

    fn advance(&mut self, now: Ticks, smi: &mut SmiLatch) {
        self.lpc.advance(now, smi);
        while self.errors.first().is_some_and(|e| e.at <= now) {
            let e = self.errors.remove(0);
            self.events.push(MachineEvent::MemoryErrorInjected { addr: e.addr, uncorrectable: e.uncorrectable, icount: now.0 });
            // 3 Series MCH §5.1.41 SMICMD: the MCH sends an SMI message to the ICH over DMI.
            if self.mch.memory_error(e.addr, e.uncorrectable) {
                self.lpc.dmi_smi(now, smi);
            }
        }
    }

    fn smi_feature_negotiation(&self) -> bool {
        true
    }

    fn s5_sleep_type(&self) -> u8 {
        ich9_lpc::SLP_TYP_S5
    }

    fn io_trap(&mut self, port: u16, size: u8, write: bool, value: u32, now: Ticks, smi: &mut SmiLatch) -> bool {
        self.lpc.io_trap(port, size, write, value, now, smi)
    }

    fn mmio_claims(&self, addr: u64) -> bool {
        self.rcba_offset(addr).is_some()
    }

    fn mmio_read(&mut self, addr: u64, size: u8) -> u64 {
        match self.rcba_offset(addr) {
            Some(o) => self.lpc.rcba_read(o, size.clamp(1, 8)),
            None => u64::MAX >> (64 - 8 * size.clamp(1, 8) as u32),
        }
    }

    fn mmio_write(&mut self, addr: u64, size: u8, value: u64) {
        if let Some(o) = self.rcba_offset(addr) {
            self.lpc.rcba_write(o, size.clamp(1, 8), value);
        }
    }

    fn take_power_off(&mut self) -> bool {
        self.lpc.take_power_off()
    }

    fn flash_writable(&self, smm: bool) -> bool {
        self.lpc.flash_writable(smm)
    }

    fn drain_events(&mut self, events: &mut Events) {
        // Called after every device access: most find nothing to move.
        if self.events.is_empty() {
            return;
        }
        for e in self.events.drain(..) {
            events.push(e);
        }
    }
}
