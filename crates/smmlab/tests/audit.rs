//! `smmlab audit`, `smmlab smram dump` and the planted-bug scenarios, through the binary.
//!
//! The built-in firmware must audit clean (exit 0, no findings); each planted bug must exit 1
//! with its rule; SARIF must pass the structural checks (`audit::output::check_sarif`; the
//! OASIS schema is not vendored); JSON verdicts carry register and bit; SeaBIOS's verdicts are
//! asserted as observed; the SMRAM dump holds the SMI entry stub at SMBASE + 0x8000.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

const SEABIOS: &str = "/usr/share/seabios/bios-256k.bin";

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("smmlab-audit-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn smmlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smmlab")).args(args).output().unwrap()
}

/// Runs an audit with `--format fmt --output FILE`; returns (exit status, parsed output).
fn audit(extra: &[&str], fmt: &str, name: &str) -> (i32, Value) {
    let out = tmp(name);
    let mut args = vec!["audit", "--format", fmt, "--output", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = smmlab(&args);
    let text = std::fs::read_to_string(&out).unwrap_or_else(|_| panic!("no report: {}", String::from_utf8_lossy(&o.stderr)));
    (o.status.code().unwrap_or(-1), serde_json::from_str(&text).unwrap())
}

fn verdict<'a>(j: &'a Value, rule: &str) -> &'a Value {
    j["verdicts"].as_array().unwrap().iter().find(|v| v["rule"] == rule).unwrap_or_else(|| panic!("no verdict {rule}: {j:#}"))
}

fn bit(v: &Value, name: &str) -> (u64, u64) {
    for r in v["registers"].as_array().unwrap() {
        for b in r["bits"].as_array().unwrap() {
            if b["name"] == name {
                return (b["bit"].as_u64().unwrap(), b["value"].as_u64().unwrap());
            }
        }
    }
    panic!("no bit {name} in {v:#}")
}

#[test]
fn clean_builtin_firmware_has_no_findings_and_json_names_registers() {
    let (code, j) = audit(&[], "json", "clean.json");
    assert_eq!(code, 0, "{j:#}");
    assert_eq!(j["findings"], 0, "{j:#}");
    assert!(j["target"]["handoff"].as_str().unwrap().contains("handing off to the OS"));
    assert!(j["smis_raised"].as_u64().unwrap() > 1000, "every SW SMI with every pattern");
    let smram = verdict(&j, "SMM001");
    assert_eq!(smram["status"], "pass");
    assert_eq!(smram["registers"][0]["location"], "PCI 00:00.0 + 0x9d (MCH SMRAM)");
    assert_eq!(bit(smram, "D_LCK"), (4, 1));
    assert_eq!(bit(smram, "D_OPEN"), (6, 0));
    assert_eq!(bit(verdict(&j, "SMM002"), "VALID"), (11, 1));
    assert_eq!(bit(verdict(&j, "SMM004"), "SMI_LOCK"), (4, 1));
    assert_eq!(bit(verdict(&j, "SMM004"), "GBL_SMI_EN"), (0, 1));
    let wp = verdict(&j, "SMM005");
    assert_eq!((bit(wp, "BIOSWE"), bit(wp, "BLE"), bit(wp, "SMM_BWP")), ((0, 0), (1, 1), (5, 1)));
    assert_eq!(bit(verdict(&j, "SMM006"), "SMM_CODE_CHK_EN"), (2, 1));
    for rule in ["SMM001", "SMM002", "SMM003", "SMM004", "SMM005", "SMM006"] {
        assert_eq!(verdict(&j, rule)["status"], "pass", "{rule}");
    }
}

#[test]
fn clean_builtin_firmware_on_amd_passes_smm_lock_and_mask() {
    let (code, j) = audit(&["--cpu", "amd64", "--no-smi"], "json", "clean-amd.json");
    assert_eq!(code, 0, "{j:#}");
    assert_eq!(bit(verdict(&j, "SMM007"), "SmmLock"), (0, 1));
    assert_eq!(bit(verdict(&j, "SMM008"), "TValid"), (1, 1));
    assert_eq!(verdict(&j, "SMM002")["status"], "not_applicable");
}

/// Audits `scenario` as SARIF: exit 1, structurally valid, and `rule` among the results.
fn planted(scenario: &str, rule: &str) -> Value {
    let (code, s) = audit(&["--scenario", scenario], "sarif", &format!("{scenario}.sarif"));
    assert_eq!(code, 1, "{scenario}: {s:#}");
    assert_eq!(audit::output::check_sarif(&s), Vec::<String>::new());
    let results = s["runs"][0]["results"].as_array().unwrap();
    assert!(results.iter().any(|r| r["ruleId"] == rule), "{scenario}: no {rule} in {s:#}");
    s
}

