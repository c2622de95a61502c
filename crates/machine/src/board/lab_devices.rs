//! The built-in platform's lab hardware (docs/builtin-platform.md): the devices only the board
//! smmlab's own firmware runs on has, beside the q35 chipset. The `q35` board
//! ([`super::q35::Q35Board`]) owns them and routes to them: the UHCI keyboard at 00:1D.0 with
//! its USB legacy-support SMI ([`crate::smi::usb_legacy`]) and the hardware monitor at
//! 0x295/0x296 with its thermal limits ([`crate::smi::thermal`]). Their SMI outputs are wires
//! into the ICH9 LPC bridge, which the board lends to every call that can drive them.

use crate::chipset::q35::ich9_lpc::Ich9Lpc;
use crate::clock::Ticks;
use crate::devices::hwmon::{HwMonitor, PORT_INDEX};
use crate::devices::uhci_legacy::UhciLegacy;
use crate::events::MachineEvent;
use crate::pci::PciFunction;
use crate::smi::{thermal, usb_legacy, SmiCause, SmiLatch};

pub use crate::devices::uhci_legacy::UHCI_SLOT;

/// The built-in platform's extra devices, present only when the board is built for the
/// built-in firmware ([`crate::Machine::enable_lab_hardware`]): the UHCI keyboard at 00:1D.0
/// and the hardware monitor at 0x295/0x296.
#[derive(Clone, Debug)]
pub struct LabHardware {
    /// The UHCI controller with USB legacy keyboard emulation (00:1D.0).
    pub uhci: UhciLegacy,
    /// The hardware monitor (temperature and fan, 0x295/0x296).
    pub hwmon: HwMonitor,
    /// The hardware monitor's readings last reported as an event (temperature, duty, rpm).
    sensors_reported: Option<(u8, u8, u16)>,
}

impl LabHardware {
    /// The devices at reset, the monitor's clock at `instructions_per_second`.
    pub fn new(instructions_per_second: u64) -> Self {
        LabHardware { uhci: UhciLegacy::default(), hwmon: HwMonitor::new(instructions_per_second), sensors_reported: None }
    }

    /// Tells the LPC the UHCI's SMI level (LEGACY_USB_STS), raising `cause` with it.
    fn sync_usb(&self, lpc: &mut Ich9Lpc, cause: Option<SmiCause>, now: Ticks, smi: &mut SmiLatch) {
        lpc.legacy_usb(self.uhci.smi_level(), cause, now, smi);
    }

    /// Reads the UHCI function's configuration space (00:1D.0).
    pub fn config_read(&self, offset: u8, size: u8) -> u32 {
        self.uhci.config_read(offset, size)
    }

    /// Writes the UHCI function's configuration space (LEGSUP can change the SMI level).
    pub fn config_write(&mut self, offset: u8, size: u8, value: u32, lpc: &mut Ich9Lpc, now: Ticks, smi: &mut SmiLatch) {
        self.uhci.config_write(offset, size, value);
        self.sync_usb(lpc, None, now, smi);
    }

    /// Reads a port of the monitor or of the UHCI's I/O BAR; `None` if neither decodes it.
    pub fn io_read(&mut self, port: u16, size: u8) -> Option<u32> {
        if (PORT_INDEX..=PORT_INDEX + 1).contains(&port) {
            let mut v = 0u32;
            for k in 0..size.clamp(1, 4) as u16 {
                let o = (port as u32 + k as u32).wrapping_sub(PORT_INDEX as u32);
                v |= (self.hwmon.io_read(o.min(2) as u16) as u32) << (8 * k);
            }
            return Some(v);
        }
        self.uhci.io_offset(port).map(|o| self.uhci.bar_read(o, size))
    }

    /// Writes a port of the monitor or of the UHCI's I/O BAR; false if neither decodes it.
    /// `idle` is the clock's halted time so far (the thermal model cools while halted).
    #[allow(clippy::too_many_arguments)]
    pub fn io_write(&mut self, port: u16, size: u8, value: u32, now: Ticks, idle: u64, lpc: &mut Ich9Lpc, smi: &mut SmiLatch) -> bool {
        if (PORT_INDEX..=PORT_INDEX + 1).contains(&port) {
            for k in 0..size.clamp(1, 4) as u16 {
                let o = (port as u32 + k as u32).wrapping_sub(PORT_INDEX as u32);
                self.hwmon.io_write(o.min(2) as u16, (value >> (8 * k)) as u8, now, idle);
            }
            return true;
        }
        let Some(o) = self.uhci.io_offset(port) else { return false };
        if self.uhci.bar_write(o, size, value) {
            // The report was taken: the next one, if due, shows at once.
            let next = self.uhci.advance(now);
            let cause = usb_legacy::report_smi(next, self.uhci.legsup());
            self.sync_usb(lpc, cause, now, smi);
        }
        true
    }

    /// The next time a key report arrives or the monitor samples.
    pub fn next_deadline(&self) -> Option<Ticks> {
        [self.uhci.next_deadline(), self.hwmon.next_deadline()].into_iter().flatten().min()
    }

    /// The next time a device can raise an SMI that wakes a halted CPU (a key report).
    pub fn next_wake(&self) -> Option<Ticks> {
        self.uhci.next_deadline()
    }

    /// Delivers the key reports due by `now` and runs the thermal model to `now`; the events
    /// (sensor readings, limits crossed) go to `events`.
    pub fn advance(&mut self, now: Ticks, idle: u64, lpc: &mut Ich9Lpc, events: &mut Vec<MachineEvent>, smi: &mut SmiLatch) {
        if self.uhci.advance(now) {
            let cause = usb_legacy::report_smi(true, self.uhci.legsup());
            self.sync_usb(lpc, cause, now, smi);
        }
        let hits = self.hwmon.advance(now, idle);
        // The readings, when they change, for traces (a sample at most every millisecond).
        let readings = (self.hwmon.temp_c(), self.hwmon.fan_duty(), self.hwmon.fan_rpm());
        if self.hwmon.next_deadline().is_some() && self.sensors_reported != Some(readings) {
            self.sensors_reported = Some(readings);
            events.push(MachineEvent::Sensors { temp_c: readings.0, fan_duty: readings.1, fan_rpm: readings.2, icount: now.0 });
        }
        for hit in hits {
            events.push(MachineEvent::ThermalLimit { temp_c: hit.temp_c, crit: hit.crit, icount: hit.at.0 });
            thermal::limit_crossed(&hit, lpc, smi);
        }
    }

    /// The UHCI's legacy support traps an i8042 access (0x60, 0x64) before any device sees
    /// it; true if trapped.
    pub fn io_trap(&mut self, port: u16, write: bool, lpc: &mut Ich9Lpc, now: Ticks, smi: &mut SmiLatch) -> bool {
        if (port == 0x60 || port == 0x64) && self.uhci.trap(port, write) {
            self.sync_usb(lpc, Some(usb_legacy::trap_smi(port, write)), now, smi);
            return true;
        }
        false
    }
}
