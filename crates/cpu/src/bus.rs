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
    /// The lines the platform asserts now.
    fn pending(&mut self) -> Pending {
        Pending(0)
    }
    /// Acknowledges INTR and returns the vector (the 8259/LAPIC INTA cycle).
    fn ack_intr(&mut self) -> u8 {
        0
    }
}
