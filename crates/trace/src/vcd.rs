//! A logic-analyzer view of the SMIs as a VCD (Value Change Dump, IEEE 1364 §18) file, which
//! GTKWave, Surfer, PulseView and sigrok open.
//!
//! Signals, under the top scope `smmlab`:
//! - `cpu0.smi`: SMI# asserted (from the first source raising it to the CPU taking it);
//! - `cpu0.smiact`: SMIACT# asserted (the CPU is in SMM: from entry to RSM);
//! - `source.<name>`: one wire per SMI source (`apm`, `periodic`, `swsmi_timer`, `io_trap`,
//!   `pin`, `ipi`, `memory_error`, `bios_write`, `thermal`, `usb`, `smi_load`, `unknown`), high while the CPU is in SMM for an SMI of that source;
//! - `apm_cnt[7:0]`: the last APM command value written (changes when an APM SMI is raised);
//! - `sensor.temp_c[7:0]`, `sensor.fan_duty[7:0]`: the built-in platform's hardware monitor
//!   (CPU temperature in degrees C, fan duty in percent), only when the run has readings.
//!
//! SMI# and SMIACT# are active-low pins on real hardware; here 1 means *asserted*. Timestamps
//! are guest nanoseconds (`$timescale 1 ns`); a signal that would be asserted for less than one
//! nanosecond (a very high `--ips`) is kept 1 ns wide so that no edge disappears. The header has
//! no date, so the same run gives the same bytes.

use crate::timeline::{ns, Timeline};
use std::io::{self, Write};
use vcd::{IdCode, SimulationCommand, TimescaleUnit, Value};

/// The SMI source wires, in header order: (source name of [`machine::smi::SmiCause::source`],
/// wire name).
pub const SOURCE_WIRES: [(&str, &str); 12] = [
    ("apm", "apm"),
    ("periodic", "periodic"),
    ("swsmi-timer", "swsmi_timer"),
    ("io-trap", "io_trap"),
    ("pin", "pin"),
    ("ipi", "ipi"),
    ("memory-error", "memory_error"),
    ("bios-write", "bios_write"),
    ("thermal", "thermal"),
    ("usb", "usb"),
    ("smi-load", "smi_load"),
    ("unknown", "unknown"),
];

/// The `$version` text.
pub const VERSION: &str = "smmlab-trace";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sig {
    Smi,
    SmiAct,
    Source(usize),
    ApmCnt,
    Temp,
    Duty,
}

/// Writes `t`'s SMIs, for a run that ended at `end` ticks, as VCD to `out`.
pub fn write_vcd<W: Write>(t: &Timeline, end: u64, out: W) -> io::Result<()> {
    let ips = t.ips();
    // (time ns, signal, value); stable-sorted by time, so equal times keep this order.
    let mut changes: Vec<(u64, Sig, u8)> = Vec::new();
    // SMM entries do not overlap: an entry starts no earlier than the previous RSM, in ns too.
    let mut cursor = 0u64;
    for r in t.records() {
        let entered = ns(r.entered, ips).max(cursor);
        let raised = ns(r.raised, ips).min(entered);
        let left = ns(r.left, ips).max(entered.saturating_add(1));
        cursor = left;
        changes.push((raised, Sig::Smi, 1));
        if let Some(cmd) = r.apm_command() {
            changes.push((raised, Sig::ApmCnt, cmd));
        }
        changes.push((entered.max(raised.saturating_add(1)), Sig::Smi, 0));
        let src = SOURCE_WIRES.iter().position(|(s, _)| *s == r.source()).unwrap_or(SOURCE_WIRES.len() - 1);
        changes.push((entered, Sig::SmiAct, 1));
        changes.push((entered, Sig::Source(src), 1));
        changes.push((left, Sig::SmiAct, 0));
        changes.push((left, Sig::Source(src), 0));
    }
    for r in t.sensors() {
        changes.push((ns(r.at, ips), Sig::Temp, r.temp_c));
        changes.push((ns(r.at, ips), Sig::Duty, r.fan_duty));
    }
    changes.sort_by_key(|c| c.0);
    let end_ns = changes.last().map_or(0, |c| c.0).max(ns(end, ips));

    let mut w = vcd::Writer::new(io::BufWriter::new(out));
    w.version(VERSION)?;
    w.timescale(1, TimescaleUnit::NS)?;
    w.add_module("smmlab")?;
    w.add_module("cpu0")?;
    let smi = w.add_wire(1, "smi")?;
    let smiact = w.add_wire(1, "smiact")?;
    w.upscope()?;
    w.add_module("source")?;
    let mut sources = Vec::new();
    for (_, name) in SOURCE_WIRES {
        sources.push(w.add_wire(1, name)?);
    }
    w.upscope()?;
    let apm = w.add_wire(8, "apm_cnt")?;
    let sensors = if t.sensors().is_empty() {
        None
    } else {
        w.add_module("sensor")?;
        let pair = (w.add_wire(8, "temp_c")?, w.add_wire(8, "fan_duty")?);
        w.upscope()?;
        Some(pair)
    };
    w.upscope()?;
    w.enddefinitions()?;

    let id = |s: Sig| -> IdCode {
        match s {
            Sig::Smi => smi,
            Sig::SmiAct => smiact,
            Sig::Source(i) => sources[i],
            Sig::ApmCnt => apm,
            Sig::Temp => sensors.map_or(apm, |p| p.0),
            Sig::Duty => sensors.map_or(apm, |p| p.1),
        }
    };
    w.timestamp(0)?;
    w.begin(SimulationCommand::Dumpvars)?;
    w.change_scalar(smi, Value::V0)?;
    w.change_scalar(smiact, Value::V0)?;
    for s in &sources {
        w.change_scalar(*s, Value::V0)?;
    }
    w.change_vector(apm, byte(0))?;
    if let Some((temp, duty)) = sensors {
        w.change_vector(temp, byte(0))?;
        w.change_vector(duty, byte(0))?;
    }
    w.end()?;

    let mut level = [0u8; 5 + SOURCE_WIRES.len()];
    let slot = |s: Sig| match s {
        Sig::Smi => 0,
        Sig::SmiAct => 1,
        Sig::ApmCnt => 2,
        Sig::Temp => 3,
        Sig::Duty => 4,
        Sig::Source(i) => 5 + i,
    };
    let mut now = 0u64;
    for (time, sig, v) in changes {
        if level[slot(sig)] == v {
            continue;
        }
        level[slot(sig)] = v;
        if time != now {
            w.timestamp(time)?;
            now = time;
        }
        match sig {
            Sig::ApmCnt | Sig::Temp | Sig::Duty => w.change_vector(id(sig), byte(v))?,
            _ => w.change_scalar(id(sig), if v != 0 { Value::V1 } else { Value::V0 })?,
        }
    }
    if end_ns != now {
        w.timestamp(end_ns)?;
    }
    w.flush()
}

