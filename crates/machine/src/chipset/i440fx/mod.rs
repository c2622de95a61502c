//! The i440FX chipset: the 82441FX PCI and memory controller (PMC) and the PIIX4 power
//! management function (as QEMU's `pc` machine pairs them).

pub mod piix3_ide;
pub mod piix3_isa;
pub mod piix4_pm;
pub mod pmc;
