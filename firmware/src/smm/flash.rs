//! System configuration: settings kept in a flash sector that only SMM may write (BIOS_CNTL
//! BIOSWE, BLE and SMM_BWP; ICH9 13.1.29), read and written through the communication buffer
//! (GUID_SETTINGS), and the handler for BIOSWE being set from outside SMM.

use firmware::con::{dec, hex16, hex64, puts};
use firmware::hw::{self, BIOS_CNTL_BIOSWE, SETTINGS_FLASH};
use firmware::layout::{SmmContext, LPC_BIOS_CNTL, LPC_DEV};
use firmware::pci;
use firmware::sw::*;

/// BIOSWE 0 -> 1 transitions SMM made itself (each raises a BIOSWR SMI after RSM).
static mut OWN_BIOSWE: u32 = 0;

/// The sector: [`SETTINGS_MAGIC`], then [`SETTINGS_SLOTS`] slots of (key u32, pad u32, value u64).
/// Erased flash reads all ones: key 0xFFFFFFFF is an empty slot.
const SETTINGS_MAGIC: u64 = 0x3130_5445_534c_4d53; // "SMLSET01"
const SETTINGS_SLOTS: u64 = 64;
const EMPTY: u32 = 0xffff_ffff;
/// Sector program time the handler waits for (a NOR flash page program is of the order of a
/// millisecond; with the erase smmlab does not model, firmware waits several).
const PROGRAM_TIME_US: u64 = 3000;

fn flash_u64(off: u64) -> u64 {
    // SAFETY: the flash is mapped below 4 GiB, identity-mapped in SMM.
    unsafe { core::ptr::read_volatile((SETTINGS_FLASH + off) as *const u64) }
}

fn flash_write(off: u64, bytes: &[u8]) {
    for (k, b) in bytes.iter().enumerate() {
        // SAFETY: as above; the platform stores the byte only while BIOSWE is set in SMM.
        unsafe { core::ptr::write_volatile((SETTINGS_FLASH + off + k as u64) as *mut u8, *b) };
    }
}

fn slot(k: u64) -> (u32, u64) {
    let off = 8 + 16 * k;
    (flash_u64(off) as u32, flash_u64(off + 8))
}

/// The value of setting `key`, if the flash holds one.
pub fn setting(key: u32) -> Option<u64> {
    if flash_u64(0) != SETTINGS_MAGIC {
        return None;
    }
    (0..SETTINGS_SLOTS).map(slot).find(|&(k, _)| k == key).map(|(_, v)| v)
}

/// Writes the flash with BIOSWE set for the duration (SMM_BWP lets only SMM do it).
fn program(parts: &[(u64, &[u8])]) -> u64 {
    let bc = pci::read8(LPC_DEV, 0, LPC_BIOS_CNTL);
    // SAFETY: one CPU in SMM.
    unsafe { OWN_BIOSWE += 1 };
    pci::write8(LPC_DEV, 0, LPC_BIOS_CNTL, bc | BIOS_CNTL_BIOSWE);
    let mut n = 0;
    for (off, bytes) in parts {
        flash_write(*off, bytes);
        n += bytes.len() as u64;
    }
    hw::delay_us(PROGRAM_TIME_US);
    pci::write8(LPC_DEV, 0, LPC_BIOS_CNTL, bc & !BIOS_CNTL_BIOSWE);
    n
}

/// The settings service: message = op u32 (1 get, 2 set), key u32, value u64.
pub fn settings_service(_ctx: &mut SmmContext, msg: &mut [u8]) -> u64 {
    if msg.len() < SETTINGS_MESSAGE_SIZE {
        puts(" settings: message too small");
        return EFI_BAD_BUFFER_SIZE;
    }
    let op = u32::from_le_bytes(msg[0..4].try_into().unwrap());
    let key = u32::from_le_bytes(msg[4..8].try_into().unwrap());
    let value = u64::from_le_bytes(msg[8..16].try_into().unwrap());
    puts(" settings ");
    match op {
        SETTINGS_GET => {
            puts("get key=");
            dec(key as u64);
            match setting(key) {
                Some(v) => {
                    puts(" value=");
                    dec(v);
                    msg[8..16].copy_from_slice(&v.to_le_bytes());
                    EFI_SUCCESS
                }
                None => {
                    puts(" (not set)");
                    EFI_NOT_FOUND
                }
            }
        }
        SETTINGS_SET => {
            puts("set key=");
            dec(key as u64);
            puts(" value=");
            dec(value);
            if key == 0 || key == EMPTY || (key == SETTING_FAN_MIN_DUTY && value > 100) {
                puts(" rejected: invalid");
                return EFI_INVALID_PARAMETER;
            }
            let mut parts: [(u64, &[u8]); 2] = [(0, &[]), (0, &[])];
            let magic = SETTINGS_MAGIC.to_le_bytes();
            if flash_u64(0) != SETTINGS_MAGIC {
                parts[0] = (0, &magic);
            }
            let free = (0..SETTINGS_SLOTS).find(|&k| slot(k).0 == key).or_else(|| (0..SETTINGS_SLOTS).find(|&k| slot(k).0 == EMPTY));
            let Some(k) = free else {
                puts(" rejected: flash sector full");
                return EFI_OUT_OF_RESOURCES;
            };
            let mut entry = [0u8; 16];
            entry[0..4].copy_from_slice(&key.to_le_bytes());
            entry[8..16].copy_from_slice(&value.to_le_bytes());
            parts[1] = (8 + 16 * k, &entry);
            let n = program(&parts);
            puts(" -> flash ");
            hex64(SETTINGS_FLASH + 8 + 16 * k);
            puts(" (");
            dec(n);
            puts(" bytes, BIOSWE raised in SMM, ");
            dec(PROGRAM_TIME_US);
            puts(" us program time)");
            if setting(key) != Some(value) {
                puts(" VERIFY FAILED");
                return EFI_DEVICE_ERROR;
            }
            EFI_SUCCESS
        }
        _ => {
            puts("unknown op");
            EFI_INVALID_PARAMETER
        }
    }
}

/// TCO1_STS.BIOSWR_STS: somebody set BIOSWE while BLE is set. SMM's own flash updates are
/// allowed; anyone else's write enable is taken back before the next instruction outside SMM.
pub fn bios_write_attempt(_ctx: &mut SmmContext) {
    let bc = pci::read8(LPC_DEV, 0, LPC_BIOS_CNTL);
    // SAFETY: one CPU in SMM.
    let own = unsafe { OWN_BIOSWE > 0 };
    puts("smm: bios-write BIOS_CNTL=");
    hex16(bc as u16);
    if own {
        // SAFETY: as above.
        unsafe { OWN_BIOSWE -= 1 };
        puts(" BIOSWE raised by SMM itself (settings update): allowed\n");
        return;
    }
    pci::write8(LPC_DEV, 0, LPC_BIOS_CNTL, bc & !BIOS_CNTL_BIOSWE);
    puts(" BIOSWE raised outside SMM: cleared again (BLE), BIOS_CNTL=");
    hex16(pci::read8(LPC_DEV, 0, LPC_BIOS_CNTL) as u16);
    puts("\n");
}
