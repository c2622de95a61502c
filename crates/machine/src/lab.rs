//! The host side of the built-in platform's modelled hardware (docs/builtin-platform.md), for
//! scenarios and tests: schedule memory errors, type on the USB keyboard, break the fan, heat
//! the CPU, and look at the results. Only the `q35` board has this hardware; on the other
//! boards the setters return false and the getters None. The keyboard and the hardware
//! monitor also need [`Board::enable_lab_hardware`] (the built-in firmware's board); memory
//! errors and flash work on every `q35` board.

use crate::board::Board;
use crate::clock::Ticks;

impl Board {
    /// Adds the lab devices (UHCI keyboard at 00:1D.0, hardware monitor at 0x295/0x296) to a
    /// `q35` board; false on other boards. Call before the run starts.
    pub fn enable_lab_hardware(&mut self) -> bool {
        match self {
            Board::Q35(p) => {
                p.chipset.enable_lab_hardware();
                true
            }
            _ => false,
        }
    }

    /// Whether the lab devices are present.
    pub fn has_lab_hardware(&self) -> bool {
        matches!(self, Board::Q35(p) if p.chipset.lab.is_some())
    }

    /// Schedules a DRAM ECC error at physical `addr` for guest time `at` (the MCH's ERRSTS,
    /// DEAP, CECNT, and the SMI message SMICMD asks for). False on boards without the MCH.
    pub fn inject_memory_error(&mut self, at: Ticks, addr: u64, uncorrectable: bool) -> bool {
        match self {
            Board::Q35(p) => {
                p.chipset.inject_memory_error(at, addr, uncorrectable);
                true
            }
            _ => false,
        }
    }

    /// Queues an 8-byte HID boot keyboard report (modifiers, reserved, six key codes) to
    /// arrive at guest time `at`. False without the lab devices.
    pub fn queue_key_report(&mut self, at: Ticks, report: [u8; 8]) -> bool {
        match self {
            Board::Q35(p) => p.chipset.lab.as_mut().map(|l| l.uhci.queue_report(at, report)).is_some(),
            _ => false,
        }
    }

    /// Breaks (true) or repairs the fan. False without the lab devices.
    pub fn set_fan_failed(&mut self, failed: bool) -> bool {
        match self {
            Board::Q35(p) => p.chipset.lab.as_mut().map(|l| l.hwmon.fan_ok = !failed).is_some(),
            _ => false,
        }
    }

    /// Sets the thermal model's heat factor in permille (1000 = 1.0, the default). False
    /// without the lab devices.
    pub fn set_heat(&mut self, permille: u32) -> bool {
        match self {
            Board::Q35(p) => p.chipset.lab.as_mut().map(|l| l.hwmon.heat_permille = permille).is_some(),
            _ => false,
        }
    }

    /// The CPU temperature, milli-degrees C.
    pub fn temperature_mc(&self) -> Option<i64> {
        match self {
            Board::Q35(p) => p.chipset.lab.as_ref().map(|l| l.hwmon.temperature_mc()),
            _ => None,
        }
    }

    /// The fan's duty, percent.
    pub fn fan_duty(&self) -> Option<u8> {
        match self {
            Board::Q35(p) => p.chipset.lab.as_ref().map(|l| l.hwmon.fan_duty()),
            _ => None,
        }
    }

    /// The fan's tachometer, rpm.
    pub fn fan_rpm(&self) -> Option<u16> {
        match self {
            Board::Q35(p) => p.chipset.lab.as_ref().map(|l| l.hwmon.fan_rpm()),
            _ => None,
        }
    }

    /// Keyboard reports queued and not yet seen by the guest (the waiting one excluded).
    pub fn queued_key_reports(&self) -> Option<usize> {
        match self {
            Board::Q35(p) => p.chipset.lab.as_ref().map(|l| l.uhci.queued()),
            _ => None,
        }
    }

    /// The flash (ROM image) as the guest left it.
    pub fn flash(&self) -> Option<&[u8]> {
        match self {
            Board::Q35(p) => Some(p.rom.as_slice()),
            Board::Pc(p) => Some(p.rom.as_slice()),
            Board::Minimal(_) => None,
        }
    }
}

impl crate::Machine {
    /// Builds the board for the built-in firmware: adds the lab devices (see
    /// [`Board::enable_lab_hardware`]); false on boards other than `q35`.
    pub fn enable_lab_hardware(&mut self) -> bool {
        self.board.enable_lab_hardware()
    }

    /// Guest time `ns` nanoseconds after reset, in ticks (for the lab API's `at`).
    pub fn ticks_at_ns(&self, ns: u64) -> Ticks {
        Ticks(crate::clock::Clock::new(self.config.instructions_per_second).ticks_from_ns(ns))
    }
}
