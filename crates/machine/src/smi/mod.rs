//! SMI sources and the SMI# latch.
//!
//! Every source raises an SMI through [`SmiLatch::raise`] with its [`SmiCause`]. The latch is
//! the SMI# request the CPU sees as [`cpu::Pending::SMI`] (with [`cpu::Pending::IO_TRAP`] when
//! the SMI came from an I/O trap); [`cpu::Bus::ack_smi`] clears it and remembers the cause, so
//! the board can report it when the CPU calls [`cpu::Bus::smm_entered`]. SMIs raised while one
//! is already pending merge into it, as on the single SMI# wire.
//!
//! One file per source holds its decision logic: the enable and status bits that gate it and
//! the call that raises it. The devices and chipset functions keep their registers and call
//! these.
//!
//! - [`apm`]: APM_CNT (0xB2) writes, on the ICH9 (APMC_EN) and the PIIX4 (DEVACTB.APMC_EN).
//! - [`periodic`]: the ICH9 periodic SMI timer (PERIODIC_EN, PER_SMI_SEL).
//! - [`sw_timer`]: the ICH9 software SMI timer (SWSMI_TMR_EN, SWSMI_RATE_SEL).
//! - [`io_trap`]: I/O traps, the generic ranges and the ICH9 IOTRn registers.
//! - [`pin`]: the external SMI# pin, scheduled by a scenario.
//! - [`lapic_ipi`]: local APIC IPIs with delivery mode SMI.
//! - [`memory_error`]: the MCH's ECC errors, sent over DMI (SMICMD, TCO1_STS.DMISMI_STS).
//! - [`bios_write`]: BIOS_CNTL.BIOSWE set under BLE (TCO1_STS.BIOSWR_STS).
//! - [`thermal`]: the hardware monitor's SMI# on ICH9 GPI 1 (ALT_GP_SMI_EN/STS).
//! - [`usb_legacy`]: the UHCI legacy-support block (LEGSUP, LEGACY_USB_EN): keyboard reports
//!   and the 0x60/0x64 traps.
//! - [`smi_load`]: SMIs measured on a real machine (`smmlab host`), replayed at their times
//!   with their lengths (`smmlab run --smi-load`).
//!
//! [`timer`] is not a source: it is the re-arming deadline timer [`periodic`] and
//! [`sw_timer`] run on. Every SMI the ICH9 LPC bridge raises is gated by SMI_EN.GBL_SMI_EN
//! ([`raise_ich9`]).

pub mod apm;
pub mod bios_write;
pub mod io_trap;
pub mod lapic_ipi;
pub mod memory_error;
pub mod periodic;
pub mod pin;
pub mod smi_load;
pub mod sw_timer;
pub mod thermal;
pub mod timer;
pub mod usb_legacy;

use crate::chipset::q35::ich9_lpc::SMI_EN_GBL_SMI_EN;
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
    /// A replayed SMI of a real machine's recorded load (`smmlab run --smi-load`).
    Load,
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
            SmiCause::Load => "smi-load",
        }
    }
}

/// Raises `cause` at `now` if SMI_EN.GBL_SMI_EN in `smi_en` allows: the ICH9 LPC bridge's
/// global gate on every SMI it raises (ICH9 datasheet, doc. 316972, §13.8.3 "Power Management
/// I/O Registers", SMI_EN bit 0).
pub fn raise_ich9(smi_en: u32, cause: SmiCause, now: Ticks, smi: &mut SmiLatch) {
    if smi_en & SMI_EN_GBL_SMI_EN != 0 {
        smi.raise(cause, now);
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
