//! The built-in platform's USB keyboard: a UHCI function at 00:1D.0 (8086:2934, class 0C 03 00,
//! ICH9 USB UHCI #1) with the legacy-support register LEGSUP (config 0xC0, as on the PIIX4 and
//! ICH9 UHCI functions, ICH9 datasheet §16.1.20) and a HID boot keyboard behind it (HID 1.11
//! appendix B: 8-byte boot reports). The UHCI frame list and transfer descriptors are not
//! modelled; smmlab's own report window in the I/O BAR (BAR4, 64 bytes: the UHCI's 32 bytes
//! of registers and the window after them) replaces them:
//! REPORT_STS at +0x18 (bit 0: a report is waiting; write 1 to take it) and the waiting
//! report at +0x20..+0x27.
//!
//! LEGSUP: bits 0-3 trap enables (60h read, 60h write, 64h read, 64h write), bit 4 USBSMIEN;
//! bits 8-11 the matching trap status (write one to clear), bit 12 USBIRQS (RO: a report is
//! waiting). A trapped access to 0x60/0x64 never reaches the i8042. Which LEGSUP bits assert
//! the SMI, and the SMIs raised, are [`crate::smi::usb_legacy`].

use crate::chipset::q35::mch::VENDOR_INTEL;
use crate::clock::Ticks;
use crate::pci::bar::{Bar, BarKind};
use crate::pci::config::{ConfigSpace, INTERRUPT_PIN};
use crate::pci::PciFunction;
use crate::smi::usb_legacy;
use std::collections::VecDeque;

/// ICH9 UHCI #1.
pub const UHCI_DEVICE_ID: u16 = 0x2934;
/// Serial bus, USB, UHCI.
pub const UHCI_CLASS: u32 = 0x0c_03_00;
/// Where the function sits: 00:1D.0.
pub const UHCI_SLOT: (u8, u8) = (0x1d, 0);
/// The I/O BAR (BAR4, 64 bytes; a real UHCI decodes 32, smmlab adds the report window).
pub const USBBASE: Bar = Bar { index: 4, kind: BarKind::Io, size: 0x40 };
/// LEGSUP (16 bits).
pub const LEGSUP: u8 = 0xc0;
/// Trap enable: reads of port 0x60.
pub const LEGSUP_TRAPBY60R: u16 = 1 << 0;
/// Trap enable: writes of port 0x60.
pub const LEGSUP_TRAPBY60W: u16 = 1 << 1;
/// Trap enable: reads of port 0x64.
pub const LEGSUP_TRAPBY64R: u16 = 1 << 2;
/// Trap enable: writes of port 0x64.
pub const LEGSUP_TRAPBY64W: u16 = 1 << 3;
/// USB SMI enable.
pub const LEGSUP_USBSMIEN: u16 = 1 << 4;
/// Trap status n is at bit 8 + n of trap enable n.
pub const LEGSUP_TBY60R: u16 = 1 << 8;
/// USB IRQ status.
pub const LEGSUP_USBIRQS: u16 = 1 << 12;
/// REPORT_STS offset in the I/O BAR.
pub const REPORT_STS: u64 = 0x18;
/// The report's offset in the I/O BAR.
pub const REPORT: u64 = 0x20;

/// The UHCI function and its keyboard.
#[derive(Clone, Debug)]
pub struct UhciLegacy {
    cfg: ConfigSpace,
    /// Reports the host queued, by guest time, not yet visible.
    queue: VecDeque<(Ticks, [u8; 8])>,
    /// The report waiting for the guest.
    current: Option<[u8; 8]>,
}

impl Default for UhciLegacy {
    fn default() -> Self {
        let mut cfg = ConfigSpace::new(VENDOR_INTEL, UHCI_DEVICE_ID, 2, UHCI_CLASS, 0);
        cfg.set(INTERRUPT_PIN, 1, 1);
        USBBASE.install(&mut cfg);
        cfg.set_wmask(LEGSUP, 2, 0x001f);
        cfg.set_w1cmask(LEGSUP, 2, 0x0f00);
        UhciLegacy { cfg, queue: VecDeque::new(), current: None }
    }
}

impl UhciLegacy {
    /// LEGSUP.
    pub fn legsup(&self) -> u16 {
        self.cfg.read(LEGSUP, 2) as u16
    }

    /// Whether the legacy-support block asserts its SMI (a status bit with its enable).
    pub fn smi_level(&self) -> bool {
        usb_legacy::smi_level(self.legsup())
    }

    /// Whether a waiting report raises an SMI (USBSMIEN).
    pub fn usb_smi_enabled(&self) -> bool {
        usb_legacy::usb_smi_enabled(self.legsup())
    }

    /// The report waiting for the guest.
    pub fn current(&self) -> Option<[u8; 8]> {
        self.current
    }

    /// Queues `report` to arrive at guest time `at` (after the reports queued before it).
    pub fn queue_report(&mut self, at: Ticks, report: [u8; 8]) {
        let i = self.queue.partition_point(|(t, _)| *t <= at);
        self.queue.insert(i, (at, report));
    }

    /// Reports queued and not yet visible.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// When the next queued report arrives (None while one waits: it arrives once taken).
    pub fn next_deadline(&self) -> Option<Ticks> {
        if self.current.is_some() {
            return None;
        }
        self.queue.front().map(|(t, _)| *t)
    }

    /// Makes the next report visible if it is due by `now`; true if one became visible.
    pub fn advance(&mut self, now: Ticks) -> bool {
        if self.current.is_some() || self.queue.front().is_none_or(|(t, _)| *t > now) {
            return false;
        }
        self.current = self.queue.pop_front().map(|(_, r)| r);
        self.sync_usbirqs();
        true
    }

