//! SMI latency: what the SMIs of a [`Timeline`] cost the interrupted program, in the terms of
//! Linux hwlat/hwlatdetect (max latency, samples over a threshold) plus the Intel BITS
//! `smilatency.py` verdict: an SMI should take less than 150 µs.
//!
//! The latency of one SMI is the guest time from SMM entry to RSM. "Time the OS lost" is the
//! time in SMM after SMRAM was locked (D_LCK), when the firmware's boot phase is over; the total
//! time in SMM and its share of the run are given as well.

use crate::timeline::{ns, SmiRecord, Timeline};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The BITS guideline: SMI latency below 150 µs "to minimize risk of OS timeouts".
pub const BITS_SMI_LATENCY_US: f64 = 150.0;

/// Latency figures for one SMI source (or all of them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SourceLatency {
    /// SMM entries.
    pub count: u64,
    /// Entries that reached RSM (the figures below cover these).
    pub finished: u64,
    /// Guest time in SMM, ns.
    pub total_ns: u64,
    /// Median latency (nearest rank), ns.
    pub p50_ns: u64,
    /// 99th percentile latency (nearest rank), ns.
    pub p99_ns: u64,
    /// Longest latency, ns.
    pub max_ns: u64,
    /// Instructions retired in SMM.
    pub smm_instructions: u64,
}

/// An SMI longer than the limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SlowSmi {
    /// Its index in the timeline (1-based).
    pub index: u64,
    /// Source and command ("apm 0x10").
    pub label: String,
    /// Guest time of entry, ns.
    pub entered_ns: u64,
    /// Latency, ns.
    pub duration_ns: u64,
}

/// The latency summary of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Figures per source ("apm", "periodic", ..., "unknown").
    pub by_source: BTreeMap<&'static str, SourceLatency>,
    /// Figures per handler: the source, with the APM command or the trapped port and
    /// direction ("apm 0x10", "io-trap 0x02f8 out"), which is what selects the handler.
    pub by_handler: BTreeMap<String, SourceLatency>,
    /// Figures over all sources.
    pub all: SourceLatency,
    /// Guest time of the whole run, ns.
    pub run_ns: u64,
    /// Share of the run spent in SMM, percent.
    pub smm_share_percent: f64,
    /// When SMRAM was locked (end of the firmware's boot phase), ns.
    pub locked_at_ns: Option<u64>,
    /// Guest time in SMM after the lock (the time the OS lost), ns.
    pub os_smm_ns: u64,
    /// Share of the time after the lock spent in SMM, percent.
    pub os_smm_share_percent: f64,
    /// The latency limit, µs.
    pub limit_us: f64,
    /// SMIs longer than the limit.
    pub over_limit: Vec<SlowSmi>,
}

impl LatencySummary {
    /// Summarises `t`'s records for a run that ended at `end` ticks, flagging SMIs longer than
    /// `limit_us` microseconds.
    pub fn new(t: &Timeline, end: u64, limit_us: f64) -> Self {
        let ips = t.ips();
        let end = end.max(t.last_time());
        let mut by: BTreeMap<&'static str, Vec<&SmiRecord>> = BTreeMap::new();
        for r in t.records() {
            by.entry(r.source()).or_default().push(r);
        }
        let all: Vec<&SmiRecord> = t.records().iter().collect();
        let by_source = by.iter().map(|(k, v)| (*k, figures(v, ips))).collect();
        let mut handlers: BTreeMap<String, Vec<&SmiRecord>> = BTreeMap::new();
        for r in t.records() {
            handlers.entry(r.handler()).or_default().push(r);
        }
        let by_handler = handlers.iter().map(|(k, v)| (k.clone(), figures(v, ips))).collect();
        let all_f = figures(&all, ips);
        let run_ns = ns(end, ips);
        let locked = t.locked_at();
        let os_ticks: u64 = all.iter().filter(|r| r.after_lock && r.finished()).map(|r| r.ticks()).sum();
        let os_span = locked.map_or(0, |l| ns(end.saturating_sub(l), ips));
        let os_smm_ns = ns(os_ticks, ips);
        let over_limit = all
            .iter()
            .filter(|r| ns(r.ticks(), ips) as f64 > limit_us * 1000.0)
            .map(|r| SlowSmi { index: r.index, label: r.label(), entered_ns: ns(r.entered, ips), duration_ns: ns(r.ticks(), ips) })
            .collect();
        LatencySummary {
            by_source,
            by_handler,
            smm_share_percent: percent(all_f.total_ns, run_ns),
            all: all_f,
            run_ns,
            locked_at_ns: locked.map(|l| ns(l, ips)),
            os_smm_ns,
            os_smm_share_percent: percent(os_smm_ns, os_span),
            limit_us,
            over_limit,
        }
    }

