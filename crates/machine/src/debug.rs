//! The host API for a debugger (`smmlab gdb`): the system registers a debugger shows beside
//! the general ones, a stop at the first instruction of every SMI, and the APM write that
//! raises a software SMI the way the OS does. Like the rest of [`crate::host`], it reads the
//! CPU and drives the board without reaching into either from the tool's side.

use crate::Machine;

/// A segment register as the CPU holds it: the selector and its descriptor cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentView {
    /// The selector.
    pub selector: u16,
    /// The linear base (in SMM entry state: SMBASE for CS).
    pub base: u64,
    /// The limit in bytes, granularity applied.
    pub limit: u32,
    /// The descriptor's attributes (type, S, DPL, P, AVL, L, D/B, G) as the CPU keeps them.
    pub attr: u16,
}

/// The control registers, EFER and the segment registers (ES, CS, SS, DS, FS, GS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SystemRegisters {
    /// CR0.
    pub cr0: u64,
    /// CR2 (the last page fault's address).
    pub cr2: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// IA32_EFER.
    pub efer: u64,
    /// ES, CS, SS, DS, FS, GS (the CPU's order, `cpu::sreg`).
    pub segments: [SegmentView; 6],
}

/// A write to a watched range ([`Machine::set_write_watches`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchHit {
    /// Physical address written.
    pub addr: u64,
    /// Bytes written.
    pub size: u8,
    /// The writer was in SMM.
    pub smm: bool,
}

impl Machine {
    /// CR0, CR2, CR3, CR4, EFER and the segment registers with their descriptor caches.
    pub fn system_registers(&self) -> SystemRegisters {
        let c = &self.cpu;
        SystemRegisters { cr0: c.cr0, cr2: c.cr2, cr3: c.cr3, cr4: c.cr4, efer: c.efer, segments: c.seg.map(|s| SegmentView { selector: s.selector, base: s.base, limit: s.limit, attr: s.attr }) }
    }

    /// With `on`, [`Machine::run`] stops (exit reason paused) right after every SMM entry,
    /// before the SMI's first instruction: the CPU stands at SMBASE+0x8000 in the SMM entry
    /// state. A DR7 breakpoint cannot do this on hardware, as SMM entry clears DR7. Off on the
    /// minimal board (no SMI logic).
    pub fn set_stop_on_smm_entry(&mut self, on: bool) {
        self.board.set_pause_on_smm_entry(on);
    }

    /// With `on`, the breakpoints of [`Machine::set_breakpoints`] stop before any instruction
    /// at their address, not only where a block of code starts; it costs a lookup per
    /// instruction while breakpoints are set.
    pub fn set_exact_breakpoints(&mut self, on: bool) {
        self.cpu.exact_breakpoints = on;
    }

    /// With `on`, [`Machine::run`] stops (exit reason paused) right after every RSM, before
    /// the interrupted program's next instruction. Off on the minimal board.
    pub fn set_stop_after_rsm(&mut self, on: bool) {
        self.board.set_pause_on_rsm(on);
    }

    /// Writes `data` to APM_STS (0xB3) and `cmd` to APM_CNT (0xB2) from outside SMM, as the
    /// OS's `OUT 0xB2, AL` does; nothing runs. Returns whether an SMI is now pending (it is
    /// taken at the next instruction boundary outside SMM, or after RSM when in SMM).
    pub fn apm_write(&mut self, cmd: u8, data: u8) -> bool {
        self.board.set_now(self.cpu.icount);
        self.io_out(0xb3, 1, data as u32);
        self.io_out(0xb2, 1, cmd as u32);
        self.board.smi_pending() || self.cpu.smm_regs.smi_latched
    }

    /// Watches writes to the physical `ranges` (empty: none), from the CPU in or out of SMM
    /// and from the host: each pauses [`Machine::run`] (exit reason paused) right after the
    /// instruction that made it, and is kept for [`Machine::take_watch_hits`]. While any range
    /// is watched the CPU runs one instruction at a time (`cpu::Cpu::one_at_a_time`), several
    /// times slower. Returns false (nothing
    /// watched) on the minimal board. Bus masters' DMA writes are not watched.
    pub fn set_write_watches(&mut self, ranges: &[std::ops::Range<u64>]) -> bool {
        let ok = self.board.set_write_watches(ranges.to_vec());
        self.cpu.one_at_a_time = ok && !ranges.is_empty();
        // Direct write pointers the CPU holds would bypass the watch.
        self.cpu.flush_tlb();
        ok
    }

    /// The watched writes since the last call, oldest first.
    pub fn take_watch_hits(&mut self) -> Vec<WatchHit> {
        self.board.take_watch_hits()
    }
}

impl Machine {
    /// The physical address the CPU's supervisor read of linear address `lin` reaches now
    /// (paging as the CPU has it; the identity without paging), for a debugger: nothing in the
    /// machine changes (no accessed bits, no TLB fill). None when the read would fault.
    pub fn linear_to_physical(&mut self, lin: u64) -> Option<u64> {
        self.cpu.probe_translate(self.board.bus(), lin)
    }
}
