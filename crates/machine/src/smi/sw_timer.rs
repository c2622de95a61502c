//! The ICH9 software SMI timer: a one-shot timer the firmware starts by setting
//! SMI_EN.SWSMI_TMR_EN (bit 6) from 0 to 1 (clearing it stops the timer). When it expires it
//! sets SMI_STS.SWSMI_TMR_STS (bit 6) and raises an SMI, gated by SMI_EN.GBL_SMI_EN (bit 0).
//! GEN_PMCON_3.SWSMI_RATE_SEL (bits 7:6) selects the delay: 00 1.5 ms, 01 16 ms, 10 32 ms,
//! 11 64 ms.
//!
//! Follows the Intel I/O Controller Hub 9 (ICH9) Family datasheet (doc. 316972): §13.1
//! "LPC Interface Bridge Registers (D31:F0)" (GEN_PMCON_3) and §13.8.3 "Power Management I/O
//! Registers" (SMI_EN, SMI_STS). The LPC bridge ([`crate::chipset::q35::ich9_lpc`]) keeps the
//! registers and the [`SmiTimer`]; this file starts and stops it and decides what an expiry
//! does.

use super::timer::SmiTimer;
use super::{raise_ich9, SmiCause, SmiLatch};
use crate::chipset::q35::ich9_lpc::{GEN_PMCON_3_SWSMI_RATE_SEL_SHIFT, SMI_EN_GBL_SMI_EN, SMI_EN_SWSMI_TMR_EN, SMI_STS_SWSMI_TMR_STS};
use crate::clock::Ticks;

/// The delay in nanoseconds GEN_PMCON_3 selects: 1.5 ms, or 8 ms * 2^SWSMI_RATE_SEL.
pub fn period_ns(gen_pmcon_3: u16) -> u64 {
    let sel = (gen_pmcon_3 >> GEN_PMCON_3_SWSMI_RATE_SEL_SHIFT) & 3;
    if sel == 0 {
        1_500_000
    } else {
        8_000_000u64 << sel
    }
}

/// SMI_EN changed from `before` to `after` at `now`: SWSMI_TMR_EN 0 -> 1 starts the timer,
/// 1 -> 0 stops it.
pub fn smi_en_written(before: u32, after: u32, timer: &mut SmiTimer, now: Ticks) {
    match (before & SMI_EN_SWSMI_TMR_EN != 0, after & SMI_EN_SWSMI_TMR_EN != 0) {
        (false, true) => timer.arm(now),
        (true, false) => timer.disarm(),
        _ => {}
    }
}

/// Whether an expiry raises an SMI under `smi_en` (GBL_SMI_EN).
pub fn raises(smi_en: u32) -> bool {
    smi_en & SMI_EN_GBL_SMI_EN != 0
}

/// The timer expired at `now`: sets SWSMI_TMR_STS and raises the SMI as GBL_SMI_EN allows.
pub fn expired(smi_en: u32, smi_sts: &mut u32, now: Ticks, smi: &mut SmiLatch) {
    *smi_sts |= SMI_STS_SWSMI_TMR_STS;
    raise_ich9(smi_en, SmiCause::SwSmiTimer, now, smi);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swsmi_rate_sel_picks_the_delay() {
        assert_eq!([0u16, 1, 2, 3].map(|s| period_ns(s << 6)), [1_500_000, 16_000_000, 32_000_000, 64_000_000]);
    }

    #[test]
    fn the_enable_edge_starts_and_stops_the_timer() {
        let mut t = SmiTimer::new(10, false);
        smi_en_written(0, SMI_EN_SWSMI_TMR_EN, &mut t, Ticks(5));
        assert_eq!(t.deadline(), Some(Ticks(15)));
        smi_en_written(SMI_EN_SWSMI_TMR_EN, SMI_EN_SWSMI_TMR_EN, &mut t, Ticks(9));
        assert_eq!(t.deadline(), Some(Ticks(15)), "no edge, no restart");
        smi_en_written(SMI_EN_SWSMI_TMR_EN, 0, &mut t, Ticks(9));
        assert_eq!(t.deadline(), None);
    }

    #[test]
    fn an_expiry_sets_the_status_and_raises_with_gbl_smi_en() {
        let (mut sts, mut s) = (0, SmiLatch::default());
        expired(0, &mut sts, Ticks(1), &mut s);
        assert_eq!((sts, s.is_pending()), (SMI_STS_SWSMI_TMR_STS, false));
        expired(SMI_EN_GBL_SMI_EN, &mut sts, Ticks(2), &mut s);
        assert_eq!(s.drain_raised().collect::<Vec<_>>(), vec![(SmiCause::SwSmiTimer, Ticks(2))]);
    }
}
