//! The SMI handler of smmlab's built-in firmware, after PI vol. 4's SMI dispatch: it runs in
//! TSEG (linked at SMM_VA, see smm.ld), finds the source of the SMI in SMI_STS, and for an APM
//! SMI dispatches on the value written to APM_CNT (0xB2) to the SW SMI handlers. Every handler
//! reports on debugcon in one line: `smm: sw 0xNN <name> <details> -> rax=0x<16 digits>`.

#![no_std]
#![no_main]

use firmware::con::{dec, guid, hex16, hex32, hex64, hex8, puts};
use firmware::layout::*;
use firmware::savestate::{Gpr, SaveState};
use firmware::sw::*;
use firmware::{hw, io};
use firmware::scenario;

/// The communication buffer's copy in SMRAM (header and message).
static mut COMM_COPY: [u8; (COMM_HEADER_SIZE + COMM_MAX_MESSAGE) as usize] = [0; (COMM_HEADER_SIZE + COMM_MAX_MESSAGE) as usize];

mod flash;
mod keyboard;
mod memory;
mod thermal;
mod trapdev;

/// Called by the SMI entry stub in 64-bit mode with the context (an SMM_VA address).
///
/// One SMI may have several sources (SMI# is shared): every status bit that is set is
/// handled, each by its handler, which writes one line on debugcon.
#[no_mangle]
// Called only by the entry stub (never from Rust), with the context pointer it was given.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub extern "sysv64" fn smi_main(ctx: *mut SmmContext) {
    // SAFETY: the stub passes the context the boot code wrote into TSEG; only SMM reaches it.
    let ctx = unsafe { &mut *ctx };
    if ctx.magic != SMM_CONTEXT_MAGIC {
        puts("smm: bad context\n");
        return;
    }
    ctx.smis += 1;
    // SAFETY: the save state is in TSEG, identity-mapped, and we are in SMM.
    let ss = unsafe { SaveState::new(ctx.smbase) };
    let sts_port = ctx.pmbase as u16 + 0x34;
    let sts = io::inl(sts_port);
    let mut handled = false;
    if sts & SMI_STS_APM_STS != 0 {
        // Clear APM_STS (write one to clear, ICH9 13.8.3.2).
        io::outl(sts_port, SMI_STS_APM_STS);
        sw_smi(ctx, &ss);
        handled = true;
    }
    if sts & hw::SMI_SWSMI_TMR != 0 {
        io::outl(sts_port, hw::SMI_SWSMI_TMR);
        thermal::periodic(ctx);
        handled = true;
    }
    if sts & hw::SMI_GPI != 0 {
        thermal::limit(ctx);
        handled = true;
    }
    if sts & hw::SMI_TCO != 0 {
        let tco = io::inw(hw::TCO1_STS);
        if tco & hw::TCO1_STS_DMISMI != 0 {
            io::outw(hw::TCO1_STS, hw::TCO1_STS_DMISMI);
            memory::error(ctx);
        }
        if tco & hw::TCO1_STS_BIOSWR != 0 {
            io::outw(hw::TCO1_STS, hw::TCO1_STS_BIOSWR);
            flash::bios_write_attempt(ctx);
        }
        handled = true;
    }
    if sts & hw::SMI_LEGACY_USB != 0 {
        io::outl(sts_port, hw::SMI_LEGACY_USB);
        keyboard::legacy_usb(ctx, &ss);
        handled = true;
    }
    if sts & hw::SMI_MONITOR != 0 {
        trapdev::io_trap(ctx, &ss);
        handled = true;
    }
    if !handled {
        // Several sources raised SMI# while one was pending; the first handler took them all.
        puts("smm: no status bit set (handled by the previous SMI), SMI_STS=");
        hex32(sts);
        puts("\n");
    }
}

fn sw_smi(ctx: &mut SmmContext, ss: &SaveState) {
    let cmd = io::inb(PORT_APM_CNT);
    puts("smm: sw ");
    hex8(cmd);
    match cmd {
        SW_PING => ping(ctx, ss),
        SW_COMMUNICATE => communicate(ctx, ss),
        SW_READY_TO_LOCK => ready_to_lock(ctx, ss),
        _ => {
            puts(" unknown (data ");
            hex8(io::inb(PORT_APM_STS));
            puts(") -> ignored\n");
        }
    }
}

