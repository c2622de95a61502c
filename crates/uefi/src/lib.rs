//! UEFI SMM made visible from a snapshot of SMRAM, for any firmware built on edk2's SMM core
//! (PiSmmCore: OVMF, and the vendor firmware derived from edk2):
//!
//! - [`images`]: the PE images loaded into SMRAM, found by their headers, each named by the
//!   firmware-volume file it came from (matched by its header fingerprint with
//!   `crates/fwimage`), else by its CodeView debug path, so every SMM address reads
//!   `Module+0xRVA`.
//! - [`core_lists`]: the SMI handlers and the protocol database the SMM core keeps in SMRAM
//!   (its `smie`/`smih` and `spte`/`spif`/`sptn` records), walked as the core links them, so
//!   freed records that still carry a signature are not reported.
//! - [`registrations`]: when each handler appeared and which were removed, from looks at the
//!   core's lists after every RSM.
//! - [`inventory`]: all of it together, with GUIDs named ([`guid_names`]), as text and JSON.
//!
//! The layouts are edk2-stable202211's (`MdeModulePkg/Core/PiSmmCore/PiSmmCore.h`,
//! `PiSmmCorePrivateData.h`; see the project's UEFI SMM reference).

pub mod core_lists;
pub mod guid_names;
pub mod handler_latency;
pub mod images;
pub mod inventory;
pub mod registrations;
pub mod smram;
pub mod smst;

pub use inventory::Inventory;
pub use smram::Smram;