    /// The summary as text: a table by source, the time in SMM, and one warning per SMI over
    /// the limit.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "--- SMI latency (guest time) ---");
        let _ = writeln!(s, "{:<14} {:>7} {:>12} {:>11} {:>11} {:>11}", "source", "SMIs", "total us", "p50 us", "p99 us", "max us");
        let mut row = |name: &str, f: &SourceLatency| {
            let _ = writeln!(s, "{:<14} {:>7} {:>12} {:>11} {:>11} {:>11}", name, f.count, us(f.total_ns), us(f.p50_ns), us(f.p99_ns), us(f.max_ns));
        };
        for (k, f) in &self.by_source {
            row(k, f);
        }
        row("all", &self.all);
        // By handler, when that says more than by source (APM commands, trapped ports).
        if self.by_handler.len() > self.by_source.len() {
            let _ = writeln!(s, "{:<22} {:>7} {:>12} {:>11} {:>11} {:>11}", "handler", "SMIs", "total us", "p50 us", "p99 us", "max us");
            for (k, f) in &self.by_handler {
                let _ = writeln!(s, "{:<22} {:>7} {:>12} {:>11} {:>11} {:>11}", k, f.count, us(f.total_ns), us(f.p50_ns), us(f.p99_ns), us(f.max_ns));
            }
        }
        let _ = writeln!(s, "time in SMM:      {} us of {} us ({:.3} %)", us(self.all.total_ns), us(self.run_ns), self.smm_share_percent);
        match self.locked_at_ns {
            Some(l) => {
                let _ = writeln!(s, "OS time lost:     {} us in SMM after SMRAM lock at {} us ({:.3} % of the rest of the run)", us(self.os_smm_ns), us(l), self.os_smm_share_percent);
            }
            None => {
                let _ = writeln!(s, "OS time lost:     SMRAM never locked; all {} us in SMM count", us(self.all.total_ns));
            }
        }
        if self.over_limit.is_empty() {
            let _ = writeln!(s, "SMIs over {} us:  none", self.limit_us);
        } else {
            for w in &self.over_limit {
                let _ = writeln!(s, "warning: SMI {} ({}) at {} us took {} us, over the {} us limit", w.index, w.label, us(w.entered_ns), us(w.duration_ns), self.limit_us);
            }
        }
        s
    }
}

/// Nanoseconds as microseconds with three decimals.
fn us(ns: u64) -> String {
    format!("{}.{:03}", ns / 1000, ns % 1000)
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The nearest-rank `q`-th percentile (q in 1..=100) of sorted, non-empty `v`.
fn percentile(v: &[u64], q: usize) -> u64 {
    let rank = (q * v.len()).div_ceil(100).clamp(1, v.len());
    v[rank - 1]
}

fn figures(records: &[&SmiRecord], ips: u64) -> SourceLatency {
    let done: Vec<&&SmiRecord> = records.iter().filter(|r| r.finished()).collect();
    let mut lat: Vec<u64> = done.iter().map(|r| ns(r.ticks(), ips)).collect();
    lat.sort_unstable();
    let ticks: u64 = done.iter().map(|r| r.ticks()).sum();
    SourceLatency {
        count: records.len() as u64,
        finished: done.len() as u64,
        total_ns: ns(ticks, ips),
        p50_ns: if lat.is_empty() { 0 } else { percentile(&lat, 50) },
        p99_ns: if lat.is_empty() { 0 } else { percentile(&lat, 99) },
        max_ns: lat.last().copied().unwrap_or(0),
        smm_instructions: done.iter().map(|r| r.smm_instructions).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::tests::built;

    #[test]
    fn figures_by_source_and_total() {
        let s = LatencySummary::new(&built(), 5000, BITS_SMI_LATENCY_US);
        assert_eq!(s.all.count, 3);
        assert_eq!(s.all.total_ns, 100 + 300 + 100);
        let apm = &s.by_source["apm"];
        assert_eq!((apm.count, apm.p50_ns, apm.p99_ns, apm.max_ns), (2, 100, 300, 300));
        assert_eq!(s.by_source["pin"].count, 1);
        // By handler: the two APM commands apart.
        let h: Vec<(&str, u64, u64)> = s.by_handler.iter().map(|(k, f)| (k.as_str(), f.count, f.max_ns)).collect();
        assert_eq!(h, [("apm 0x01", 1, 300), ("apm 0xe0", 1, 100), ("pin", 1, 100)]);
        assert!(s.render().contains("handler "), "{}", s.render());
        assert_eq!(s.run_ns, 5000);
        assert!((s.smm_share_percent - 10.0).abs() < 1e-9);
        assert_eq!((s.locked_at_ns, s.os_smm_ns), (Some(400), 400));
        assert!(s.over_limit.is_empty());
        assert!(s.render().contains("none"));
    }

    #[test]
    fn small_limit_flags_every_smi() {
        let s = LatencySummary::new(&built(), 5000, 0.001);
        assert_eq!(s.over_limit.len(), 3);
        assert_eq!(s.over_limit[1].label, "apm 0x01");
        assert!(s.render().contains("warning: SMI 2 (apm 0x01) at 1.001 us took 0.300 us"), "{}", s.render());
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!((percentile(&v, 50), percentile(&v, 99), percentile(&v, 100)), (50, 99, 100));
        assert_eq!(percentile(&[7], 99), 7);
    }

    #[test]
    fn empty_timeline() {
        let s = LatencySummary::new(&Timeline::new(1000), 0, 150.0);
        assert_eq!(s.all, SourceLatency::default());
        assert_eq!(s.smm_share_percent, 0.0);
        assert!(s.render().contains("SMRAM never locked"));
    }
}
