//! Where everything is. Physical addresses unless the name says VA.

/// debugcon.
pub const PORT_DEBUGCON: u16 = 0x402;
/// isa-debug-exit.
pub const PORT_DEBUG_EXIT: u16 = 0xf4;
/// APM_CNT: a write raises the SW SMI (ICH9 datasheet 13.8.3 / PI vol. 4 "SW SMI").
pub const PORT_APM_CNT: u16 = 0xb2;
/// APM_STS: the data byte that goes with it.
pub const PORT_APM_STS: u16 = 0xb3;

/// The status the firmware exits with when something it set up does not hold.
pub const EXIT_FIRMWARE_FAILED: u8 = 1;

/// The ROM: 128 KiB ending at 4 GiB.
pub const ROM_BASE: u64 = 0xfffe_0000;
pub const ROM_SIZE: usize = 0x2_0000;
/// The SMM image in the ROM: a [`SmmImageHeader`] followed by the flat image.
pub const ROM_SMM_IMAGE: u64 = ROM_BASE;
/// Bytes available for the header and the SMM image in the ROM.
pub const ROM_SMM_IMAGE_MAX: usize = 0xf000;
/// The settings sector of the flash (see `hw::SETTINGS_FLASH`) follows the SMM image.
/// The boot image's load address in the ROM (boot.ld).
pub const ROM_BOOT_IMAGE: u64 = 0xffff_0000;
/// The 16/32-bit entry code (boot.ld `.rom32`).
pub const ROM_ENTRY32: u64 = 0xffff_f000;

/// "SMMI": the SMM image header's magic.
pub const SMM_IMAGE_MAGIC: u32 = 0x494d_4d53;

/// Prepended to the SMM image in the ROM by the host-side ROM builder.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SmmImageHeader {
    pub magic: u32,
    /// Bytes of image that follow the header.
    pub file_size: u32,
    /// Bytes the image occupies at run time (with bss).
    pub mem_size: u32,
    pub reserved: u32,
    /// The entry point (`smi_main`), an SMM_VA address.
    pub entry: u64,
    pub reserved2: u64,
}

/// The boot code's identity-mapped page tables (PML4, PDPT, four PDs of 2 MiB pages).
pub const BOOT_PAGE_TABLES: u64 = 0x7_0000;
/// Top of the boot and OS stack.
pub const BOOT_STACK_TOP: u64 = 0x9_0000;

/// The boot information the firmware hands to the OS: [`E820_COUNT`] then [`E820Entry`]s.
pub const BOOT_INFO: u64 = 0x9_d000;
/// The Generic Error Status Block (ACPI 6.5 18.3.2.7.1) that the SMI handler fills and the OS
/// polls, as for a GHES with the Polled notification type. Reserved in the e820 map.
pub const ERROR_STATUS_BLOCK: u64 = 0x9_e000;
/// Where the OS's own memory starts (its buffers, the workload's pages).
pub const OS_MEMORY: u64 = 0x20_0000;

/// One e820 entry (ACPI 6.5 15.1 "INT 15H E820H"): base, length, type (1 usable, 2 reserved).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct E820Entry {
    pub base: u64,
    pub length: u64,
    pub kind: u32,
    pub reserved: u32,
}
pub const E820_USABLE: u32 = 1;
pub const E820_RESERVED: u32 = 2;
/// The entry count (u64) at BOOT_INFO; the entries follow at BOOT_INFO + 8.
pub const E820_COUNT: u64 = BOOT_INFO;
pub const E820_MAX: usize = 8;

/// The default SMBASE after reset (SDM vol. 3C 34.11): the first SMI enters at 0x38000.
pub const DEFAULT_SMBASE: u64 = 0x3_0000;

/// The least low RAM the firmware runs with: its RAM probe starts here (boot/main.rs), TSEG
/// takes the top [`TSEG_SIZE`] below it, and the OS's memory ([`OS_MEMORY`] and up) lies
/// under TSEG. The host refuses smaller machines (`firmware_image::MIN_MEMORY_MIB`).
pub const LOW_RAM_MIN: u64 = 16 << 20;

/// TSEG: 1 MiB (ESMRAMC.TSEG_SZ = 00) at the top of low RAM, as the MCH decodes it.
pub const TSEG_SIZE: u64 = 1 << 20;
/// ESMRAMC value: T_EN with TSEG_SZ = 1 MiB.
pub const ESMRAMC_TSEG_1M: u8 = 0x01;

