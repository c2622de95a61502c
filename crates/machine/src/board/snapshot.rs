//! The device state a snapshot keeps beside RAM and the CPU ([`crate::Machine::snapshot`]):
//! what an SMI on the platform changes. The chipset (its SMI status and enable bits, SMRAM
//! and PAM registers, timers), APM_CNT/APM_STS, the SMI latch, pin and I/O traps, the local
//! and I/O APIC, the reset control register, the virtual clock, the event counters and the
//! poll fast-forward. Not kept: the legacy PC devices (PIT, PIC, CMOS, fw_cfg, UART, i8042),
//! the PCI functions (disk controllers), the flash and the ROM, the debug console's output and
//! the host's observer settings (its position, the next access's number and the instruction
//! it attributes accesses to, is kept).

use super::platform::Platform;
use crate::chipset::Chipset;
use crate::events::Events;

/// A platform's device state at one point.
#[derive(Clone, Debug)]
pub struct DeviceState<C> {
    chipset: C,
    pci: crate::pci::host::PciHost,
    apm: crate::devices::apm::Apm,
    lapic: crate::devices::lapic::Lapic,
    ioapic: crate::devices::ioapic::Ioapic,
    reset_control: crate::devices::reset_control::ResetControl,
    smi: crate::smi::SmiLatch,
    io_traps: crate::smi::io_trap::IoTraps,
    smi_pin: crate::smi::pin::SmiPin,
    events: Events,
    poll: crate::poll::PollForward,
    clock: crate::clock::Clock,
    smram: crate::smram::SmramConfig,
    pam: crate::memory::pam::Pam,
    flags: [bool; 4],
    a20_request: Option<bool>,
    power_off: Option<bool>,
    observer: (u64, u64),
}

impl<C: Chipset + Clone> Platform<C> {
    /// The device state now.
    pub fn device_state(&self) -> DeviceState<C> {
        DeviceState {
            chipset: self.chipset.clone(),
            pci: self.pci.clone(),
            apm: self.apm.clone(),
            lapic: self.lapic.clone(),
            ioapic: self.ioapic.clone(),
            reset_control: self.reset_control.clone(),
            smi: self.smi.clone(),
            io_traps: self.io_traps.clone(),
            smi_pin: self.smi_pin.clone(),
            events: self.events.clone(),
            poll: self.poll.clone(),
            clock: self.clock.clone(),
            smram: self.smram,
            pam: self.pam,
            flags: [self.pause, self.reset_requested, self.flush, self.resync],
            a20_request: self.a20_request,
            power_off: self.power_off,
            observer: self.smm_observer.position(),
        }
    }

    /// Goes back to `s`.
    pub fn restore_device_state(&mut self, s: &DeviceState<C>) {
        self.chipset.clone_from(&s.chipset);
        self.pci.clone_from(&s.pci);
        self.apm.clone_from(&s.apm);
        self.lapic.clone_from(&s.lapic);
        self.ioapic.clone_from(&s.ioapic);
        self.reset_control.clone_from(&s.reset_control);
        self.smi.clone_from(&s.smi);
        self.io_traps.clone_from(&s.io_traps);
        self.smi_pin.clone_from(&s.smi_pin);
        self.events.restore_from(&s.events);
        self.poll.clone_from(&s.poll);
        self.clock.clone_from(&s.clock);
        self.smram = s.smram;
        self.pam = s.pam;
        [self.pause, self.reset_requested, self.flush, self.resync] = s.flags;
        self.a20_request = s.a20_request;
        self.power_off = s.power_off;
        self.smm_observer.set_position(s.observer);
        self.slice_end = None;
        self.deadline = None;
    }
}
