//! The SMI timeline in the Chrome trace event format (the "JSON Object Format" of Google's
//! *Trace Event Format* document), which Perfetto (ui.perfetto.dev) and `chrome://tracing` open.
//!
//! Each SMI is a complete event (`"ph": "X"`) named like `SMI apm 0x01`, on process 1
//! ("smmlab"), thread = CPU number, with `ts` and `dur` in microseconds of guest time and
//! `args` giving the source, SMBASE, instructions and the handler's debugcon lines. Debugcon
//! lines written outside SMM are instant events (`"ph": "i"`) on thread 1000 ("debugcon"), and
//! the SMRAM lock is a global instant event. Metadata events name the process and threads.

use crate::timeline::{ns, Outcome, Timeline};
use serde_json::{json, Value};

/// The thread id of the debugcon track.
pub const DEBUGCON_TID: u32 = 1000;

/// Nanoseconds as the format's microseconds.
fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// The trace as a JSON value: `{"traceEvents": [...], "displayTimeUnit": "ns", ...}`.
/// `debugcon` holds the lines written outside SMM with their guest time in ticks.
pub fn trace_json(t: &Timeline, debugcon: &[(u64, String)]) -> Value {
    let ips = t.ips();
    let mut ev = vec![
        json!({"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "smmlab"}}),
        json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "cpu0"}}),
        json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": DEBUGCON_TID, "args": {"name": "debugcon"}}),
    ];
    for r in t.records() {
        let outcome = match &r.outcome {
            Outcome::Resumed => "rsm".to_string(),
            Outcome::Failed(why) => format!("rsm failed: {why}"),
            Outcome::Unfinished => "unfinished".to_string(),
        };
        ev.push(json!({
            "name": format!("SMI {}", r.label()),
            "cat": "smi",
            "ph": "X",
            "ts": us(ns(r.entered, ips)),
            "dur": us(ns(r.ticks(), ips)),
            "pid": 1,
            "tid": r.cpu,
            "args": {
                "index": r.index,
                "source": r.source(),
                "merged": r.merged.iter().map(|c| c.source()).collect::<Vec<_>>(),
                "apm_command": r.apm_command(),
                "smbase": format!("{:#x}", r.smbase),
                "smbase_after": r.smbase_after.map(|b| format!("{b:#x}")),
                "handler": format!("{:04x}:{:#x}", r.cs, r.rip),
                "instructions": r.smm_instructions,
                "raised_us": us(ns(r.raised, ips)),
                "outcome": outcome,
                "log": r.log,
            },
        }));
    }
    for (at, text) in debugcon {
        ev.push(json!({"name": text, "cat": "debugcon", "ph": "i", "s": "t", "ts": us(ns(*at, ips)), "pid": 1, "tid": DEBUGCON_TID}));
    }
    // The hardware monitor as counter tracks (Perfetto draws them as graphs).
    for r in t.sensors() {
        let ts = us(ns(r.at, ips));
        ev.push(json!({"name": "CPU temperature (C)", "ph": "C", "ts": ts, "pid": 1, "args": {"C": r.temp_c}}));
        ev.push(json!({"name": "fan duty (%)", "ph": "C", "ts": ts, "pid": 1, "args": {"%": r.fan_duty}}));
        ev.push(json!({"name": "fan (rpm)", "ph": "C", "ts": ts, "pid": 1, "args": {"rpm": r.fan_rpm}}));
    }
    for n in t.notes() {
        let cat = if n.alert { "alert" } else { "platform" };
        ev.push(json!({"name": n.text, "cat": cat, "ph": "i", "s": "g", "ts": us(ns(n.at, ips)), "pid": 1, "tid": 0}));
    }
    if let Some(l) = t.locked_at() {
        ev.push(json!({"name": "SMRAM locked (D_LCK)", "cat": "smram", "ph": "i", "s": "g", "ts": us(ns(l, ips)), "pid": 1, "tid": 0}));
    }
    json!({"traceEvents": ev, "displayTimeUnit": "ns", "otherData": {"generator": "smmlab-trace", "clock": "guest time", "instructions_per_second": ips}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::tests::built;

    #[test]
    fn complete_events_per_smi() {
        let j = trace_json(&built(), &[(300, "os: hello".into())]);
        let ev = j["traceEvents"].as_array().unwrap();
        let x: Vec<&Value> = ev.iter().filter(|e| e["ph"] == "X").collect();
        assert_eq!(x.len(), 3);
        assert_eq!(x[1]["name"], "SMI apm 0x01");
        assert_eq!(x[1]["ts"], 1.001);
        assert_eq!(x[1]["dur"], 0.3);
        assert_eq!(x[1]["args"]["instructions"], 50);
        assert_eq!(x[0]["args"]["smbase"], "0x30000");
        assert_eq!(x[0]["args"]["smbase_after"], "0x7f000000");
        assert!(ev.iter().any(|e| e["ph"] == "i" && e["name"] == "os: hello"));
        assert_eq!(serde_json::to_string(&j).unwrap(), serde_json::to_string(&trace_json(&built(), &[(300, "os: hello".into())])).unwrap());
    }
}
