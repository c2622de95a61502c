//! The q35 chipset: the 3 Series (Bearlake) MCH host bridge and the ICH9 LPC bridge.

pub mod ich9_lpc;
pub mod ich9_sata;
pub mod mch;
