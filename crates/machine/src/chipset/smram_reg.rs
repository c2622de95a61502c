//! The SMRAM control register shared by the i440FX PMC (0x72) and the q35 MCH (0x9D): the
//! "compatible SMRAM" layout (Intel 440FX PMC datasheet 290549, 4.1.25; Intel 3 Series Chipset
//! MCH datasheet 316966, 5.1.19).

/// SMRAM.D_OPEN (bit 6).
pub const SMRAM_D_OPEN: u8 = 1 << 6;
/// SMRAM.D_CLS (bit 5).
pub const SMRAM_D_CLS: u8 = 1 << 5;
/// SMRAM.D_LCK (bit 4).
pub const SMRAM_D_LCK: u8 = 1 << 4;
/// SMRAM.G_SMRAME (bit 3).
pub const SMRAM_G_SMRAME: u8 = 1 << 3;
/// SMRAM.C_BASE_SEG (bits 2:0), hard-wired to 010b (the A/B segment).
pub const SMRAM_C_BASE_SEG: u8 = 0b010;
/// SMRAM reset value.
pub const SMRAM_RESET: u8 = SMRAM_C_BASE_SEG;
