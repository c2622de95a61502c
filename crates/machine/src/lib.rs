//! The platforms smmlab emulates. A [`Machine`] owns the CPU and a [`board::Board`]; the board
//! implements the CPU's [`cpu::Bus`] and routes every access to memory or a device.
//!
//! Boards: `minimal` (RAM, a flat ROM, debugcon and isa-debug-exit), `pc` (i440FX + PIIX4) and
//! `q35` (MCH + ICH9 LPC). On `pc` and `q35` every memory access goes through
//! [`smram::route`], the one place SMRAM visibility is decided.
//!
//! How [`Machine::run`] drives time: guest time is the CPU's retired-instruction count (plus
//! time skipped while halted, and while the guest busy-waits on the PM timer: [`poll`]) at
//! [`MachineConfig::instructions_per_second`]. The machine runs
//! the CPU in slices that end at the next timer deadline, tells the board the count between
//! slices ([`board::Board::set_now`], which fires due timers), and the CPU reports the count
//! before each port access ([`cpu::Bus::sync_icount`]) so the PM timer and SMI timestamps are
//! exact. When SMRAM or PAM change, the board asserts `Pending::STOP`; the machine then calls
//! [`cpu::Cpu::flush_code`] and continues.

pub mod board;
pub mod chipset;
pub mod clock;
pub mod devices;
pub mod events;
pub mod lab;
pub mod memory;
pub mod pci;
pub mod poll;
pub mod smi;
pub mod smram;
pub mod tables;

