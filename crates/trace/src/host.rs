//! The host's gaps (`smmlab host`) in the formats of [`crate::vcd`] and [`crate::chrome`], so
//! one viewer shows the real machine's SMIs next to an emulated run's.
//!
//! VCD: under the top scope `smmlab`, per CPU `cpuN.smi` (a 1 ns pulse where a gap the SMI
//! counter explains begins: the host does not see SMI# itself), `cpuN.smiact` (high during
//! that gap: the CPU was in SMM), `cpuN.nmi` (high during a gap the NMI count explains) and
//! `cpuN.gap` (high during every gap). Chrome trace: process 1 `smmlab`, thread = CPU, one
//! complete event per gap (`SMI host` in category `smi`, `gap nmi` / `gap unattributed` in
//! category `gap`). Times are ns from the start of the measurement.

use serde_json::{json, Value};
use std::io::{self, Write};
use vcd::{IdCode, SimulationCommand, TimescaleUnit, Value as V};

/// One gap as the host measured it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostGap {
    /// The CPU.
    pub cpu: u32,
    /// Its number on that CPU (1 for the first).
    pub seq: u64,
    /// Start, ns from the start of the measurement.
    pub start_ns: u64,
    /// Length, ns.
    pub length_ns: u64,
    /// "smi", "nmi" or "unattributed".
    pub class: &'static str,
}

/// Writes `gaps` (of the CPUs `cpus`, a measurement of `end_ns`) as VCD.
pub fn write_vcd<W: Write>(gaps: &[HostGap], cpus: &[u32], end_ns: u64, out: W) -> io::Result<()> {
    let mut w = vcd::Writer::new(io::BufWriter::new(out));
    w.version(crate::vcd::VERSION)?;
    w.timescale(1, TimescaleUnit::NS)?;
    w.add_module("smmlab")?;
    // Per CPU: smi, smiact, nmi, gap.
    let mut ids: Vec<(u32, [IdCode; 4])> = Vec::new();
    for &cpu in cpus {
        w.add_module(&format!("cpu{cpu}"))?;
        ids.push((cpu, [w.add_wire(1, "smi")?, w.add_wire(1, "smiact")?, w.add_wire(1, "nmi")?, w.add_wire(1, "gap")?]));
        w.upscope()?;
    }
    w.upscope()?;
    w.enddefinitions()?;
    w.timestamp(0)?;
    w.begin(SimulationCommand::Dumpvars)?;
    for (_, wires) in &ids {
        for id in wires {
            w.change_scalar(*id, V::V0)?;
        }
    }
    w.end()?;
    // (time, id, value), in time order; at equal times falls before rises.
    let mut changes: Vec<(u64, u8, IdCode)> = Vec::new();
    for g in gaps {
        let Some((_, [smi, smiact, nmi, gap])) = ids.iter().find(|(c, _)| *c == g.cpu).copied() else { continue };
        let end = g.start_ns.saturating_add(g.length_ns.max(1));
        changes.push((g.start_ns, 1, gap));
        changes.push((end, 0, gap));
        match g.class {
            "smi" => {
                changes.push((g.start_ns, 1, smi));
                changes.push((g.start_ns + 1, 0, smi));
                changes.push((g.start_ns, 1, smiact));
                changes.push((end, 0, smiact));
            }
            "nmi" => {
                changes.push((g.start_ns, 1, nmi));
                changes.push((end, 0, nmi));
            }
            _ => {}
        }
    }
    changes.sort_by_key(|c| (c.0, c.1));
    let mut now = 0;
    for (t, v, id) in &changes {
        if *t != now {
            w.timestamp(*t)?;
            now = *t;
        }
        w.change_scalar(*id, if *v == 1 { V::V1 } else { V::V0 })?;
    }
    let end = changes.last().map_or(0, |c| c.0).max(end_ns);
    if end != now {
        w.timestamp(end)?;
    }
    w.flush()
}

/// The gaps as Chrome trace events.
pub fn trace_json(gaps: &[HostGap], cpus: &[u32]) -> Value {
    let mut ev = vec![json!({"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "smmlab"}})];
    for c in cpus {
        ev.push(json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": c, "args": {"name": format!("cpu{c}")}}));
    }
    for g in gaps {
        let (name, cat) = if g.class == "smi" { ("SMI host".to_string(), "smi") } else { (format!("gap {}", g.class), "gap") };
        ev.push(json!({
            "name": name,
            "cat": cat,
            "ph": "X",
            "ts": g.start_ns as f64 / 1000.0,
            "dur": g.length_ns as f64 / 1000.0,
            "pid": 1,
            "tid": g.cpu,
            "args": {"index": g.seq, "source": "host", "class": g.class},
        }));
    }
    json!({"traceEvents": ev, "displayTimeUnit": "ns", "otherData": {"generator": "smmlab-trace", "clock": "host TSC from the start of smmlab host"}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcd::{Command, Parser};

    fn gaps() -> Vec<HostGap> {
        vec![
            HostGap { cpu: 0, seq: 1, start_ns: 1000, length_ns: 200, class: "smi" },
            HostGap { cpu: 1, seq: 1, start_ns: 1500, length_ns: 50, class: "nmi" },
            HostGap { cpu: 0, seq: 2, start_ns: 3000, length_ns: 70, class: "unattributed" },
        ]
    }

    #[test]
    fn vcd_has_each_gap_on_its_cpu() {
        let mut v = Vec::new();
        write_vcd(&gaps(), &[0, 1], 10_000, &mut v).unwrap();
        let mut p = Parser::new(&v[..]);
        let h = p.parse_header().unwrap();
        let smiact0 = h.find_var(&["smmlab", "cpu0", "smiact"]).unwrap().code;
        let gap0 = h.find_var(&["smmlab", "cpu0", "gap"]).unwrap().code;
        let nmi1 = h.find_var(&["smmlab", "cpu1", "nmi"]).unwrap().code;
        let (mut t, mut seen) = (0, Vec::new());
        for c in p {
            match c.unwrap() {
                Command::Timestamp(x) => t = x,
                Command::ChangeScalar(i, val) if t > 0 && (i == smiact0 || i == gap0 || i == nmi1) => {
                    let name = if i == smiact0 { "smiact0" } else if i == gap0 { "gap0" } else { "nmi1" };
                    seen.push((t, name, val == V::V1));
                }
                _ => {}
            }
        }
        assert_eq!(
            seen,
            vec![(1000, "gap0", true), (1000, "smiact0", true), (1200, "gap0", false), (1200, "smiact0", false), (1500, "nmi1", true), (1550, "nmi1", false), (3000, "gap0", true), (3070, "gap0", false)]
        );
        assert_eq!(t, 10_000);
    }

    #[test]
    fn chrome_events_per_gap() {
        let j = trace_json(&gaps(), &[0, 1]);
        let x: Vec<&Value> = j["traceEvents"].as_array().unwrap().iter().filter(|e| e["ph"] == "X").collect();
        assert_eq!(x.len(), 3);
        assert_eq!((x[0]["name"].as_str(), x[0]["cat"].as_str(), x[0]["ts"].as_f64(), x[0]["dur"].as_f64()), (Some("SMI host"), Some("smi"), Some(1.0), Some(0.2)));
        assert_eq!((x[1]["name"].as_str(), x[1]["tid"].as_u64()), (Some("gap nmi"), Some(1)));
        assert_eq!(x[2]["name"], "gap unattributed");
    }
}
