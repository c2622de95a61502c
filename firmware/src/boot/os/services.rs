//! The OS's use of the firmware's settings service (communication buffer, GUID_SETTINGS) and
//! its attempts to write the flash without it, as malware would: both must fail.

use firmware::con::{dec, hex16, hex64, puts};
use firmware::hw::{BIOS_CNTL_BIOSWE, SETTINGS_FLASH};
use firmware::layout::{LPC_BIOS_CNTL, LPC_DEV, OS_MEMORY};
use firmware::pci;
use firmware::sw::{self, COMM_HEADER_SIZE};

const BUF: u64 = OS_MEMORY + 0x1000;

/// Calls the settings service; returns (status, value).
pub fn settings(op: u32, key: u32, value: u64) -> (u64, u64) {
    let mut msg = [0u8; sw::SETTINGS_MESSAGE_SIZE];
    msg[0..4].copy_from_slice(&op.to_le_bytes());
    msg[4..8].copy_from_slice(&key.to_le_bytes());
    msg[8..16].copy_from_slice(&value.to_le_bytes());
    super::write_comm(BUF, &sw::GUID_SETTINGS, msg.len() as u64, &msg);
    let st = sw::call(sw::SW_COMMUNICATE, BUF);
    (st, super::read_u64(BUF + COMM_HEADER_SIZE + 8))
}

fn flash_byte(off: u64) -> u8 {
    // SAFETY: the flash is mapped below 4 GiB, identity-mapped.
    unsafe { core::ptr::read_volatile((SETTINGS_FLASH + off) as *const u8) }
}

fn flash_poke(off: u64, v: u8) {
    // SAFETY: as above; the platform drops the write unless the flash is write-enabled.
    unsafe { core::ptr::write_volatile((SETTINGS_FLASH + off) as *mut u8, v) }
}

/// Tries to change the settings sector directly; returns whether the flash stayed unchanged.
pub fn attack_flash() -> bool {
    let before = flash_byte(16);
    flash_poke(16, before ^ 0xff);
    let plain = flash_byte(16);
    puts("os: direct flash write without BIOSWE: ");
    puts(if plain == before { "dropped" } else { "WRITTEN" });
    puts("\n");
    let bc = pci::read8(LPC_DEV, 0, LPC_BIOS_CNTL);
    pci::write8(LPC_DEV, 0, LPC_BIOS_CNTL, bc | BIOS_CNTL_BIOSWE);
    let after = pci::read8(LPC_DEV, 0, LPC_BIOS_CNTL);
    flash_poke(16, before ^ 0xff);
    let written = flash_byte(16);
    puts("os: set BIOSWE: BIOS_CNTL ");
    hex16(bc as u16);
    puts(" -> ");
    hex16(after as u16);
    puts(if after & BIOS_CNTL_BIOSWE == 0 { " (cleared again by SMM)" } else { " (BIOSWE stays set)" });
    puts(", flash write ");
    puts(if written == before { "dropped" } else { "WRITTEN" });
    puts("\n");
    plain == before && written == before
}

/// Prints the result of one settings call.
pub fn show(what: &str, st: u64, value: u64) {
    puts("os: settings ");
    puts(what);
    puts(" -> status ");
    hex64(st);
    if st == sw::EFI_SUCCESS {
        puts(" value ");
        dec(value);
    }
}
