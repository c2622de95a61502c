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
//! [`cpu::Cpu::flush_code`] and continues. When a bus master writes RAM it does the same, and
//! the machine drops only the code decoded from the written bytes ([`cpu::Cpu::invalidate_code`]).
//!
//! Between slices the machine also ends runs that no instruction limit bounds, from guest time
//! alone (so the same input ends the same way): guest time past
//! [`MachineConfig::max_guest_ns`] (time skipped while halted, polling or in SMM costs counts
//! too), an SMI storm (over a window of [`MachineConfig::smm_watchdog_ns`], SMIs keep coming
//! and the code outside SMM retires at most one instruction between two of them, in less than
//! 1 % of the time) and a CPU that stays in SMM for that long without RSM. A host can also
//! stop a run from another thread or a signal handler ([`Machine::set_stop_flag`]).

pub mod board;
pub mod chipset;
pub mod clock;
pub mod debug;
pub mod devices;
pub mod events;
pub mod host;
pub mod input;
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The most guest time an SMM entry or an RSM may take beyond its instruction
/// ([`MachineConfig::smm_entry_ns`], [`MachineConfig::rsm_ns`]): 10 ms. Real platforms take
/// microseconds (saving the state, the rendezvous of every core); more than this is a typing
/// error, and the machine would spend it stepping through every timer expiry.
pub const MAX_SMM_COST_NS: u64 = 10_000_000;

/// The default [`MachineConfig::max_guest_ns`]: 60 s of guest time, six times what the
/// default 10^10-instruction limit takes at the default 10^9 instructions per second.
pub const DEFAULT_MAX_GUEST_NS: u64 = 60_000_000_000;

/// The default [`MachineConfig::smm_watchdog_ns`]: 1 s of guest time (a real SMI handler takes
/// microseconds; the BITS guideline is 150 us).
pub const DEFAULT_SMM_WATCHDOG_NS: u64 = 1_000_000_000;

/// In an SMI storm, code outside SMM gets less than 1/`STORM_SHARE` of a watchdog window.
const STORM_SHARE: u64 = 100;

/// Host-side errors: bad input files or options. Guest misbehaviour is never an error.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// The ROM file cannot be read.
    #[error("cannot read ROM file {path}")]
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
    /// An SMM entry or RSM cost beyond [`MAX_SMM_COST_NS`].
    #[error("{what} of {ns} ns is more than a platform takes: at most {MAX_SMM_COST_NS} ns (10 ms; real SMM entries and RSMs, with every core's rendezvous, take microseconds)")]
    SmmCost {
        /// Which cost ("--smm-entry-ns", "--rsm-ns").
        what: &'static str,
        /// The value asked for.
        ns: u64,
    },
    /// A guest-time limit of zero.
    #[error("the guest time limit must be greater than zero")]
    GuestTime,
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
    /// A flash image is unusable.
    #[error(transparent)]
    Pflash(#[from] devices::pflash_bank::PflashError),
    /// Flash units were given for a board (named) without system flash.
    #[error("the {0} machine has no system flash for --pflash (use --machine pc or q35)")]
    NoPflash(&'static str),
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
    /// The guest wrote PM1_CNT.SLP_EN with SLP_TYP = S5 (soft off); `from_smm` says whether
    /// the write came from SMM.
    PowerOff {
        /// Whether the write came from SMM.
        from_smm: bool,
    },
    /// Guest time reached [`MachineConfig::max_guest_ns`] (`limit_ns`).
    GuestTimeLimit {
        /// The limit, in nanoseconds of guest time.
        limit_ns: u64,
    },
    /// SMIs kept coming over a watchdog window ([`MachineConfig::smm_watchdog_ns`]) and the
    /// code they interrupted retired at most one instruction between two of them, in less than
    /// 1 % of the time: `smis` SMM entries in `window_ns` of guest time left `outside_ns` and
    /// `outside_instructions` to it.
    SmiStorm {
        /// SMM entries in the window.
        smis: u64,
        /// The window, in nanoseconds of guest time.
        window_ns: u64,
        /// Guest time outside SMM in the window.
        outside_ns: u64,
        /// Instructions retired outside SMM in the window.
        outside_instructions: u64,
    },
    /// The CPU stayed in SMM for `smm_ns` of guest time (at least a watchdog window) without
    /// RSM; it was at `cs:rip` in `mode` mode.
    StuckInSmm {
        /// Guest time spent in SMM without RSM.
        smm_ns: u64,
        /// CS selector where the CPU was.
        cs: u16,
        /// RIP where the CPU was.
        rip: u64,
        /// The CPU mode ("real", "protected32", "long"...).
        mode: &'static str,
    },
    /// The host asked the run to stop ([`Machine::set_stop_flag`]: a signal, say).
    Interrupted,
    /// The CPU reached one of the host's breakpoints ([`Machine::set_breakpoints`]); `run` again
    /// goes on from there.
    Breakpoint,
    /// COM1 transmitted the text the host waited for ([`devices::uart16550::Uart16550::stop_text`]).
    SerialText,
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
            ExitReason::GuestTimeLimit { .. } => "guest-time-limit",
            ExitReason::SmiStorm { .. } => "smi-storm",
            ExitReason::StuckInSmm { .. } => "stuck-in-smm",
            ExitReason::Interrupted => "interrupted",
            ExitReason::SerialText => "serial-text",
            ExitReason::Breakpoint => "breakpoint",
        }
    }

    /// A detail for the summary (the shutdown reason, who powered off), if any.
    pub fn detail(&self) -> Option<String> {
        match self {
            ExitReason::Shutdown(w) => Some(w.to_string()),
            ExitReason::PowerOff { from_smm: true } => Some("requested from SMM".into()),
            ExitReason::PowerOff { from_smm: false } => Some("requested outside SMM".into()),
            ExitReason::SerialText => Some("the serial port printed the --stop-on-serial text".into()),
            ExitReason::GuestTimeLimit { limit_ns } => Some(format!("{} of guest time (--max-guest-time)", ms(*limit_ns))),
            ExitReason::SmiStorm { smis, window_ns, outside_ns, outside_instructions } => Some(format!(
                "{smis} SMIs in {} of guest time left the code they interrupted {outside_instructions} instructions in {} ({:.3} %): SMIs come faster than SMM finishes them",
                ms(*window_ns),
                ms(*outside_ns),
                *outside_ns as f64 * 100.0 / (*window_ns).max(1) as f64
            )),
            ExitReason::StuckInSmm { smm_ns, cs, rip, mode } => {
                Some(format!("the CPU has been in SMM for {} of guest time without RSM, now at {cs:04x}:{rip:#x} ({mode} mode)", ms(*smm_ns)))
            }
            _ => None,
        }
    }
}

