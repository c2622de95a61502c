//! Vendor SMM drivers run on their own: one UEFI SMM driver (a DXE_SMM_DRIVER or MM_STANDALONE
//! PE32+, from a file or from any firmware image `crates/fwimage` parses) is loaded into the
//! SMRAM of a synthetic q35 platform with exact SMM ([`platform`]), given an SMST, boot services
//! and protocols the host implements ([`services`]), and its entry point is run in SMM by a
//! real SMI ([`runner`]). What it registered is listed in the inventory format of
//! `crates/uefi` ([`report`]); its handlers can be called one by one, and the audit drives them
//! all.

pub mod efi;
pub mod entry_stub;
pub mod heap;
pub mod layout;
pub mod loader;
pub mod platform;
pub mod report;
pub mod runner;
pub mod services;
pub mod source;

pub use runner::{CallResult, Module, ModuleKind, Phase, RunError, Runner};
