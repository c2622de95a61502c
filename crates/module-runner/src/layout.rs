//! The synthetic platform's memory map: a q35 machine with 128 MiB of RAM whose top 8 MiB are
//! TSEG, SMBASE relocated to the start of TSEG, and the host's tables and service slots placed
//! where a real firmware's would be: the SMM side (SMST, dispatch protocols, stack, the SMRAM
//! heap) inside TSEG, the DXE side (system table, boot services, DXE protocols) in ordinary RAM
//! below it.

/// Guest RAM (MiB).
pub const MEMORY_MIB: u64 = 128;
/// TSEG: the top 8 MiB of low RAM (ESMRAMC.TSEG_SZ = 10b).
pub const TSEG_BASE: u64 = (MEMORY_MIB << 20) - TSEG_SIZE;
/// TSEG's size.
pub const TSEG_SIZE: u64 = 8 << 20;
/// The relocated SMBASE: the start of TSEG, as edk2's PiSmmCpuDxeSmm places the BSP's.
pub const SMBASE: u64 = TSEG_BASE;
/// The SMI entry point (SMBASE + 0x8000).
pub const SMI_ENTRY: u64 = SMBASE + 0x8000;
/// The save-state area (SMBASE + 0xFC00 .. SMBASE + 0x10000).
pub const SAVE_STATE: u64 = SMBASE + 0xfc00;

/// The SMM page tables: PML4, one PDPT, four page directories of 2 MiB pages (identity, 4 GiB).
pub const PML4: u64 = SMBASE;
/// The GDT (null, 64-bit code 0x08, data 0x10) and its pseudo-descriptor at +0x40.
pub const GDT: u64 = SMBASE + 0x6000;
/// Where the host tells the entry stub what to call: function, four arguments, then the
/// returned RAX.
pub const MAILBOX: u64 = SMBASE + 0x7000;
/// The SMM core entry the runner registers with an SMM CPU driver that took over SMI entry
/// (see [`crate::entry_stub::core_entry`]).
pub const CORE_ENTRY: u64 = MAILBOX + 0x100;
/// The SMST (0xF0 bytes) and its configuration table behind it.
pub const SMST: u64 = SMBASE + 0x1_0000;
/// EFI_CONFIGURATION_TABLE entries the SMST may hold.
pub const SMST_CONFIG: u64 = SMST + 0x100;
/// Entries of [`SMST_CONFIG`].
pub const SMST_CONFIG_ENTRIES: u64 = 32;
/// CpuSaveStateSize[1] and CpuSaveState[1] (SMST+0x88/+0x90 point here).
pub const SAVE_STATE_TABLES: u64 = SMBASE + 0x1_1000;
/// The SMM service slots (one `ret` per service, the host's breakpoints).
pub const SMM_SLOTS: u64 = SMBASE + 0x1_2000;
/// Bytes of [`SMM_SLOTS`].
pub const SLOTS_SIZE: u64 = 0x1_0000;
/// The SMM stack's top (64 KiB below it).
pub const SMM_STACK_TOP: u64 = SMBASE + 0x4_0000;
/// The SMRAM heap: pools from the bottom, pages (and images) from the top, as edk2's SMM core
/// allocates images top-down.
pub const SMRAM_HEAP: std::ops::Range<u64> = SMBASE + 0x4_0000..TSEG_BASE + TSEG_SIZE;

/// The DXE side: EFI_SYSTEM_TABLE, boot and runtime services, DXE services, HOBs.
pub const DXE_TABLES: u64 = 0x10_0000;
/// The DXE service slots.
pub const DXE_SLOTS: u64 = 0x11_0000;
/// The DXE heap (gBS->AllocatePool / AllocatePages): boot-services memory.
pub const DXE_HEAP: std::ops::Range<u64> = 0x100_0000..0x200_0000;
/// Identity page tables (as [`PML4`]'s) for code the host runs outside SMM.
pub const OUTSIDE_PML4: u64 = 0x20_0000;
/// The outside-SMM code's mailbox (as [`MAILBOX`]).
pub const OUTSIDE_MAILBOX: u64 = 0x20_8000;
/// The outside-SMM code's RAM part ([`crate::entry_stub::outside`]).
pub const OUTSIDE_CODE: u64 = 0x20_9000;
/// The outside-SMM stack's top (a MiB below it).
pub const OUTSIDE_STACK_TOP: u64 = 0x30_0000;
/// The OS-side communication buffer the runner passes to GUID handlers.
pub const COMM_BUFFER: u64 = 0x50_0000;
/// Bytes of [`COMM_BUFFER`].
pub const COMM_BUFFER_SIZE: u64 = 0x1_0000;

/// The compatible SMRAM (the A/B segment, 0xA0000-0xBFFFF): G_SMRAME, which TSEG needs, also
/// makes it SMRAM on the MCH (Q35 datasheet §5.1.15).
pub const A_SEGMENT: std::ops::Range<u64> = 0xa_0000..0xc_0000;

/// SMRAM's ranges, as SmmAccess2 reports them: the A/B segment and TSEG.
pub const SMRAM_RANGES: [std::ops::Range<u64>; 2] = [A_SEGMENT, TSEG_BASE..TSEG_BASE + TSEG_SIZE];

/// Whether `[addr, addr+len)` touches SMRAM.
pub fn overlaps_smram(addr: u64, len: u64) -> bool {
    let end = addr.saturating_add(len.max(1));
    SMRAM_RANGES.iter().any(|r| addr < r.end && end > r.start)
}
