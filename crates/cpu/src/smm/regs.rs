//! The CPU's SMM registers (SMBASE, SMRR, SMM_FEATURE_CONTROL, AMD SMM_ADDR/SMM_MASK/HWCR)
//! and the hidden state SMM entry keeps for RSM.

use super::io_restart::IoRecord;
use super::relocation::DEFAULT_SMBASE;

/// The CPU's SMM registers and hidden state.
#[derive(Clone, Debug)]
pub struct SmmRegs {
    /// SMBASE: SMM entry runs at SMBASE + 0x8000 and saves state below SMBASE + 0x10000.
    pub smbase: u32,
    /// An SMI was latched (arrived while in SMM, or not yet taken).
    pub smi_latched: bool,
    /// The latched SMI came from an I/O trap on the last I/O instruction.
    pub smi_io_trap: bool,
    /// NMIs were blocked when the SMI arrived.
    pub inside_nmi: bool,
    /// SMIs taken since reset (MSR_SMI_COUNT).
    pub smi_count: u64,
    /// Instruction count at SMM entry.
    pub entry_icount: u64,
    /// The SMI interrupted HLT (auto-HALT restart is armed).
    pub from_halt: bool,
    /// The I/O instruction that raised the current SMI.
    pub io: Option<IoRecord>,
    /// The last I/O instruction executed.
    pub last_io: Option<IoRecord>,
    /// IA32_SMRR_PHYSBASE (Intel).
    pub smrr_base: u64,
    /// IA32_SMRR_PHYSMASK (Intel), with the valid bit.
    pub smrr_mask: u64,
    /// MSR_SMM_FEATURE_CONTROL: LOCK bit 0, SMM_CODE_CHK_EN bit 2.
    pub feature_control: u64,
    /// AMD SMM_ADDR: the TSeg base.
    pub amd_addr: u64,
    /// AMD SMM_MASK: ASeg/TSeg valid and close bits and the TSeg mask.
    pub amd_mask: u64,
    /// AMD HWCR (bit 0: SmmLock).
    pub hwcr: u64,
}

impl Default for SmmRegs {
    fn default() -> Self {
        SmmRegs {
            smbase: DEFAULT_SMBASE,
            smi_latched: false,
            smi_io_trap: false,
            inside_nmi: false,
            smi_count: 0,
            entry_icount: 0,
            from_halt: false,
            io: None,
            last_io: None,
            smrr_base: 0,
            smrr_mask: 0,
            feature_control: 0,
            amd_addr: 0,
            amd_mask: 0,
            hwcr: 0,
        }
    }
}
