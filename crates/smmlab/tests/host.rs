//! `smmlab host` on this machine, and `smmlab run --smi-load` replaying a recorded host
//! pattern into the built-in OS.

use std::path::PathBuf;
use std::process::Command;

fn smmlab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smmlab"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("smmlab-host-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The real detector for one second: exit 0, a JSON report that says which sources it could
/// read, and a line on stdout for each of them.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn host_runs_and_says_which_sources_it_had() {
    let d = tmpdir("run");
    let (json, vcd, tj) = (d.join("host.json"), d.join("host.vcd"), d.join("host-trace.json"));
    let o = smmlab()
        .args(["host", "--duration", "1", "--window", "100", "--width", "50", "--cpus", "0", "--json"])
        .arg(&json)
        .arg("--vcd")
        .arg(&vcd)
        .arg("--trace-json")
        .arg(&tj)
        .output()
        .unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["tool"], "smmlab host");
    assert!(r["tsc_hz"].as_u64().unwrap() > 100_000_000, "{}", r["tsc_hz"]);
    for name in ["tsc", "smi_counter", "nmi_counter", "affinity", "realtime_priority"] {
        let s = &r["sources"][name];
        let available = s["available"].as_bool().unwrap_or_else(|| panic!("no sources.{name}.available: {r}"));
        assert!(!s["what"].as_str().unwrap().is_empty());
        // A source that is missing says why, in the JSON and on stdout.
        if !available {
            assert!(!s["detail"].as_str().unwrap().is_empty(), "{name}: {s}");
            assert!(out.lines().any(|l| l.trim_start().starts_with(&format!("{name}: ")) && l.contains("not available")), "{name}:\n{out}");
        }
    }
    assert_eq!(r["sources"]["tsc"]["available"], true);
    assert_eq!(r["hypervisor"].as_bool(), Some(std::fs::read_to_string("/proc/cpuinfo").unwrap().contains(" hypervisor")));
    let cpus = r["cpus"].as_array().unwrap();
    assert_eq!(cpus.len(), 1);
    let c = &cpus[0];
    assert_eq!(c["cpu"], 0);
    // Ten windows of 50 ms sampled.
    let sampled = c["summary"]["sampled_ns"].as_u64().unwrap();
    assert!((450_000_000..=550_000_000).contains(&sampled), "{sampled}");
    let gaps = c["gaps"].as_array().unwrap();
    assert_eq!(c["summary"]["gaps"].as_u64().unwrap(), gaps.len() as u64);
    // One hwlat line per gap, and one summary line.
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with('#') && l.contains(" inner/outer(us): ")).collect();
    assert_eq!(lines.len(), gaps.len(), "{out}");
    for (l, g) in lines.iter().zip(gaps) {
        assert!(l.contains(&format!(" class:{}", g["class"].as_str().unwrap())), "{l}");
        assert!(g["length_ns"].as_u64().unwrap() > 10_000, "{g}");
    }
    assert!(out.lines().any(|l| l.starts_with("cpu0: ") && l.contains(" over the 150 us budget")), "{out}");
    assert!(std::fs::read_to_string(&vcd).unwrap().contains("$scope module cpu0 $end"));
    let t: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&tj).unwrap()).unwrap();
    let x = t["traceEvents"].as_array().unwrap().iter().filter(|e| e["ph"] == "X").count();
    assert_eq!(x, gaps.len());
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn host_refuses_cpus_it_cannot_sample() {
    for (list, why) in [("9999", "CPU 9999 is not online"), ("x", "bad CPU list")] {
        let o = smmlab().args(["host", "--duration", "0.1", "--cpus", list]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(why), "{err}");
    }
}

/// A recorded pattern: on cpu0, a 300 us SMI 1 ms into every 5 ms and a 120 us one at 3 ms.
fn pattern(d: &std::path::Path) -> PathBuf {
    use host_smi::{Class, CpuReport, Gap, Report, SourceStatus, Summary};
    let gap = |seq, start_ns, length_ns| Gap { cpu: 0, seq, start_ns, length_ns, wall_ns: 0, inner: false, class: Class::Smi, smi_delta: Some(1), nmi_delta: Some(0) };
    let gaps = vec![gap(1, 1_000_000, 300_000), gap(2, 3_000_000, 120_000), Gap { class: Class::Nmi, ..gap(3, 4_000_000, 50_000) }];
    let summary = Summary {
        gaps: 3,
        smi_gaps: 2,
        nmi_gaps: 1,
        unattributed_gaps: 0,
        smis: Some(2),
        smis_per_s: Some(400.0),
        nmis: Some(1),
        gap_p50_ns: 120_000,
        gap_p99_ns: 300_000,
        gap_max_ns: 300_000,
        stolen_ns: 470_000,
        over_budget: 1,
        sampled_ns: 5_000_000,
        elapsed_ns: 5_000_000,
    };
    let mut sources = std::collections::BTreeMap::new();
    sources.insert("smi_counter".to_string(), SourceStatus::ok("MSR_SMI_COUNT"));
    let r = Report {
        tool: "smmlab host".into(),
        duration_s: 0.005,
        threshold_us: 10,
        window_ms: 5,
        width_ms: 5,
        budget_us: 150,
        tsc_hz: 1_000_000_000,
        tsc_hz_source: "test".into(),
        vendor: "GenuineIntel".into(),
        hypervisor: false,
        root: true,
        sources,
        cpus: vec![CpuReport { cpu: 0, summary, gaps }],
    };
    let p = d.join("pattern.json");
    std::fs::write(&p, serde_json::to_string_pretty(&r).unwrap()).unwrap();
    p
}

