//! Thermal SMIs: the built-in platform's hardware monitor ([`crate::devices::hwmon`]) drives
//! its SMI# wire when the temperature crosses its HIGH limit upward or its CRIT limit, with
//! CONFIG.START (bit 0) and CONFIG.SMI_EN (bit 1) set (the monitor's register map is
//! smmlab's own, docs/builtin-platform.md; INT_STS records the crossing). The wire is the
//! ICH9's GPI 1: an assertion sets ALT_GP_SMI_STS bit 1 and raises an SMI with
//! ALT_GP_SMI_EN bit 1, gated by SMI_EN.GBL_SMI_EN (bit 0); SMI_STS.GPI_STS (bit 10) reads 1
//! while a status bit and its enable are both set.
//!
//! Follows the Intel I/O Controller Hub 9 (ICH9) Family datasheet (doc. 316972), §13.8.3
//! "Power Management I/O Registers": ALT_GP_SMI_EN (§13.8.3.12), ALT_GP_SMI_STS
//! (§13.8.3.13), SMI_EN and SMI_STS. The monitor keeps its registers and the LPC bridge
//! ([`crate::chipset::q35::ich9_lpc`]) keeps ALT_GP_SMI_EN/STS.

use super::{raise_ich9, SmiCause, SmiLatch};
use crate::chipset::q35::ich9_lpc::{Ich9Lpc, GPI_HWMON};
use crate::devices::hwmon::{LimitCrossed, CONFIG_SMI_EN, CONFIG_START};
use crate::clock::Ticks;

/// Whether the monitor drives its SMI# for a crossing under CONFIG (START and SMI_EN).
pub fn monitor_asserts(config: u8) -> bool {
    config & (CONFIG_START | CONFIG_SMI_EN) == CONFIG_START | CONFIG_SMI_EN
}

/// GPI `n` of the ICH9 asserted at `now`: sets bit n of `alt_gp_smi_sts` and raises `cause`
/// when bit n of `alt_gp_smi_en` (and GBL_SMI_EN in `smi_en`) allow.
pub fn ich9_gpi(n: u8, cause: SmiCause, alt_gp_smi_en: u16, alt_gp_smi_sts: &mut u16, smi_en: u32, now: Ticks, smi: &mut SmiLatch) {
    let bit = 1u16 << (n & 15);
    *alt_gp_smi_sts |= bit;
    if alt_gp_smi_en & bit != 0 {
        raise_ich9(smi_en, cause, now, smi);
    }
}

/// The monitor reported `hit`: if its SMI# asserted, the LPC bridge's GPI 1 sees it.
pub fn limit_crossed(hit: &LimitCrossed, lpc: &mut Ich9Lpc, smi: &mut SmiLatch) {
    if hit.smi {
        lpc.gpi(GPI_HWMON, SmiCause::Thermal, hit.at, smi);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chipset::q35::ich9_lpc::SMI_EN_GBL_SMI_EN;

    #[test]
    fn the_monitor_asserts_with_start_and_smi_en() {
        assert!(monitor_asserts(CONFIG_START | CONFIG_SMI_EN));
        assert!(!monitor_asserts(CONFIG_SMI_EN) && !monitor_asserts(CONFIG_START));
    }

    #[test]
    fn a_gpi_sets_its_status_and_raises_with_its_enable() {
        let (mut sts, mut s) = (0, SmiLatch::default());
        ich9_gpi(1, SmiCause::Thermal, 0, &mut sts, SMI_EN_GBL_SMI_EN, Ticks(1), &mut s);
        ich9_gpi(1, SmiCause::Thermal, 2, &mut sts, 0, Ticks(1), &mut s);
        assert_eq!((sts, s.is_pending()), (2, false));
        ich9_gpi(1, SmiCause::Thermal, 2, &mut sts, SMI_EN_GBL_SMI_EN, Ticks(2), &mut s);
        assert_eq!(s.drain_raised().collect::<Vec<_>>(), vec![(SmiCause::Thermal, Ticks(2))]);
    }
}
