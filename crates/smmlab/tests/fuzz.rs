//! `smmlab fuzz` through the binary on the planted-bug drivers (built from C at test time with
//! Debian's clang and lld-link): the fuzzer finds the planted SMRAM write of `comm_pointer`
//! and saves an input that reproduces it, and finds nothing in its clean twin; on the built-in
//! firmware it finds the planted bugs of the bug-* scenarios and nothing in the default one;
//! `fuzz replay` reruns a finding. Fixed seeds and bounded times.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GUID: &str = "99d0b2aa-ec71-4a07-ae94-44b51113a5f7";

fn smmlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smmlab")).args(args).output().unwrap()
}

fn drivers() -> Option<&'static Path> {
    testkit::smm_drivers(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("smm-drivers-fuzz"))
}

fn driver(name: &str) -> Option<String> {
    Some(drivers()?.join(format!("{name}.efi")).display().to_string())
}

fn out_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn fuzzing_comm_pointer_finds_the_smram_write_and_saves_a_reproducer() {
    let Some(f) = driver("comm_pointer") else { return };
    let out = out_dir("fuzz-comm-pointer");
    let o = smmlab(&["fuzz", "--module", &f, "--handler", GUID, "--time", "60", "--seed", "1", "--stop-on-finding", "--out", out.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("found SMM102 in the GUID handler 99d0b2aa-ec71-4a07-ae94-44b51113a5f7 of comm_pointer"), "{text}");
    let repro = out.join("SMM102-0.bin");
    assert!(text.contains(&format!("input {}", repro.display())), "{text}");
    let bytes = std::fs::read(&repro).expect("the reproducer");
    assert!(bytes.len() >= 16, "{bytes:?}");
    // The reproducer, replayed with `module call`, aims the handler's write at SMRAM: Command 1
    // and an Address inside TSEG (0x7800000-0x8000000).
    let command = u64::from_le_bytes(bytes[0..8].try_into().unwrap());
    let address = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
    assert_eq!(command, 1, "{bytes:?}");
    assert!((0x780_0000..0x800_0000).contains(&address), "{address:#x}");
    let o = smmlab(&["module", "call", &f, "--guid", GUID, "--buffer", repro.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
}

#[test]
fn fuzzing_the_clean_twin_finds_nothing() {
    let Some(f) = driver("comm_pointer_clean") else { return };
    let out = out_dir("fuzz-comm-pointer-clean");
    let o = smmlab(&["fuzz", "--module", &f, "--handler", GUID, "--time", "4", "--seed", "1", "--out", out.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains(", 0 findings"), "{text}");
    assert!(!text.contains("found "), "{text}");
    assert!(text.contains(" executions in "), "{text}");
}

#[test]
fn fuzzing_double_fetch_races_the_reread_length_and_the_clean_twin_is_clean() {
    // The planted driver checks Length, then reads it again for the copy: the fuzzer stages
    // the race (Length changed right after the check's read) and sees the copy overrun its
    // 64-byte SMRAM buffer. Its twin reads Length once.
    const DF: &str = "f41bcf43-bf26-4287-87d4-0bf914d47fea";
    let Some(f) = driver("double_fetch") else { return };
    let Some(clean) = driver("double_fetch_clean") else { return };
    let out = out_dir("fuzz-double-fetch");
    let o = smmlab(&["fuzz", "--module", &f, "--handler", DF, "--time", "20", "--seed", "1", "--stop-on-finding", "--out", out.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains(&format!("found SMM104 in the GUID handler {DF} of double_fetch: SMM read the message's byte at 0x500018 (offset 0x0) twice")), "{text}");
    let extra: u64 = text.split("wrote ").nth(1).and_then(|t| t.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{text}"));
    assert!(text.contains("raced, proved") && extra > 64, "{text}");
    let o = smmlab(&["fuzz", "replay", out.join("SMM104-0.json").to_str().unwrap()]);
    let replay = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{replay}");
    assert!(replay.contains("fires again: SMM104") && replay.contains("raced, proved"), "{replay}");
    let out = out_dir("fuzz-double-fetch-clean");
    let o = smmlab(&["fuzz", "--module", &clean, "--handler", DF, "--time", "4", "--seed", "1", "--out", out.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains(", 0 findings"), "{text}");
}

#[test]
fn fuzz_refuses_bad_input_with_exit_2() {
    let Some(f) = driver("comm_pointer") else { return };
    for handler in ["not-a-guid", "sw:300", "sw:0x61"] {
        let o = smmlab(&["fuzz", "--module", &f, "--handler", handler, "--time", "1", "--out", out_dir("fuzz-bad").to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{handler}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

#[test]
fn fuzzing_a_sw_smi_handler_runs() {
    let Some(f) = driver("savestate_pointer_clean") else { return };
    let o = smmlab(&["fuzz", "--module", &f, "--handler", "sw:0x61", "--time", "2", "--seed", "2", "--out", out_dir("fuzz-sw").to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("SW SMI 0x61 handler of savestate_pointer_clean"), "{text}");
}

#[test]
fn a_fault_on_a_wild_register_is_not_a_finding_but_the_smram_write_is() {
    // savestate_pointer writes through the saved RSI unchecked: RSI at or above 4 GiB faults
    // (not a finding: the caller's wild pointer), RSI in SMRAM is SMM102.
    let Some(f) = driver("savestate_pointer") else { return };
    let out = out_dir("fuzz-savestate");
    let o = smmlab(&["fuzz", "--module", &f, "--handler", "sw:0x61", "--time", "60", "--seed", "1", "--stop-on-finding", "--out", out.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("found SMM102 in the SW SMI 0x61 handler of savestate_pointer"), "{text}");
    assert!(!text.contains("found SMM106"), "{text}");
    assert!(out.join("SMM102-0.bin").is_file());
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the finding's json")).expect("json")
}

#[test]
fn a_comm_pointer_finding_is_minimised_and_replays_with_the_same_rule() {
    let Some(f) = driver("comm_pointer") else { return };
    let out = out_dir("fuzz-replay-comm-pointer");
    let o = smmlab(&["fuzz", "--module", &f, "--handler", GUID, "--time", "60", "--seed", "1", "--stop-on-finding", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let finding = out.join("SMM102-0.json");
    let v = json(&finding);
    assert_eq!(v["rule"], "SMM102");
    assert_eq!(v["handler"], GUID);
    assert_eq!(v["cpu"], "intel64");
    assert_eq!(v["at"], "comm_pointer+0x1033", "{v}");
    let (kept, found) = (v["input_len"].as_u64().unwrap(), v["found_len"].as_u64().unwrap());
    assert!(kept <= found, "{v}");
    assert_eq!(std::fs::read(out.join("SMM102-0.bin")).unwrap().len() as u64, kept);
    let o = smmlab(&["fuzz", "replay", finding.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("fires again: SMM102: SMM wrote SMRAM at 0x7c"), "{text}");
    assert!(text.contains("at comm_pointer+0x1033: mov qword ptr [rax],1234h"), "{text}");
    assert!(text.contains("the SMI retired "), "{text}");
    assert!(text.contains("the attacker's bytes (24):"), "{text}");
}

#[test]
fn a_replay_that_no_longer_fires_exits_0() {
    // The comm_pointer finding replayed on the clean twin: the write is refused.
    let Some(f) = driver("comm_pointer") else { return };
    let Some(clean) = driver("comm_pointer_clean") else { return };
    let out = out_dir("fuzz-replay-clean");
    std::fs::create_dir_all(&out).unwrap();
    let input: Vec<u8> = [1u64, 0x7c0_0000, 0].iter().flat_map(|w| w.to_le_bytes()).collect();
    std::fs::write(out.join("SMM102-0.bin"), &input).unwrap();
    for (module, code) in [(&f, 1), (&clean, 0)] {
        let doc = serde_json::json!({"module": module, "handler": GUID, "cpu": "intel64", "rule": "SMM102", "input": "SMM102-0.bin"});
        let finding = out.join("SMM102-0.json");
        std::fs::write(&finding, doc.to_string()).unwrap();
        let o = smmlab(&["fuzz", "replay", finding.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(code), "{module}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    }
}

#[test]
fn a_missing_or_malformed_finding_exits_2_naming_the_file() {
    let out = out_dir("fuzz-replay-bad");
    std::fs::create_dir_all(&out).unwrap();
    let truncated = out.join("SMM102-0.json");
    std::fs::write(&truncated, "{\"rule\": \"SMM102\", \"hand").unwrap();
    let no_input = out.join("SMM101-0.json");
    std::fs::write(&no_input, r#"{"scenario": "default", "handler": "all", "cpu": "intel64", "rule": "SMM101", "input": "SMM101-0.bin"}"#).unwrap();
    for file in [truncated, no_input, out.join("missing.json")] {
        let o = smmlab(&["fuzz", "replay", file.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{}: {err}", file.display());
        assert!(err.contains(&file.display().to_string()), "{err}");
    }
}

/// `smmlab fuzz --scenario NAME --handler all` for `time` seconds, seed 1.
fn fuzz_scenario(name: &str, time: &str, stop: bool) -> (Option<i32>, String, PathBuf) {
    let out = out_dir(&format!("fuzz-scenario-{name}"));
    let mut args = vec!["fuzz", "--scenario", name, "--handler", "all", "--time", time, "--seed", "1", "--out", out.to_str().unwrap()];
    if stop {
        args.push("--stop-on-finding");
    }
    let o = smmlab(&args);
    (o.status.code(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)), out)
}

#[test]
fn fuzzing_the_built_in_firmware_finds_each_planted_sw_smi_bug() {
    for (name, rule, at) in [("bug-toctou", "SMM104", "smm-image+0x"), ("bug-unchecked-pointer", "SMM102", "smm-image+0x"), ("bug-callout", "SMM101", "0x")] {
        let (code, text, out) = fuzz_scenario(name, "20", true);
        assert_eq!(code, Some(1), "{name}: {text}");
        assert!(text.contains(&format!("found {rule} in the SW SMI handlers of the built-in firmware (scenario {name})")), "{name}: {text}");
        let finding = out.join(format!("{rule}-0.json"));
        let v = json(&finding);
        assert_eq!(v["scenario"], name);
        assert!(v["at"].as_str().unwrap_or("").starts_with(at), "{v}");
        let o = smmlab(&["fuzz", "replay", finding.to_str().unwrap()]);
        let replay = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(1), "{name}: {replay}");
        assert!(replay.contains(&format!("fires again: {rule}")), "{replay}");
        assert!(replay.contains("debugcon: smm: sw 0x"), "the handler's line: {replay}");
    }
}

#[test]
fn fuzzing_the_clean_built_in_firmware_finds_nothing() {
    let (code, text, _) = fuzz_scenario("default", "10", false);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(", 0 findings"), "{text}");
    assert!(!text.contains("found "), "{text}");
}

#[test]
fn fuzz_scenario_refuses_bad_input_with_exit_2() {
    for args in [&["--scenario", "nope", "--handler", "all"][..], &["--scenario", "default", "--handler", GUID], &["--scenario", "default"]] {
        let mut a = vec!["fuzz", "--time", "1"];
        a.extend_from_slice(args);
        let o = smmlab(&a);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it).
fn free_port() -> String {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string()
}

/// The figure before `what` in `text` ("12 inputs received" → 12).
fn figure_before(text: &str, what: &str) -> u64 {
    let at = text.find(what).unwrap_or_else(|| panic!("no '{what}' in {text}"));
    text[..at].split_whitespace().last().and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("no figure before '{what}' in {text}"))
}

/// Waits for `child` at most `secs` seconds (then kills it and fails).
fn wait_for(mut child: std::process::Child, secs: u64, what: &str) -> Output {
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed().as_secs() > secs {
            let _ = child.kill();
            panic!("{what} still running after {secs}s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

fn spawn_smmlab(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_smmlab")).args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn fuzzing_on_two_cores_runs_two_clients_that_share_inputs_and_find_the_planted_bug() {
    let out = out_dir("fuzz-cores");
    let port = free_port();
    let child = spawn_smmlab(&["fuzz", "--scenario", "bug-unchecked-pointer", "--handler", "all", "--time", "8", "--seed", "1", "--cores", "2", "--broker-port", &port, "--out", out.to_str().unwrap()]);
    let o = wait_for(child, 120, "fuzz --cores 2");
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("on 2 client(s)"), "{t}");
    assert!(t.contains("found SMM102 in the SW SMI handlers"), "{t}");
    assert!(t.contains("2 client(s): "), "{t}");
    assert!(figure_before(&t, "executions in") > 0, "{t}");
    assert!(figure_before(&t, "inputs received from other clients") > 0, "the clients share inputs: {t}");
    // Each client names its findings RULE-cN-M; one of them replays.
    let finding = ["SMM102-c1-0.json", "SMM102-c2-0.json"].iter().map(|f| out.join(f)).find(|f| f.exists()).unwrap_or_else(|| panic!("no client's SMM102 finding in {}: {t}", out.display()));
    let o = smmlab(&["fuzz", "replay", finding.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("fires again: SMM102"), "{}", text(&o));
}

#[test]
fn fuzz_refuses_more_cores_than_the_machine_has() {
    let o = smmlab(&["fuzz", "--scenario", "default", "--handler", "all", "--time", "1", "--cores", "4096", "--out", out_dir("fuzz-cores-bad").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--cores 4096"), "{}", text(&o));
}

/// Debian's OVMF secboot build's flash units for `--pflash` (the variable store a copy in
/// `d`), None when the package is missing (a skip, or a failure under CI).
fn ovmf_units(d: &Path) -> Option<(String, String)> {
    const CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
    const VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
    if !(testkit::package_file(CODE, "ovmf") && testkit::package_file(VARS, "ovmf")) {
        return None;
    }
    std::fs::create_dir_all(d).unwrap();
    let vars = d.join("vars.fd");
    std::fs::copy(VARS, &vars).unwrap();
    Some((format!("{CODE},readonly"), vars.display().to_string()))
}

/// gEfiSmmVariableProtocolGuid, VariableSmm's GUID handler.
const VARIABLE: &str = "ed32d533-99e6-4209-9cc0-2d72cdd998a7";

#[test]
fn fuzzing_ovmf_booted_to_the_shell_drives_its_guid_handlers_and_finds_nothing() {
    let out = out_dir("fuzz-ovmf");
    let Some((code, vars)) = ovmf_units(&out.join("flash")) else { return };
    let o = smmlab(&["fuzz", "--pflash", &code, "--pflash", &vars, "--handler", "all", "--time", "5", "--seed", "1", "--out", out.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&o.stderr));
    // The handlers the inventory found at the Shell, named by module.
    assert!(text.contains("6 GUID handlers (") && text.contains("gEfiSmmVariableProtocolGuid (VariableSmm+0x"), "{text}");
    assert!(text.contains("booted to the Shell"), "{text}");
    assert!(text.contains(", 0 findings"), "{text}");
    let edges = figure_before(&text, " coverage entries");
    assert!(edges > 200, "{edges} edges: the messages get past the core's checks: {text}");
    // The files are never written.
    assert_eq!(std::fs::read(&vars).unwrap(), std::fs::read("/usr/share/OVMF/OVMF_VARS_4M.fd").unwrap());
}

#[test]
fn fuzzing_ovmf_refuses_a_handler_it_does_not_have_and_replays_a_finding() {
    let out = out_dir("fuzz-ovmf-bad");
    let Some((code, vars)) = ovmf_units(&out.join("flash")) else { return };
    let o = smmlab(&["fuzz", "--pflash", &code, "--pflash", &vars, "--handler", GUID, "--time", "1", "--out", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("no GUID handler {GUID} is registered at the Shell")) && err.contains(VARIABLE), "{err}");
    // A finding of the booted firmware, replayed: GetVariable of a zeroed header does not
    // write SMRAM through a pointer (exit 0, the rule does not fire).
    std::fs::write(out.join("SMM102-0.bin"), [0u8; 0x40]).unwrap();
    let doc = serde_json::json!({"pflash": [code, vars], "ovmf": false, "handler": VARIABLE, "cpu": "amd64", "rule": "SMM102", "input": "SMM102-0.bin"});
    let finding = out.join("SMM102-0.json");
    std::fs::write(&finding, doc.to_string()).unwrap();
    let o = smmlab(&["fuzz", "replay", finding.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("GUID handler ed32d533-99e6-4209-9cc0-2d72cdd998a7 of the firmware booted from flash") && text.contains("the SMI retired ") && text.contains("SMM102 did not fire"), "{text}");
}