/// `ns` as milliseconds for messages.
fn ms(ns: u64) -> String {
    format!("{:.3} ms", ns as f64 / 1e6)
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
    /// Guest time SMM entry and RSM take beyond their one instruction, in nanoseconds (at most
    /// [`MAX_SMM_COST_NS`] each).
    pub smm_entry_ns: u64,
    /// Guest time RSM takes beyond its one instruction, in nanoseconds.
    pub rsm_ns: u64,
    /// The run ends ([`ExitReason::GuestTimeLimit`]) when guest time reaches this many
    /// nanoseconds, whatever made it pass.
    pub max_guest_ns: u64,
    /// The SMM watchdog window in nanoseconds of guest time: a CPU in SMM this long without
    /// RSM ends the run ([`ExitReason::StuckInSmm`]), and so do SMIs that leave the code outside
    /// SMM at most one instruction per SMI and less than 1 % of a window
    /// ([`ExitReason::SmiStorm`]). 0 turns the watchdog off.
    pub smm_watchdog_ns: u64,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            memory_mib: 128,
            model: CpuModel::default(),
            instructions_per_second: 1_000_000_000,
            poll_forward: true,
            smm_entry_ns: 0,
            rsm_ns: 0,
            max_guest_ns: DEFAULT_MAX_GUEST_NS,
            smm_watchdog_ns: DEFAULT_SMM_WATCHDOG_NS,
        }
    }
}

/// A CPU and the board it runs on.
pub struct Machine {
    /// The CPU.
    pub(crate) cpu: Cpu,
    /// The board it runs on.
    pub board: board::Board,
    /// The options it was built with.
    pub config: MachineConfig,
    /// The SMM watchdog's window in progress.
    watch: SmmWatch,
    /// Set by the host to stop the run at the next slice boundary.
    stop: Option<Arc<AtomicBool>>,
    /// Snapshots taken ([`Machine::snapshot`]): the last one's number.
    snapshots: u64,
    /// [`Machine::fuzz_mode`].
    fuzz_mode: bool,
}