    fn sync_usbirqs(&mut self) {
        let l = self.legsup() & !LEGSUP_USBIRQS;
        let irq = if self.current.is_some() { LEGSUP_USBIRQS } else { 0 };
        self.cfg.set(LEGSUP, 2, (l | irq) as u32);
    }

    /// An access to `port` the legacy block may trap: sets the trap's status bit and returns
    /// true (the access goes nowhere) when its enable is set.
    pub fn trap(&mut self, port: u16, write: bool) -> bool {
        let Some(n) = usb_legacy::trap_index(port, write) else { return false };
        let l = self.legsup();
        if l & (1 << n) == 0 {
            return false;
        }
        self.cfg.set(LEGSUP, 2, (l | LEGSUP_TBY60R << n) as u32);
        true
    }

    /// The I/O BAR's base, if assigned and enabled.
    pub fn io_offset(&self, port: u16) -> Option<u64> {
        USBBASE.decode(&self.cfg, port as u64)
    }

    /// A read of the I/O BAR at `offset`: the report window; the UHCI registers read 0.
    pub fn bar_read(&self, offset: u64, size: u8) -> u32 {
        let mut v = 0u32;
        for k in 0..size.clamp(1, 4) as u64 {
            let o = offset + k;
            let b = match o {
                REPORT_STS => self.current.is_some() as u8,
                REPORT..=0x27 => self.current.map_or(0, |r| r[(o - REPORT) as usize]),
                _ => 0,
            };
            v |= (b as u32) << (8 * k);
        }
        v
    }

    /// A write of the I/O BAR at `offset`; true if the guest took the waiting report.
    pub fn bar_write(&mut self, offset: u64, size: u8, value: u32) -> bool {
        let size = size.clamp(1, 4) as u64;
        if (offset..offset + size).contains(&REPORT_STS) && (value >> (8 * (REPORT_STS - offset))) & 1 != 0 && self.current.is_some() {
            self.current = None;
            self.sync_usbirqs();
            return true;
        }
        false
    }
}

impl PciFunction for UhciLegacy {
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
    use crate::pci::bar::COMMAND_IO;
    use crate::pci::config::COMMAND;

    #[test]
    fn identity_bar_sizing_and_legsup_bits() {
        let mut u = UhciLegacy::default();
        assert_eq!(u.config_read(0, 4), 0x2934_8086);
        assert_eq!(u.config_read(0x08, 4) >> 8, UHCI_CLASS);
        u.config_write(0x20, 4, u32::MAX);
        assert_eq!(u.config_read(0x20, 4), 0xffff_ffc1, "64 bytes of I/O");
        u.config_write(LEGSUP, 2, 0xffff);
        assert_eq!(u.legsup(), 0x001f, "status bits are not set by writing");
        assert!(!u.smi_level());
    }

    #[test]
    fn reports_arrive_in_order_at_their_times_and_one_at_a_time() {
        let mut u = UhciLegacy::default();
        u.config_write(0x20, 4, 0xc000);
        u.config_write(COMMAND, 2, COMMAND_IO as u32);
        assert_eq!(u.io_offset(0xc018), Some(REPORT_STS));
        u.queue_report(Ticks(200), [0, 0, 5, 0, 0, 0, 0, 0]);
        u.queue_report(Ticks(100), [2, 0, 4, 0, 0, 0, 0, 0]);
        assert_eq!(u.next_deadline(), Some(Ticks(100)));
        assert!(!u.advance(Ticks(99)));
        assert!(u.advance(Ticks(300)));
        assert_eq!(u.bar_read(REPORT_STS, 1), 1);
        assert_eq!(u.bar_read(REPORT, 4), 0x0004_0002);
        assert_eq!(u.legsup() & LEGSUP_USBIRQS, LEGSUP_USBIRQS);
        assert!(!u.smi_level(), "USBSMIEN off");
        u.config_write(LEGSUP, 2, LEGSUP_USBSMIEN as u32);
        assert!(u.smi_level());
        assert_eq!(u.next_deadline(), None, "the next one waits until this one is taken");
        assert!(!u.advance(Ticks(300)));
        assert!(u.bar_write(REPORT_STS, 1, 1));
        assert_eq!(u.bar_read(REPORT_STS, 1), 0);
        assert!(!u.smi_level());
        assert!(u.advance(Ticks(300)));
        assert_eq!(u.bar_read(REPORT + 2, 1), 5);
        assert!(!u.bar_write(REPORT_STS, 1, 0), "writing 0 takes nothing");
        assert_eq!(u.bar_read(0x40, 4), 0);
    }

    #[test]
    fn traps_set_status_only_when_enabled_and_status_clears_by_writing_one() {
        let mut u = UhciLegacy::default();
        assert!(!u.trap(0x60, false));
        u.config_write(LEGSUP, 2, (LEGSUP_TRAPBY60R | LEGSUP_TRAPBY64W) as u32);
        assert!(u.trap(0x60, false));
        assert!(!u.trap(0x60, true));
        assert!(u.trap(0x64, true));
        assert!(!u.trap(0x61, false));
        assert_eq!(u.legsup() >> 8, 0b1001);
        assert!(u.smi_level());
        u.config_write(LEGSUP, 2, 0x0f00 | (LEGSUP_TRAPBY60R | LEGSUP_TRAPBY64W) as u32);
        assert_eq!(u.legsup(), LEGSUP_TRAPBY60R | LEGSUP_TRAPBY64W);
        assert!(!u.smi_level());
    }
}