use clock::{Clock, Ticks};
/// The shutdown reason and the types its variants hold, for users of [`ExitReason::Shutdown`].
pub use cpu::{smm::RsmCheck, MachineCheck, ShutdownReason};
use cpu::{Cpu, CpuModel, Exit};
use events::MachineEvent;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Host-side errors: bad input files or options. Guest misbehaviour is never an error.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// The ROM file cannot be read.
    #[error("cannot read ROM file {path}: {source}")]
    RomRead {
        /// The ROM file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The ROM file is empty.
    #[error("ROM file {path} is empty")]
    RomEmpty {
        /// The ROM file.
        path: PathBuf,
    },
    /// The ROM is not a multiple of 64 KiB, or larger than 16 MiB.
    #[error("ROM file {path} is {size} bytes; a ROM must be a multiple of 64 KiB and at most 16 MiB")]
    RomSize {
        /// The ROM file.
        path: PathBuf,
        /// Its size in bytes.
        size: usize,
    },
    /// The RAM size (MiB) is outside what the boards support.
    #[error("memory size {0} MiB is out of range (1..=3072)")]
    MemorySize(u64),
    /// An instruction rate of zero.
    #[error("the instruction rate must be greater than zero")]
    Rate,
    /// The disk image is unusable.
    #[error(transparent)]
    Disk(#[from] devices::disk::DiskError),
    /// A disk was given for a board (named) without a disk controller.
    #[error("the {0} machine has no disk controller (use --machine pc or q35)")]
    NoDiskController(&'static str),
    /// An option ROM is unusable.
    #[error(transparent)]
    OptionRom(#[from] devices::option_rom::OptionRomError),
    /// A `--fw-cfg` file is unusable.
    #[error(transparent)]
    FwCfgFile(#[from] devices::fw_cfg_file::FwCfgFileError),
    /// Option ROMs or fw_cfg files were given for a board (named) without fw_cfg.
    #[error("the {0} machine has no fw_cfg to pass option ROMs or --fw-cfg files through (use --machine pc or q35)")]
    NoFwCfg(&'static str),
}

/// Why a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// The guest wrote to isa-debug-exit.
    DebugExit,
    /// The CPU shut down (triple fault, failed RSM, machine check) or the guest livelocked.
    Shutdown(ShutdownReason),
    /// The instruction limit was reached.
    InstructionLimit,
    /// The CPU halted with interrupts that can never arrive.
    Halted,
    /// The guest asked for a reset (0xCF9 RST_CPU, port 0x92 INIT_NOW, 8042 pulse). smmlab
    /// does not rebuild the machine: the run ends here, as QEMU's does with `-no-reboot`.
    Reset,
    /// The board asked for a pause (a debugcon line ended while
    /// [`board::Board::set_pause_on_debugcon_line`] was on); `run` may be called again.
    Paused,
    /// The guest wrote PM1_CNT.SLP_EN with SLP_TYP = S5 (soft off).
    PowerOff {
        /// Whether the write came from SMM.
        from_smm: bool,
    },
}

impl ExitReason {
    /// A short machine-readable name.
    pub fn name(&self) -> &'static str {
        match self {
            ExitReason::DebugExit => "debug-exit",
            ExitReason::Shutdown(_) => "shutdown",
            ExitReason::InstructionLimit => "instruction-limit",
            ExitReason::Halted => "halted",
            ExitReason::Reset => "reset",
            ExitReason::Paused => "paused",
            ExitReason::PowerOff { .. } => "power-off",
        }
    }

    /// A detail for the summary (the shutdown reason, who powered off), if any.
    pub fn detail(&self) -> Option<String> {
        match self {
            ExitReason::Shutdown(w) => Some(w.to_string()),
            ExitReason::PowerOff { from_smm: true } => Some("requested from SMM".into()),
            ExitReason::PowerOff { from_smm: false } => Some("requested outside SMM".into()),
            _ => None,
        }
    }
}

/// What a run did, for the summary.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// Instructions retired since reset.
    pub instructions: u64,
    /// SMIs the CPU took (SMM entries).
    pub smis: u64,
    /// SMM entries by the source of the SMI ("apm", "periodic", "io-trap", ...).
    pub smis_by_source: BTreeMap<String, u64>,
    /// SMIs raised by sources (several can merge into one entry).
    pub smis_raised: u64,
    /// Instructions retired in SMM.
    pub smm_instructions: u64,
    /// Guest time spent in SMM.
    pub smm_guest_ns: u64,
    /// Guest time at the end of the run.
    pub guest_ns: u64,
    /// Guest time skipped by the poll fast-forward ([`poll`]), included in `guest_ns`.
    pub poll_skipped_ns: u64,
    /// Why the run ended.
    pub exit: ExitReason,
    /// The process exit status the run asks for.
    pub exit_code: i32,
    /// Instructions the guest used that the CPU does not implement, by mnemonic.
    pub unimplemented: BTreeMap<String, u64>,
    /// Mechanisms the guest used that the CPU does not model, by name (the name says what
    /// happened instead); see `Cpu::missing_features`.
    pub missing_features: BTreeMap<String, u64>,
    /// The CPU's SMBASE when the run ended.
    pub smbase_after: u32,
    /// SMRAM decoding when the run ended (None on the minimal board).
    pub smram_after: Option<smram::SmramConfig>,
}

/// Which board to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoardKind {
    /// RAM, a flat ROM, debugcon and isa-debug-exit.
    Minimal,
    /// i440FX + PIIX4.
    Pc,
    /// Q35 + ICH9.
    Q35,
}

/// Options shared by every board.
#[derive(Clone, Debug)]
pub struct MachineConfig {
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// The CPU model.
    pub model: CpuModel,
    /// Guest instructions per second: guest time = instructions / rate.
    pub instructions_per_second: u64,
    /// Whether guest time may run faster while the guest busy-waits on the PM timer
    /// ([`poll`]); false keeps time strictly to retired instructions (and halts).
    pub poll_forward: bool,
    /// Guest time SMM entry takes beyond its one instruction, in nanoseconds.
    pub smm_entry_ns: u64,
    /// Guest time RSM takes beyond its one instruction, in nanoseconds.
    pub rsm_ns: u64,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig { memory_mib: 128, model: CpuModel::default(), instructions_per_second: 1_000_000_000, poll_forward: true, smm_entry_ns: 0, rsm_ns: 0 }
    }
}

/// A CPU and the board it runs on.
pub struct Machine {
    /// The CPU.
    pub cpu: Cpu,
    /// The board it runs on.
    pub board: board::Board,
    /// The options it was built with.
    pub config: MachineConfig,
}

/// Timer expiries a halted CPU may sleep through without retiring an instruction before the
/// run ends as halted.
const MAX_IDLE_SKIPS: u32 = 100_000;

/// Events delivered without an instruction retiring before a run ends as a guest livelock.
const LIVELOCK_EVENTS: u64 = 1 << 20;

/// The longest CPU slice between two looks at the clock.
const MAX_SLICE: u64 = 1 << 24;