/// The SMM watchdog's window ([`Machine::run`]): where it started and what the SMM counters
/// were then, all in guest ticks.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SmmWatch {
    start: u64,
    /// Guest time spent outside SMM by the window's start.
    outside: u64,
    /// Instructions retired outside SMM by the window's start.
    outside_instructions: u64,
    /// SMM entries by the window's start.
    entries: u64,
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
        for (what, ns) in [("an SMM entry time (--smm-entry-ns)", config.smm_entry_ns), ("an RSM time (--rsm-ns)", config.rsm_ns)] {
            if ns > MAX_SMM_COST_NS {
                return Err(MachineError::SmmCost { what, ns });
            }
        }
        if config.max_guest_ns == 0 {
            return Err(MachineError::GuestTime);
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
        Ok(Machine { cpu: Cpu::new(config.model), board, config, watch: SmmWatch::default(), stop: None, snapshots: 0, fuzz_mode: false })
    }

    /// A flag the host sets (from a signal handler or another thread) to end the run at the
    /// next slice boundary with [`ExitReason::Interrupted`].
    pub fn set_stop_flag(&mut self, flag: Arc<AtomicBool>) {
        self.stop = Some(flag);
    }

    /// Attaches a raw disk image: IDE primary master on `pc`, AHCI port 0 on `q35`.
    pub fn attach_disk(&mut self, disk: devices::disk::Disk) -> Result<(), MachineError> {
        if self.board.attach_disk(disk) {
            Ok(())
        } else {
            Err(MachineError::NoDiskController("minimal"))
        }
    }

    /// Maps flash units below 4 GiB, unit 0 (the firmware code) on top, as QEMU 7.2's
    /// `-drive if=pflash` does; `secure` lets only SMM program them. The machine's ROM is
    /// replaced by unit 0 (its top 128 KiB also in the legacy BIOS window). Errors on the
    /// minimal board, and for images the bank refuses.
    pub fn attach_pflash(&mut self, images: Vec<devices::pflash_bank::PflashImage>, secure: bool) -> Result<(), MachineError> {
        if matches!(self.board, board::Board::Minimal(_)) {
            return Err(MachineError::NoPflash("minimal"));
        }
        let bank = devices::pflash_bank::PflashBank::new(images, secure)?;
        self.board.attach_pflash(bank);
        self.cpu.flush_code();
        Ok(())
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
        let clock = Clock::new(self.config.instructions_per_second);
        let time_limit = clock.ticks_from_ns(self.config.max_guest_ns);
        let watch_window = match clock.ticks_from_ns(self.config.smm_watchdog_ns) {
            0 => u64::MAX,
            w => w,
        };
        let exit = loop {
            if self.stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
                break ExitReason::Interrupted;
            }
            let left = max_instructions.saturating_sub(self.cpu.icount - start);
            if left == 0 {
                break ExitReason::InstructionLimit;
            }
            self.board.set_now(self.cpu.icount);
            let now = self.board.now(self.cpu.icount);
            if now.0 >= time_limit {
                break ExitReason::GuestTimeLimit { limit_ns: self.config.max_guest_ns };
            }
            if let Some(e) = self.watch_smm(now) {
                break e;
            }
            // Slices no longer than the time limit allows nor than the SMM watchdog's window,
            // which is looked at between slices.
            let mut slice = left.min(MAX_SLICE).min(time_limit - now.0).min(watch_window);
            if let Some(t) = self.board.events().and_then(|e| e.smm_entered_at()) {
                // In SMM: look again when the stay reaches the window.
                slice = slice.min(t.saturating_add(watch_window).saturating_sub(now.0).max(1));
            }
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
            // Code decoded from RAM a bus master overwrote, then everything if the map changed.
            self.board.take_dma_writes().invalidate(&mut self.cpu);
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
            if self.board.serial_text_seen() {
                break ExitReason::SerialText;
            }
            match r {
                Exit::InstructionLimit => continue,
                Exit::Stopped if self.board.debug_exit_code().is_some() => break ExitReason::DebugExit,
                Exit::Stopped if self.board.take_pause() => break ExitReason::Paused,
                Exit::Stopped => continue,
                Exit::Shutdown(why) => break ExitReason::Shutdown(why),
                Exit::Breakpoint => break ExitReason::Breakpoint,
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
                        // Never past the guest time limit: the run ends there.
                        Some(t) if idle_skips < MAX_IDLE_SKIPS => self.board.skip_to(t.min(Ticks(time_limit))),
                        _ => break ExitReason::Halted,
                    }
                }
            }
        };
        let exit_code = match &exit {
            ExitReason::DebugExit => self.board.debug_exit_code().unwrap_or(0) as i32,
            ExitReason::Shutdown(_) => 3,
            ExitReason::InstructionLimit | ExitReason::GuestTimeLimit { .. } => 4,
            ExitReason::Halted => 5,
            ExitReason::SmiStorm { .. } | ExitReason::StuckInSmm { .. } => 6,
            // 128 + SIGINT, as a shell reports it; a host that knows the signal says so.
            ExitReason::Interrupted => 130,
            ExitReason::Reset | ExitReason::Paused | ExitReason::PowerOff { .. } | ExitReason::SerialText | ExitReason::Breakpoint => 0,
        };
        let instructions = self.cpu.icount;
        let now = self.board.now(instructions).0;
        let guest_ns = clock.ns_from_ticks(now);
        let mut stats = self.board.events().map(|e| e.stats.clone()).unwrap_or_default();
        // A run that ends in SMM: count the stay so far too.
        if let Some(t) = self.board.events().and_then(|e| e.smm_entered_at()) {
            stats.smm_ticks += now.saturating_sub(t);
            if self.cpu.smm {
                stats.smm_instructions += instructions.saturating_sub(self.cpu.smm_regs.entry_icount);
            }
        }
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

