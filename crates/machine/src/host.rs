//! The host API: what tools that drive the machine (the audit, and the fuzzer, debugger and
//! module runner after it) may do, so that none of them reaches into the CPU's fields or
//! copies the run loop. Every access here is one a platform agent could make: port I/O and PCI
//! configuration through the host bridge's 0xCF8/0xCFC (the guest's CONFIG_ADDRESS is saved and
//! restored), memory as an SMM or a non-SMM agent sees it (SMRAM decoding applies, in
//! `smram.rs`), and a software SMI raised by the APM write the OS would make.

mod outside;

pub use outside::OutsideOutcome;
use crate::{ExitReason, Machine};
use cpu::regs::{RAX, RBX, RCX, RDI, RDX, RSI};
use cpu::{Access, AccessKind};

/// What the CPU looks like from outside, for messages and reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuView {
    /// CS selector.
    pub cs: u16,
    /// RIP of the next instruction.
    pub rip: u64,
    /// The mode ("real", "protected32", "long"...).
    pub mode: &'static str,
    /// Whether the CPU is in SMM.
    pub in_smm: bool,
    /// SMBASE.
    pub smbase: u32,
    /// SMM entries since reset (MSR_SMI_COUNT).
    pub smi_count: u64,
    /// An SMI is latched and waits for RSM (one raised while in SMM).
    pub smi_latched: bool,
}

/// The general registers an SMI is raised with: RAX..R15 in encoding order (RSP is kept;
/// AL carries the APM command).
pub type SmiRegisters = [u64; 16];

/// The machine's state at one point ([`Machine::snapshot`]): the CPU, the device state of
/// [`crate::board::snapshot`], and (kept by RAM's dirty-page log) the RAM.
#[derive(Clone, Debug)]
pub struct Snapshot {
    cpu: cpu::snapshot::CpuSnapshot,
    devices: crate::board::BoardState,
    watch: crate::SmmWatch,
    id: u64,
}

/// How a software SMI raised by the host went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwSmiOutcome {
    /// The CPU entered SMM and left it by RSM.
    Returned {
        /// Instructions retired in SMM (the RSM included).
        instructions: u64,
        /// The general registers the handler returned (what RSM restored).
        regs: SmiRegisters,
    },
    /// No SMI reached SMM (the command does not raise one, or SMIs are off).
    NoSmi,
    /// The machine died or hung (a shutdown, a reset, a handler over the budget).
    Fault(String),
}

impl Machine {
    /// Instructions retired since reset.
    pub fn icount(&self) -> u64 {
        self.cpu.icount
    }

    /// Guest time since reset, in nanoseconds (instructions plus time skipped).
    pub fn guest_ns(&self) -> u64 {
        crate::clock::Clock::new(self.config.instructions_per_second).ns_from_ticks(self.board.now(self.cpu.icount).0)
    }

    /// The CPU's position, mode and SMM state.
    pub fn cpu_view(&self) -> CpuView {
        CpuView {
            cs: self.cpu.seg[cpu::sreg::CS].selector,
            rip: self.cpu.rip,
            mode: self.cpu.mode_name(),
            in_smm: self.cpu.smm,
            smbase: self.cpu.smm_regs.smbase,
            smi_count: self.cpu.smm_regs.smi_count,
            smi_latched: self.cpu.smm_regs.smi_latched,
        }
    }

    /// The CPU model (vendor, long mode, TSC rate).
    pub fn cpu_model(&self) -> &cpu::CpuModel {
        &self.cpu.model
    }

    /// The save-state map of the CPU model (Intel64, AMD64 or the 32-bit one), to read and write
    /// the save state as the CPU lays it out.
    pub fn smm_map(&self) -> cpu::smm::savestate::MapKind {
        self.cpu.smm_map()
    }

    /// The CPU's SMM registers (SMBASE, SMRR, SMM_FEATURE_CONTROL, the AMD SMM MSRs), to read.
    pub fn smm_registers(&self) -> &cpu::smm::SmmRegs {
        &self.cpu.smm_regs
    }

