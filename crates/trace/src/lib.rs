//! smmlab-trace: what the machine's SMIs looked like, built from the
//! [`machine::events::MachineEvent`] stream and nothing else (observers never change the
//! machine).
//!
//! - [`timeline`] folds events into one [`SmiRecord`] per SMM entry and prints it as a line;
//! - [`latency`] summarises the records: SMIs by source, time in SMM, p50/p99/max per source
//!   and the SMIs longer than a limit (by default the BITS 150 µs guideline);
//! - [`vcd`] writes a logic-analyzer waveform (SMI#, SMIACT#, one wire per source, APM_CNT);
//! - [`chrome`] writes the Chrome trace event format that Perfetto and `chrome://tracing` open;
//! - [`host`] writes the real machine's gaps (`smmlab host`) in those two formats.
//!
//! All times are guest time from the virtual clock (ticks at the configured instruction rate),
//! so the same run gives byte-identical output.
#![warn(missing_docs)]

pub mod chrome;
pub mod host;
pub mod latency;
pub mod timeline;
pub mod vcd;

pub use latency::{LatencySummary, SourceLatency, BITS_SMI_LATENCY_US};
pub use timeline::{Outcome, SmiRecord, Timeline};
