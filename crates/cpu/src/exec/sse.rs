//! SSE/SSE2: the moves and integer operations compilers emit, MXCSR, FXSAVE/FXRSTOR, gated by
//! CR0.EM/TS and CR4.OSFXSR (SDM vol. 3, 13.1).

use crate::exec::Handler;
use iced_x86::Instruction;

/// The handler for an SSE instruction, or None if it is not one this module implements.
pub fn handler(_i: &Instruction) -> Option<Handler> {
    None
}
