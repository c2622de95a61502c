//! APM SMIs: a write to APM_CNT (I/O port 0xB2) raises an SMI when the southbridge's APM
//! enable allows; the byte in APM_STS (0xB3) travels with it as the command's data. The
//! ports themselves are [`crate::devices::apm`]; the southbridge hands each APM_CNT write
//! here after taking out the commands it handles itself (ACPI enable/disable only set or clear
//! SCI_EN and raise no SMI, on both southbridges, as in QEMU).
//!
//! - ICH9 (Intel I/O Controller Hub 9 Family datasheet, doc. 316972, §13.7.1 "APM I/O Decode
//!   Register Details" and §13.8.3 "Power Management I/O Registers", SMI_EN and SMI_STS):
//!   SMI_EN.APMC_EN (bit 5) enables the SMI, SMI_EN.GBL_SMI_EN (bit 0) gates it, and the
//!   write sets SMI_STS.APM_STS (bit 5) whenever APMC_EN is set, even with GBL_SMI_EN clear.
//! - PIIX4 (Intel 82371AB PIIX4 datasheet, doc. 290562, §7.1 "PCI configuration registers
//!   (function 3)", DEVACTB): DEVACTB.APMC_EN (bit 25) enables the SMI; GLBCTL.SMI_EN does
//!   not gate it, as in QEMU and Bochs.

use super::{raise_ich9, SmiCause, SmiLatch};
use crate::chipset::q35::ich9_lpc::{SMI_EN_APMC_EN, SMI_STS_APM_STS};
use crate::clock::Ticks;

/// An APM_CNT write of `cmd` (with APM_STS `data`) on the ICH9: with APMC_EN, sets APM_STS in
/// `smi_sts` and raises the SMI if GBL_SMI_EN allows.
pub fn ich9_apm_cnt(smi_en: u32, smi_sts: &mut u32, cmd: u8, data: u8, now: Ticks, smi: &mut SmiLatch) {
    if smi_en & SMI_EN_APMC_EN != 0 {
        *smi_sts |= SMI_STS_APM_STS;
        raise_ich9(smi_en, SmiCause::Apm { cmd, data }, now, smi);
    }
}

/// An APM_CNT write of `cmd` (with APM_STS `data`) on the PIIX4: raises the SMI with
/// DEVACTB.APMC_EN (`apmc_en`).
pub fn piix4_apm_cnt(apmc_en: bool, cmd: u8, data: u8, now: Ticks, smi: &mut SmiLatch) {
    if apmc_en {
        smi.raise(SmiCause::Apm { cmd, data }, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chipset::q35::ich9_lpc::SMI_EN_GBL_SMI_EN;

    #[test]
    fn ich9_needs_apmc_en_for_the_status_and_gbl_smi_en_for_the_smi() {
        let (mut sts, mut s) = (0, SmiLatch::default());
        ich9_apm_cnt(SMI_EN_GBL_SMI_EN, &mut sts, 1, 2, Ticks(1), &mut s);
        assert_eq!((sts, s.is_pending()), (0, false));
        ich9_apm_cnt(SMI_EN_APMC_EN, &mut sts, 1, 2, Ticks(1), &mut s);
        assert_eq!((sts, s.is_pending()), (SMI_STS_APM_STS, false));
        ich9_apm_cnt(SMI_EN_APMC_EN | SMI_EN_GBL_SMI_EN, &mut sts, 1, 2, Ticks(3), &mut s);
        assert_eq!(s.drain_raised().collect::<Vec<_>>(), vec![(SmiCause::Apm { cmd: 1, data: 2 }, Ticks(3))]);
    }

    #[test]
    fn piix4_raises_with_apmc_en_only() {
        let mut s = SmiLatch::default();
        piix4_apm_cnt(false, 1, 0, Ticks(1), &mut s);
        assert!(!s.is_pending());
        piix4_apm_cnt(true, 1, 0x33, Ticks(2), &mut s);
        assert_eq!(s.drain_raised().collect::<Vec<_>>(), vec![(SmiCause::Apm { cmd: 1, data: 0x33 }, Ticks(2))]);
    }
}
