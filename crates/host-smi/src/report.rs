//! What `smmlab host` prints and writes: the hwlat-format line of each gap, the per-CPU
//! summary and the JSON report (which `smmlab run --smi-load` reads back).

use crate::detect::{Class, CpuRun, Gap};
use serde::{Deserialize, Serialize};

/// One gap as Linux's hwlat tracer prints a sample (`#1     inner/outer(us):   11/12    ts:
/// 1581527483.343962693 count:1`), with smmlab's fields after it (` cpu:0 class:smi smi:+1
/// nmi:+0`, `?` for a counter that could not be read): parsers of hwlat's line read the
/// fields they know and ignore trailing ones. The gap is inner or outer, so the other
/// field is 0; `count` is 1 (one line per gap, where hwlat prints one per window).
pub fn hwlat_line(g: &Gap) -> String {
    let us = g.length_ns / 1000;
    let (inner, outer) = if g.inner { (us, 0) } else { (0, us) };
    let d = |x: Option<u64>| x.map_or("?".to_string(), |v| format!("+{v}"));
    format!(
        "#{:<5} inner/outer(us): {:>4}/{:<5} ts:{}.{:09} count:1 cpu:{} class:{} smi:{} nmi:{}",
        g.seq,
        inner,
        outer,
        g.wall_ns / 1_000_000_000,
        g.wall_ns % 1_000_000_000,
        g.cpu,
        g.class.name(),
        d(g.smi_delta),
        d(g.nmi_delta)
    )
}

/// Whether a host source could be used, and if not why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// Whether it was used.
    pub available: bool,
    /// What it is (`MSR_SMI_COUNT (0x34) through /dev/cpu/N/msr`, ...).
    pub what: String,
    /// Why not, or a remark (empty when there is nothing to say).
    pub detail: String,
}

impl SourceStatus {
    /// A source that works.
    pub fn ok(what: impl Into<String>) -> Self {
        SourceStatus { available: true, what: what.into(), detail: String::new() }
    }

    /// A source that could not be used, and why.
    pub fn missing(what: impl Into<String>, why: impl Into<String>) -> Self {
        SourceStatus { available: false, what: what.into(), detail: why.into() }
    }

    /// One line for the output: `smi counter: MSR_SMI_COUNT ...: not available (not root)`.
    pub fn line(&self, name: &str) -> String {
        let mut s = format!("{name}: {}", self.what);
        if !self.available {
            s.push_str(": not available");
        }
        if !self.detail.is_empty() {
            s.push_str(&format!(" ({})", self.detail));
        }
        s
    }
}

/// A CPU's numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Gaps over the threshold.
    pub gaps: u64,
    /// Of them attributed to SMIs, NMIs, nothing.
    pub smi_gaps: u64,
    /// Gaps the NMI count explains.
    pub nmi_gaps: u64,
    /// Gaps nothing explains.
    pub unattributed_gaps: u64,
    /// SMIs the counter counted over the run, gaps or not (None: not readable).
    pub smis: Option<u64>,
    /// Those per second of the run.
    pub smis_per_s: Option<f64>,
    /// NMIs over the run (None: not readable).
    pub nmis: Option<u64>,
    /// Gap length percentiles and maximum, ns (0 without gaps).
    pub gap_p50_ns: u64,
    /// 99th percentile.
    pub gap_p99_ns: u64,
    /// The longest gap.
    pub gap_max_ns: u64,
    /// The gaps' total, ns: time stolen from the sampling loop.
    pub stolen_ns: u64,
    /// Gaps longer than the budget.
    pub over_budget: u64,
    /// Time sampled, ns.
    pub sampled_ns: u64,
    /// Time from start to end, ns.
    pub elapsed_ns: u64,
}

