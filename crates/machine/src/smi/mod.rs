//! SMI sources and the SMI# latch.
//!
//! Every source raises an SMI through [`SmiLatch::raise`] with its [`SmiCause`]. The latch is
//! the SMI# request the CPU sees as [`cpu::Pending::SMI`] (with [`cpu::Pending::IO_TRAP`] when
//! the SMI came from an I/O trap); [`cpu::Bus::ack_smi`] clears it and remembers the cause, so
//! the board can report it when the CPU calls [`cpu::Bus::smm_entered`]. SMIs raised while one
//! is already pending merge into it, as on the single SMI# wire.
//!
//! Sources: the APM port (through the southbridge, [`crate::chipset`]), the ICH9 periodic and
//! software SMI timers ([`timer`]), I/O traps ([`io_trap`], also the ICH9 IOTRn ranges and the
//! UHCI legacy 0x60/0x64 traps), the external pin ([`pin`]), LAPIC SMI IPIs
//! ([`crate::devices::lapic`]) and, on the q35 lab hardware, memory errors, BIOS write
//! attempts, the hardware monitor and the USB keyboard.

pub mod io_trap;
pub mod pin;
pub mod timer;

use crate::clock::Ticks;

/// Why an SMI was raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SmiCause {
    /// A write to APM_CNT (0xB2) with APM SMIs enabled.
    Apm {
        /// The value written to APM_CNT.
        cmd: u8,
        /// APM_STS (0xB3) at the time.
        data: u8,
    },
    /// The ICH9 periodic SMI timer.
    Periodic,
    /// The ICH9 software SMI timer.
    SwSmiTimer,
    /// An I/O trap.
    IoTrap {
        /// The trapped port.
        port: u16,
        /// Whether the access was a write.
        write: bool,
    },
    /// The external SMI# pin (a scenario).
    Pin,
    /// A local APIC inter-processor interrupt with delivery mode SMI.
    Ipi,
    /// The MCH sent an SMI message over DMI for a DRAM ECC error (ICH9 TCO1_STS.DMISMI_STS).
    MemoryError,
    /// BIOS_CNTL.BIOSWE was set while BLE was set (ICH9 TCO1_STS.BIOSWR_STS).
    BiosWrite,
    /// The hardware monitor's SMI# (ICH9 GPI 1): a temperature limit was crossed.
    Thermal,
    /// The UHCI controller's interrupt routed to SMI by LEGSUP.USBSMIEN (a keyboard report).
    Usb,
}

impl SmiCause {
    /// The source name used in summaries ("apm", "periodic", ...).
    pub fn source(&self) -> &'static str {
        match self {
            SmiCause::Apm { .. } => "apm",
            SmiCause::Periodic => "periodic",
            SmiCause::SwSmiTimer => "swsmi-timer",
            SmiCause::IoTrap { .. } => "io-trap",
            SmiCause::Pin => "pin",
            SmiCause::Ipi => "ipi",
            SmiCause::MemoryError => "memory-error",
            SmiCause::BiosWrite => "bios-write",
            SmiCause::Thermal => "thermal",
            SmiCause::Usb => "usb",
        }
    }
}

/// The SMI# request line.
#[derive(Clone, Debug, Default)]
pub struct SmiLatch {
    pending: Option<SmiCause>,
    io_trap: bool,
    taken: Option<SmiCause>,
    raised: Vec<(SmiCause, Ticks)>,
    merged: u64,
}

impl SmiLatch {
    /// Asserts SMI# for `cause` at guest time `now`.
    pub fn raise(&mut self, cause: SmiCause, now: Ticks) {
        if self.pending.is_some() {
            self.merged += 1;
        } else {
            self.pending = Some(cause);
            self.io_trap = matches!(cause, SmiCause::IoTrap { .. });
        }
        self.raised.push((cause, now));
    }

    /// Whether SMI# is asserted.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether the pending SMI was raised by an I/O trap.
    pub fn is_io_trap(&self) -> bool {
        self.pending.is_some() && self.io_trap
    }

    /// The CPU latched the request: drop SMI# and remember why it was raised.
    pub fn ack(&mut self) {
        self.taken = self.pending.take();
        self.io_trap = false;
    }

    /// The cause of the SMI the CPU last acknowledged (taken once, at SMM entry).
    pub fn take_taken(&mut self) -> Option<SmiCause> {
        self.taken.take()
    }

    /// SMIs raised since the last call, with their times.
    pub fn drain_raised(&mut self) -> std::vec::Drain<'_, (SmiCause, Ticks)> {
        self.raised.drain(..)
    }

    /// Whether raised SMIs wait to be drained.
    pub fn has_raised(&self) -> bool {
        !self.raised.is_empty()
    }

    /// SMIs that arrived while one was already pending.
    pub fn merged(&self) -> u64 {
        self.merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_clears_the_request_and_keeps_the_cause() {
        let mut l = SmiLatch::default();
        l.raise(SmiCause::Pin, Ticks(5));
        assert!(l.is_pending());
        l.ack();
        assert!(!l.is_pending());
        assert_eq!(l.take_taken(), Some(SmiCause::Pin));
        assert_eq!(l.take_taken(), None);
        assert_eq!(l.drain_raised().collect::<Vec<_>>(), vec![(SmiCause::Pin, Ticks(5))]);
    }

    #[test]
    fn a_second_smi_merges_into_the_pending_one() {
        let mut l = SmiLatch::default();
        l.raise(SmiCause::Apm { cmd: 1, data: 0 }, Ticks(1));
        l.raise(SmiCause::IoTrap { port: 0x80, write: true }, Ticks(2));
        assert!(!l.is_io_trap());
        assert_eq!(l.merged(), 1);
        l.ack();
        assert_eq!(l.take_taken(), Some(SmiCause::Apm { cmd: 1, data: 0 }));
    }

    #[test]
    fn io_trap_flag_follows_the_pending_smi() {
        let mut l = SmiLatch::default();
        l.raise(SmiCause::IoTrap { port: 0x80, write: false }, Ticks(1));
        assert!(l.is_io_trap());
        l.ack();
        assert!(!l.is_io_trap());
    }
}