pub(crate) fn answer(ss: &SaveState, rax: u64) {
    ss.write(Gpr::Rax, rax);
    puts(" -> rax=");
    hex64(rax);
    puts("\n");
}

fn ping(ctx: &mut SmmContext, ss: &SaveState) {
    ctx.pings += 1;
    puts(" ping #");
    dec(ctx.pings);
    if ctx.scenario == scenario::CALLOUT {
        // Planted bug: a call through a pointer in OS memory, to code in OS memory.
        // SAFETY: none; this is the bug (the slot is identity-mapped OS RAM).
        let f = unsafe { core::ptr::read_volatile(scenario::CALLOUT_SLOT as *const u64) };
        if f != 0 {
            // SAFETY: none; this is the bug.
            let f: extern "sysv64" fn() -> u64 = unsafe { core::mem::transmute(f as usize) };
            puts(" notify=");
            hex64(f());
        }
    }
    if ctx.scenario == scenario::UNCHECKED_POINTER {
        // Planted bug: the count goes where RBX points, without checking it is outside SMRAM.
        let p = ss.read(Gpr::Rbx);
        if p != 0 && p < 1 << 32 {
            // SAFETY: none; this is the bug (the low 4 GiB are identity-mapped in SMM).
            unsafe { core::ptr::write_unaligned(p as *mut u64, ctx.pings) };
        }
    }
    answer(ss, PING_REPLY | ctx.pings << 32);
}

/// Whether [addr, addr + len) lies in OS memory: below TSEG, with no wrap-around
/// (SmmIsBufferOutsideSmmValid's rule, PI vol. 4: the whole range, not only its start).
fn outside_smram(ctx: &SmmContext, addr: u64, len: u64) -> bool {
    match addr.checked_add(len) {
        Some(end) => end <= ctx.tseg_base,
        None => false,
    }
}

fn communicate(ctx: &mut SmmContext, ss: &SaveState) {
    let buf = ss.read(Gpr::Rbx);
    puts(" comm buf=");
    hex64(buf);
    if !outside_smram(ctx, buf, COMM_HEADER_SIZE) {
        puts(" rejected: header not in OS memory");
        return answer(ss, EFI_ACCESS_DENIED);
    }
    // SAFETY: in SMM, one CPU; the copy is SMRAM only this handler uses.
    let copy = unsafe { &mut *core::ptr::addr_of_mut!(COMM_COPY) };
    // Copy the header into SMRAM first and use only the copy (no double fetch).
    // SAFETY: the header range was checked to be OS RAM below TSEG, identity-mapped.
    unsafe { core::ptr::copy_nonoverlapping(buf as *const u8, copy.as_mut_ptr(), COMM_HEADER_SIZE as usize) };
    let len = u64::from_le_bytes(copy[16..24].try_into().unwrap());
    puts(" len=");
    dec(len);
    if len > COMM_MAX_MESSAGE {
        puts(" rejected: message larger than ");
        dec(COMM_MAX_MESSAGE);
        return answer(ss, EFI_BAD_BUFFER_SIZE);
    }
    if !outside_smram(ctx, buf, COMM_HEADER_SIZE + len) {
        puts(" rejected: message not in OS memory");
        return answer(ss, EFI_ACCESS_DENIED);
    }
    let len = if ctx.scenario == scenario::TOCTOU {
        // Planted bug: MessageLength fetched again from the caller's buffer after the checks.
        // SAFETY: the header range was checked; the second fetch is the bug.
        unsafe { core::ptr::read_volatile((buf + 16) as *const u64) }
    } else {
        len
    };
    let total = (COMM_HEADER_SIZE + len) as usize;
    // SAFETY: the whole range was checked.
    unsafe { core::ptr::copy_nonoverlapping((buf + COMM_HEADER_SIZE) as *const u8, copy.as_mut_ptr().add(COMM_HEADER_SIZE as usize), len as usize) };
    let g: [u8; 16] = copy[..16].try_into().unwrap();
    puts(" guid=");
    guid(&g);
    if g == GUID_SETTINGS {
        let st = flash::settings_service(ctx, &mut copy[COMM_HEADER_SIZE as usize..total]);
        if st == EFI_SUCCESS {
            // The reply (the same message, with the value filled in) fits the checked range.
            // SAFETY: inside the checked range.
            unsafe { core::ptr::copy_nonoverlapping(copy.as_ptr().add(COMM_HEADER_SIZE as usize), (buf + COMM_HEADER_SIZE) as *mut u8, len as usize) };
        }
        return answer(ss, st);
    }
    if g != GUID_HASH {
        puts(" unknown service");
        return answer(ss, EFI_NOT_FOUND);
    }
    if len < 8 {
        puts(" hash: reply does not fit");
        return answer(ss, EFI_BUFFER_TOO_SMALL);
    }
    let h = fnv1a(&copy[COMM_HEADER_SIZE as usize..total]);
    puts(" hash=");
    hex64(h);
    // The reply (8 bytes) fits in the range checked above.
    // SAFETY: inside the checked range.
    unsafe {
        core::ptr::write_unaligned((buf + 16) as *mut u64, 8);
        core::ptr::write_unaligned((buf + COMM_HEADER_SIZE) as *mut u64, h);
    }
    answer(ss, EFI_SUCCESS)
}

