//! The report as text, JSON and SARIF 2.1.0.

use crate::report::{Report, Status};
use crate::rules::{self, RULES};
use serde_json::{json, Value};
use std::fmt::Write;

/// Readable text.
pub fn text(r: &Report) -> String {
    let mut s = String::new();
    let t = &r.target;
    let _ = writeln!(s, "smmlab audit: {} machine, {} CPU, firmware {}{}", t.machine, t.cpu, t.firmware, t.scenario.as_deref().map(|x| format!(", scenario {x}")).unwrap_or_default());
    let _ = writeln!(s, "hand-off: {} (after {} instructions)", t.handoff, t.instructions_at_handoff);
    let _ = writeln!(s);
    for v in &r.verdicts {
        let name = rules::rule(v.rule).map_or("", |x| x.name);
        let _ = writeln!(s, "[{:<7}] {} {:<22} {}", v.status.name(), v.rule, name, v.message);
        for reg in &v.registers {
            let bits: Vec<String> = reg.bits.iter().map(|b| format!("{}[{}]={:#x}", b.name, b.bit, b.value)).collect();
            let _ = writeln!(s, "           {} ({}) = {:#x}: {}", reg.name, reg.location, reg.value, bits.join(" "));
        }
    }
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    let n = r.findings().count();
    let _ = writeln!(s, "{} SW SMIs raised; {}", r.smis_raised, if n == 0 { "no findings".to_string() } else { format!("{n} finding(s)") });
    s
}

/// JSON: the report as is, with a `findings` count.
pub fn json(r: &Report) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut v {
        o.insert("findings".into(), json!(r.findings().count()));
    }
    v
}

fn level(s: Status) -> &'static str {
    match s {
        Status::Fail => "error",
        Status::Warning => "warning",
        _ => "note",
    }
}

/// SARIF 2.1.0: one run, every rule in `tool.driver.rules`, one result per finding with a
/// logical location naming the register (configuration) or the SW SMI (behaviour).
pub fn sarif(r: &Report) -> Value {
    let rules_json: Vec<Value> = RULES
        .iter()
        .map(|x| {
            json!({
                "id": x.id,
                "name": x.name,
                "shortDescription": {"text": x.description},
                "fullDescription": {"text": format!("{} ({})", x.description, x.reference)},
                "defaultConfiguration": {"level": "error"},
                "properties": {"tags": ["security", "smm"]}
            })
        })
        .collect();
    let results: Vec<Value> = r
        .findings()
        .map(|v| {
            let index = RULES.iter().position(|x| x.id == v.rule).unwrap_or(0);
            let (name, kind) = match (&v.smi, v.registers.first()) {
                (Some(c), _) => (format!("SW SMI {}", c.commands.first().map_or("?".to_string(), |x| format!("{x:#04x}"))), "function"),
                (None, Some(reg)) => (format!("{} ({})", reg.name, reg.location), "object"),
                (None, None) => ("platform".to_string(), "module"),
            };
            // A UEFI handler's finding points at its module: the firmware file as the
            // artifact, the module (FFS file GUID) and the handler as logical locations.
            let location = match v.smi.as_ref().and_then(|c| c.module.as_ref()) {
                Some(m) => json!({
                    "physicalLocation": {"artifactLocation": {"uri": r.target.firmware}},
                    "logicalLocations": [
                        {"name": m.name, "fullyQualifiedName": format!("{}/{}", r.target.firmware, m.file_guid.as_deref().unwrap_or(&m.name)), "kind": "module"},
                        {"name": m.at, "fullyQualifiedName": format!("{}/{}", m.name, m.at), "kind": "function"}
                    ]
                }),
                None => json!({"logicalLocations": [{"name": name, "fullyQualifiedName": format!("{}/{}", r.target.firmware, name), "kind": kind}]}),
            };
            json!({
                "ruleId": v.rule,
                "ruleIndex": index,
                "level": level(v.status),
                "message": {"text": v.message},
                "locations": [location]
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "smmlab-audit",
                "version": r.version,
                "informationUri": "https://github.com/smmlab/smmlab",
                "rules": rules_json
            }},
            "automationDetails": {"id": format!("smmlab-audit/{}/{}/", r.target.machine, r.target.scenario.as_deref().unwrap_or("default"))},
            "results": results
        }]
    })
}

