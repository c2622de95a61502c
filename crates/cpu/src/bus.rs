//! The CPU's only view of the world: the [`Bus`] trait.
//!
//! Every access carries its physical address (or port), size, kind and whether the CPU is in
//! SMM, so the machine can decide SMRAM visibility in one place.

use std::ptr::NonNull;

/// What an access does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessKind {
    /// Instruction fetch.
    Fetch,
    /// Data read.
    Read,
    /// Data write.
    Write,
    /// `IN`/`INS` from an I/O port.
    IoIn,
    /// `OUT`/`OUTS` to an I/O port.
    IoOut,
}

/// One bus access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Physical address, or the port number for I/O.
    pub addr: u64,
    /// Size in bytes: 1, 2, 4 or 8.
    pub size: u8,
    /// Fetch, read, write or I/O.
    pub kind: AccessKind,
    /// Whether the CPU was in SMM (SMIACT# asserted).
    pub smm: bool,
}

/// Lines the platform drives into the CPU, polled at instruction boundaries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending(pub u32);

impl Pending {
    /// A maskable interrupt request (INTR).
    pub const INTR: u32 = 1;
    /// A non-maskable interrupt.
    pub const NMI: u32 = 2;
    /// A system-management interrupt.
    pub const SMI: u32 = 4;
    /// INIT.
    pub const INIT: u32 = 8;
    /// The machine asks the CPU to return from `run` (debug exit, shutdown request...).
    pub const STOP: u32 = 16;
    /// Set together with SMI when the SMI was raised synchronously by the CPU's last I/O
    /// access (an I/O trap): the CPU then records I/O-restart information.
    pub const IO_TRAP: u32 = 32;

    /// Whether any of `bits` is set.
    pub fn has(self, bits: u32) -> bool {
        self.0 & bits != 0
    }
}

/// The platform as the CPU sees it.
///
/// Memory accesses that miss the CPU's TLB fast path, and all I/O, go through `read`, `write`,
/// `io_in` and `io_out`. `host_page` lets the CPU cache a direct pointer to a 4 KiB page of
/// plain RAM (or ROM, for reads and fetches).
pub trait Bus {
    /// Reads `a.size` bytes at physical address `a.addr` (little-endian in the low bits).
    fn read(&mut self, a: Access) -> u64;
    /// Writes the low `a.size` bytes of `value`.
    fn write(&mut self, a: Access, value: u64);
    /// Reads an I/O port; `a.addr` is the port.
    fn io_in(&mut self, a: Access) -> u32;
    /// Writes an I/O port; `a.addr` is the port.
    fn io_out(&mut self, a: Access, value: u32);
    /// A host pointer to the 4 KiB page at `page` (page-aligned physical address) for accesses
    /// of `kind` from a CPU whose SMM state is `smm`, when such accesses are plain memory
    /// with no side effects. `None` sends every such access through `read`/`write`.
    ///
    /// Contract: the pointer stays valid, and the answer for that page, kind and SMM state
    /// stays the same, until the machine calls [`crate::Cpu::flush_tlb`].
    fn host_page(&mut self, page: u64, kind: AccessKind, smm: bool) -> Option<NonNull<u8>>;
    /// The CPU's retired-instruction count, given just before each port access so the
    /// platform's virtual clock (PM timer, SMI timestamps) is exact for port I/O.
    fn sync_icount(&mut self, _icount: u64) {}
    /// The address of the instruction about to run in SMM, given before it runs while
    /// [`crate::Cpu::trace_smm_rip`] is on (the audit's observer names the instruction behind
    /// each access).
    fn smm_instruction(&mut self, _rip: u64) {}
    /// The physical address of the block about to run in SMM, given while
    /// [`crate::Cpu::trace_smm_rip`] is on, decoded or not (a block the CPU had decoded
    /// already fetches nothing: the fuzzer's observer sees code run outside SMRAM this way).
    fn smm_block(&mut self, _phys: u64) {}
    /// Guest time (ticks) that passed without retiring instructions: halted, or
    /// fast-forwarded by the platform. The TSC counts it (it counts time, not instructions).
    fn idle_ticks(&self) -> u64 {
        0
    }
    /// The lines the platform asserts now.
    fn pending(&mut self) -> Pending {
        Pending(0)
    }
    /// Acknowledges INTR and returns the vector (the 8259/LAPIC INTA cycle).
    fn ack_intr(&mut self) -> u8 {
        0
    }
    /// The CPU has latched the SMI request: the platform may drop its SMI# request.
    fn ack_smi(&mut self) {}
    /// The CPU has latched the NMI.
    fn ack_nmi(&mut self) {}
    /// The CPU has latched INIT.
    fn ack_init(&mut self) {}
    /// The CPU entered SMM (SMIACT# asserted). Called after the state save.
    fn smm_entered(&mut self, _e: &SmmEntry) {}
    /// The CPU left SMM through RSM (SMIACT# deasserted), or shut down trying.
    fn smm_left(&mut self, _e: &SmmExit) {}
}

/// What the CPU reports when it enters SMM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmmEntry {
    /// SMBASE used for this entry.
    pub smbase: u32,
    /// Where the interrupted program was: CS selector and RIP (the next instruction).
    pub cs: u16,
    /// RIP of the interrupted program's next instruction.
    pub rip: u64,
    /// The interrupted program's mode ("real", "protected32", "long"...).
    pub mode: &'static str,
    /// Instructions retired before the entry.
    pub icount: u64,
    /// The SMI interrupted a HLT (auto-HALT restart is armed).
    pub from_halt: bool,
    /// The SMI was raised by the I/O instruction just executed (I/O restart is possible).
    pub io_trap: bool,
}

/// What the CPU reports when it leaves SMM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmmExit {
    /// SMBASE after RSM (changed if the handler relocated it).
    pub smbase: u32,
    /// Where execution resumes.
    pub cs: u16,
    /// RIP where execution resumes.
    pub rip: u64,
    /// The mode execution resumes in ("real", "protected32", "long"...).
    pub mode: &'static str,
    /// Instructions retired in SMM, including the RSM.
    pub smm_instructions: u64,
    /// Instructions retired since reset.
    pub icount: u64,
    /// RSM re-executed the trapped I/O instruction.
    pub io_restarted: bool,
    /// RSM returned into the HLT state.
    pub halt_restarted: bool,
    /// RSM found an invalid saved state and shut the CPU down (always a
    /// [`crate::ShutdownReason::RsmCheck`]).
    pub shutdown: Option<crate::ShutdownReason>,
}