    /// Sets SMM_CODE_CHK_EN in MSR_SMM_FEATURE_CONTROL as firmware would; returns whether it
    /// was set. With it, SMM fetching code outside SMRAM is a machine check that ends the run.
    pub fn set_smm_code_check(&mut self, on: bool) -> bool {
        let fc = &mut self.cpu.smm_regs.feature_control;
        let was = *fc & cpu::smm::SMM_CODE_CHK_EN != 0;
        if on {
            *fc |= cpu::smm::SMM_CODE_CHK_EN;
        } else {
            *fc &= !cpu::smm::SMM_CODE_CHK_EN;
        }
        was
    }

    /// Stops [`Machine::run`] (exit reason breakpoint) before every block that starts at one of
    /// `rips`; empty: no breakpoints. A breakpoint catches a function at its entry (a call's
    /// target starts a block), not an instruction in the middle of a block.
    pub fn set_breakpoints(&mut self, rips: &[u64]) {
        self.cpu.breakpoints = (!rips.is_empty()).then(|| Box::new(rips.iter().copied().collect()));
    }

    /// The addresses [`Machine::set_breakpoints`] set, in no particular order.
    pub fn breakpoints(&self) -> Vec<u64> {
        self.cpu.breakpoints.as_ref().map(|b| b.iter().copied().collect()).unwrap_or_default()
    }

    /// The general registers, RAX..R15 in encoding order, and RIP.
    pub fn registers(&self) -> (SmiRegisters, u64) {
        (self.cpu.regs, self.cpu.rip)
    }

    /// Sets general register `index` (RAX..R15 in encoding order) between runs, as a debugger
    /// or a host-side service (the module runner's SMST) does.
    pub fn set_register(&mut self, index: usize, value: u64) {
        self.cpu.regs[index & 15] = value;
    }

    /// Moves the CPU to `rip` (same CS) between runs. Stopped at a breakpoint, the next block
    /// goes on without stopping again, wherever it starts.
    pub fn set_rip(&mut self, rip: u64) {
        self.cpu.rip = rip;
    }

    /// RFLAGS, for a debugger's register view.
    pub fn flags(&self) -> u64 {
        self.cpu.flags.get()
    }

    /// Replaces RFLAGS between runs (a debugger's register write; bit 1 stays set).
    pub fn set_flags(&mut self, value: u64) {
        self.cpu.flags.set(value);
    }

    /// The segment selectors, ES, CS, SS, DS, FS, GS (the descriptor caches stay hidden).
    pub fn segment_selectors(&self) -> [u16; 6] {
        self.cpu.seg.map(|s| s.selector)
    }

    /// Turns the board's SMM access observer on or off, and with it the CPU's report of each
    /// SMM instruction's address, so every recorded access names the instruction that made it.
    /// Returns whether it was on. False on a board without an observer.
    pub fn observe_smm(&mut self, on: bool) -> bool {
        self.cpu.trace_smm_rip = on;
        match self.board.smm_observer() {
            Some(o) => std::mem::replace(&mut o.enabled, on),
            None => {
                self.cpu.trace_smm_rip = false;
                false
            }
        }
    }

    /// Stages (Some) or drops (None) a race write: right after SMM's next data read of its
    /// address, an agent outside SMM (another CPU, a DMA engine) writes its bytes there, once,
    /// as the other side of a double fetch would. It needs [`Machine::observe_smm`] on, so that
    /// every SMM read reaches the board. False on a board without an observer.
    pub fn stage_race_write(&mut self, race: Option<crate::board::observer::RaceWrite>) -> bool {
        match self.board.smm_observer() {
            Some(o) => {
                o.race = race;
                true
            }
            None => false,
        }
    }

    /// The SMM accesses the observer recorded since the last call (none on a board without
    /// one); the record starts afresh.
    pub fn take_smm_accesses(&mut self) -> Vec<crate::board::observer::SmmAccess> {
        self.board.smm_observer().map(|o| o.drain()).unwrap_or_default()
    }

