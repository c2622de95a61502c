//! Guest code the host runs outside SMM: a platform's boot code handing a driver control and
//! waiting for it to come back, as the SMM core's first dispatch runs drivers' entry points
//! outside SMM (edk2's PiSmmIpl calls SmiManage directly while no SMM entry point is
//! registered). SMIs the code raises (an SMI IPI to its own CPU, an APM write) are taken as
//! they come, as on the machine.

use crate::{ExitReason, Machine};

/// How code the host started outside SMM went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutsideOutcome {
    /// The CPU halted outside SMM: the code is done.
    Halted {
        /// Instructions retired, SMIs taken on the way included.
        instructions: u64,
    },
    /// The run ended otherwise (a shutdown, a reset, over the budget...).
    Fault(String),
}

impl Machine {
    /// Wakes the CPU at `rip` (same CS and mode) outside SMM and runs it until it halts
    /// outside SMM or `budget` instructions have retired, calling `on_breakpoint` each time it
    /// stops at one of [`Machine::set_breakpoints`]'s addresses (an error ends the run as a
    /// fault with that message).
    pub fn run_outside_smm(&mut self, rip: u64, budget: u64, on_breakpoint: &mut dyn FnMut(&mut Machine) -> Result<(), String>) -> OutsideOutcome {
        if self.cpu.smm {
            return OutsideOutcome::Fault("the CPU is in SMM".into());
        }
        self.cpu.rip = rip;
        self.cpu.halted = false;
        let start = self.cpu.icount;
        loop {
            let done = self.cpu.icount - start;
            if done >= budget {
                let smm = if self.cpu.smm { " in SMM" } else { "" };
                return OutsideOutcome::Fault(format!("the code did not halt within {budget} instructions (the CPU is at {:#x}{smm})", self.cpu.rip));
            }
            let s = self.run(budget - done);
            match s.exit {
                ExitReason::Halted if !self.cpu.smm => return OutsideOutcome::Halted { instructions: self.cpu.icount - start },
                ExitReason::Breakpoint => {
                    if let Err(why) = on_breakpoint(self) {
                        return OutsideOutcome::Fault(why);
                    }
                }
                ExitReason::Paused | ExitReason::InstructionLimit => {}
                other => {
                    let detail = other.detail().map_or(String::new(), |d| format!(": {d}"));
                    return OutsideOutcome::Fault(format!("the run ended with {}{detail}", other.name()));
                }
            }
        }
    }
}
