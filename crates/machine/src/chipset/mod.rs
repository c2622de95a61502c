//! Chipsets: the north- and southbridge functions of each board. The platform board drives a
//! [`Chipset`], which is the two halves together: a [`HostBridge`] (the host bridge's
//! configuration space, SMRAM control, PAM, the ECAM window) and a [`Southbridge`] (its PCI
//! functions, the PM I/O block, APM, timers, I/O traps, memory-space registers, soft off,
//! BIOS write protection, SMI feature negotiation, events). A chipset decodes its own
//! registers into a neutral [`SmramConfig`] and [`Pam`]; it never reaches into memory.
//! [`crate::smram::route`] decides visibility.

pub mod acpi_pm;
pub mod i440fx;
pub mod q35;
pub mod smram_reg;

use crate::clock::Ticks;
use crate::events::Events;
use crate::memory::pam::Pam;
use crate::smi::SmiLatch;
use crate::smram::SmramConfig;

/// The northbridge half of a chipset: the host bridge's configuration space and the memory
/// decoding it controls.
pub trait HostBridge {
    /// Reads the host bridge's configuration space at bus 0 `device.function`; `None` if the
    /// host bridge has no function there.
    fn host_config_read(&self, device: u8, function: u8, offset: u8, size: u8) -> Option<u32>;
    /// Writes the host bridge's configuration space (dropped if it has no function at
    /// `device.function`).
    fn host_config_write(&mut self, device: u8, function: u8, offset: u8, size: u8, value: u32, now: Ticks);
    /// SMRAM control as the registers say; TSEG ends at `low_ram_top`.
    fn smram(&self, low_ram_top: u64) -> SmramConfig;
    /// BIOS shadowing.
    fn pam(&self) -> Pam;
    /// The memory-mapped configuration window (PCI Express ECAM) as (base, size), if the
    /// chipset has one and it is enabled.
    fn ecam(&self) -> Option<(u64, u64)> {
        None
    }
}

/// The southbridge half of a chipset: its PCI functions, its ports, timers and SMI logic.
#[allow(clippy::too_many_arguments)]
pub trait Southbridge {
    /// Reads the configuration space of a southbridge function at bus 0 `device.function`;
    /// `None` if it has no function there.
    fn south_config_read(&self, device: u8, function: u8, offset: u8, size: u8) -> Option<u32>;
    /// Writes a southbridge function's configuration space (dropped if it has no function at
    /// `device.function`).
    fn south_config_write(&mut self, device: u8, function: u8, offset: u8, size: u8, value: u32, now: Ticks, smi: &mut SmiLatch);
    /// Reads a port the chipset decodes (the PM I/O block); `None` if it does not claim it.
    fn io_read(&mut self, port: u16, size: u8, now: Ticks) -> Option<u32>;
    /// Writes a port the chipset decodes; false if it does not claim it.
    fn io_write(&mut self, port: u16, size: u8, value: u32, now: Ticks, smi: &mut SmiLatch) -> bool;
    /// A write of `cmd` to APM_CNT with `data` in APM_STS.
    fn apm_command(&mut self, cmd: u8, data: u8, now: Ticks, smi: &mut SmiLatch);
    /// The next time a chipset timer expires.
    fn next_deadline(&self) -> Option<Ticks>;
    /// The next time a chipset timer expiry raises an SMI (can wake a halted CPU).
    fn next_wake(&self) -> Option<Ticks>;
    /// Expires the timers due by `now`.
    fn advance(&mut self, now: Ticks, smi: &mut SmiLatch);
    /// The port of the ACPI PM timer (PM_TMR) while the PM I/O block decodes, for the poll
    /// fast-forward ([`crate::poll`]).
    fn pm_timer_port(&self) -> Option<u16> {
        None
    }
    /// Whether firmware can negotiate ICH9 SMI features through fw_cfg (`etc/smi/*`).
    fn smi_feature_negotiation(&self) -> bool {
        false
    }
    /// The PM1_CNT sleep type that switches the machine off (S5), as the DSDT's \_S5 says.
    fn s5_sleep_type(&self) -> u8 {
        0
    }
    /// A port access the chipset may trap before any device sees it (ICH9 IOTRn, UHCI
    /// legacy support); true if trapped: the access goes nowhere and a read returns all ones.
    /// `value` is the data of a write.
    fn io_trap(&mut self, _port: u16, _size: u8, _write: bool, _value: u32, _now: Ticks, _smi: &mut SmiLatch) -> bool {
        false
    }
    /// Whether chipset registers in memory space (the ICH9 RCBA window) decode `addr`.
    fn mmio_claims(&self, _addr: u64) -> bool {
        false
    }
    /// Reads chipset memory space at `addr` (`size` 1..=8).
    fn mmio_read(&mut self, _addr: u64, size: u8) -> u64 {
        u64::MAX >> (64 - 8 * size.clamp(1, 8) as u32)
    }
    /// Writes chipset memory space at `addr`.
    fn mmio_write(&mut self, _addr: u64, _size: u8, _value: u64) {}
    /// The clock's total halted time so far (given before [`Southbridge::advance`]).
    fn set_idle(&mut self, _idle: u64) {}
    /// Whether the guest asked for soft off (SLP_EN with SLP_TYP = S5); clears the request.
    fn take_power_off(&mut self) -> bool {
        false
    }
    /// Whether a write to the BIOS flash stores (`smm`: the CPU is in SMM).
    fn flash_writable(&self, _smm: bool) -> bool {
        false
    }
    /// Moves the events the chipset recorded into `events` (the host bridge's too).
    fn drain_events(&mut self, _events: &mut Events) {}
}

/// The chipset-specific half of a PC board: a host bridge and a southbridge. Every type that
/// is both is a chipset.
#[allow(clippy::too_many_arguments)]
pub trait Chipset: HostBridge + Southbridge {
    /// Reads a bus-0 configuration space, the host bridge's or a southbridge function's;
    /// `None` if no function answers at `device.function`.
    fn config_read(&self, device: u8, function: u8, offset: u8, size: u8) -> Option<u32> {
        self.host_config_read(device, function, offset, size).or_else(|| self.south_config_read(device, function, offset, size))
    }
    /// Writes a bus-0 configuration space (dropped if no function answers; the host bridge
    /// and the southbridge never share a `device.function`).
    fn config_write(&mut self, device: u8, function: u8, offset: u8, size: u8, value: u32, now: Ticks, smi: &mut SmiLatch) {
        self.host_config_write(device, function, offset, size, value, now);
        self.south_config_write(device, function, offset, size, value, now, smi);
    }
}

impl<T: HostBridge + Southbridge> Chipset for T {}