impl Machine {
    /// A machine of `kind` running `rom`.
    pub fn new(kind: BoardKind, config: MachineConfig, rom: Vec<u8>) -> Result<Self, MachineError> {
        if config.memory_mib == 0 || config.memory_mib > 3072 {
            return Err(MachineError::MemorySize(config.memory_mib));
        }
        if config.instructions_per_second == 0 {
            return Err(MachineError::Rate);
        }
        let ram = config.memory_mib << 20;
        let ips = config.instructions_per_second;
        let board = match kind {
            BoardKind::Minimal => board::Board::Minimal(board::minimal::Minimal::new(ram, rom)),
            BoardKind::Pc => board::Board::Pc(Box::new(board::pc::new(ram, rom, ips))),
            BoardKind::Q35 => board::Board::Q35(Box::new(board::q35::new(ram, rom, ips))),
        };
        let mut board = board;
        if let Some(p) = board.poll() {
            p.enabled = config.poll_forward;
        }
        let clock = Clock::new(ips);
        board.set_smm_costs(clock.ticks_from_ns(config.smm_entry_ns), clock.ticks_from_ns(config.rsm_ns));
        // An AMD CPU with 40 physical address bits (long mode here) makes the firmware's e820
        // map list the HyperTransport range as reserved, as QEMU 7.2 does for qemu64, in
        // front of the RAM entry as in QEMU's etc/e820.
        if config.model.vendor == cpu::cpuid::Vendor::Amd && config.model.long_mode {
            if let Some(l) = board.legacy() {
                use devices::fw_cfg::{AMD_HT_SIZE, AMD_HT_START, E820_RESERVED};
                l.fw_cfg.prepend_e820(AMD_HT_START, AMD_HT_SIZE, E820_RESERVED);
            }
        }
        Ok(Machine { cpu: Cpu::new(config.model), board, config })
    }

    /// Attaches a raw disk image: IDE primary master on `pc`, AHCI port 0 on `q35`.
    pub fn attach_disk(&mut self, disk: devices::disk::Disk) -> Result<(), MachineError> {
        if self.board.attach_disk(disk) {
            Ok(())
        } else {
            Err(MachineError::NoDiskController("minimal"))
        }
    }

    /// Hands an option ROM to the firmware as the fw_cfg file `genroms/<basename>`, as
    /// QEMU's `-option-rom` does ([`devices::option_rom`]). Errors on the minimal board (no
    /// fw_cfg) and when the name is taken.
    pub fn add_option_rom(&mut self, rom: devices::option_rom::OptionRom) -> Result<(), MachineError> {
        let l = self.board.legacy().ok_or(MachineError::NoFwCfg("minimal"))?;
        if l.fw_cfg.file(&rom.name).is_some() {
            return Err(devices::option_rom::OptionRomError::Duplicate { path: rom.path, name: rom.name }.into());
        }
        l.fw_cfg.add_file(&rom.name, rom.data);
        Ok(())
    }

    /// Puts `file` into fw_cfg under its name, replacing the board's own file of that name
    /// (its ACPI or SMBIOS tables, say), as QEMU's `-fw_cfg` adds one
    /// ([`devices::fw_cfg_file`]). Errors on the minimal board (no fw_cfg).
    pub fn add_fw_cfg_file(&mut self, file: devices::fw_cfg_file::FwCfgFile) -> Result<(), MachineError> {
        let l = self.board.legacy().ok_or(MachineError::NoFwCfg("minimal"))?;
        l.fw_cfg.add_file(&file.name, file.data);
        Ok(())
    }

    /// A minimal machine running `rom`.
    pub fn minimal(config: MachineConfig, rom: Vec<u8>) -> Result<Self, MachineError> {
        Self::new(BoardKind::Minimal, config, rom)
    }

    /// An i440FX `pc` machine running `rom`.
    pub fn pc(config: MachineConfig, rom: Vec<u8>) -> Result<Self, MachineError> {
        Self::new(BoardKind::Pc, config, rom)
    }

    /// A `q35` machine running `rom`.
    pub fn q35(config: MachineConfig, rom: Vec<u8>) -> Result<Self, MachineError> {
        Self::new(BoardKind::Q35, config, rom)
    }

    /// Takes the machine events queued so far (empty on the minimal board).
    pub fn drain_events(&mut self) -> Vec<MachineEvent> {
        self.board.events().map(|e| e.drain()).unwrap_or_default()
    }

