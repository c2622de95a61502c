//! Why a CPU shut down: the typed reason behind [`crate::Exit::Shutdown`], with the text users
//! see in run summaries and traces as its `Display`.

use crate::exception::vector_name;
use crate::smm::RsmCheck;
use std::fmt;

/// What ended the CPU in the shutdown state (or, for [`ShutdownReason::Livelock`], what made
/// the machine's run loop give up on it as if it had).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    /// Delivering a double fault faulted (Intel SDM vol. 3A, table 6-5).
    TripleFault {
        /// The vectors whose delivery was attempted, in order, ending with #DF (two faults
        /// that combined into a double fault appear as one #DF).
        chain: Vec<u8>,
        /// The exception raised while delivering that #DF.
        fault: u8,
        /// CS selector of the faulting instruction or the interrupted one.
        cs: u16,
        /// RIP of the faulting instruction or the interrupted one.
        rip: u64,
        /// The CPU mode's name ("real", "protected32", "long"...).
        mode: &'static str,
    },
    /// Exception delivery kept faulting without reaching a double fault within the attempts the
    /// CPU makes for one event.
    Undeliverable {
        /// The vectors whose delivery was attempted, in order.
        chain: Vec<u8>,
        /// The exception still to deliver when the CPU gave up.
        vector: u8,
    },
    /// RSM found the saved state inconsistent (Intel SDM vol. 3C ch. 34).
    RsmCheck(RsmCheck),
    /// An unrecoverable machine check.
    MachineCheck(MachineCheck),
    /// The guest re-faults forever: the machine's run loop saw `events` events delivered
    /// without an instruction retiring.
    Livelock {
        /// Events (faults, interrupts, SMI entries) delivered in a row without a retirement.
        events: u64,
        /// CS selector where the guest was stuck.
        cs: u16,
        /// RIP where the guest was stuck.
        rip: u64,
        /// The CPU mode's name.
        mode: &'static str,
    },
}

/// The causes of an unrecoverable machine check the CPU models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineCheck {
    /// SMM_CODE_CHK_EN is set and SMM code was fetched at `phys`, outside SMRR (Intel SDM
    /// vol. 3C, 34.16).
    SmmCodeOutsideSmrr {
        /// Physical address of the fetch.
        phys: u64,
    },
}

impl fmt::Display for ShutdownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShutdownReason::TripleFault { fault, cs, rip, mode, .. } => {
                write!(f, "triple fault: {} while delivering #DF at {cs:04x}:{rip:x} in {mode} mode", vector_name(*fault))
            }
            ShutdownReason::Undeliverable { vector, .. } => write!(f, "shutdown: could not deliver {}", vector_name(*vector)),
            ShutdownReason::RsmCheck(check) => write!(f, "shutdown: RSM found an invalid saved state: {check}"),
            ShutdownReason::MachineCheck(mc) => write!(f, "machine check: {mc}"),
            ShutdownReason::Livelock { events, cs, rip, mode } => {
                write!(f, "guest livelock: {events} events delivered at {cs:04x}:{rip:#x} ({mode} mode) without an instruction retiring")
            }
        }
    }
}

impl fmt::Display for MachineCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MachineCheck::SmmCodeOutsideSmrr { phys } => {
                write!(f, "SMM code fetch at physical {phys:#x}, outside SMRR, with SMM_CODE_CHK_EN set")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exception::{DF, GP, PF, UD};

    // The texts run summaries, traces and audit reports print.
    #[test]
    fn each_reason_prints_the_text_users_see() {
        let cases = [
            (
                ShutdownReason::TripleFault { chain: vec![UD, GP, DF], fault: PF, cs: 0x8, rip: 0x1234, mode: "protected32" },
                "triple fault: #PF while delivering #DF at 0008:1234 in protected32 mode",
            ),
            (ShutdownReason::Undeliverable { chain: vec![UD; 8], vector: 0x40 }, "shutdown: could not deliver vector 0x40"),
            (
                ShutdownReason::RsmCheck(RsmCheck::Cr0PgWithoutPe { cr0: 0x8000_0010 }),
                "shutdown: RSM found an invalid saved state: CR0 0x80000010 has PG set without PE",
            ),
            (
                ShutdownReason::MachineCheck(MachineCheck::SmmCodeOutsideSmrr { phys: 0x5000 }),
                "machine check: SMM code fetch at physical 0x5000, outside SMRR, with SMM_CODE_CHK_EN set",
            ),
            (
                ShutdownReason::Livelock { events: 1048576, cs: 0xf000, rip: 0xfff0, mode: "real" },
                "guest livelock: 1048576 events delivered at f000:0xfff0 (real mode) without an instruction retiring",
            ),
        ];
        for (reason, text) in cases {
            assert_eq!(reason.to_string(), text);
        }
    }
}
