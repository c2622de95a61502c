//! System Management Mode in the CPU (Intel SDM vol. 3C chapter 34; AMD APM vol. 2
//! chapter 10), one behaviour per file:
//! - `regs`: the SMM registers and the hidden state kept from entry to RSM;
//! - `latch`: the SMI latch;
//! - `entry`: SMM entry (state save and the entry state);
//! - `save_area`: the state-save map's place in SMRAM and its copy to and from the CPU;
//! - `io_misc`: the IOMisc / I/O trap dword describing the I/O instruction that raised an SMI;
//! - `rsm`: RSM, with its consistency checks in `rsm_checks`;
//! - `relocation`: SMBASE relocation;
//! - `io_restart`: I/O-instruction restart;
//! - `auto_halt`: auto-HALT restart;
//! - `smrr`: the CPU-side SMRAM protection (Intel SMRR, AMD ASeg/TSeg);
//! - `code_check`: SMM_CODE_CHK (SMM code fetches outside SMRR);
//! - [`savestate`]: the layouts of the three save-state maps.
//!
//! State that must survive from entry to RSM and that real CPUs keep in hidden registers:
//! 1. whether NMIs were already blocked when the SMI arrived (RSM leaves them blocked then);
//! 2. the I/O instruction that raised a synchronous SMI, so RSM can re-execute it;
//! 3. whether the SMI interrupted HLT;
//! 4. the instruction count at entry, for the time spent in SMM.

pub mod savestate;

mod auto_halt;
mod code_check;
mod entry;
mod io_misc;
mod io_restart;
mod latch;
mod regs;
mod relocation;
mod rsm;
mod rsm_checks;
mod save_area;
mod smrr;

pub use code_check::{FEATURE_CONTROL_LOCK, SMM_CODE_CHK_EN};
pub use io_restart::IoRecord;
pub use regs::SmmRegs;
pub use relocation::DEFAULT_SMBASE;
pub use rsm::rsm;
pub use rsm_checks::RsmCheck;
pub use smrr::{CpuSmramView, AMD_ACLOSE, AMD_AVALID, AMD_TCLOSE, AMD_TVALID, HWCR_SMMLOCK, SMRR_VALID};
