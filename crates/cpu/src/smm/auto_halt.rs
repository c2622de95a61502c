//! Auto-HALT restart: an SMI that interrupts HLT sets bit 0 of the auto-HALT restart field;
//! RSM with the bit still set returns to the halted state, with it cleared to the instruction
//! after HLT (Intel SDM vol. 3C ch. 34; AMD APM vol. 2 ch. 10).

use super::savestate::Image;
use crate::Cpu;

impl Cpu {
    /// At SMM entry: leaves the HLT state, remembering whether the SMI interrupted it.
    pub(super) fn leave_halt_for_smm(&mut self) -> bool {
        let from_halt = self.halted;
        self.halted = false;
        self.smm_regs.from_halt = from_halt;
        from_halt
    }

    /// At RSM: returns to the HLT state if the SMI interrupted HLT and the handler kept bit 0 set
    /// (an I/O restart wins). Returns whether it did.
    pub(super) fn auto_halt_restart(&mut self, img: &Image, io_restarted: bool) -> bool {
        // Auto-HALT restart: bit 0 still set returns to the halted state.
        let mut halt_restarted = false;
        if std::mem::replace(&mut self.smm_regs.from_halt, false) && img.auto_halt & 1 != 0 && !io_restarted {
            self.halted = true;
            halt_restarted = true;
        }
        halt_restarted
    }
}
