//! Devices, one file per part. A device knows register offsets, not where it sits.

pub mod apm;
pub mod debug_exit;
pub mod debugcon;
pub mod lapic;