/// The nearest-rank percentile `p` (0-100) of sorted values.
fn percentile(sorted: &[u64], p: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p as usize * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

impl Summary {
    /// The summary of `r` against a budget of `budget_ns`.
    pub fn of(r: &CpuRun, budget_ns: u64) -> Summary {
        let mut len: Vec<u64> = r.gaps.iter().map(|g| g.length_ns).collect();
        len.sort_unstable();
        let count = |c: Class| r.gaps.iter().filter(|g| g.class == c).count() as u64;
        Summary {
            gaps: len.len() as u64,
            smi_gaps: count(Class::Smi),
            nmi_gaps: count(Class::Nmi),
            unattributed_gaps: count(Class::Unattributed),
            smis: r.smis,
            smis_per_s: r.smis.map(|n| if r.elapsed_ns == 0 { 0.0 } else { n as f64 * 1e9 / r.elapsed_ns as f64 }),
            nmis: r.nmis,
            gap_p50_ns: percentile(&len, 50),
            gap_p99_ns: percentile(&len, 99),
            gap_max_ns: len.last().copied().unwrap_or(0),
            stolen_ns: len.iter().sum(),
            over_budget: len.iter().filter(|&&l| l > budget_ns).count() as u64,
            sampled_ns: r.sampled_ns,
            elapsed_ns: r.elapsed_ns,
        }
    }

    /// One line: `cpu0: 12 gaps (0 smi, 0 nmi, 12 unattributed), SMIs n/a, gap p50 ...`.
    pub fn line(&self, cpu: u32, budget_us: u64) -> String {
        let us = |ns: u64| format!("{}.{:03}", ns / 1000, ns % 1000);
        let smis = match (self.smis, self.smis_per_s) {
            (Some(n), Some(r)) => format!("{n} SMIs ({r:.2}/s)"),
            _ => "SMIs not counted".to_string(),
        };
        format!(
            "cpu{cpu}: {} gaps ({} smi, {} nmi, {} unattributed), {smis}, gap p50 {} us p99 {} us max {} us, {} us stolen in {} ms sampled, {} over the {budget_us} us budget",
            self.gaps,
            self.smi_gaps,
            self.nmi_gaps,
            self.unattributed_gaps,
            us(self.gap_p50_ns),
            us(self.gap_p99_ns),
            us(self.gap_max_ns),
            us(self.stolen_ns),
            self.sampled_ns / 1_000_000,
            self.over_budget
        )
    }
}

/// One CPU in the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpuReport {
    /// The CPU.
    pub cpu: u32,
    /// Its numbers.
    pub summary: Summary,
    /// Every gap.
    pub gaps: Vec<Gap>,
}

impl CpuReport {
    /// The report of one CPU's run.
    pub fn of(r: &CpuRun, budget_ns: u64) -> CpuReport {
        CpuReport { cpu: r.cpu, summary: Summary::of(r, budget_ns), gaps: r.gaps.clone() }
    }
}

/// The JSON `smmlab host --json` writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// "smmlab host".
    pub tool: String,
    /// `--duration`, s.
    pub duration_s: f64,
    /// `--threshold`, µs.
    pub threshold_us: u64,
    /// `--window`, ms.
    pub window_ms: u64,
    /// `--width`, ms.
    pub width_ms: u64,
    /// `--budget-us`.
    pub budget_us: u64,
    /// TSC ticks per second.
    pub tsc_hz: u64,
    /// Where `tsc_hz` comes from.
    pub tsc_hz_source: String,
    /// CPUID's vendor string.
    pub vendor: String,
    /// CPUID.1:ECX[31], the hypervisor bit: a virtual machine.
    pub hypervisor: bool,
    /// Whether smmlab ran as root.
    pub root: bool,
    /// What could be read, by name: `tsc`, `smi_counter`, `nmi_counter`, `affinity`,
    /// `realtime_priority`.
    pub sources: std::collections::BTreeMap<String, SourceStatus>,
    /// The CPUs sampled.
    pub cpus: Vec<CpuReport>,
}