    /// Records the decoded blocks the CPU runs in SMM from now on (`smmlab disasm`).
    pub fn record_smm_blocks(&mut self) {
        self.cpu.smm_blocks = Some(Box::default());
    }

    /// The blocks recorded since [`Machine::record_smm_blocks`]; recording stops.
    pub fn take_smm_blocks(&mut self) -> cpu::smm_blocks::SmmBlockRecord {
        self.cpu.smm_blocks.take().map(|b| *b).unwrap_or_default()
    }

    /// The fuzzer's mode (off by default): the code the CPU decoded stays decoded across SW
    /// SMIs raised by the host, and the SMM access observer numbers data accesses only.
    ///
    /// Off, every SW SMI starts with nothing decoded, and the bytes the CPU fetches to decode
    /// each block take sequence numbers (the audit's double-fetch distance counts them).
    /// On, an SMI costs what its instructions cost (the blocks are keyed by physical address
    /// and SMM and dropped when their bytes are written or memory is remapped; nothing put back
    /// after the SMI changes where code is), and the numbers do not depend on what was decoded
    /// before, so one input is judged the same on every run.
    pub fn fuzz_mode(&mut self, on: bool) {
        self.fuzz_mode = on;
        if let Some(o) = self.board.smm_observer() {
            o.fuzz_mode = on;
        }
    }

    /// Installs `map` as the edge-coverage map of the code the CPU runs in SMM (None: off, the
    /// default) and returns the one it replaces. The fuzzer's observer reads the counters in
    /// place ([`cpu::smm_edges::EdgeMap::counters`]); snapshots leave the map alone.
    pub fn cover_smm_edges(&mut self, map: Option<Box<cpu::smm_edges::EdgeMap>>) -> Option<Box<cpu::smm_edges::EdgeMap>> {
        std::mem::replace(&mut self.cpu.smm_edges, map)
    }

    /// Takes a snapshot of the machine as it is now, replacing the previous one: the CPU, the
    /// device state ([`crate::board::snapshot`]) and RAM, whose writes are logged from now on
    /// (every path: the CPU's, the host's, bus masters'), so [`Machine::restore`] puts back
    /// only the pages written since. RAM costs nothing until it is written.
    pub fn snapshot(&mut self) -> Snapshot {
        // A remap not yet applied is applied now: kept in the snapshot, it would drop every
        // decoded block at every restore.
        if self.board.take_flush() {
            self.cpu.flush_code();
        }
        self.board.ram().snapshot();
        // Writable host pages the CPU holds were handed out before the log: ask again.
        self.cpu.flush_tlb();
        self.snapshots += 1;
        Snapshot { cpu: self.cpu.snapshot(), devices: self.board.device_state(), watch: self.watch, id: self.snapshots }
    }

    /// Goes back to `s`, the last snapshot taken: the RAM pages written since it (or since the
    /// last restore) are put back and the code decoded from them dropped, and the CPU and the
    /// devices return to their state then. Returns the pages put back, or None (and nothing
    /// changed) when `s` is not the last snapshot or it was dropped.
    pub fn restore(&mut self, s: &Snapshot) -> Option<usize> {
        if s.id != self.snapshots || !self.board.ram().has_snapshot() {
            return None;
        }
        // Only the bytes that differ from the snapshot can have stale code decoded from them.
        let (pages, changed) = self.board.ram().restore_changed();
        for r in changed {
            self.cpu.invalidate_code(r);
        }
        self.cpu.restore(&s.cpu);
        self.board.restore_device_state(&s.devices);
        self.watch = s.watch;
        // SMRAM or PAM may have been remapped since: what the CPU decoded may be stale.
        if self.board.take_flush() {
            self.cpu.flush_code();
        }
        Some(pages)
    }

