//! SMI IPIs: a write to the local APIC's ICR low dword with delivery mode SMI (010b) that
//! addresses this CPU (shorthand self or all-including-self, or a physical destination equal
//! to the APIC ID or the broadcast 0xFF) delivers an SMI. No enable or status bit gates it:
//! the SMI is raised on the CPU's SMI# latch directly, not through the southbridge.
//!
//! Follows the Intel 64 and IA-32 Architectures Software Developer's Manual, Vol. 3A, §11.6.1
//! "Interrupt Command Register (ICR)" (delivery mode SMI, the vector field must be 00h) and
//! Vol. 3C §34.2 "System Management Interrupt" (an SMI may be delivered through the local
//! APIC). The local APIC ([`crate::devices::lapic`]) keeps the ICR; the board passes its
//! action here.

use super::{SmiCause, SmiLatch};
use crate::clock::Ticks;
use crate::devices::lapic::{LapicAction, ICR_DELIVERY_MODE_SMI};

/// Whether an ICR write with delivery `mode` delivers an SMI to this CPU (`to_self`: the
/// destination includes it).
pub fn is_smi_to_self(mode: u32, to_self: bool) -> bool {
    mode == ICR_DELIVERY_MODE_SMI && to_self
}

/// The local APIC answered a write with `action` at `now`: an SMI to self raises the SMI.
pub fn lapic_written(action: Option<LapicAction>, now: Ticks, smi: &mut SmiLatch) {
    if action == Some(LapicAction::SmiSelf) {
        smi.raise(SmiCause::Ipi, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_smi_to_self_raises() {
        assert!(is_smi_to_self(ICR_DELIVERY_MODE_SMI, true));
        assert!(!is_smi_to_self(ICR_DELIVERY_MODE_SMI, false));
        assert!(!is_smi_to_self(0, true), "fixed delivery");
        let mut s = SmiLatch::default();
        lapic_written(None, Ticks(1), &mut s);
        assert!(!s.is_pending());
        lapic_written(Some(LapicAction::SmiSelf), Ticks(2), &mut s);
        assert_eq!(s.drain_raised().collect::<Vec<_>>(), vec![(SmiCause::Ipi, Ticks(2))]);
    }
}
