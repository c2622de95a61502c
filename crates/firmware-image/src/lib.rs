//! smmlab's built-in firmware as a ROM image (built from `/firmware` by `build.rs`): a reset
//! vector, long-mode platform set-up, SMM installed in TSEG with SMBASE relocation, an SMI
//! dispatcher with SW SMI services, locking (D_LCK, SMRR, SMI_LOCK, SMM_CODE_CHK), and a small
//! OS that calls the services and exits through isa-debug-exit. For the q35 machine.

pub mod scenarios;

/// The ROM image: 128 KiB, mapped to end at 4 GiB.
pub static ROM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/smmlab-builtin.rom"));

/// The flash sector that holds the firmware's settings (firmware/src/hw.rs SETTINGS_FLASH):
/// its offset in [`ROM`] and its size. Erased (all ones) in the image.
pub const SETTINGS_SECTOR_OFFSET: usize = 0xf000;
/// Size of the settings sector.
pub const SETTINGS_SECTOR_SIZE: usize = 0x1000;

/// The least guest RAM, in MiB, the built-in firmware runs with: its RAM probe starts at
/// 16 MiB and takes any less for 16 MiB, so with less TSEG (the top 1 MiB) lies past the end of
/// RAM and the OS's memory (from 2 MiB) is missing (firmware/src/layout.rs `LOW_RAM_MIN`).
pub const MIN_MEMORY_MIB: u64 = 16;

/// Checks that `memory_mib` MiB of RAM is enough for the built-in firmware (0 is left to the
/// machine's own range check).
pub fn check_memory(memory_mib: u64) -> Result<(), String> {
    if (1..MIN_MEMORY_MIB).contains(&memory_mib) {
        return Err(format!(
            "--memory {memory_mib}: the built-in firmware needs at least {MIN_MEMORY_MIB} MiB of RAM (its RAM probe starts at 16 MiB and TSEG is the top 1 MiB of low RAM)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ROM;

    #[test]
    fn the_minimum_memory_is_the_firmwares() {
        let layout = include_str!("../../../firmware/src/layout.rs");
        let mib = super::MIN_MEMORY_MIB;
        assert!(layout.contains(&format!("pub const LOW_RAM_MIN: u64 = {mib} << 20;")), "firmware/src/layout.rs LOW_RAM_MIN is not {mib} MiB");
        assert!(super::check_memory(mib).is_ok());
        let e = super::check_memory(mib - 1).unwrap_err();
        assert!(e.contains("at least 16 MiB"), "{e}");
    }

    #[test]
    fn rom_is_128k_with_a_reset_vector_and_the_smm_image() {
        assert_eq!(ROM.len(), 0x2_0000);
        assert_eq!(ROM[ROM.len() - 16], 0xe9, "jmp rel16 at 0xFFFFFFF0");
        assert_eq!(&ROM[..4], b"SMMI");
        let entry = u64::from_le_bytes(ROM[16..24].try_into().unwrap());
        assert!(entry >= 0xffff_ffff_8000_0000, "SMM entry {entry:#x} at SMM_VA");
        let sector = &ROM[super::SETTINGS_SECTOR_OFFSET..][..super::SETTINGS_SECTOR_SIZE];
        assert!(sector.iter().all(|&b| b == 0xff), "the settings sector is erased flash");
    }
}
