//! Puts SMM in place while TSEG is still ordinary RAM: the SMM image, its page tables, its
//! context, the SMI entry stub at NEWSMBASE + 0x8000, and the relocation stub at the default
//! SMBASE + 0x8000.

use crate::require;
use crate::stubs;
use firmware::layout::*;

fn write_u64(addr: u64, v: u64) {
    // SAFETY: identity-mapped RAM the firmware owns at this point.
    unsafe { core::ptr::write_unaligned(addr as *mut u64, v) }
}

fn write_u32(addr: u64, v: u32) {
    // SAFETY: as above.
    unsafe { core::ptr::write_unaligned(addr as *mut u32, v) }
}

fn copy(dst: u64, src: &[u8]) {
    // SAFETY: as above; the ranges never overlap (ROM or .rodata into RAM).
    unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len()) }
}

/// Installs SMM into the TSEG at `tseg_base`; returns the SMBASE the relocation SMI will set.
pub fn install(tseg_base: u64, scenario: u64) -> u64 {
    // SAFETY: TSEG is RAM the OS never gets; T_EN is not set yet, so it is writable.
    unsafe { core::ptr::write_bytes(tseg_base as *mut u8, 0, TSEG_SIZE as usize) };

    // The SMM image, from the ROM.
    // SAFETY: the ROM is mapped and the header is plain data.
    let hdr = unsafe { core::ptr::read_unaligned(ROM_SMM_IMAGE as *const SmmImageHeader) };
    require(hdr.magic == SMM_IMAGE_MAGIC, "SMM image header in the ROM");
    require((hdr.mem_size as u64) <= tseg::IMAGE_MAX, "SMM image fits its TSEG area");
    let src = ROM_SMM_IMAGE + core::mem::size_of::<SmmImageHeader>() as u64;
    // SAFETY: the image lies inside the ROM (checked by the ROM builder).
    let image = unsafe { core::slice::from_raw_parts(src as *const u8, hdr.file_size as usize) };
    copy(tseg_base + tseg::IMAGE, image);

    // SMM page tables: identity map of the low 4 GiB (2 MiB pages), plus SMM_VA -> TSEG
    // (4 KiB pages) so the SMM image, linked at SMM_VA, runs wherever TSEG is.
    let pt = tseg_base + tseg::PAGE_TABLES;
    let (pml4, pdpt_lo, pd_lo, pdpt_hi, pd_hi, ptab) = (pt, pt + 0x1000, pt + 0x2000, pt + 0x6000, pt + 0x7000, pt + 0x8000);
    const P_RW: u64 = 0x3;
    const PS: u64 = 0x80;
    write_u64(pml4, pdpt_lo | P_RW);
    for k in 0..4 {
        write_u64(pdpt_lo + 8 * k, (pd_lo + 0x1000 * k) | P_RW);
    }
    for k in 0..2048u64 {
        write_u64(pd_lo + 8 * k, (k << 21) | PS | P_RW);
    }
    let va = SMM_VA;
    write_u64(pml4 + 8 * ((va >> 39) & 511), pdpt_hi | P_RW);
    write_u64(pdpt_hi + 8 * ((va >> 30) & 511), pd_hi | P_RW);
    write_u64(pd_hi + 8 * ((va >> 21) & 511), ptab | P_RW);
    for k in 0..(TSEG_SIZE >> 12) {
        write_u64(ptab + 8 * k, (tseg_base + (k << 12)) | P_RW);
    }

    // The context the SMI handler reads.
    let smbase = tseg_base + tseg::SMBASE;
    let ctx = SmmContext {
        magic: SMM_CONTEXT_MAGIC,
        tseg_base,
        tseg_size: TSEG_SIZE,
        smbase,
        pmbase: PMBASE as u64,
        locked: 0,
        smis: 0,
        pings: 0,
        scenario,
    };
    // SAFETY: the context area is TSEG RAM, aligned.
    unsafe { core::ptr::write((tseg_base + tseg::CONTEXT) as *mut SmmContext, ctx) };

    // The SMI entry stub at NEWSMBASE + 0x8000, with its data block filled in.
    let stub = smbase + 0x8000;
    copy(stub, stubs::smi_stub());
    require(stubs::smi_stub().len() <= 0x7c00, "SMI stub fits below the save state");
    write_u32(stub + stubs::smi::GDTR as u64 + 2, (stub + stubs::smi::GDT as u64) as u32);
    write_u32(stub + stubs::smi::FAR32 as u64, (stub + stubs::smi::CODE32 as u64) as u32);
    write_u32(stub + stubs::smi::CR3 as u64, pml4 as u32);
    write_u64(stub + stubs::smi::RSP as u64, tseg_base + tseg::STACK_TOP);
    write_u64(stub + stubs::smi::ENTRY as u64, hdr.entry);
    write_u64(stub + stubs::smi::CONTEXT as u64, SMM_VA + tseg::CONTEXT);

    // The relocation stub at the default SMBASE + 0x8000 (ordinary RAM on q35).
    let reloc = DEFAULT_SMBASE + 0x8000;
    copy(reloc, stubs::reloc_stub());
    write_u32(reloc + stubs::reloc::NEW_SMBASE as u64, smbase as u32);
    write_u32(reloc + stubs::reloc::REVISION as u64, 0);
    smbase
}

/// The revision ID the relocation stub recorded (0 if it never ran).
pub fn relocation_revision() -> u32 {
    firmware::io::peek32(DEFAULT_SMBASE + 0x8000 + stubs::reloc::REVISION as u64)
}
