//! The detector against a scripted source: a TSC that advances a fixed step per read and jumps
//! over injected gaps, SMI and NMI counters that step at injected times. Every gap must be
//! found, classified by the counter that moved, and timed to the tick.

use host_smi::{detect, hwlat_line, Class, Config, CpuReport, Source, Summary};

/// A clock at 1 GHz (1 tick = 1 ns) that advances `step` per read; a gap (at, len) makes the
/// first read at or after `at` return `at + len` more.
struct Scripted {
    now: u64,
    step: u64,
    gaps: Vec<(u64, u64)>,
    /// (time, counter increment) for the SMI and NMI counters.
    smi_steps: Vec<(u64, u64)>,
    nmi_steps: Vec<(u64, u64)>,
    smi_readable: bool,
    nmi_readable: bool,
    reads: u64,
    sleeps: Vec<u64>,
}

impl Scripted {
    fn new(gaps: &[(u64, u64)]) -> Self {
        Scripted { now: 1_000_000, step: 10, gaps: gaps.to_vec(), smi_steps: vec![], nmi_steps: vec![], smi_readable: true, nmi_readable: true, reads: 0, sleeps: vec![] }
    }

    fn count(steps: &[(u64, u64)], now: u64) -> u64 {
        steps.iter().filter(|s| s.0 <= now).map(|s| s.1).sum()
    }
}

impl Source for Scripted {
    fn tsc(&mut self) -> u64 {
        self.reads += 1;
        self.now += self.step;
        if let Some(i) = self.gaps.iter().position(|g| g.0 <= self.now) {
            let (_, len) = self.gaps.remove(i);
            self.now += len;
        }
        self.now
    }
    fn smi_count(&mut self) -> Option<u64> {
        self.smi_readable.then(|| 100 + Self::count(&self.smi_steps, self.now))
    }
    fn nmi_count(&mut self) -> Option<u64> {
        self.nmi_readable.then(|| Self::count(&self.nmi_steps, self.now))
    }
    fn wall_ns(&mut self) -> u64 {
        1_581_527_483_000_000_000
    }
    fn sleep_until(&mut self, tsc: u64) {
        self.sleeps.push(tsc);
        self.now = self.now.max(tsc);
    }
}

/// 1 GHz, 10 ms, threshold 10 us, window 2 ms, width 1 ms.
fn config() -> Config {
    Config::from_units(3, 1_000_000_000, 0.010, 10, 2, 1)
}

const T0: u64 = 1_000_000 + 10; // the first TSC read: measurement start

#[test]
fn injected_gaps_are_found_classified_and_timed_exactly() {
    // Three gaps in sampling widths (0-1 ms, 2-3 ms, 4-5 ms after T0), one too short.
    let gaps = [(T0 + 100_000, 150_000), (T0 + 2_300_000, 25_000), (T0 + 4_500_000, 40_000), (T0 + 4_700_000, 9_000)];
    let mut s = Scripted::new(&gaps);
    s.smi_steps = vec![(T0 + 100_000 + 1, 1)]; // counted during the first gap
    s.nmi_steps = vec![(T0 + 2_300_000 + 1, 2)]; // the second
    let r = detect(&mut s, &config());
    assert_eq!(r.gaps.len(), 3, "{:#?}", r.gaps);
    let g = &r.gaps;
    // Each gap starts at the read before it (the first read at or after the injected time,
    // less one step) and lasts the injected length plus the one step of that read.
    for (i, (gap, (at, len))) in g.iter().zip(gaps).enumerate() {
        assert_eq!(gap.seq, i as u64 + 1);
        assert_eq!(gap.cpu, 3);
        assert!(gap.start_ns + T0 < at && at <= gap.start_ns + T0 + 10, "gap {i}: {gap:?}");
        assert_eq!(gap.length_ns, len + 10, "gap {i}");
        assert_eq!(gap.wall_ns, 1_581_527_483_000_000_000 + gap.start_ns);
    }
    assert_eq!(g.iter().map(|g| g.class).collect::<Vec<_>>(), [Class::Smi, Class::Nmi, Class::Unattributed]);
    assert_eq!((g[0].smi_delta, g[0].nmi_delta), (Some(1), Some(0)));
    assert_eq!((g[1].smi_delta, g[1].nmi_delta), (Some(0), Some(2)));
    assert_eq!((g[2].smi_delta, g[2].nmi_delta), (Some(0), Some(0)));
    assert_eq!((r.smis, r.nmis), (Some(1), Some(2)));
    // Five windows of 2 ms: sampling 1 ms in each, sleeping to the next window's start.
    assert_eq!(s.sleeps, vec![T0 + 2_000_000, T0 + 4_000_000, T0 + 6_000_000, T0 + 8_000_000]);
    // Each width starts one read (10 ns) after its window.
    assert_eq!(r.sampled_ns, 5_000_000 - 5 * 10);
    assert!(r.elapsed_ns >= 10_000_000);
}