    /// Drops the snapshot: RAM writes are no longer logged.
    pub fn drop_snapshot(&mut self) {
        self.board.ram().drop_snapshot();
    }

    /// RAM pages written since the last snapshot or restore (0 without a snapshot).
    pub fn dirty_pages(&mut self) -> usize {
        self.board.ram().dirty_pages()
    }

    /// A port read from outside SMM.
    pub fn io_in(&mut self, port: u16, size: u8) -> u32 {
        self.board.bus().io_in(Access { addr: port as u64, size, kind: AccessKind::IoIn, smm: false })
    }

    /// A port write from outside SMM.
    pub fn io_out(&mut self, port: u16, size: u8, value: u32) {
        self.board.bus().io_out(Access { addr: port as u64, size, kind: AccessKind::IoOut, smm: false }, value)
    }

    fn with_config_address<T>(&mut self, dev: u8, func: u8, reg: u8, f: impl FnOnce(&mut Machine, u16) -> T) -> T {
        let saved = self.io_in(0xcf8, 4);
        self.io_out(0xcf8, 4, 0x8000_0000 | (dev as u32 & 0x1f) << 11 | (func as u32 & 7) << 8 | (reg as u32 & 0xfc));
        let r = f(self, 0xcfc + (reg as u16 & 3));
        self.io_out(0xcf8, 4, saved);
        r
    }

    /// A PCI configuration read on bus 0.
    pub fn pci_read(&mut self, dev: u8, func: u8, reg: u8, size: u8) -> u32 {
        self.with_config_address(dev, func, reg, |m, port| m.io_in(port, size))
    }

    /// A PCI configuration write on bus 0.
    pub fn pci_write(&mut self, dev: u8, func: u8, reg: u8, size: u8, value: u32) {
        self.with_config_address(dev, func, reg, |m, port| m.io_out(port, size, value))
    }

    /// Reads `len` bytes of physical memory as an SMM (`smm`) or non-SMM agent sees them.
    pub fn read_phys(&mut self, addr: u64, len: usize, smm: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut a = addr;
        while out.len() < len {
            let v = self.board.bus().read(Access { addr: a, size: 8, kind: AccessKind::Read, smm });
            let take = (len - out.len()).min(8);
            out.extend_from_slice(&v.to_le_bytes()[..take]);
            // Physical addresses wrap at 2^64, as a pointer from the guest may.
            a = a.wrapping_add(8);
        }
        out
    }

    /// Writes physical memory as a non-SMM agent (SMRAM, ROM and locked ranges drop it, as they
    /// would the OS's write); code the CPU decoded from those bytes is dropped.
    pub fn write_phys(&mut self, addr: u64, data: &[u8]) {
        self.write_phys_as(addr, data, false);
    }

    /// Writes physical memory as an SMM (`smm`) or non-SMM agent sees it: what a host-side
    /// SMM service (the module runner's SMST) writes for the CPU in SMM reaches SMRAM.
    pub fn write_phys_as(&mut self, addr: u64, data: &[u8], smm: bool) {
        for (i, b) in data.iter().enumerate() {
            self.board.bus().write(Access { addr: addr.wrapping_add(i as u64), size: 1, kind: AccessKind::Write, smm }, *b as u64);
        }
        self.cpu.invalidate_code(addr..addr.saturating_add(data.len() as u64));
    }

    /// Raises software SMI `cmd` as the OS does with `OUT 0xB2, AL`: `data` goes to APM_STS
    /// (0xB3) and `regs` into the general registers (AL replaced by `cmd`), the APM write is
    /// made, and the CPU runs until RSM returns from SMM or `budget` instructions have retired.
    /// No guest code runs outside SMM and no guest memory is written: the CPU takes the SMI at
    /// the instruction boundary where it stands, and stops when it comes back there. The
    /// interrupted program's registers, position and flags are restored after, so calls are
    /// independent of each other.
    pub fn raise_sw_smi(&mut self, cmd: u8, data: u8, regs: &SmiRegisters, budget: u64) -> SwSmiOutcome {
        self.raise_sw_smi_with(cmd, data, regs, budget, &mut |_| Ok(()))
    }

