//! The single-step trap: with EFLAGS.TF set when an instruction begins, a #DB trap follows it
//! (SDM vol. 3, 18.3.1.4), with DR6.BS set and the saved EIP at the next instruction.
//!
//! TF changes only where a block ends (POPF, IRET, interrupt delivery, task switches), so the
//! run loop samples it once per block and then runs that block one instruction long. Not
//! modelled: a REP string instruction traps once, after its last iteration, not after each.

use crate::bus::Bus;
use crate::decode::Insn;
use crate::exception::{Exc, Source, DB};
use crate::Cpu;
use iced_x86::{Mnemonic, Register};

/// DR6.BS: the #DB was a single-step trap.
pub const DR6_BS: u64 = 1 << 14;

impl Cpu {
    /// After `d` retired with TF set when it began: takes the single-step trap unless the
    /// instruction entered a handler itself (INT n, INT3, INTO, INT1 clear TF on the way in)
    /// or loaded SS, which holds debug exceptions back one instruction. Returns whether a trap
    /// was taken.
    pub(crate) fn single_step_trap(&mut self, bus: &mut dyn Bus, d: &Insn) -> bool {
        if matches!(d.i.mnemonic(), Mnemonic::Int | Mnemonic::Int3 | Mnemonic::Into | Mnemonic::Int1) {
            return false;
        }
        if d.i.op_count() > 0 && d.i.op0_register() == Register::SS {
            return false;
        }
        self.dr[6] |= DR6_BS;
        self.raise(bus, Exc::new(DB), Source::Fault);
        true
    }
}