    /// Runs until the guest exits, shuts down, halts for good, or `max_instructions` retire.
    ///
    /// The CPU runs in slices that end at the next timer deadline; between slices the board
    /// learns the instruction count and fires due timers. A halted CPU skips guest time to the
    /// next timer that raises an SMI. When the board asks for it (SMRAM or PAM changed) the
    /// CPU's TLB and decoded code are flushed before it continues.
    pub fn run(&mut self, max_instructions: u64) -> RunSummary {
        let start = self.cpu.icount;
        let (mut idle_at, mut idle_skips) = (u64::MAX, 0u32);
        let mut stuck = 0u64;
        let exit = loop {
            let left = max_instructions.saturating_sub(self.cpu.icount - start);
            if left == 0 {
                break ExitReason::InstructionLimit;
            }
            self.board.set_now(self.cpu.icount);
            let now = self.board.now(self.cpu.icount);
            let mut slice = left.min(MAX_SLICE);
            if let Some(d) = self.board.next_deadline() {
                slice = slice.min(d.0.saturating_sub(now.0).max(1));
            }
            self.board.begin_slice(Ticks(now.0.saturating_add(slice)));
            let before = self.cpu.icount;
            let r = self.cpu.run(self.board.bus(), slice);
            // Slices spent entirely on events (exceptions, SMI entries) delivered without one
            // instruction retiring; slices can be one instruction long (a timer due next), so
            // only a long run of them means the guest re-faults forever, as a real CPU would.
            stuck = if r == Exit::InstructionLimit && self.cpu.icount == before { stuck.saturating_add(slice) } else { 0 };
            if stuck >= LIVELOCK_EVENTS.min(MAX_SLICE) {
                break ExitReason::Shutdown(ShutdownReason::Livelock {
                    events: stuck,
                    cs: self.cpu.seg[cpu::sreg::CS].selector,
                    rip: self.cpu.rip,
                    mode: self.cpu.mode_name(),
                });
            }
            self.board.set_now(self.cpu.icount);
            if self.board.take_flush() {
                self.cpu.flush_code();
            }
            // The board cannot reach the CPU while the CPU borrows it: apply A20 here.
            if let Some(a20) = self.board.take_a20() {
                if self.cpu.a20 != a20 {
                    self.cpu.a20 = a20;
                    self.cpu.flush_tlb();
                }
            }
            if self.board.reset_requested() {
                break ExitReason::Reset;
            }
            if let Some(from_smm) = self.board.power_off() {
                break ExitReason::PowerOff { from_smm };
            }
            match r {
                Exit::InstructionLimit => continue,
                Exit::Stopped if self.board.debug_exit_code().is_some() => break ExitReason::DebugExit,
                Exit::Stopped if self.board.take_pause() => break ExitReason::Paused,
                Exit::Stopped => continue,
                Exit::Shutdown(why) => break ExitReason::Shutdown(why),
                Exit::Halted => {
                    // An SMI the halted CPU did not take cannot wake it later either.
                    if self.board.smi_pending() {
                        break ExitReason::Halted;
                    }
                    let wake = if self.cpu.flags.sys(cpu::flags::bits::IF) {
                        self.board.next_interrupt_wake()
                    } else {
                        self.board.next_wake()
                    };
                    // A halted CPU that no timer expiry ever wakes (say, IRQ 0 in service
                    // and never acknowledged) would otherwise skip time forever.
                    idle_skips = if self.cpu.icount == idle_at { idle_skips + 1 } else { 0 };
                    idle_at = self.cpu.icount;
                    match wake {
                        Some(t) if idle_skips < MAX_IDLE_SKIPS => self.board.skip_to(t),
                        _ => break ExitReason::Halted,
                    }
                }
            }
        };
        let exit_code = match &exit {
            ExitReason::DebugExit => self.board.debug_exit_code().unwrap_or(0) as i32,
            ExitReason::Shutdown(_) => 3,
            ExitReason::InstructionLimit => 4,
            ExitReason::Halted => 5,
            ExitReason::Reset | ExitReason::Paused | ExitReason::PowerOff { .. } => 0,
        };
        let instructions = self.cpu.icount;
        let clock = Clock::new(self.config.instructions_per_second);
        let guest_ns = clock.ns_from_ticks(self.board.now(instructions).0);
        let stats = self.board.events().map(|e| e.stats.clone()).unwrap_or_default();
        let poll_skipped = self.board.poll().map_or(0, |p| p.skipped());
        RunSummary {
            instructions,
            smis: stats.smm_entries,
            smis_by_source: stats.smis_by_source.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            smis_raised: stats.smis_raised,
            smm_instructions: stats.smm_instructions,
            smm_guest_ns: clock.ns_from_ticks(stats.smm_ticks),
            guest_ns,
            poll_skipped_ns: clock.ns_from_ticks(poll_skipped),
            exit,
            exit_code,
            unimplemented: self.cpu.unimplemented.clone(),
            missing_features: self.cpu.missing_features.clone(),
            smbase_after: self.cpu.smm_regs.smbase,
            smram_after: self.board.smram_config(),
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
    if !data.len().is_multiple_of(0x10000) || data.len() > 16 << 20 {
        return Err(MachineError::RomSize { path: path.to_owned(), size: data.len() });
    }
    Ok(())
}