/// The structural checks of SARIF 2.1.0 that GitHub code scanning relies on (the OASIS schema
/// itself is not vendored here): version, runs, tool.driver.name/rules with unique ids,
/// results with ruleId, a known level, message.text, and locations with a logical location or
/// a physical artifact. Returns the problems found.
pub fn check_sarif(v: &Value) -> Vec<String> {
    let mut p = Vec::new();
    if v["version"] != "2.1.0" {
        p.push("version is not \"2.1.0\"".into());
    }
    let Some(runs) = v["runs"].as_array() else {
        p.push("runs is not an array".into());
        return p;
    };
    for (i, run) in runs.iter().enumerate() {
        let d = &run["tool"]["driver"];
        if !d["name"].is_string() {
            p.push(format!("runs[{i}].tool.driver.name missing"));
        }
        let ids: Vec<&str> = d["rules"].as_array().map(|a| a.iter().filter_map(|x| x["id"].as_str()).collect()).unwrap_or_default();
        let unique: std::collections::BTreeSet<&&str> = ids.iter().collect();
        if unique.len() != ids.len() {
            p.push(format!("runs[{i}]: rule ids are not unique"));
        }
        let Some(results) = run["results"].as_array() else {
            p.push(format!("runs[{i}].results is not an array"));
            continue;
        };
        for (j, res) in results.iter().enumerate() {
            let at = format!("runs[{i}].results[{j}]");
            match res["ruleId"].as_str() {
                Some(id) if ids.contains(&id) => {}
                _ => p.push(format!("{at}.ruleId missing or not a rule of the driver")),
            }
            if let Some(ix) = res["ruleIndex"].as_u64() {
                if ids.get(ix as usize) != res["ruleId"].as_str().as_ref() {
                    p.push(format!("{at}.ruleIndex does not match ruleId"));
                }
            }
            if !matches!(res["level"].as_str(), Some("none" | "note" | "warning" | "error")) {
                p.push(format!("{at}.level invalid"));
            }
            if !res["message"]["text"].is_string() {
                p.push(format!("{at}.message.text missing"));
            }
            let ok_loc = res["locations"].as_array().is_some_and(|ls| {
                !ls.is_empty()
                    && ls.iter().all(|l| {
                        l["logicalLocations"].as_array().is_some_and(|a| !a.is_empty() && a.iter().all(|x| x["name"].is_string()))
                            || l["physicalLocation"]["artifactLocation"]["uri"].is_string()
                    })
            });
            if !ok_loc {
                p.push(format!("{at}.locations needs a logicalLocation or an artifact"));
            }
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Bit, ModuleRef, Register, SmiContext, Target, Verdict};

    fn report() -> Report {
        Report {
            tool: "smmlab-audit",
            version: "0.1.0",
            target: Target { machine: "q35", cpu: "intel64", firmware: "built-in".into(), scenario: None, handoff: "x".into(), instructions_at_handoff: 1 },
            verdicts: vec![
                Verdict {
                    rule: rules::SMRAM_LOCK,
                    status: Status::Fail,
                    message: "D_LCK = 0".into(),
                    registers: vec![Register { name: "SMRAMC", location: "PCI 00:00.0 + 0x9d".into(), value: 0xa, bits: vec![Bit { name: "D_LCK", bit: 4, value: 0 }] }],
                    smi: None,
                },
                Verdict { rule: rules::CODE_CHK, status: Status::Pass, message: "ok".into(), registers: vec![], smi: None },
                Verdict {
                    rule: rules::CALLOUT,
                    status: Status::Fail,
                    message: "call-out".into(),
                    registers: vec![],
                    smi: Some(SmiContext { commands: vec![1], pattern: "control", addresses: vec![0x10_0000], module: None }),
                },
            ],
            smis_raised: 3,
            notes: vec![],
        }
    }

    #[test]
    fn sarif_has_rules_and_one_result_per_finding() {
        let s = sarif(&report());
        assert_eq!(check_sarif(&s), Vec::<String>::new());
        let results = s["runs"][0]["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0]["ruleId"], rules::SMRAM_LOCK);
        assert_eq!(results[1]["locations"][0]["logicalLocations"][0]["name"], "SW SMI 0x01");
        assert_eq!(s["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap().len(), RULES.len());
    }

    #[test]
    fn a_uefi_handlers_finding_points_at_its_module() {
        let mut r = report();
        r.target.firmware = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd".into();
        let module = ModuleRef { name: "VariableSmm".into(), file_guid: Some("23a089b3-eed5-4ac5-b2ab-43e3298c2343".into()), at: "VariableSmm+0x6b1c".into() };
        r.verdicts[2].smi.as_mut().unwrap().module = Some(module);
        let s = sarif(&r);
        assert_eq!(check_sarif(&s), Vec::<String>::new());
        let loc = &s["runs"][0]["results"][1]["locations"][0];
        assert_eq!(loc["physicalLocation"]["artifactLocation"]["uri"], "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd");
        assert_eq!(loc["logicalLocations"][0]["fullyQualifiedName"], "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd/23a089b3-eed5-4ac5-b2ab-43e3298c2343");
        assert_eq!(loc["logicalLocations"][1]["name"], "VariableSmm+0x6b1c");
    }

    #[test]
    fn check_sarif_catches_broken_logs() {
        let mut s = sarif(&report());
        s["runs"][0]["results"][0]["ruleId"] = json!("NOPE");
        s["runs"][0]["results"][1]["locations"] = json!([]);
        s["version"] = json!("2.0.0");
        assert_eq!(check_sarif(&s).len(), 4, "{:?}", check_sarif(&s));
    }

    #[test]
    fn json_and_text_carry_registers_and_bits() {
        let r = report();
        let j = json(&r);
        assert_eq!(j["findings"], 2);
        assert_eq!(j["verdicts"][0]["registers"][0]["bits"][0]["name"], "D_LCK");
        assert_eq!(j["verdicts"][0]["status"], "fail");
        let t = text(&r);
        assert!(t.contains("[FAIL   ] SMM001") && t.contains("D_LCK[4]=0x0") && t.contains("2 finding(s)"), "{t}");
        assert_eq!(r.exit_code(), 1);
    }
}
