//! USB legacy SMIs: the UHCI function's legacy-support register LEGSUP (config 0xC0) raises
//! an SMI for a keyboard report (USBIRQS, bit 12, with USBSMIEN, bit 4) and traps the i8042
//! ports: an access to 0x60 or 0x64 whose trap enable (bits 0-3: 60h read, 60h write, 64h
//! read, 64h write) is set sets the matching status bit (bits 8-11, write one to clear),
//! never reaches the i8042 and raises an I/O-trap SMI. The block's SMI output (a status bit
//! with its enable) is the ICH9's SMI_STS.LEGACY_USB_STS (bit 3); it raises an SMI with
//! SMI_EN.LEGACY_USB_EN (bit 3), gated by SMI_EN.GBL_SMI_EN (bit 0).
//!
//! Follows the Intel I/O Controller Hub 9 (ICH9) Family datasheet (doc. 316972): §16.1.20,
//! the UHCI legacy keyboard/mouse control register at C0h (LEGSUP here), and §13.8.3 "Power
//! Management I/O Registers" (SMI_EN, SMI_STS). The UHCI function
//! ([`crate::devices::uhci_legacy`]) keeps LEGSUP and the reports; the LPC bridge
//! ([`crate::chipset::q35::ich9_lpc`]) keeps the LEGACY_USB_STS level and SMI_EN.

use super::{raise_ich9, SmiCause, SmiLatch};
use crate::chipset::q35::ich9_lpc::SMI_EN_LEGACY_USB_EN;
use crate::clock::Ticks;
use crate::devices::uhci_legacy::{LEGSUP_USBIRQS, LEGSUP_USBSMIEN};

/// Whether LEGSUP asserts the block's SMI output: a trap status bit with its enable, or
/// USBIRQS with USBSMIEN.
pub fn smi_level(legsup: u16) -> bool {
    ((legsup >> 8) & legsup & 0xf) != 0 || (legsup & LEGSUP_USBIRQS != 0 && legsup & LEGSUP_USBSMIEN != 0)
}

/// Whether a waiting report raises an SMI (USBSMIEN).
pub fn usb_smi_enabled(legsup: u16) -> bool {
    legsup & LEGSUP_USBSMIEN != 0
}

/// The SMI a report that just became visible (`visible`) raises under LEGSUP, if any.
pub fn report_smi(visible: bool, legsup: u16) -> Option<SmiCause> {
    (visible && usb_smi_enabled(legsup)).then_some(SmiCause::Usb)
}

/// The LEGSUP trap (0-3: 60h read, 60h write, 64h read, 64h write) for an access to `port`.
pub fn trap_index(port: u16, write: bool) -> Option<u16> {
    match (port, write) {
        (0x60, false) => Some(0),
        (0x60, true) => Some(1),
        (0x64, false) => Some(2),
        (0x64, true) => Some(3),
        _ => None,
    }
}

/// The SMI a trapped access to `port` raises.
pub fn trap_smi(port: u16, write: bool) -> SmiCause {
    SmiCause::IoTrap { port, write }
}

/// The block's SMI output changed to `level` on the ICH9 at `now`; `raise` is the SMI of the
/// event that changed it, raised if `level`, LEGACY_USB_EN and GBL_SMI_EN in `smi_en` allow.
pub fn ich9_legacy_usb(smi_en: u32, level: bool, raise: Option<SmiCause>, now: Ticks, smi: &mut SmiLatch) {
    if let (true, Some(cause)) = (level, raise) {
        if smi_en & SMI_EN_LEGACY_USB_EN != 0 {
            raise_ich9(smi_en, cause, now, smi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chipset::q35::ich9_lpc::SMI_EN_GBL_SMI_EN;

    #[test]
    fn the_smi_level_needs_a_status_with_its_enable() {
        assert!(!smi_level(0x0100), "trap status without its enable");
        assert!(smi_level(0x0101));
        assert!(!smi_level(0x0201));
        assert!(!smi_level(LEGSUP_USBIRQS));
        assert!(smi_level(LEGSUP_USBIRQS | LEGSUP_USBSMIEN));
        assert_eq!(report_smi(true, LEGSUP_USBSMIEN), Some(SmiCause::Usb));
        assert_eq!(report_smi(false, LEGSUP_USBSMIEN), None);
        assert_eq!(report_smi(true, 0), None);
    }

    #[test]
    fn traps_cover_the_two_ports_in_both_directions() {
        assert_eq!([(0x60, false), (0x60, true), (0x64, false), (0x64, true)].map(|(p, w)| trap_index(p, w)), [Some(0), Some(1), Some(2), Some(3)]);
        assert_eq!(trap_index(0x61, true), None);
        assert_eq!(trap_smi(0x64, true), SmiCause::IoTrap { port: 0x64, write: true });
    }

    #[test]
    fn the_ich9_raises_with_level_legacy_usb_en_and_gbl_smi_en() {
        let mut s = SmiLatch::default();
        let en = SMI_EN_GBL_SMI_EN | SMI_EN_LEGACY_USB_EN;
        ich9_legacy_usb(SMI_EN_GBL_SMI_EN, true, Some(SmiCause::Usb), Ticks(1), &mut s);
        ich9_legacy_usb(SMI_EN_LEGACY_USB_EN, true, Some(SmiCause::Usb), Ticks(1), &mut s);
        ich9_legacy_usb(en, false, Some(SmiCause::Usb), Ticks(1), &mut s);
        ich9_legacy_usb(en, true, None, Ticks(1), &mut s);
        assert!(!s.is_pending());
        ich9_legacy_usb(en, true, Some(SmiCause::Usb), Ticks(2), &mut s);
        assert_eq!(s.drain_raised().collect::<Vec<_>>(), vec![(SmiCause::Usb, Ticks(2))]);
    }
}
