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
use firmware::{hw, io, pci, scenario, sw};

/// Checks a condition the firmware relies on; stops the machine with a message otherwise.
pub fn require(ok: bool, what: &str) {
    if !ok {
        puts("fw: FAILED: ");
        puts(what);
        puts("\n");
        firmware::exit(EXIT_FIRMWARE_FAILED);
    }
}

/// The top of low RAM, found by probing 1 MiB steps from [`LOW_RAM_MIN`] (unbacked memory
/// reads as all ones and drops writes): less RAM than that is taken for that much. A later
/// milestone reads it from CMOS / fw_cfg instead.
fn probe_low_ram() -> u64 {
    let mut top: u64 = LOW_RAM_MIN;
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
        puts("fw: scenario ");
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

    if hw::present() {
        platform_hardware();
    }

    // From inside SMM: SMRR / SMM_CODE_CHK (Intel) or SMM_ADDR/MASK + SmmLock (AMD).
    let st = sw::call(sw::SW_READY_TO_LOCK, 0);
    require(st == sw::EFI_SUCCESS, "the ready-to-lock SMI succeeded");

    // Lock: D_LCK (MCH 5.1.17), SMI_LOCK (ICH9 13.1.32), BIOS_CNTL BLE + SMM_BWP (13.1.29).
    if scn != scenario::SMRAM_UNLOCKED && scn != scenario::ROOTKIT_UNLOCKED {
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
    write_e820(top, tseg_base);
    puts("fw: handing off to the OS\n");
    os::main(intel, scn)
}

/// What the bug-callout scenario's ping handler calls from SMM: code in OS memory.
extern "sysv64" fn callout_target() -> u64 {
    0x0ca1_1007
}

/// Arms the SMI sources of the built-in platform (docs/builtin-platform.md) before SMM is
/// locked: ECC errors, the hardware monitor's limits, the fan control timer, BIOS write
/// protection, the USB keyboard's legacy emulation and the COM2 I/O trap.
fn platform_hardware() {
    // The MCH sends an SMI message for correctable and uncorrectable ECC errors.
    pci::write16(0, 0, hw::MCH_SMICMD, 0b11);
    // Hardware monitor: limits, a fan duty to start with, SMI# on limits; GPI 1 raises SMIs.
    hw::hwmon_write(hw::HWMON_HIGH, 75);
    hw::hwmon_write(hw::HWMON_CRIT, 95);
    hw::hwmon_write(hw::HWMON_FAN_DUTY, 30);
    hw::hwmon_write(hw::HWMON_CONFIG, hw::HWMON_CONFIG_START | hw::HWMON_CONFIG_SMI_EN);
    io::outw(hw::ALT_GP_SMI_EN, io::inw(hw::ALT_GP_SMI_EN) | hw::GPI_HWMON);
    // The fan control handler runs on the software SMI timer, 16 ms.
    let pmcon3 = pci::read16(LPC_DEV, 0, hw::LPC_GEN_PMCON_3);
    pci::write16(LPC_DEV, 0, hw::LPC_GEN_PMCON_3, (pmcon3 & !hw::SWSMI_RATE_MASK) | hw::SWSMI_RATE_16MS);
    // USB keyboard: BAR4, I/O decoding, and legacy support: traps on 0x60/0x64 and USB SMIs.
    pci::write32(hw::UHCI_DEV, 0, hw::UHCI_BAR4, hw::UHCI_IO_BASE as u32 | 1);
    pci::write16(hw::UHCI_DEV, 0, 0x04, pci::read16(hw::UHCI_DEV, 0, 0x04) | 1);
    pci::write16(
        hw::UHCI_DEV,
        0,
        hw::UHCI_LEGSUP,
        hw::LEGSUP_TRAPBY60R | hw::LEGSUP_TRAPBY60W | hw::LEGSUP_TRAPBY64R | hw::LEGSUP_TRAPBY64W | hw::LEGSUP_USBSMIEN,
    );
    // COM2 (0x2F8-0x2FF) through IOTR0: dword 0x2F8, address bit 2 masked, all byte
    // enables, reads and writes.
    pci::write32(LPC_DEV, 0, hw::LPC_RCBA, hw::RCBA_BASE as u32 | 1);
    hw::rcba_write64(hw::RCBA_IOTR0, hw::COM2 as u64 | 1 << 18 | 0xf << 32 | hw::IOTR_RWM | hw::IOTR_TRSE);
    let en = io::inl(SMI_EN);
    io::outl(SMI_EN, en | hw::SMI_TCO | hw::SMI_LEGACY_USB);
    // Start the fan control timer (it starts when SWSMI_TMR_EN goes 0 -> 1).
    io::outl(SMI_EN, (en | hw::SMI_TCO | hw::SMI_LEGACY_USB) & !hw::SMI_SWSMI_TMR);
    io::outl(SMI_EN, en | hw::SMI_TCO | hw::SMI_LEGACY_USB | hw::SMI_SWSMI_TMR);
    puts("fw: platform SMI sources armed: ECC (MCH SMICMD), hardware monitor (GPI 1, high ");
    hex8(hw::hwmon_read(hw::HWMON_HIGH));
    puts(" crit ");
    hex8(hw::hwmon_read(hw::HWMON_CRIT));
    puts("), fan control timer 16 ms, BIOS write protection (TCO), USB legacy keyboard (LEGSUP ");
    hex16(pci::read16(hw::UHCI_DEV, 0, hw::UHCI_LEGSUP));
    puts("), COM2 I/O trap (IOTR0); SMI_EN=");
    hex32(io::inl(SMI_EN));
    puts("\n");
}

/// The e820 map for the OS: low RAM without the boot information and error status block,
/// RAM above 1 MiB up to TSEG, TSEG reserved, the flash reserved.
fn write_e820(top: u64, tseg_base: u64) {
    let entries = [
        E820Entry { base: 0, length: BOOT_INFO, kind: E820_USABLE, reserved: 0 },
        E820Entry { base: BOOT_INFO, length: 0xa_0000 - BOOT_INFO, kind: E820_RESERVED, reserved: 0 },
        E820Entry { base: 0x10_0000, length: tseg_base - 0x10_0000, kind: E820_USABLE, reserved: 0 },
        E820Entry { base: tseg_base, length: top - tseg_base, kind: E820_RESERVED, reserved: 0 },
        E820Entry { base: ROM_BASE, length: ROM_SIZE as u64, kind: E820_RESERVED, reserved: 0 },
    ];
    // SAFETY: the boot information block is identity-mapped RAM the OS does not use.
    unsafe {
        core::ptr::write_bytes(ERROR_STATUS_BLOCK as *mut u8, 0, 0x1000);
        core::ptr::write_unaligned(E820_COUNT as *mut u64, entries.len() as u64);
        for (k, e) in entries.iter().enumerate() {
            core::ptr::write_unaligned((E820_COUNT + 8 + 24 * k as u64) as *mut E820Entry, *e);
        }
    }
}
