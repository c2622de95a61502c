//! `smmlab host`: the SMIs of the machine smmlab runs on. A pinned thread per chosen CPU
//! samples the TSC as Linux's hwlat tracer does (crates/host-smi); each gap over the threshold
//! is printed in hwlat's line format, attributed to an SMI, an NMI or nothing by the host's
//! counters; then a summary per CPU, and on request the JSON report (which `smmlab run
//! --smi-load` replays), a VCD and a Chrome trace in the formats `smmlab run` writes.
//! Exit 0 when it ran, 2 when it could not start.

use anyhow::{bail, Context};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct HostArgs {
    /// How long to measure, seconds.
    #[arg(long, value_name = "S", default_value = "10")]
    pub duration: f64,
    /// The CPUs to sample (`0`, `0-3`, `0,2`); all online CPUs by default.
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,
    /// A gap between two TSC reads longer than this is recorded, µs (hwlat's default is 10).
    #[arg(long, value_name = "US", default_value = "10")]
    pub threshold: u64,
    /// The sampling period, ms: sample for --width within each window (hwlat: 1000).
    #[arg(long, value_name = "MS", default_value = "1000")]
    pub window: u64,
    /// The sampling time within each window, ms (hwlat: 500).
    #[arg(long, value_name = "MS", default_value = "500")]
    pub width: u64,
    /// Gaps longer than this are counted as over budget, µs (BITS' smilatency uses 150).
    #[arg(long, value_name = "US", default_value = "150")]
    pub budget_us: u64,
    /// Write the report as JSON (the input of `smmlab run --smi-load`).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the gaps as a VCD waveform (the signals of `smmlab run --vcd`).
    #[arg(long, value_name = "FILE")]
    pub vcd: Option<PathBuf>,
    /// Write the gaps as Chrome trace events (as `smmlab run --trace-json`).
    #[arg(long, value_name = "FILE")]
    pub trace_json: Option<PathBuf>,
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
pub fn run(_a: HostArgs) -> anyhow::Result<i32> {
    bail!("smmlab host needs Linux on x86-64")
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub fn run(a: HostArgs) -> anyhow::Result<i32> {
    use host_smi::linux;
    use host_smi::{detect, hwlat_line, Config, CpuReport, Report, SourceStatus};
    use std::collections::BTreeMap;

    if !(a.duration.is_finite() && a.duration > 0.0 && a.duration <= 86_400.0) {
        bail!("--duration {}: not a number of seconds between 0 and 86400", a.duration);
    }
    if a.width == 0 || a.window == 0 || a.width > a.window {
        bail!("--width {} --window {}: the width must be at least 1 ms and at most the window", a.width, a.window);
    }
    if a.threshold == 0 {
        bail!("--threshold 0: the threshold must be at least 1 us");
    }
    for (flag, path) in [("--json", &a.json), ("--vcd", &a.vcd), ("--trace-json", &a.trace_json)] {
        if let Some(p) = path {
            super::check_output(flag, p)?;
        }
    }
    let online = linux::online_cpus().map_err(|e| anyhow::anyhow!("cannot list the online CPUs: {e}"))?;
    let cpus = match &a.cpus {
        Some(s) => {
            let v = linux::parse_cpu_list(s).map_err(|e| anyhow::anyhow!("--cpus: {e}"))?;
            if let Some(c) = v.iter().find(|c| !online.contains(c)) {
                bail!("--cpus {s}: CPU {c} is not online (online: {})", list(&online));
            }
            v
        }
        None => online,
    };

    let vendor = linux::vendor();
    let (hypervisor, root) = (linux::hypervisor(), linux::root());
    let (tsc_hz, tsc_how) = linux::tsc_hz();
    if tsc_hz == 0 {
        bail!("cannot tell the TSC frequency");
    }
    let cfg = |cpu| Config::from_units(cpu, tsc_hz, a.duration, a.threshold, a.window, a.width);
    println!(
        "host: {vendor}{}, TSC {}.{:03} MHz ({tsc_how}), {}, CPUs {}",
        if hypervisor { " in a virtual machine (CPUID hypervisor bit)" } else { "" },
        tsc_hz / 1_000_000,
        tsc_hz / 1000 % 1000,
        if root { "root" } else { "not root" },
        list(&cpus)
    );
    println!(
        "sampling {} s: {} ms of every {} ms, gaps over {} us; budget {} us",
        a.duration, a.width, a.window, a.threshold, a.budget_us
    );

    // One pinned thread per CPU; each opens its own counters on its CPU.
    struct Done {
        run: host_smi::CpuRun,
        smi: SourceStatus,
        nmi: SourceStatus,
        pin: SourceStatus,
        rt: SourceStatus,
    }
    let threads: Vec<_> = cpus
        .iter()
        .map(|&cpu| {
            let (vendor, c) = (vendor.clone(), cfg(cpu));
            std::thread::spawn(move || {
                let pin = match linux::pin(cpu) {
                    Ok(()) => SourceStatus::ok("sched_setaffinity"),
                    Err(e) => SourceStatus::missing("sched_setaffinity", e),
                };
                let rt = match linux::realtime() {
                    Ok(()) => SourceStatus::ok("SCHED_FIFO priority 1"),
                    Err(e) => SourceStatus::missing("SCHED_FIFO priority 1", format!("{e}; sampling at normal priority, so the scheduler's preemptions are gaps too")),
                };
                let (reader, smi) = linux::open_smi(cpu, &vendor);
                let nmi = linux::nmi_status(cpu);
                let mut src = linux::HostSource { cpu, smi: reader, nmi: nmi.available, tsc_hz: c.tsc_hz };
                let run = detect(&mut src, &c);
                Done { run, smi, nmi, pin, rt }
            })
        })
        .collect();
    let mut done = Vec::new();
    for t in threads {
        done.push(t.join().map_err(|_| anyhow::anyhow!("a sampling thread panicked"))?);
    }

    // A source is available when it was on every CPU; otherwise the first CPU's reason.
    let merge = |f: &dyn Fn(&Done) -> &SourceStatus| -> SourceStatus {
        let first_bad = done.iter().find(|d| !f(d).available);
        match first_bad {
            None => f(&done[0]).clone(),
            Some(d) => {
                let mut s = f(d).clone();
                s.detail = format!("cpu{}: {}", d.run.cpu, s.detail);
                s
            }
        }
    };
    let mut sources = BTreeMap::new();
    sources.insert("tsc".to_string(), SourceStatus { available: true, what: "RDTSC".into(), detail: tsc_how.clone() });
    sources.insert("smi_counter".to_string(), merge(&|d| &d.smi));
    sources.insert("nmi_counter".to_string(), merge(&|d| &d.nmi));
    sources.insert("affinity".to_string(), merge(&|d| &d.pin));
    sources.insert("realtime_priority".to_string(), merge(&|d| &d.rt));
    for (name, s) in &sources {
        println!("  {}", s.line(name));
    }
    if hypervisor {
        println!("  a virtual machine: the hypervisor takes the host's SMIs itself and may run other work between the guest's instructions; the gaps seen here are the hypervisor's (exits, preemption), not the hardware's SMIs");
    }

    let mut all: Vec<&host_smi::Gap> = done.iter().flat_map(|d| d.run.gaps.iter()).collect();
    all.sort_by_key(|g| (g.start_ns, g.cpu));
    for g in &all {
        println!("{}", hwlat_line(g));
    }
    let budget_ns = a.budget_us.saturating_mul(1000);
    let reports: Vec<CpuReport> = done.iter().map(|d| CpuReport::of(&d.run, budget_ns)).collect();
    for r in &reports {
        println!("{}", r.summary.line(r.cpu, a.budget_us));
    }
    let report = Report {
        tool: "smmlab host".into(),
        duration_s: a.duration,
        threshold_us: a.threshold,
        window_ms: a.window,
        width_ms: a.width,
        budget_us: a.budget_us,
        tsc_hz,
        tsc_hz_source: tsc_how,
        vendor,
        hypervisor,
        root,
        sources,
        cpus: reports,
    };
    if let Some(p) = &a.json {
        let s = serde_json::to_string_pretty(&report)?;
        std::fs::write(p, s + "\n").with_context(|| format!("cannot write {}", p.display()))?;
    }
    let gaps: Vec<trace::host::HostGap> = all
        .iter()
        .map(|g| trace::host::HostGap { cpu: g.cpu, start_ns: g.start_ns, length_ns: g.length_ns, class: g.class.name(), seq: g.seq })
        .collect();
    let end_ns = report.cpus.iter().map(|c| c.summary.elapsed_ns).max().unwrap_or(0);
    if let Some(p) = &a.vcd {
        let f = std::fs::File::create(p).with_context(|| format!("cannot create VCD file {}", p.display()))?;
        trace::host::write_vcd(&gaps, &cpus, end_ns, f).with_context(|| format!("cannot write VCD file {}", p.display()))?;
    }
    if let Some(p) = &a.trace_json {
        let j = trace::host::trace_json(&gaps, &cpus);
        std::fs::write(p, serde_json::to_string(&j)? + "\n").with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(0)
}

fn list(v: &[u32]) -> String {
    v.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}
