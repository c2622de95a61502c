//! The platforms smmlab emulates. A [`Machine`] owns the CPU and a board; the board implements
//! the CPU's [`cpu::Bus`] and routes every access to memory or a device.
//!
//! Only the `minimal` board exists so far: RAM, a flat ROM ending at 4 GiB with its last 64 KiB
//! aliased below 1 MiB, debugcon on port 0x402 and isa-debug-exit on port 0xF4.

pub mod devices;
pub mod memory;
pub mod minimal;

use cpu::{Cpu, CpuModel, Exit};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Host-side errors: bad input files or options. Guest misbehaviour is never an error.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("cannot read ROM file {path}: {source}")]
    RomRead { path: PathBuf, source: std::io::Error },
    #[error("ROM file {path} is empty")]
    RomEmpty { path: PathBuf },
    #[error("ROM file {path} is {size} bytes; a ROM must be a multiple of 64 KiB and at most 16 MiB")]
    RomSize { path: PathBuf, size: usize },
    #[error("memory size {0} MiB is out of range (1..=3072)")]
    MemorySize(u64),
}

/// Why a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// The guest wrote to isa-debug-exit.
    DebugExit,
    /// The CPU shut down (triple fault); the text says why.
    Shutdown(String),
    /// The instruction limit was reached.
    InstructionLimit,
    /// The CPU halted with interrupts that can never arrive.
    Halted,
}

impl ExitReason {
    /// A short machine-readable name.
    pub fn name(&self) -> &'static str {
        match self {
            ExitReason::DebugExit => "debug-exit",
            ExitReason::Shutdown(_) => "shutdown",
            ExitReason::InstructionLimit => "instruction-limit",
            ExitReason::Halted => "halted",
        }
    }
}

/// What a run did, for the summary.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub instructions: u64,
    pub smis: u64,
    pub smm_instructions: u64,
    pub guest_ns: u64,
    pub exit: ExitReason,
    /// The process exit status the run asks for.
    pub exit_code: i32,
    pub unimplemented: BTreeMap<String, u64>,
}

/// Options shared by every board.
#[derive(Clone, Debug)]
pub struct MachineConfig {
    pub memory_mib: u64,
    pub model: CpuModel,
    /// Guest instructions per second: guest time = instructions / rate.
    pub instructions_per_second: u64,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig { memory_mib: 128, model: CpuModel::default(), instructions_per_second: 1_000_000_000 }
    }
}

/// A CPU and the board it runs on.
pub struct Machine {
    pub cpu: Cpu,
    pub board: minimal::Minimal,
    pub config: MachineConfig,
}

impl Machine {
    /// A minimal machine running `rom`.
    pub fn minimal(config: MachineConfig, rom: Vec<u8>) -> Result<Self, MachineError> {
        if config.memory_mib == 0 || config.memory_mib > 3072 {
            return Err(MachineError::MemorySize(config.memory_mib));
        }
        let board = minimal::Minimal::new(config.memory_mib << 20, rom);
        Ok(Machine { cpu: Cpu::new(config.model), board, config })
    }

    /// Runs until the guest exits, shuts down, halts for good, or `max_instructions` retire.
    pub fn run(&mut self, max_instructions: u64) -> RunSummary {
        let start = self.cpu.icount;
        let exit = loop {
            let left = max_instructions.saturating_sub(self.cpu.icount - start);
            if left == 0 {
                break ExitReason::InstructionLimit;
            }
            match self.cpu.run(&mut self.board, left.min(1 << 24)) {
                Exit::InstructionLimit => continue,
                Exit::Stopped => break ExitReason::DebugExit,
                Exit::Shutdown(why) => break ExitReason::Shutdown(why),
                Exit::Halted => break ExitReason::Halted,
            }
        };
        let exit_code = match &exit {
            ExitReason::DebugExit => self.board.debug_exit.code().unwrap_or(0) as i32,
            ExitReason::Shutdown(_) => 3,
            ExitReason::InstructionLimit => 4,
            ExitReason::Halted => 5,
        };
        let instructions = self.cpu.icount;
        RunSummary {
            instructions,
            smis: 0,
            smm_instructions: 0,
            guest_ns: (instructions as u128 * 1_000_000_000 / self.config.instructions_per_second.max(1) as u128) as u64,
            exit,
            exit_code,
            unimplemented: self.cpu.unimplemented.clone(),
        }
    }
}

/// Reads and checks a ROM image.
pub fn load_rom(path: &Path) -> Result<Vec<u8>, MachineError> {
    let data = std::fs::read(path).map_err(|source| MachineError::RomRead { path: path.to_owned(), source })?;
    check_rom(path, &data)?;
    Ok(data)
}

/// Checks a ROM image's size.
pub fn check_rom(path: &Path, data: &[u8]) -> Result<(), MachineError> {
    if data.is_empty() {
        return Err(MachineError::RomEmpty { path: path.to_owned() });
    }
    if data.len() % 0x10000 != 0 || data.len() > 16 << 20 {
        return Err(MachineError::RomSize { path: path.to_owned(), size: data.len() });
    }
    Ok(())
}