/// Offsets inside TSEG.
pub mod tseg {
    /// The SMM image (code, data, bss), mapped at SMM_VA.
    pub const IMAGE: u64 = 0;
    pub const IMAGE_MAX: u64 = 0x4_0000;
    /// SMBASE: the entry stub at +0x8000, the save state map at +0xFC00..+0x10000.
    pub const SMBASE: u64 = 0x4_0000;
    /// The SMM page tables.
    pub const PAGE_TABLES: u64 = 0x5_0000;
    /// The [`super::SmmContext`].
    pub const CONTEXT: u64 = 0x6_0000;
    /// SMM stack: 64 KiB below this.
    pub const STACK_TOP: u64 = 0x8_0000;
}

/// The virtual address of TSEG's first byte in SMM (PML4 entry 511, PDPT entry 510).
pub const SMM_VA: u64 = 0xffff_ffff_8000_0000;

/// The PM I/O base the firmware programs (LPC 0x40 = 0x601; ICH9 datasheet 13.1.8).
pub const PMBASE: u16 = 0x600;
/// SMI_EN and SMI_STS in the PM block (ICH9 13.8.3.1/2).
pub const SMI_EN: u16 = PMBASE + 0x30;
pub const SMI_STS: u16 = PMBASE + 0x34;
pub const SMI_EN_GBL_SMI_EN: u32 = 1 << 0;
pub const SMI_EN_APMC_EN: u32 = 1 << 5;
pub const SMI_STS_APM_STS: u32 = 1 << 5;

/// MCH (00:00.0) registers (3 Series MCH datasheet 5.1).
pub const MCH_SMRAM: u8 = 0x9d;
pub const MCH_ESMRAMC: u8 = 0x9e;
pub const MCH_TSEGMB: u8 = 0xac;
pub const SMRAM_G_SMRAME: u8 = 1 << 3;
pub const SMRAM_D_LCK: u8 = 1 << 4;
pub const SMRAM_D_OPEN: u8 = 1 << 6;
pub const SMRAM_C_BASE_SEG: u8 = 0b010;

/// ICH9 LPC (00:1F.0) registers (ICH9 datasheet 13.1).
pub const LPC_DEV: u8 = 0x1f;
pub const LPC_PMBASE: u8 = 0x40;
pub const LPC_ACPI_CNTL: u8 = 0x44;
pub const ACPI_CNTL_ACPI_EN: u8 = 1 << 7;
pub const LPC_GEN_PMCON_1: u8 = 0xa0;
pub const GEN_PMCON_1_SMI_LOCK: u16 = 1 << 4;
/// BIOS_CNTL (ICH9 datasheet 13.1.29): BIOSWE bit 0, BLE bit 1 (lock-once), SMM_BWP bit 5.
pub const LPC_BIOS_CNTL: u8 = 0xdc;
pub const BIOS_CNTL_BLE: u8 = 1 << 1;
pub const BIOS_CNTL_SMM_BWP: u8 = 1 << 5;

/// MSRs (SDM vol. 4).
pub const IA32_SMRR_PHYSBASE: u32 = 0x1f2;
pub const IA32_SMRR_PHYSMASK: u32 = 0x1f3;
pub const SMRR_VALID: u64 = 1 << 11;
pub const MSR_SMM_MCA_CAP: u32 = 0x17d;
pub const SMM_MCA_CAP_CODE_CHK: u64 = 1 << 58;
pub const MSR_SMM_FEATURE_CONTROL: u32 = 0x4e0;
pub const SMM_FEATURE_CONTROL_LOCK: u64 = 1 << 0;
pub const SMM_FEATURE_CONTROL_CODE_CHK_EN: u64 = 1 << 2;
/// AMD SMM_ADDR / SMM_MASK / HWCR (AMD APM vol. 2, 10.2.5).
pub const AMD_SMM_ADDR: u32 = 0xc001_0112;
pub const AMD_SMM_MASK: u32 = 0xc001_0113;
pub const AMD_SMM_MASK_TVALID: u64 = 1 << 1;
pub const AMD_SMM_MASK_TMTYPE_WB: u64 = 6 << 12;
pub const AMD_HWCR: u32 = 0xc001_0015;
pub const AMD_HWCR_SMMLOCK: u64 = 1 << 0;

/// What the boot code tells the SMI handler, at TSEG + [`tseg::CONTEXT`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SmmContext {
    pub magic: u64,
    pub tseg_base: u64,
    pub tseg_size: u64,
    pub smbase: u64,
    pub pmbase: u64,
    /// Set by the ready-to-lock SMI; later ones are refused.
    pub locked: u64,
    /// SMIs handled (including this one).
    pub smis: u64,
    /// Ping requests answered.
    pub pings: u64,
    /// The planted-bug scenario ([`crate::scenario`]); 0 for the clean firmware.
    pub scenario: u64,
}

/// "SMMCTX\0\0".
pub const SMM_CONTEXT_MAGIC: u64 = 0x0000_5854_434d_4d53;