/// An 8-bit vector value, most significant bit first.
fn byte(v: u8) -> Vec<Value> {
    (0..8).rev().map(|i| if v >> i & 1 == 1 { Value::V1 } else { Value::V0 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::tests::built;
    use vcd::{Command, Parser};

    fn render() -> Vec<u8> {
        let mut v = Vec::new();
        write_vcd(&built(), 5000, &mut v).unwrap();
        v
    }

    #[test]
    fn reads_back_with_smiact_high_during_each_smi() {
        let bytes = render();
        let mut p = Parser::new(&bytes[..]);
        let h = p.parse_header().unwrap();
        assert_eq!(h.timescale, Some((1, TimescaleUnit::NS)));
        assert!(h.date.is_none());
        let smiact = h.find_var(&["smmlab", "cpu0", "smiact"]).unwrap().code;
        let apm = h.find_var(&["smmlab", "source", "apm"]).unwrap().code;
        let cnt = h.find_var(&["smmlab", "apm_cnt"]).unwrap().code;
        let (mut t, mut high, mut rises, mut apm_rises, mut spans, mut cmds) = (0, false, 0, 0, vec![], vec![]);
        let mut since = 0;
        for c in p {
            match c.unwrap() {
                Command::Timestamp(x) => t = x,
                Command::ChangeScalar(i, v) if i == smiact => {
                    let now = v == Value::V1;
                    if now && !high {
                        rises += 1;
                        since = t;
                    } else if !now && high {
                        spans.push((since, t));
                    }
                    high = now;
                }
                Command::ChangeScalar(i, Value::V1) if i == apm => apm_rises += 1,
                Command::ChangeVector(i, v) if i == cnt => cmds.push(v.iter().fold(0u8, |a, b| a << 1 | u8::from(b == Value::V1))),
                _ => {}
            }
        }
        assert_eq!(rises, 3);
        assert_eq!(apm_rises, 2);
        assert_eq!(spans, vec![(101, 201), (1001, 1301), (2002, 2102)]);
        assert_eq!(cmds, vec![0, 1, 0xe0]);
        assert_eq!(t, 5000);
    }

    #[test]
    fn output_is_deterministic_and_dateless() {
        let a = render();
        assert_eq!(a, render());
        let s = String::from_utf8(a).unwrap();
        assert!(s.contains("$timescale 1 ns $end") && !s.contains("$date"), "{s}");
    }

    #[test]
    fn zero_width_smis_keep_their_edges() {
        let mut t = Timeline::new(10_000_000_000);
        use machine::events::MachineEvent;
        for i in 0..3u64 {
            t.feed(&MachineEvent::SmmEntered { cause: None, smbase: 0, cs: 0, rip: 0, mode: "real", icount: 10 + i });
            t.feed(&MachineEvent::RsmCompleted { smbase: 0, rip: 0, mode: "real", smm_instructions: 1, icount: 10 + i });
        }
        let mut v = Vec::new();
        write_vcd(&t, 0, &mut v).unwrap();
        let mut p = Parser::new(&v[..]);
        let h = p.parse_header().unwrap();
        let smiact = h.find_var(&["smmlab", "cpu0", "smiact"]).unwrap().code;
        let rises = p.filter(|c| matches!(c, Ok(Command::ChangeScalar(i, Value::V1)) if *i == smiact)).count();
        assert_eq!(rises, 3);
    }
}