fn ready_to_lock(ctx: &mut SmmContext, ss: &SaveState) {
    puts(" ready-to-lock");
    if ctx.locked != 0 {
        puts(" refused: already locked");
        return answer(ss, EFI_ACCESS_DENIED);
    }
    puts(" smbase=");
    hex32(ctx.smbase as u32);
    puts(" map=");
    puts(ss.map.name());
    let (base, size) = (ctx.tseg_base, ctx.tseg_size);
    if ctx.scenario == scenario::NO_SMRR || ctx.scenario == scenario::ROOTKIT_UNLOCKED {
        // Planted bug: neither SMRR nor SMM_CODE_CHK (which checks fetches against SMRR).
        puts(" (SMRR not programmed)");
    } else if io::is_intel() {
        // SMRR over TSEG, write-back (SDM vol. 3A 12.11.2.4): base | type, ~(size-1) | valid.
        io::wrmsr(IA32_SMRR_PHYSBASE, base | 6);
        io::wrmsr(IA32_SMRR_PHYSMASK, (!(size - 1) & 0xffff_f000) | SMRR_VALID);
        puts(" smrr=");
        hex32(io::rdmsr(IA32_SMRR_PHYSBASE) as u32);
        puts("/");
        hex32(io::rdmsr(IA32_SMRR_PHYSMASK) as u32);
        // SMM_CODE_CHK: instruction fetches outside SMRR in SMM become #MC (SDM vol. 4,
        // MSR_SMM_FEATURE_CONTROL), if MSR_SMM_MCA_CAP[58] says it is supported.
        if io::rdmsr(MSR_SMM_MCA_CAP) & SMM_MCA_CAP_CODE_CHK != 0 {
            io::wrmsr(MSR_SMM_FEATURE_CONTROL, SMM_FEATURE_CONTROL_CODE_CHK_EN | SMM_FEATURE_CONTROL_LOCK);
        }
        puts(" smm_feature_control=");
        hex16(io::rdmsr(MSR_SMM_FEATURE_CONTROL) as u16);
    } else {
        // AMD: TSEG in SMM_ADDR/SMM_MASK, then HWCR.SmmLock (AMD APM vol. 2, 10.2.5).
        io::wrmsr(AMD_SMM_ADDR, base);
        io::wrmsr(AMD_SMM_MASK, (!(size - 1) & 0xffff_fffe_0000) | AMD_SMM_MASK_TMTYPE_WB | AMD_SMM_MASK_TVALID);
        io::wrmsr(AMD_HWCR, io::rdmsr(AMD_HWCR) | AMD_HWCR_SMMLOCK);
        puts(" smm_addr=");
        hex32(io::rdmsr(AMD_SMM_ADDR) as u32);
        puts(" smm_mask=");
        hex64(io::rdmsr(AMD_SMM_MASK));
        puts(" hwcr.smmlock=");
        dec(io::rdmsr(AMD_HWCR) & AMD_HWCR_SMMLOCK);
    }
    ctx.locked = 1;
    answer(ss, EFI_SUCCESS)
}