    /// [`Machine::raise_sw_smi`], calling `on_breakpoint` each time the CPU stops at one of
    /// [`Machine::set_breakpoints`]'s addresses; an error ends the SMI as a fault with that
    /// message. The module runner implements the SMST's services this way.
    pub fn raise_sw_smi_with(&mut self, cmd: u8, data: u8, regs: &SmiRegisters, budget: u64, on_breakpoint: &mut dyn FnMut(&mut Machine) -> Result<(), String>) -> SwSmiOutcome {
        let saved = (self.cpu.regs, self.cpu.rip, self.cpu.seg[cpu::sreg::CS], self.cpu.flags.get(), self.cpu.halted);
        let outcome = self.run_sw_smi(cmd, data, regs, budget, on_breakpoint);
        let (r, rip, cs, flags, halted) = saved;
        (self.cpu.regs, self.cpu.rip, self.cpu.seg[cpu::sreg::CS], self.cpu.halted) = (r, rip, cs, halted);
        self.cpu.flags.set(flags);
        if !self.fuzz_mode {
            self.cpu.flush_code();
        }
        outcome
    }

    fn run_sw_smi(&mut self, cmd: u8, data: u8, regs: &SmiRegisters, budget: u64, on_breakpoint: &mut dyn FnMut(&mut Machine) -> Result<(), String>) -> SwSmiOutcome {
        if self.cpu.smm {
            return SwSmiOutcome::Fault("the CPU is in SMM already".into());
        }
        for r in [RAX, RBX, RCX, RDX, RSI, RDI, 5, 8, 9, 10, 11, 12, 13, 14, 15] {
            self.cpu.regs[r] = regs[r];
        }
        self.cpu.regs[RAX] = (regs[RAX] & !0xff) | cmd as u64;
        // A halted CPU wakes for the SMI and goes back to HLT after RSM.
        self.board.set_now(self.cpu.icount);
        self.io_out(0xb3, 1, data as u32);
        self.io_out(0xb2, 1, cmd as u32);
        if !self.board.smi_pending() {
            return SwSmiOutcome::NoSmi;
        }
        let smis = self.cpu.smm_regs.smi_count;
        let start = self.cpu.icount;
        // The machine's own run loop, paused at RSM: it fires the timers, applies remaps and
        // ends on everything a run ends on (a shutdown, a reset, the stop flag...).
        self.board.set_pause_on_rsm(true);
        let _ = self.board.take_pause();
        let outcome = loop {
            let done = self.cpu.icount - start;
            if done >= budget {
                let latched = if self.cpu.smm && self.cpu.smm_regs.smi_latched { "; an SMI raised inside SMM waits for RSM" } else { "" };
                break SwSmiOutcome::Fault(format!("SW SMI {cmd:#04x} did not return within {budget} instructions (the CPU is at {:#x}{latched})", self.cpu.rip));
            }
            let s = self.run(budget - done);
            match s.exit {
                ExitReason::Paused if !self.cpu.smm && self.cpu.smm_regs.smi_count > smis => {
                    break SwSmiOutcome::Returned { instructions: self.cpu.icount - start, regs: self.cpu.regs };
                }
                ExitReason::Breakpoint => {
                    if let Err(why) = on_breakpoint(self) {
                        break SwSmiOutcome::Fault(why);
                    }
                }
                ExitReason::Paused | ExitReason::InstructionLimit => {}
                ExitReason::Halted if !self.cpu.smm => break SwSmiOutcome::NoSmi,
                other => {
                    let detail = other.detail().map_or(String::new(), |d| format!(": {d}"));
                    break SwSmiOutcome::Fault(format!("SW SMI {cmd:#04x}: the run ended with {}{detail}", other.name()));
                }
            }
        };
        self.board.set_pause_on_rsm(false);
        outcome
    }
}
