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

#[cfg(test)]
mod tests {
    use super::ROM;

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
