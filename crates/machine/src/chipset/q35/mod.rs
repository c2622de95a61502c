//! The q35 chipset: the 3 Series (Bearlake) MCH host bridge and the ICH9 LPC bridge, SATA (AHCI)
//! and SMBus functions.

pub mod ich9_lpc;
pub mod ich9_sata;
pub mod ich9_smbus;
pub mod mch;
