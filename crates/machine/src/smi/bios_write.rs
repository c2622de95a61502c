//! BIOS-write SMIs: software sets BIOS_CNTL.BIOSWE (bit 0, BIOS write enable) from 0 to 1
//! while BIOS_CNTL.BLE (bit 1, BIOS lock enable) is set. The ICH9 then sets
//! TCO1_STS.BIOSWR_STS (bit 8) and raises an SMI with SMI_EN.TCO_EN (bit 13), gated by
//! SMI_EN.GBL_SMI_EN (bit 0), so SMM code can clear BIOSWE again before the flash is written.
//!
//! Follows the Intel I/O Controller Hub 9 (ICH9) Family datasheet (doc. 316972): §13.1.29
//! "BIOS_CNTL—BIOS Control Register", §13.9 "TCO Registers" (TCO1_STS) and §13.8.3 "Power
//! Management I/O Registers" (SMI_EN). The LPC bridge ([`crate::chipset::q35::ich9_lpc`])
//! keeps BIOS_CNTL (with its lock-once bits), TCO1_STS and SMI_EN.

use super::{raise_ich9, SmiCause, SmiLatch};
use crate::chipset::q35::ich9_lpc::{BIOS_CNTL_BIOSWE, BIOS_CNTL_BLE, SMI_EN_TCO_EN, TCO1_STS_BIOSWR};
use crate::clock::Ticks;

/// Whether a BIOS_CNTL change from `before` to `after` is a BIOS write attempt: BIOSWE
/// 0 -> 1 with BLE set.
pub fn is_attempt(before: u8, after: u8) -> bool {
    before & BIOS_CNTL_BIOSWE == 0 && after & BIOS_CNTL_BIOSWE != 0 && after & BIOS_CNTL_BLE != 0
}

/// BIOS_CNTL changed from `before` to `after` at `now`: on an attempt, sets BIOSWR_STS in
/// `tco1_sts` and raises the SMI as TCO_EN and GBL_SMI_EN in `smi_en` allow.
pub fn bios_cntl_written(before: u8, after: u8, smi_en: u32, tco1_sts: &mut u16, now: Ticks, smi: &mut SmiLatch) {
    if !is_attempt(before, after) {
        return;
    }
    *tco1_sts |= TCO1_STS_BIOSWR;
    if smi_en & SMI_EN_TCO_EN != 0 {
        raise_ich9(smi_en, SmiCause::BiosWrite, now, smi);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chipset::q35::ich9_lpc::SMI_EN_GBL_SMI_EN;

    #[test]
    fn only_a_rising_bioswe_under_ble_is_an_attempt() {
        let (we, ble) = (BIOS_CNTL_BIOSWE, BIOS_CNTL_BLE);
        assert!(is_attempt(ble, ble | we) && is_attempt(0, ble | we));
        assert!(!is_attempt(0, we), "BLE clear");
        assert!(!is_attempt(ble | we, ble | we), "no edge");
        assert!(!is_attempt(ble | we, ble));
    }

    #[test]
    fn an_attempt_sets_bioswr_sts_and_raises_with_tco_en_and_gbl_smi_en() {
        let (mut tco, mut s) = (0, SmiLatch::default());
        let ble = BIOS_CNTL_BLE;
        bios_cntl_written(ble, ble | BIOS_CNTL_BIOSWE, SMI_EN_GBL_SMI_EN, &mut tco, Ticks(1), &mut s);
        assert_eq!((tco, s.is_pending()), (TCO1_STS_BIOSWR, false));
        bios_cntl_written(ble, ble, SMI_EN_GBL_SMI_EN | SMI_EN_TCO_EN, &mut tco, Ticks(1), &mut s);
        assert!(!s.is_pending());
        bios_cntl_written(ble, ble | BIOS_CNTL_BIOSWE, SMI_EN_GBL_SMI_EN | SMI_EN_TCO_EN, &mut tco, Ticks(2), &mut s);
        assert_eq!(s.drain_raised().collect::<Vec<_>>(), vec![(SmiCause::BiosWrite, Ticks(2))]);
    }
}
