//! SMBASE relocation: RSM loads SMBASE from the save area, so the next SMI enters at the new
//! base (revision bit 17; Intel SDM vol. 3C ch. 34; AMD APM vol. 2 ch. 10).

use super::savestate::{Image, MapKind};

/// SMBASE after power-on.
pub const DEFAULT_SMBASE: u32 = 0x30000;

/// The SMBASE RSM takes from the saved image (relocation is supported on every model smmlab
/// offers).
pub(super) fn relocated_smbase(map: MapKind, img: &Image) -> u32 {
    match map {
        // AMD keeps SMBASE[3:0] zero (SMM_BASE MSR).
        MapKind::Amd64 => img.smbase as u32 & !0xf,
        _ => img.smbase as u32,
    }
}
