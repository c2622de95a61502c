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

    /// Stores `data` at `offset` in the flash (ROM image), to change it before the run (saved
    /// settings, say): None on a board without flash, Some(false) if it does not fit.
    pub fn write_flash(&mut self, offset: u64, data: &[u8]) -> Option<bool> {
        match self {
            Board::Q35(p) => Some(p.rom.write(offset, data)),
            Board::Pc(p) => Some(p.rom.write(offset, data)),
            Board::Minimal(_) => None,
        }
    }

    /// A copy of the flash (ROM image) as the guest left it.
    pub fn flash(&self) -> Option<Vec<u8>> {
        match self {
            Board::Q35(p) => Some(p.rom.to_vec()),
            Board::Pc(p) => Some(p.rom.to_vec()),
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

#[cfg(test)]
mod tests {
    use crate::clock::Ticks;
    use crate::{BoardKind, Machine, MachineConfig};

    fn machine(kind: BoardKind) -> Machine {
        Machine::new(kind, MachineConfig::default(), vec![0x90; 0x10000]).unwrap()
    }

    #[test]
    fn lab_api_is_q35_only_and_the_devices_need_enabling() {
        let mut pc = machine(BoardKind::Pc);
        assert!(!pc.enable_lab_hardware());
        assert!(!pc.board.inject_memory_error(Ticks(1), 0, false));
        assert!(!pc.board.queue_key_report(Ticks(1), [0; 8]));
        assert_eq!(pc.board.temperature_mc(), None);
        assert_eq!(pc.board.flash().map(|f| f.len()), Some(0x10000));
        assert!(!machine(BoardKind::Minimal).board.set_heat(2000));
        let mut q = machine(BoardKind::Q35);
        assert!(q.board.inject_memory_error(q.ticks_at_ns(1_000), 0x1000, true), "the MCH is on every q35");
        assert!(!q.board.has_lab_hardware());
        assert!(!q.board.queue_key_report(Ticks(1), [0; 8]));
        assert!(!q.board.set_fan_failed(true));
        assert!(q.enable_lab_hardware());
        assert!(q.board.has_lab_hardware());
        assert!(q.board.queue_key_report(Ticks(1), [0, 0, 4, 0, 0, 0, 0, 0]));
        assert_eq!(q.board.queued_key_reports(), Some(1));
        assert!(q.board.set_fan_failed(true) && q.board.set_heat(1500));
        assert_eq!(q.board.fan_rpm(), Some(0));
        assert_eq!(q.board.fan_duty(), Some(30));
        assert_eq!(q.board.temperature_mc(), Some(35_000));
        assert_eq!(q.ticks_at_ns(1_000), Ticks(1_000));
    }
}