#[test]
fn bug_smram_unlocked_fails_smram_and_tseg_lock() {
    let s = planted("bug-smram-unlocked", "SMM001");
    let ids: Vec<&str> = s["runs"][0]["results"].as_array().unwrap().iter().map(|r| r["ruleId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["SMM001", "SMM003"]);
}

#[test]
fn bug_no_smrr_fails_smrr() {
    let s = planted("bug-no-smrr", "SMM002");
    let r = &s["runs"][0]["results"][0];
    assert_eq!(r["level"], "error");
    assert!(r["locations"][0]["logicalLocations"][0]["name"].as_str().unwrap().contains("IA32_SMRR"));
}

#[test]
fn bug_callout_is_found() {
    let s = planted("bug-callout", "SMM101");
    assert_eq!(s["runs"][0]["results"].as_array().unwrap().len(), 1, "only the call-out: {s:#}");
    assert_eq!(s["runs"][0]["results"][0]["locations"][0]["logicalLocations"][0]["name"], "SW SMI 0x01");
}

#[test]
fn bug_unchecked_pointer_is_found() {
    let s = planted("bug-unchecked-pointer", "SMM102");
    assert_eq!(s["runs"][0]["results"].as_array().unwrap().len(), 1, "{s:#}");
}

#[test]
fn bug_toctou_is_found() {
    let s = planted("bug-toctou", "SMM104");
    assert_eq!(s["runs"][0]["results"].as_array().unwrap().len(), 1, "{s:#}");
    assert!(s["runs"][0]["results"][0]["message"]["text"].as_str().unwrap().contains("0x10"));
}

#[test]
fn unknown_scenario_and_minimal_machine_are_errors() {
    let o = smmlab(&["audit", "--scenario", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    let o = smmlab(&["audit", "--machine", "minimal"]);
    assert_eq!(o.status.code(), Some(2), "clap rejects it");
}

#[test]
fn scenarios_lists_the_planted_bugs() {
    let o = smmlab(&["scenarios"]);
    let out = String::from_utf8_lossy(&o.stdout);
    for s in ["bug-smram-unlocked", "bug-no-smrr", "bug-callout", "bug-unchecked-pointer", "bug-toctou"] {
        assert!(out.contains(s), "{out}");
    }
}

/// SeaBIOS 1.16 (Debian bios-256k.bin), hand-off at its first boot attempt ("Booting from
/// Floppy..."). Observed and asserted:
/// - it never sets D_LCK (SMRAMC = 0x0a on both chipsets): SMM001 FAIL;
/// - on q35 it sets SMI_LOCK with GBL_SMI_EN: SMM004 PASS; it never sets BLE: SMM005 FAIL;
/// - it uses the A/B segment only (no TSEG): SMM003 N/A; with the AMD CPU model (the default
///   with --bios, as `run`) it leaves HWCR.SmmLock clear (SMM007 FAIL) and SMM_MASK zero
///   (SMM008 PASS: nothing closed, no TSEG to cover);
/// - its SMI entry code in SMRAM (0xA8000) calls handle_smi in the BIOS F segment
///   (0xFE2AE, shadow RAM outside SMRAM) for every SW SMI: SMM101 FAIL.
#[test]
fn seabios_verdicts() {
    if !testkit::package_file(SEABIOS, "seabios") {
        return;
    }
    let (code, j) = audit(&["--machine", "q35", "--bios", SEABIOS], "json", "seabios-q35.json");
    assert_eq!(code, 1);
    assert!(j["target"]["handoff"].as_str().unwrap().starts_with("Booting from"), "{}", j["target"]["handoff"]);
    let st = |rule: &str| verdict(&j, rule)["status"].as_str().unwrap().to_string();
    assert_eq!(st("SMM001"), "fail");
    assert_eq!(bit(verdict(&j, "SMM001"), "D_LCK"), (4, 0));
    assert_eq!(st("SMM003"), "not_applicable");
    assert_eq!(st("SMM004"), "pass");
    assert_eq!(bit(verdict(&j, "SMM004"), "SMI_LOCK"), (4, 1));
    assert_eq!(st("SMM005"), "fail");
    assert_eq!(st("SMM007"), "fail");
    assert_eq!(st("SMM008"), "pass");
    let callout = verdict(&j, "SMM101");
    assert_eq!(callout["smi"]["addresses"][0], 0xfe2ae);
    assert_eq!(j["findings"], 4, "{j:#}");

    let (code, j) = audit(&["--machine", "pc", "--bios", SEABIOS], "json", "seabios-pc.json");
    assert_eq!(code, 1);
    let st = |rule: &str| verdict(&j, rule)["status"].as_str().unwrap().to_string();
    assert_eq!(st("SMM001"), "fail");
    assert_eq!(verdict(&j, "SMM001")["registers"][0]["location"], "PCI 00:00.0 + 0x72 (i440FX PMC SMRAM)");
    assert_eq!(st("SMM004"), "not_applicable");
    assert_eq!(st("SMM101"), "fail");
    assert_eq!(j["findings"], 3, "{j:#}");
}

#[test]
fn smram_dump_holds_the_smi_entry_stub() {
    let out = tmp("smram.bin");
    let o = smmlab(&["smram", "dump", "--output", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("0xa0000-0xbffff at file offset 0x0") && err.contains("0x7f00000-0x7ffffff at file offset 0x20000"), "{err}");
    let d = std::fs::read(&out).unwrap();
    assert_eq!(d.len(), 0x20000 + 0x10_0000);
    // TSEG + 0x40000 is SMBASE (firmware/README.md); the stub is at SMBASE + 0x8000. Its code
    // after the data block (from +0x58) is copied unchanged from the ROM.
    let stub = 0x20000 + 0x4_8000;
    let code = &d[stub + 0x58..stub + 0x78];
    assert!(code.iter().any(|&b| b != 0) && code.iter().any(|&b| b != 0xff));
    let rom = firmware_image::ROM;
    let at = rom.windows(code.len()).position(|w| w == code).expect("the stub's code is in the ROM");
    assert_eq!(&rom[at - 0x58..at - 0x56], &d[stub..stub + 2], "the stub's first instruction (jmp over its data)");
}

/// The firmware the rootkit scenario attacks (no D_LCK, no SMRR) is what the configuration
/// checks say it is: every lock the rootkit needs open, open.
#[test]
fn rootkit_unlocked_firmware_fails_the_lock_checks_the_rootkit_relies_on() {
    let s = planted("rootkit-unlocked", "SMM001");
    let ids: Vec<&str> = s["runs"][0]["results"].as_array().unwrap().iter().map(|r| r["ruleId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["SMM001", "SMM002", "SMM003", "SMM006"]);
}
