//! Memory-error SMIs: the MCH's ECC logic detects a DRAM error and, when its SMI command
//! register asks for it, sends an SMI message to the ICH over DMI; the ICH records it in
//! TCO1_STS.DMISMI_STS (bit 10) and raises an SMI with SMI_EN.TCO_EN (bit 13), gated by
//! SMI_EN.GBL_SMI_EN (bit 0).
//!
//! - MCH (Intel 3 Series Express Chipset Family datasheet, §5.1 "DRAM Controller Registers
//!   (D0:F0)": ERRSTS, SMICMD): SMICMD.DSESMI (bit 0) asks for the SMI on a single-bit
//!   (correctable) error, SMICMD.DMESMI (bit 1) on a multiple-bit (uncorrectable) one. The MCH
//!   ([`crate::chipset::q35::mch`]) keeps ERRSTS, DEAP and CECNT.
//! - ICH9 (Intel I/O Controller Hub 9 Family datasheet, doc. 316972, §13.9 "TCO Registers",
//!   TCO1_STS, and §13.8.3 "Power Management I/O Registers", SMI_EN): the LPC bridge
//!   ([`crate::chipset::q35::ich9_lpc`]) keeps TCO1_STS and SMI_EN.

use super::{raise_ich9, SmiCause, SmiLatch};
use crate::chipset::q35::ich9_lpc::{SMI_EN_TCO_EN, TCO1_STS_DMISMI};
use crate::chipset::q35::mch::{SMICMD_DMESMI, SMICMD_DSESMI};
use crate::clock::Ticks;

/// Whether SMICMD asks the MCH to send the DMI SMI message for an error of this kind.
pub fn mch_sends_smi(smicmd: u16, uncorrectable: bool) -> bool {
    let en = if uncorrectable { SMICMD_DMESMI } else { SMICMD_DSESMI };
    smicmd & en != 0
}

/// The ICH9 received the MCH's SMI message at `now`: sets DMISMI_STS in `tco1_sts` and raises
/// the SMI as TCO_EN and GBL_SMI_EN in `smi_en` allow.
pub fn ich9_dmi_smi(smi_en: u32, tco1_sts: &mut u16, now: Ticks, smi: &mut SmiLatch) {
    *tco1_sts |= TCO1_STS_DMISMI;
    if smi_en & SMI_EN_TCO_EN != 0 {
        raise_ich9(smi_en, SmiCause::MemoryError, now, smi);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chipset::q35::ich9_lpc::SMI_EN_GBL_SMI_EN;

    #[test]
    fn smicmd_has_one_enable_per_error_kind() {
        assert!(mch_sends_smi(SMICMD_DSESMI, false) && !mch_sends_smi(SMICMD_DSESMI, true));
        assert!(mch_sends_smi(SMICMD_DMESMI, true) && !mch_sends_smi(SMICMD_DMESMI, false));
        assert!(!mch_sends_smi(0, false) && !mch_sends_smi(0, true));
    }

    #[test]
    fn the_dmi_message_sets_dmismi_sts_and_raises_with_tco_en_and_gbl_smi_en() {
        let (mut tco, mut s) = (0, SmiLatch::default());
        ich9_dmi_smi(SMI_EN_TCO_EN, &mut tco, Ticks(1), &mut s);
        ich9_dmi_smi(SMI_EN_GBL_SMI_EN, &mut tco, Ticks(1), &mut s);
        assert_eq!((tco, s.is_pending()), (TCO1_STS_DMISMI, false));
        ich9_dmi_smi(SMI_EN_GBL_SMI_EN | SMI_EN_TCO_EN, &mut tco, Ticks(2), &mut s);
        assert_eq!(s.drain_raised().collect::<Vec<_>>(), vec![(SmiCause::MemoryError, Ticks(2))]);
    }
}
