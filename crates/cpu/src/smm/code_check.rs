//! SMM_CODE_CHK: with MSR_SMM_FEATURE_CONTROL.SMM_CODE_CHK_EN set, an SMM code fetch outside
//! the SMRR range is an unrecoverable machine check (SDM vol. 3C, 34.16; the MSR's bits as in
//! SDM vol. 4 and edk2's SmmCpuFeaturesLib).

use crate::exception::Exc;
use crate::{Cpu, MachineCheck, ShutdownReason};

/// MSR_SMM_FEATURE_CONTROL.LOCK: the MSR is read-only until reset (SDM vol. 4, table 2-...;
/// edk2 SmmCpuFeaturesLib).
pub const FEATURE_CONTROL_LOCK: u64 = 1 << 0;
/// MSR_SMM_FEATURE_CONTROL.SMM_CODE_CHK_EN: SMM code fetches outside SMRR are machine checks.
pub const SMM_CODE_CHK_EN: u64 = 1 << 2;

impl Cpu {
    /// Checks a code fetch at physical `phys` against SMM_CODE_CHK: a fetch in SMM outside
    /// SMRR with the check enabled shuts the CPU down with a machine check.
    #[inline]
    pub(crate) fn smm_code_check(&mut self, phys: u64) -> Result<(), Exc> {
        if self.smm && self.smm_regs.feature_control & SMM_CODE_CHK_EN != 0 && !self.in_smrr(phys) {
            self.shutdown = Some(ShutdownReason::MachineCheck(MachineCheck::SmmCodeOutsideSmrr { phys }));
            return Err(Exc::new(crate::exception::MC));
        }
        Ok(())
    }
}
