//! The SMI latch: an SMI that arrives is held until the CPU takes it at an instruction boundary
//! outside SMM; one more SMI arriving in SMM stays latched until after RSM (Intel SDM vol. 3C
//! ch. 34; AMD APM vol. 2 ch. 10).

use crate::Cpu;

impl Cpu {
    /// Latches an SMI request. It is taken at the next instruction boundary outside SMM.
    pub fn latch_smi(&mut self, io_trap: bool) {
        if !self.smm_regs.smi_latched {
            self.smm_regs.smi_io_trap = io_trap;
        }
        self.smm_regs.smi_latched = true;
    }
}