#[test]
fn a_gap_while_the_loop_sleeps_is_not_a_gap() {
    // 1.5 ms after T0 lies between the first width and the second window.
    let mut s = Scripted::new(&[(T0 + 1_500_000, 300_000)]);
    let r = detect(&mut s, &config());
    assert!(r.gaps.is_empty(), "{:?}", r.gaps);
}

#[test]
fn inner_and_outer_gaps_are_told_apart() {
    // The loop reads the TSC twice per iteration: of two consecutive reads, one ends an inner
    // gap (within an iteration) and the other an outer one (between iterations).
    let mut s = Scripted::new(&[]);
    let r0 = detect(&mut s, &config());
    assert!(r0.gaps.is_empty());
    let kinds: Vec<bool> = (0..2u64)
        .map(|k| {
            let mut s = Scripted::new(&[(T0 + 100_000 + 10 * k, 50_000)]);
            let r = detect(&mut s, &config());
            assert_eq!(r.gaps.len(), 1);
            r.gaps[0].inner
        })
        .collect();
    assert_ne!(kinds[0], kinds[1], "consecutive reads alternate between inner and outer");
}

#[test]
fn without_counters_every_gap_is_unattributed() {
    let mut s = Scripted::new(&[(T0 + 100_000, 20_000)]);
    s.smi_readable = false;
    s.nmi_readable = false;
    s.smi_steps = vec![(T0, 5)];
    let r = detect(&mut s, &config());
    assert_eq!(r.gaps.len(), 1);
    assert_eq!((r.gaps[0].class, r.gaps[0].smi_delta, r.gaps[0].nmi_delta), (Class::Unattributed, None, None));
    assert_eq!((r.smis, r.nmis), (None, None));
    assert!(hwlat_line(&r.gaps[0]).ends_with(" class:unattributed smi:? nmi:?"), "{}", hwlat_line(&r.gaps[0]));
}

#[test]
fn an_smi_counted_outside_any_gap_is_in_the_total_only() {
    // A short SMI (below the threshold) moves the counter; the next gap is the one that sees
    // it: the counters say what happened since they were last read.
    let mut s = Scripted::new(&[(T0 + 500_000, 2_000), (T0 + 600_000, 30_000)]);
    s.smi_steps = vec![(T0 + 500_000, 1)];
    let r = detect(&mut s, &config());
    assert_eq!(r.gaps.len(), 1);
    assert_eq!(r.gaps[0].class, Class::Smi);
    assert_eq!(r.smis, Some(1));
}

