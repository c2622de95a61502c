//! smmlab-host-smi: the SMIs of the machine smmlab runs on.
//!
//! A pinned thread per CPU reads the TSC in a tight loop, as Linux's hwlat tracer does
//! (`kernel/trace/trace_hwlat.c`: sample for `width` within each `window`); every gap between
//! two reads longer than the threshold is time the loop did not get. Each gap is then
//! attributed by the counters read right after it:
//!
//! - [`Class::Smi`]: the SMI counter moved (Intel MSR_SMI_COUNT, AMD `ls_smi_rx`);
//! - [`Class::Nmi`]: the CPU's NMI count in `/proc/interrupts` moved;
//! - [`Class::Unattributed`]: neither (a hypervisor, the hardware, or a counter that could not
//!   be read).
//!
//! [`detect`] holds the detector, written against the [`Source`] trait (TSC, SMI count, NMI
//! count of one CPU) so that tests drive it with scripted clocks and counter steps; [`report`]
//! the per-CPU summary, the hwlat-format line and the JSON; [`linux`] the real sources.
#![warn(missing_docs)]

pub mod detect;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod linux;
pub mod report;

pub use detect::{detect, Class, Config, CpuRun, Gap, Source};
pub use report::{hwlat_line, CpuReport, Report, SourceStatus, Summary};
