//! `smmlab fuzz` through the binary on the planted-bug drivers (built from C at test time with
//! Debian's clang and lld-link): the fuzzer finds the planted SMRAM write of `comm_pointer`
//! and saves an input that reproduces it, and finds nothing in its clean twin. Fixed seeds and
//! bounded times.

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