#[test]
fn hwlat_line_field_by_field() {
    let mut s = Scripted::new(&[(T0 + 2_300_000, 11_990)]);
    s.smi_steps = vec![(T0 + 2_300_001, 1)];
    let r = detect(&mut s, &config());
    let g = &r.gaps[0];
    let line = hwlat_line(g);
    // hwlat's layout: "#%-5u inner/outer(us): %4llu/%-5llu ts:%lld.%09ld count:%d".
    assert!(line.starts_with("#1     inner/outer(us): "), "{line}");
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f[0], "#1");
    assert_eq!(f[1], "inner/outer(us):");
    let (inner, outer) = f[2].split_once('/').unwrap();
    let us = g.length_ns / 1000;
    assert_eq!(us, 12);
    assert_eq!((inner.parse::<u64>().unwrap(), outer.parse::<u64>().unwrap()), if g.inner { (us, 0) } else { (0, us) });
    let ts = f[3].strip_prefix("ts:").unwrap();
    let (sec, nsec) = ts.split_once('.').unwrap();
    assert_eq!(nsec.len(), 9);
    assert_eq!(sec.parse::<u64>().unwrap() * 1_000_000_000 + nsec.parse::<u64>().unwrap(), g.wall_ns);
    assert_eq!(f[4], "count:1");
    assert_eq!(f[5], "cpu:3");
    assert_eq!(f[6], "class:smi");
    assert_eq!(f[7], "smi:+1");
    assert_eq!(f[8], "nmi:+0");
    assert_eq!(f.len(), 9);
}

#[test]
fn summary_and_json_field_by_field() {
    // Gap lengths 20, 40, 60, 200 us (+10 ns each); budget 150 us.
    let gaps = [(T0 + 100_000, 20_000), (T0 + 300_000, 40_000), (T0 + 2_100_000, 60_000), (T0 + 4_100_000, 200_000)];
    let mut s = Scripted::new(&gaps);
    s.smi_steps = vec![(T0 + 4_100_001, 1), (T0 + 4_100_002, 1)];
    s.nmi_steps = vec![(T0 + 300_001, 1)];
    let r = detect(&mut s, &config());
    let sum = Summary::of(&r, 150_000);
    assert_eq!((sum.gaps, sum.smi_gaps, sum.nmi_gaps, sum.unattributed_gaps), (4, 1, 1, 2));
    assert_eq!(sum.gap_p50_ns, 40_010);
    assert_eq!(sum.gap_p99_ns, 200_010);
    assert_eq!(sum.gap_max_ns, 200_010);
    assert_eq!(sum.stolen_ns, 320_040);
    assert_eq!(sum.over_budget, 1);
    assert_eq!((sum.smis, sum.nmis), (Some(2), Some(1)));
    let rate = sum.smis_per_s.unwrap();
    assert!((rate - 2.0 * 1e9 / r.elapsed_ns as f64).abs() < 1e-9, "{rate}");
    let line = sum.line(3, 150);
    assert!(line.starts_with("cpu3: 4 gaps (1 smi, 1 nmi, 2 unattributed), 2 SMIs ("), "{line}");
    assert!(line.contains("gap p50 40.010 us p99 200.010 us max 200.010 us, 320.040 us stolen"), "{line}");
    assert!(line.ends_with("1 over the 150 us budget"), "{line}");

    let j = serde_json::to_value(CpuReport::of(&r, 150_000)).unwrap();
    assert_eq!(j["cpu"], 3);
    assert_eq!(j["summary"]["gaps"], 4);
    assert_eq!(j["summary"]["over_budget"], 1);
    assert_eq!(j["summary"]["stolen_ns"], 320_040);
    let g = &j["gaps"][3];
    assert_eq!(g["class"], "smi");
    assert_eq!(g["length_ns"], 200_010);
    assert_eq!(g["smi_delta"], 2);
    assert_eq!(g["nmi_delta"], 0);
    assert_eq!(g["seq"], 4);
    assert_eq!(g["start_ns"], r.gaps[3].start_ns);
    assert_eq!(j["gaps"][1]["class"], "nmi");
    assert_eq!(j["gaps"][0]["class"], "unattributed");
    // It reads back as it was written.
    let back: CpuReport = serde_json::from_value(j).unwrap();
    assert_eq!(back.gaps, r.gaps);
}

#[test]
fn percentiles_without_gaps_are_zero() {
    let mut s = Scripted::new(&[]);
    let r = detect(&mut s, &config());
    let sum = Summary::of(&r, 150_000);
    assert_eq!((sum.gaps, sum.gap_p50_ns, sum.gap_max_ns, sum.stolen_ns, sum.over_budget), (0, 0, 0, 0, 0));
    assert!(s.reads > 1000);
}
