//! Memory errors: the MCH reports ECC errors with an SMI (ERRSTS/SMICMD, 3 Series MCH 5.1).
//! Correctable errors are counted and logged; an uncorrectable one retires its page. Each
//! error leaves a record for the OS in the Generic Error Status Block (ACPI 6.5 18.3.2.7.1)
//! with a Generic Error Data Entry and a Memory Error Section (UEFI 2.10 N.2.5), which the OS
//! polls.

use firmware::con::{dec, hex64, puts};
use firmware::hw::*;
use firmware::layout::{SmmContext, ERROR_STATUS_BLOCK};
use firmware::pci;

static mut CORRECTED: u64 = 0;
static mut RETIRED: [u64; 16] = [0; 16];
static mut RETIRED_COUNT: usize = 0;

/// Platform Memory Error section type {A5BC1114-6F64-4EDE-B863-3E83ED7C83B1} (UEFI N.2.5).
const SECTION_MEMORY: [u8; 16] = [0x14, 0x11, 0xbc, 0xa5, 0x64, 0x6f, 0xde, 0x4e, 0xb8, 0x63, 0x3e, 0x83, 0xed, 0x7c, 0x83, 0xb1];
/// ErrorSeverity (ACPI 18.3.2.7.1): recoverable 0, fatal 1, corrected 2.
const SEV_RECOVERABLE: u32 = 0;
const SEV_CORRECTED: u32 = 2;
/// Memory error types (UEFI N.2.5): single-bit ECC 2, multi-bit ECC 3.
const TYPE_SINGLE_BIT: u8 = 2;
const TYPE_MULTI_BIT: u8 = 3;
/// Block status bits: uncorrectable valid 0, correctable valid 1, multiple uncorrectable 2,
/// multiple correctable 3; entry count 13:4.
const BS_UE: u32 = 1 << 0;
const BS_CE: u32 = 1 << 1;
const BS_MULTIPLE_UE: u32 = 1 << 2;
const BS_MULTIPLE_CE: u32 = 1 << 3;

/// Offsets: status block header (20 bytes), data entry (72 bytes, revision 0x300), section.
const ENTRY: u64 = 20;
const SECTION: u64 = ENTRY + 72;
const SECTION_LEN: u32 = 80;

fn w8(off: u64, v: u8) {
    // SAFETY: the error status block is reserved OS-visible RAM below TSEG, identity-mapped.
    unsafe { core::ptr::write_volatile((ERROR_STATUS_BLOCK + off) as *mut u8, v) }
}
fn w16(off: u64, v: u16) {
    // SAFETY: as above.
    unsafe { core::ptr::write_unaligned((ERROR_STATUS_BLOCK + off) as *mut u16, v) }
}
fn w32(off: u64, v: u32) {
    // SAFETY: as above.
    unsafe { core::ptr::write_unaligned((ERROR_STATUS_BLOCK + off) as *mut u32, v) }
}
fn w64(off: u64, v: u64) {
    // SAFETY: as above.
    unsafe { core::ptr::write_unaligned((ERROR_STATUS_BLOCK + off) as *mut u64, v) }
}
fn r32(off: u64) -> u32 {
    // SAFETY: as above.
    unsafe { core::ptr::read_unaligned((ERROR_STATUS_BLOCK + off) as *const u32) }
}

/// Writes one record; if the OS has not consumed the previous one, marks "multiple".
fn record(addr: u64, uncorrectable: bool) -> bool {
    let status = r32(0);
    if status != 0 {
        w32(0, status | if uncorrectable { BS_MULTIPLE_UE } else { BS_MULTIPLE_CE });
        return false;
    }
    let sev = if uncorrectable { SEV_RECOVERABLE } else { SEV_CORRECTED };
    // Generic Error Status Block: raw data none, data = one entry.
    w32(4, 0);
    w32(8, 0);
    w32(12, 72 + SECTION_LEN);
    w32(16, sev);
    // Generic Error Data Entry.
    for (k, b) in SECTION_MEMORY.iter().enumerate() {
        w8(ENTRY + k as u64, *b);
    }
    w32(ENTRY + 16, sev);
    w16(ENTRY + 20, 0x300);
    w8(ENTRY + 22, 0); // validation bits: no FRU id/text, no timestamp
    w8(ENTRY + 23, 0);
    w32(ENTRY + 24, SECTION_LEN);
    for k in 28..72 {
        w8(ENTRY + k, 0);
    }
    // Memory Error Section: physical address, its mask, and the error type are valid.
    for k in 0..SECTION_LEN as u64 {
        w8(SECTION + k, 0);
    }
    w64(SECTION, (1 << 1) | (1 << 2) | (1 << 14));
    w64(SECTION + 16, addr);
    w64(SECTION + 24, !0xfff);
    w8(SECTION + 72, if uncorrectable { TYPE_MULTI_BIT } else { TYPE_SINGLE_BIT });
    // The block status last: the OS polls it.
    w32(0, (if uncorrectable { BS_UE } else { BS_CE }) | (1 << 4));
    true
}

/// The DMI SMI message from the MCH.
pub fn error(_ctx: &mut SmmContext) {
    let errsts = pci::read16(0, 0, MCH_ERRSTS);
    let addr = pci::read32(0, 0, MCH_DEAP) as u64;
    let cecnt = pci::read16(0, 0, MCH_CECNT);
    pci::write16(0, 0, MCH_ERRSTS, errsts);
    puts("smm: memory-error");
    if errsts & ERRSTS_DSERR != 0 {
        // SAFETY: one CPU in SMM.
        let n = unsafe {
            CORRECTED += 1;
            CORRECTED
        };
        puts(" corrected single-bit ECC at ");
        hex64(addr);
        puts(", corrected so far ");
        dec(n);
        puts(" (CECNT ");
        dec(cecnt as u64);
        puts(")");
        if !record(addr, false) {
            puts(", previous record not yet read by the OS");
        }
    }
    if errsts & ERRSTS_DMERR != 0 {
        let page = addr & !0xfff;
        // SAFETY: one CPU in SMM.
        let count = unsafe {
            let retired = &mut *core::ptr::addr_of_mut!(RETIRED);
            let n = RETIRED_COUNT;
            if n < retired.len() && !retired[..n].contains(&page) {
                retired[n] = page;
                RETIRED_COUNT = n + 1;
            }
            RETIRED_COUNT
        };
        puts(" UNCORRECTABLE multi-bit ECC at ");
        hex64(addr);
        puts(": page ");
        hex64(page);
        puts(" retired (");
        dec(count as u64);
        puts(" retired), CPER record for the OS");
        if !record(addr, true) {
            puts(" (marked multiple: previous record unread)");
        }
    }
    if errsts & (ERRSTS_DSERR | ERRSTS_DMERR) == 0 {
        puts(" (no error status)");
    }
    puts("\n");
}