impl Machine {
    /// The SMM watchdog, between slices at guest time `now`: a CPU in SMM for a whole window
    /// is stuck; a window in which SMIs kept coming and the code outside SMM retired at most
    /// one instruction per SMI, in less than 1 % of the time, is an SMI storm. Decided from
    /// guest time and instruction counts only.
    fn watch_smm(&mut self, now: Ticks) -> Option<ExitReason> {
        let clock = Clock::new(self.config.instructions_per_second);
        let window = clock.ticks_from_ns(self.config.smm_watchdog_ns);
        if window == 0 {
            return None;
        }
        let ev = self.board.events()?;
        let entered = ev.smm_entered_at();
        let current = entered.map_or(0, |t| now.0.saturating_sub(t));
        if entered.is_some() && current >= window {
            return Some(ExitReason::StuckInSmm {
                smm_ns: clock.ns_from_ticks(current),
                cs: self.cpu.seg[cpu::sreg::CS].selector,
                rip: self.cpu.rip,
                mode: self.cpu.mode_name(),
            });
        }
        let outside = now.0.saturating_sub(ev.stats.smm_ticks.saturating_add(current));
        let in_smm_now = if self.cpu.smm { self.cpu.icount.saturating_sub(self.cpu.smm_regs.entry_icount) } else { 0 };
        let outside_instructions = self.cpu.icount.saturating_sub(ev.stats.smm_instructions.saturating_add(in_smm_now));
        let entries = ev.stats.smm_entries;
        let span = now.0.saturating_sub(self.watch.start);
        if span < window {
            return None;
        }
        let got = outside.saturating_sub(self.watch.outside);
        let retired = outside_instructions.saturating_sub(self.watch.outside_instructions);
        let smis = entries.saturating_sub(self.watch.entries);
        // A storm: SMIs keep coming, the code they interrupt retires at most one instruction
        // between two of them, and gets less than 1 % of the time (a CPU halted outside SMM
        // between SMIs is idle, not starved; one that retires a few instructions per SMI
        // still gets somewhere).
        if smis >= 2 && retired <= smis && got.saturating_mul(STORM_SHARE) < span {
            return Some(ExitReason::SmiStorm { smis, window_ns: clock.ns_from_ticks(span), outside_ns: clock.ns_from_ticks(got), outside_instructions: retired });
        }
        self.watch = SmmWatch { start: now.0, outside, outside_instructions, entries };
        None
    }
}

/// The largest ROM: 16 MiB, mapped to end at 4 GiB.
pub const MAX_ROM: usize = 16 << 20;

/// Reads and checks a ROM image.
pub fn load_rom(path: &Path) -> Result<Vec<u8>, MachineError> {
    let data = input::read_at_most(path, MAX_ROM as u64).map_err(|source| match input::too_large(&source) {
        Some(input::TooLarge { size: Some(size), .. }) => MachineError::RomSize { path: path.to_owned(), size: size as usize },
        _ => MachineError::RomRead { path: path.to_owned(), source },
    })?;
    check_rom(path, &data)?;
    Ok(data)
}

/// Checks a ROM image's size.
pub fn check_rom(path: &Path, data: &[u8]) -> Result<(), MachineError> {
    if data.is_empty() {
        return Err(MachineError::RomEmpty { path: path.to_owned() });
    }
    if !data.len().is_multiple_of(0x10000) || data.len() > MAX_ROM {
        return Err(MachineError::RomSize { path: path.to_owned(), size: data.len() });
    }
    Ok(())
}