struct Replay {
    status: Option<i32>,
    stdout: String,
    debugcon: String,
    vcd: Vec<u8>,
}

fn replay(d: &std::path::Path, tag: &str, load: Option<&std::path::Path>) -> Replay {
    let (con, vcd) = (d.join(format!("{tag}.con")), d.join(format!("{tag}.vcd")));
    let mut c = smmlab();
    c.args(["run", "--debugcon"]).arg(&con).arg("--vcd").arg(&vcd);
    if let Some(l) = load {
        c.arg("--smi-load").arg(l);
    }
    let o = c.output().unwrap();
    Replay {
        status: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        debugcon: std::fs::read_to_string(&con).unwrap_or_default(),
        vcd: std::fs::read(&vcd).unwrap_or_default(),
    }
}

/// "os: hwlat: N gaps over 1 us in 60 ms of workload, max M us, total T us stolen".
fn hwlat(r: &Replay) -> (u64, u64, u64) {
    let l = r.debugcon.lines().find(|l| l.starts_with("os: hwlat: ")).unwrap_or_else(|| panic!("no hwlat line:\n{}", r.debugcon));
    let num = |after: &str| l.split(after).nth(1).and_then(|x| x.split(' ').next()).and_then(|x| x.parse().ok()).unwrap_or_else(|| panic!("{l}"));
    (num("os: hwlat: "), num("max "), num("total "))
}

#[test]
fn a_recorded_pattern_makes_the_builtin_os_see_its_gaps() {
    let d = tmpdir("replay");
    let p = pattern(&d);
    let base = replay(&d, "base", None);
    let r = replay(&d, "load", Some(&p));
    assert_eq!(r.status, Some(0), "{}\n{}", r.stdout, r.debugcon);
    assert!(r.stdout.contains("SMI load from") && r.stdout.contains("2 gaps (2 smi, 0 unattributed; 1 nmi left out"), "{}", r.stdout);
    // The timeline: the load's SMIs at 1 and 3 ms into every 5 ms from the SMRAM lock, 300
    // and 120 us long.
    // Every SMI of the timeline: (entry ns, ns in SMM, from the load: alone or merged with
    // others, as in `apm 0x01+smi-load`).
    let all: Vec<(u64, u64, bool)> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with('[') && l.contains(" SMI ") && l.contains(" smbase "))
        .map(|l| {
            let at = l.split(" ms]").next().unwrap().trim_start_matches('[').trim();
            let (ms, frac) = at.split_once('.').unwrap();
            let at_ns = ms.parse::<u64>().unwrap() * 1_000_000 + frac.parse::<u64>().unwrap();
            let us = l.split(" us ").next().unwrap().rsplit(' ').next().unwrap();
            let (whole, f) = us.split_once('.').unwrap();
            let label = l.split(" cpu0 ").nth(1).and_then(|x| x.split(" smbase ").next()).unwrap();
            (at_ns, whole.parse::<u64>().unwrap() * 1000 + f.parse::<u64>().unwrap(), label.trim().split('+').any(|x| x == "smi-load"))
        })
        .collect();
    let smis: Vec<(usize, u64, u64)> = all.iter().enumerate().filter(|s| s.1 .2).map(|(i, s)| (i, s.0, s.1)).collect();
    assert!(smis.len() >= 20, "{}", r.stdout);
    // The pattern starts at the lock, 1 ms before the first SMI.
    let origin = smis[0].1 - 1_000_000;
    for (n, &(i, at, len)) in smis.iter().enumerate() {
        let (offset, want) = if n % 2 == 0 { (1_000_000, 300_000) } else { (3_000_000, 120_000) };
        let due = origin + (n / 2) as u64 * 5_000_000 + offset;
        // Taken at once (to the printed ns), or, if the CPU was in SMM for another SMI then,
        // right after its RSM.
        let in_smm = i > 0 && all[i - 1].0 <= due && all[i - 1].0 + all[i - 1].1 >= due;
        assert!(at + 2 >= due && (at.abs_diff(due) < 5_000 || in_smm), "SMI {n} at {at} ns, due at {due}");
        assert!(len >= want && len - want < 20_000, "SMI {n} {len} ns, recorded {want}");
    }
    // The OS's gap detector: over its 60 ms workload, 12 periods of the pattern, two more gaps
    // per period than without the load, the longest 300 us, about 12 * 420 us more stolen.
    let ((n0, _, t0), (n, max, t)) = (hwlat(&base), hwlat(&r));
    assert!((n0 + 22..=n0 + 26).contains(&n), "{n0} gaps without, {n} with the load");
    assert!((300..310).contains(&max), "max {max}");
    let added = t - t0;
    assert!((11 * 420..=13 * 420 + 200).contains(&added), "{added} us more stolen");
    // Deterministic: the same file, the same waveform byte for byte.
    let again = replay(&d, "again", Some(&p));
    assert!(!r.vcd.is_empty());
    assert_eq!(r.vcd, again.vcd);
}

#[test]
fn a_missing_or_malformed_load_is_refused_naming_the_file() {
    let d = tmpdir("bad");
    let bad = d.join("bad.json");
    std::fs::write(&bad, "{\"tool\": \"smmlab host\"}").unwrap();
    for (p, why) in [(d.join("nope.json"), "cannot read it"), (bad.clone(), "not a `smmlab host --json` report")] {
        let o = smmlab().arg("run").arg("--smi-load").arg(&p).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(&p.display().to_string()) && err.contains(why), "{err}");
    }
}
