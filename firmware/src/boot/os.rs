//! The demo OS: 64-bit, CPL0, the firmware's identity paging. It looks at the SMM protections
//! from outside SMM (reading the registers back as chipsec does), calls the SW SMI services and
//! exits through isa-debug-exit: 0 if everything held, 1 otherwise.

use firmware::con::{dec, hex16, hex32, hex64, hex8, puts};
use firmware::layout::*;
use firmware::sw::{self, COMM_HEADER_SIZE};
use firmware::{io, pci};

/// A communication buffer in OS memory.
const COMM_BUF: u64 = 0x20_0000;

struct Checks {
    failed: u32,
}

impl Checks {
    fn check(&mut self, ok: bool) {
        puts(if ok { " [ok]\n" } else { " [FAIL]\n" });
        if !ok {
            self.failed += 1;
        }
    }
}

/// Writes a communication buffer at `at`: GUID, MessageLength, message.
fn write_comm(at: u64, guid: &[u8; 16], len: u64, msg: &[u8]) {
    // SAFETY: identity-mapped OS RAM.
    unsafe {
        core::ptr::copy_nonoverlapping(guid.as_ptr(), at as *mut u8, 16);
        core::ptr::write_unaligned((at + 16) as *mut u64, len);
        core::ptr::copy_nonoverlapping(msg.as_ptr(), (at + COMM_HEADER_SIZE) as *mut u8, msg.len());
    }
}

fn read_u64(at: u64) -> u64 {
    // SAFETY: identity-mapped OS RAM.
    unsafe { core::ptr::read_volatile(at as *const u64) }
}

pub fn main(intel: bool) -> ! {
    let mut c = Checks { failed: 0 };
    puts("os: started (64-bit, CPL0)\n");

    // What chipsec's common.smm, smm_dma and bios_smi read.
    let smram = pci::read8(0, 0, MCH_SMRAM);
    puts("os: SMRAM=");
    hex8(smram);
    puts(" (D_LCK set, D_OPEN clear)");
    c.check(smram & SMRAM_D_LCK != 0 && smram & SMRAM_D_OPEN == 0);
    pci::write8(0, 0, MCH_SMRAM, smram | SMRAM_D_OPEN);
    let after = pci::read8(0, 0, MCH_SMRAM);
    puts("os: SMRAM after writing D_OPEN=");
    hex8(after);
    c.check(after == smram);

    let tseg = pci::read32(0, 0, MCH_TSEGMB) as u64 & !0xfffff;
    let v = io::peek32(tseg);
    puts("os: TSEG ");
    hex32(tseg as u32);
    puts(" reads ");
    hex32(v);
    puts(" from outside SMM");
    c.check(v == 0xffff_ffff);
    io::poke32(tseg, 0x9090_9090);
    let v = io::peek32(tseg);
    puts("os: TSEG after writing 0x90909090 reads ");
    hex32(v);
    c.check(v == 0xffff_ffff);

    if intel {
        let (base, mask) = (io::rdmsr(IA32_SMRR_PHYSBASE), io::rdmsr(IA32_SMRR_PHYSMASK));
        puts("os: SMRR base=");
        hex32(base as u32);
        puts(" mask=");
        hex32(mask as u32);
        puts(" covers TSEG");
        let size = (!(mask & 0xffff_f000) & 0xffff_ffff) + 1;
        c.check(mask & SMRR_VALID != 0 && base & 0xffff_f000 == tseg && size == TSEG_SIZE);
    }

    let pmcon = pci::read16(LPC_DEV, 0, LPC_GEN_PMCON_1);
    puts("os: GEN_PMCON_1=");
    hex16(pmcon);
    puts(" (SMI_LOCK set)");
    c.check(pmcon & GEN_PMCON_1_SMI_LOCK != 0);
    let smi_en = io::inl(SMI_EN);
    io::outl(SMI_EN, smi_en & !SMI_EN_GBL_SMI_EN);
    let after = io::inl(SMI_EN);
    puts("os: SMI_EN=");
    hex32(smi_en);
    puts(", after clearing GBL_SMI_EN ");
    hex32(after);
    c.check(after & SMI_EN_GBL_SMI_EN != 0 && after & SMI_EN_APMC_EN != 0);

    // The ping service.
    for k in 1..=3u64 {
        let rax = sw::call(sw::SW_PING, 0);
        puts("os: ping ");
        dec(k);
        puts(" -> rax=");
        hex64(rax);
        c.check(rax == sw::PING_REPLY | k << 32);
    }

    // The communication buffer: a good request...
    let msg = b"smmlab: hash me";
    write_comm(COMM_BUF, &sw::GUID_HASH, msg.len() as u64, msg);
    let st = sw::call(sw::SW_COMMUNICATE, COMM_BUF);
    let (len, hash) = (read_u64(COMM_BUF + 16), read_u64(COMM_BUF + COMM_HEADER_SIZE));
    puts("os: comm hash -> status=");
    hex64(st);
    puts(" len=");
    dec(len);
    puts(" hash=");
    hex64(hash);
    c.check(st == sw::EFI_SUCCESS && len == 8 && hash == sw::fnv1a(msg));

    // ... an unknown GUID ...
    let other = [0x11u8; 16];
    write_comm(COMM_BUF, &other, 4, b"abcd");
    let st = sw::call(sw::SW_COMMUNICATE, COMM_BUF);
    puts("os: comm unknown GUID -> status=");
    hex64(st);
    c.check(st == sw::EFI_NOT_FOUND);

    // ... a buffer inside SMRAM (the confused-deputy attack, PI vol. 4 / chipsec smm_ptr) ...
    let st = sw::call(sw::SW_COMMUNICATE, tseg + 0x100);
    puts("os: comm buffer in SMRAM -> status=");
    hex64(st);
    c.check(st == sw::EFI_ACCESS_DENIED);

    // ... a buffer just below TSEG whose message runs into it (low-SMRAM corruption) ...
    let below = tseg - 0x40;
    write_comm(below, &sw::GUID_HASH, 0x100, b"");
    let st = sw::call(sw::SW_COMMUNICATE, below);
    puts("os: comm buffer running into SMRAM -> status=");
    hex64(st);
    c.check(st == sw::EFI_ACCESS_DENIED);

    // ... and an oversized message.
    write_comm(COMM_BUF, &sw::GUID_HASH, 1 << 20, b"");
    let st = sw::call(sw::SW_COMMUNICATE, COMM_BUF);
    puts("os: comm oversized message -> status=");
    hex64(st);
    c.check(st == sw::EFI_BAD_BUFFER_SIZE);

    // The firmware's set-up SMI is closed after ready-to-lock.
    let st = sw::call(sw::SW_READY_TO_LOCK, 0);
    puts("os: ready-to-lock again -> status=");
    hex64(st);
    c.check(st == sw::EFI_ACCESS_DENIED);

    if c.failed == 0 {
        puts("os: all checks passed, exiting with 0\n");
        firmware::exit(0)
    }
    puts("os: ");
    dec(c.failed as u64);
    puts(" checks failed, exiting with 1\n");
    firmware::exit(1)
}
