//! The gap detector: hwlat's sampling loop over an injectable [`Source`].
//!
//! Within each window of `window` TSC ticks the loop samples for `width` ticks (hwlat's
//! defaults are 1000 ms and 500 ms), then sleeps until the next window. Each iteration reads
//! the TSC twice: a gap between the two reads is an *inner* gap, one between the second read
//! and the next iteration's first an *outer* gap (hwlat's inner/outer). A gap over the
//! threshold is recorded at once, with the SMI and NMI counters read right after it: the
//! counters moved since their last read (the previous gap, or the start). The time the counter
//! reads take is not a gap: the loop starts again from a fresh TSC read after them.

use serde::{Deserialize, Serialize};

/// What the detector reads on one CPU. The real one is [`crate::linux::HostSource`]; tests
/// script one.
pub trait Source {
    /// The time-stamp counter (read on the CPU under test).
    fn tsc(&mut self) -> u64;
    /// The SMI count of this CPU, if it can be read.
    fn smi_count(&mut self) -> Option<u64>;
    /// The NMI count of this CPU, if it can be read.
    fn nmi_count(&mut self) -> Option<u64>;
    /// Wall-clock time (ns since the Unix epoch), read once at the start: the gaps' `ts:`.
    fn wall_ns(&mut self) -> u64;
    /// Waits until the TSC reaches `tsc` (between sampling widths).
    fn sleep_until(&mut self, tsc: u64);
}

/// The detector's parameters, in TSC ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The CPU sampled (reported in each gap).
    pub cpu: u32,
    /// TSC ticks per second.
    pub tsc_hz: u64,
    /// How long to run.
    pub duration: u64,
    /// A gap longer than this many ticks is recorded.
    pub threshold: u64,
    /// The window period.
    pub window: u64,
    /// The sampling time within each window (at most `window`).
    pub width: u64,
}

impl Config {
    /// A configuration from the command line's units: seconds, microseconds, milliseconds.
    pub fn from_units(cpu: u32, tsc_hz: u64, duration_s: f64, threshold_us: u64, window_ms: u64, width_ms: u64) -> Config {
        let per_ms = tsc_hz / 1000;
        let window = window_ms.max(1) * per_ms;
        Config {
            cpu,
            tsc_hz,
            duration: (duration_s.max(0.0) * tsc_hz as f64) as u64,
            threshold: u64::try_from(u128::from(threshold_us) * u128::from(tsc_hz) / 1_000_000).unwrap_or(u64::MAX),
            window,
            width: (width_ms.max(1) * per_ms).min(window),
        }
    }

    /// TSC ticks as nanoseconds.
    pub fn ns(&self, ticks: u64) -> u64 {
        u64::try_from(u128::from(ticks) * 1_000_000_000 / u128::from(self.tsc_hz.max(1))).unwrap_or(u64::MAX)
    }
}

/// What a gap is attributed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// The SMI counter moved: the CPU was in SMM.
    Smi,
    /// The NMI count moved (and the SMI counter did not).
    Nmi,
    /// Neither counter moved, or none could be read: a hypervisor, the hardware.
    Unattributed,
}

impl Class {
    /// The name in the hwlat line and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Class::Smi => "smi",
            Class::Nmi => "nmi",
            Class::Unattributed => "unattributed",
        }
    }
}

/// One gap over the threshold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// The CPU.
    pub cpu: u32,
    /// 1 for the CPU's first gap.
    pub seq: u64,
    /// When the gap began, ns since the start of the measurement.
    pub start_ns: u64,
    /// Its length, ns.
    pub length_ns: u64,
    /// When it began, ns since the Unix epoch (hwlat's `ts:`).
    pub wall_ns: u64,
    /// Between the two reads of one iteration (true) or between iterations (false).
    pub inner: bool,
    /// What it is attributed to.
    pub class: Class,
    /// How far the SMI counter moved since its last read (None: not readable).
    pub smi_delta: Option<u64>,
    /// How far the NMI count moved since its last read (None: not readable).
    pub nmi_delta: Option<u64>,
}

/// What one CPU's run saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuRun {
    /// The CPU.
    pub cpu: u32,
    /// The gaps, in order.
    pub gaps: Vec<Gap>,
    /// Time sampled (the widths), ns.
    pub sampled_ns: u64,
    /// Time from start to end, ns.
    pub elapsed_ns: u64,
    /// How far the SMI counter moved over the run (None: not readable).
    pub smis: Option<u64>,
    /// How far the NMI count moved over the run (None: not readable).
    pub nmis: Option<u64>,
}

fn delta(before: Option<u64>, after: Option<u64>) -> Option<u64> {
    Some(after?.wrapping_sub(before?))
}

/// Runs the detector on `s` for `c.duration` ticks.
pub fn detect<S: Source>(s: &mut S, c: &Config) -> CpuRun {
    let (smi0, nmi0) = (s.smi_count(), s.nmi_count());
    let wall0 = s.wall_ns();
    let start = s.tsc();
    let end = start.saturating_add(c.duration);
    let (mut smi_prev, mut nmi_prev) = (smi0, nmi0);
    let mut gaps = Vec::new();
    let mut sampled = 0u64;
    let mut window = start;
    let mut record = |s: &mut S, from: u64, to: u64, inner: bool| {
        let (smi, nmi) = (s.smi_count(), s.nmi_count());
        let (sd, nd) = (delta(smi_prev, smi), delta(nmi_prev, nmi));
        (smi_prev, nmi_prev) = (smi.or(smi_prev), nmi.or(nmi_prev));
        let class = if sd.unwrap_or(0) > 0 {
            Class::Smi
        } else if nd.unwrap_or(0) > 0 {
            Class::Nmi
        } else {
            Class::Unattributed
        };
        let start_ns = c.ns(from - start);
        gaps.push(Gap {
            cpu: c.cpu,
            seq: gaps.len() as u64 + 1,
            start_ns,
            length_ns: c.ns(to - from),
            wall_ns: wall0.saturating_add(start_ns),
            inner,
            class,
            smi_delta: sd,
            nmi_delta: nd,
        });
    };
    while window < end {
        let width_end = window.saturating_add(c.width).min(end);
        let first = s.tsc().max(window);
        let mut last = first;
        while last < width_end {
            let t1 = s.tsc();
            if t1.saturating_sub(last) > c.threshold {
                record(s, last, t1, false);
                last = s.tsc();
                continue;
            }
            let t2 = s.tsc();
            if t2.saturating_sub(t1) > c.threshold {
                record(s, t1, t2, true);
                last = s.tsc();
                continue;
            }
            last = t2;
        }
        sampled += last.min(width_end).saturating_sub(first);
        window = window.saturating_add(c.window);
        if window < end {
            s.sleep_until(window);
        }
    }
    let stop = s.tsc().max(end);
    let (smi1, nmi1) = (s.smi_count(), s.nmi_count());
    CpuRun { cpu: c.cpu, gaps, sampled_ns: c.ns(sampled), elapsed_ns: c.ns(stop - start), smis: delta(smi0, smi1), nmis: delta(nmi0, nmi1) }
}
