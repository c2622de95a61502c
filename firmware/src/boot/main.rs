//! The boot image of smmlab's built-in firmware: platform initialisation, SMM installation,
//! relocation and locking as real firmware does them, then the hand-off to the demo OS.

#![no_std]
#![no_main]

mod entry;
mod os;
mod smm_install;
mod stubs;

use firmware::con::{hex16, hex32, hex8, puts};
use firmware::layout::*;
use firmware::{io, pci, scenario, sw};

/// Checks a condition the firmware relies on; stops the machine with a message otherwise.
pub fn require(ok: bool, what: &str) {
    if !ok {
        puts("fw: FAILED: ");
        puts(what);
        puts("\n");
        firmware::exit(EXIT_FIRMWARE_FAILED);
    }
}

/// The top of low RAM, found by probing 1 MiB steps from 16 MiB (unbacked memory reads as all
/// ones and drops writes). A later milestone reads it from CMOS / fw_cfg instead.
fn probe_low_ram() -> u64 {
    let mut top: u64 = 16 << 20;
    while top < 0xfec0_0000 {
        let pattern = 0x5aa5_0000 | (top >> 20) as u32;
        io::poke32(top, pattern);
        if io::peek32(top) != pattern {
            break;
        }
        top += 1 << 20;
    }
    top
}

#[no_mangle]
extern "C" fn boot_main() -> ! {
    puts("fw: smmlab built-in firmware: reset vector -> 32-bit -> long mode\n");
    let intel = io::is_intel();
    let top = probe_low_ram();
    puts("fw: low RAM top ");
    hex32(top as u32);
    puts(if intel { ", CPU vendor Intel\n" } else { ", CPU vendor AMD\n" });

    let scn = scenario::read();
    if scn != scenario::DEFAULT {
        puts("fw: planted-bug scenario ");
        puts(scenario::name(scn));
        puts(" (fw_cfg opt/smmlab/scenario)\n");
    }
    if scn == scenario::CALLOUT {
        // The call-out target: a function of the boot image (OS memory), reached through a
        // pointer in OS memory, as a handler calling a boot-services table would.
        let f: extern "sysv64" fn() -> u64 = callout_target;
        io::poke32(scenario::CALLOUT_SLOT, f as usize as u32);
        io::poke32(scenario::CALLOUT_SLOT + 4, (f as usize as u64 >> 32) as u32);
    }

    let tseg_base = top - TSEG_SIZE;
    // TSEGMB tells the OS where TSEG starts (3 Series MCH datasheet 5.1.31).
    pci::write32(0, 0, MCH_TSEGMB, tseg_base as u32);
    let smbase = smm_install::install(tseg_base, scn);

    // Close TSEG to everything but SMM: T_EN with a 1 MiB TSEG, and G_SMRAME (MCH 5.1.17/18).
    pci::write8(0, 0, MCH_ESMRAMC, ESMRAMC_TSEG_1M);
    pci::write8(0, 0, MCH_SMRAM, SMRAM_G_SMRAME | SMRAM_C_BASE_SEG);
    puts("fw: TSEG ");
    hex32(tseg_base as u32);
    puts("-");
    hex32((tseg_base + TSEG_SIZE - 1) as u32);
    puts(" enabled: ESMRAMC=");
    hex8(pci::read8(0, 0, MCH_ESMRAMC));
    puts(" SMRAM=");
    hex8(pci::read8(0, 0, MCH_SMRAM));
    puts("\n");
    require(io::peek32(tseg_base) == 0xffff_ffff, "TSEG reads all ones outside SMM once enabled");

    // ACPI PM block and the APM SMI (ICH9 datasheet 13.1.8, 13.1.9, 13.8.3.1).
    pci::write32(LPC_DEV, 0, LPC_PMBASE, PMBASE as u32 | 1);
    pci::write8(LPC_DEV, 0, LPC_ACPI_CNTL, ACPI_CNTL_ACPI_EN);
    io::outl(SMI_EN, io::inl(SMI_EN) | SMI_EN_APMC_EN | SMI_EN_GBL_SMI_EN);

    // The relocation SMI: handled at the default SMBASE by the relocation stub.
    puts("fw: relocation SMI (APM 0xb2 <- ");
    hex8(sw::SW_RELOCATE);
    puts(")\n");
    io::outb(PORT_APM_STS, 0);
    io::outb(PORT_APM_CNT, sw::SW_RELOCATE);
    let rev = smm_install::relocation_revision();
    require(rev != 0, "the relocation SMI ran");
    puts("fw: SMBASE relocated ");
    hex32(DEFAULT_SMBASE as u32);
    puts(" -> ");
    hex32(smbase as u32);
    puts(" (revision ");
    hex32(rev);
    puts(", ");
    puts(firmware::savestate::Map::from_revision(rev).name());
    puts(" map)\n");

    // From inside SMM: SMRR / SMM_CODE_CHK (Intel) or SMM_ADDR/MASK + SmmLock (AMD).
    let st = sw::call(sw::SW_READY_TO_LOCK, 0);
    require(st == sw::EFI_SUCCESS, "the ready-to-lock SMI succeeded");

    // Lock: D_LCK (MCH 5.1.17), SMI_LOCK (ICH9 13.1.32), BIOS_CNTL BLE + SMM_BWP (13.1.29).
    if scn != scenario::SMRAM_UNLOCKED {
        pci::write8(0, 0, MCH_SMRAM, SMRAM_G_SMRAME | SMRAM_D_LCK | SMRAM_C_BASE_SEG);
    }
    let bc = pci::read8(LPC_DEV, 0, LPC_BIOS_CNTL);
    pci::write8(LPC_DEV, 0, LPC_BIOS_CNTL, bc | BIOS_CNTL_BLE | BIOS_CNTL_SMM_BWP);
    let pmcon = pci::read16(LPC_DEV, 0, LPC_GEN_PMCON_1);
    pci::write16(LPC_DEV, 0, LPC_GEN_PMCON_1, pmcon | GEN_PMCON_1_SMI_LOCK);
    puts("fw: locked: SMRAM=");
    hex8(pci::read8(0, 0, MCH_SMRAM));
    puts(" GEN_PMCON_1=");
    hex16(pci::read16(LPC_DEV, 0, LPC_GEN_PMCON_1));
    puts(" SMI_EN=");
    hex32(io::inl(SMI_EN));
    puts("\n");
    puts("fw: handing off to the OS\n");
    os::main(intel)
}

/// What the bug-callout scenario's ping handler calls from SMM: code in OS memory.
extern "sysv64" fn callout_target() -> u64 {
    0x0ca1_1007
}
