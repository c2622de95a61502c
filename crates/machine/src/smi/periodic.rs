//! The ICH9 periodic SMI: a timer that runs from reset and expires every 8, 16, 32 or 64
//! seconds. Each expiry sets SMI_STS.PERIODIC_STS (bit 14); with SMI_EN.PERIODIC_EN (bit 14)
//! it raises an SMI, gated by SMI_EN.GBL_SMI_EN (bit 0). GEN_PMCON_1.PER_SMI_SEL (bits 1:0)
//! selects the period: 00 64 s, 01 32 s, 10 16 s, 11 8 s.
//!
//! Follows the Intel I/O Controller Hub 9 (ICH9) Family datasheet (doc. 316972): §13.1
//! "LPC Interface Bridge Registers (D31:F0)" (GEN_PMCON_1) and §13.8.3 "Power Management I/O
//! Registers" (SMI_EN, SMI_STS). The LPC bridge ([`crate::chipset::q35::ich9_lpc`]) keeps the
//! registers and the [`super::timer::SmiTimer`]; this file decides what an expiry does.

use super::{raise_ich9, SmiCause, SmiLatch};
use crate::chipset::q35::ich9_lpc::{GEN_PMCON_1_PER_SMI_SEL, SMI_EN_GBL_SMI_EN, SMI_EN_PERIODIC_EN, SMI_STS_PERIODIC_STS};
use crate::clock::Ticks;

/// The period in nanoseconds GEN_PMCON_1 selects: 8 s * 2^(3 - PER_SMI_SEL).
pub fn period_ns(gen_pmcon_1: u16) -> u64 {
    let sel = gen_pmcon_1 & GEN_PMCON_1_PER_SMI_SEL;
    8_000_000_000u64 << (3 - sel)
}

/// Whether an expiry raises an SMI under `smi_en` (PERIODIC_EN and GBL_SMI_EN).
pub fn raises(smi_en: u32) -> bool {
    smi_en & (SMI_EN_GBL_SMI_EN | SMI_EN_PERIODIC_EN) == SMI_EN_GBL_SMI_EN | SMI_EN_PERIODIC_EN
}

/// The timer expired at `now`: sets PERIODIC_STS and raises the SMI as `smi_en` allows.
pub fn expired(smi_en: u32, smi_sts: &mut u32, now: Ticks, smi: &mut SmiLatch) {
    *smi_sts |= SMI_STS_PERIODIC_STS;
    if smi_en & SMI_EN_PERIODIC_EN != 0 {
        raise_ich9(smi_en, SmiCause::Periodic, now, smi);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_smi_sel_picks_the_period() {
        assert_eq!([0, 1, 2, 3].map(period_ns), [64, 32, 16, 8].map(|s| s * 1_000_000_000));
        assert_eq!(period_ns(0xfffc), period_ns(0), "other GEN_PMCON_1 bits do not count");
    }

    #[test]
    fn an_expiry_sets_the_status_and_raises_with_both_enables() {
        let (mut sts, mut s) = (0, SmiLatch::default());
        expired(SMI_EN_GBL_SMI_EN, &mut sts, Ticks(1), &mut s);
        assert_eq!((sts, s.is_pending()), (SMI_STS_PERIODIC_STS, false));
        assert!(!raises(SMI_EN_GBL_SMI_EN) && !raises(SMI_EN_PERIODIC_EN));
        expired(SMI_EN_PERIODIC_EN, &mut sts, Ticks(1), &mut s);
        assert!(!s.is_pending());
        assert!(raises(SMI_EN_GBL_SMI_EN | SMI_EN_PERIODIC_EN));
        expired(SMI_EN_GBL_SMI_EN | SMI_EN_PERIODIC_EN, &mut sts, Ticks(2), &mut s);
        assert_eq!(s.drain_raised().collect::<Vec<_>>(), vec![(SmiCause::Periodic, Ticks(2))]);
    }
}
