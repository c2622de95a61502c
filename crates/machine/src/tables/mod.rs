//! Firmware tables smmlab builds itself and hands to firmware through fw_cfg, as QEMU does for
//! its `pc` and `q35` machines: ACPI tables with the table-loader script that places them
//! ([`loader`], [`aml`], [`acpi`]), and SMBIOS tables ([`smbios`]). Built from the ACPI specification and the chipset
//! datasheets; the contents are smmlab's own, only the fw_cfg file names and the loader
//! command format follow QEMU's published interface.

pub mod acpi;
pub mod aml;
pub mod loader;
pub mod smbios;
