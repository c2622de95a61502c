//! `smmlab module run|call` and `smmlab audit --module`, through the binary, on the planted-bug
//! drivers (built from C at test time with Debian's clang and lld-link) and on Debian's OVMF:
//! what a user runs, with the exit statuses and outputs they read.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const OVMF: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";

fn smmlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smmlab")).args(args).output().unwrap()
}

fn drivers() -> Option<&'static Path> {
    testkit::smm_drivers(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("smm-drivers-cli"))
}

fn driver(name: &str) -> Option<String> {
    Some(drivers()?.join(format!("{name}.efi")).display().to_string())
}

#[test]
fn module_run_lists_what_a_driver_registered_and_says_so_in_json() {
    let Some(f) = driver("savestate_pointer") else { return };
    let o = smmlab(&["module", "run", &f]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("entry point returned EFI_SUCCESS"), "{text}");
    assert!(text.contains("SW SMI 0x61"), "{text}");
    let o = smmlab(&["module", "run", &f, "--json", "-"]);
    let j: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let h = &j[0]["inventory"]["handlers"][0];
    assert_eq!(h["kind"], "sw");
    assert!(h["handler"]["at"].as_str().unwrap().starts_with("savestate_pointer+0x"), "{h}");
    assert_eq!(j[0]["entry"]["result"], "returned");
}

#[test]
fn module_call_drives_one_handler() {
    let Some(f) = driver("savestate_pointer") else { return };
    // RSI at ordinary RAM: the handler writes there and returns.
    let o = smmlab(&["module", "call", &f, "--sw", "0x61", "--reg", "rsi=0x300000"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("SW SMI 0x61: returned EFI_SUCCESS"), "{text}");
    let Some(f) = driver("comm_pointer") else { return };
    let msg = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("comm_pointer.msg");
    let mut b = 2u64.to_le_bytes().to_vec(); // an unknown command
    b.extend_from_slice(&[0; 16]);
    std::fs::write(&msg, b).unwrap();
    let o = smmlab(&["module", "call", &f, "--guid", "99d0b2aa-ec71-4a07-ae94-44b51113a5f7", "--buffer", msg.to_str().unwrap(), "--json", "-"]);
    let j: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(j["result"]["name"], "EFI_SUCCESS", "{j}");
}

#[test]
fn audit_module_finds_the_planted_bug_and_passes_its_clean_twin() {
    let Some(bug) = driver("comm_pointer") else { return };
    let Some(clean) = driver("comm_pointer_clean") else { return };
    let o = smmlab(&["audit", "--module", &bug, "--format", "sarif"]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let s: Value = serde_json::from_slice(&o.stdout).expect("SARIF");
    let results = s["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{results:#?}");
    assert_eq!(results[0]["ruleId"], "SMM102");
    let o = smmlab(&["audit", "--module", &clean]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn every_ovmf_mm_module_reaches_its_entry_point_alone() {
    if !testkit::package_file(OVMF, "ovmf") {
        return;
    }
    let o = smmlab(&["module", "run", OVMF, "--all-smm", "--json", "-"]);
    // CpuHotplugSmm and FvbServicesSmm (without --vars) fail (below), so the run says a
    // module failed.
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let j: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let runs = j.as_array().unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r["module"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["PiSmmCore", "CpuHotplugSmm", "CpuIo2Smm", "SmmLockBox", "PiSmmCpuDxeSmm", "FvbServicesSmm", "SmmFaultTolerantWriteDxe", "VariableSmm"]);
    for r in runs {
        let name = r["module"]["name"].as_str().unwrap();
        // Reached: the entry point asked the host for something.
        assert!(r["served"].as_u64().unwrap() > 0, "{name} never called a service");
        let entry = &r["entry"];
        match name {
            // Without QEMU's CPU hot-plug interface (as in the full boot, where it is not
            // resident), and without the flash PCDs (answered 0 by the stub).
            "CpuHotplugSmm" => assert_eq!(entry["name"], "EFI_UNSUPPORTED"),
            "FvbServicesSmm" => assert_eq!(entry["name"], "EFI_WRITE_PROTECTED"),
            // The SMM CPU driver runs outside SMM, as edk2 runs it, relocates SMBASE with an SMI
            // IPI to its own CPU and takes over SMI entry: the lifecycle events reach it.
            "PiSmmCpuDxeSmm" => {
                assert_eq!(entry["name"], "EFI_SUCCESS", "{entry}");
                assert_eq!(r["module"]["entry_outside_smm"], true);
                assert_eq!(r["smi_entry"]["registered"]["name"], "EFI_SUCCESS", "{}", r["smi_entry"]);
                assert!(r["phases"].as_array().unwrap().iter().all(|p| p[1]["name"] == "EFI_SUCCESS"), "{}", r["phases"]);
            }
            _ => assert_eq!(entry["name"], "EFI_SUCCESS", "{name}: {entry}"),
        }
    }
}

#[test]
fn bad_input_is_named_with_a_non_zero_exit() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let junk = dir.join("not-a-module.bin");
    std::fs::write(&junk, b"hello").unwrap();
    let o = smmlab(&["module", "run", junk.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("not-a-module.bin") && err.contains("neither a PE32+ image nor a UEFI firmware image"), "{err}");
    let trunc = dir.join("truncated.efi");
    std::fs::write(&trunc, b"MZ\x90\x00").unwrap();
    let o = smmlab(&["module", "run", trunc.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("truncated"), "{err}");
    let o = smmlab(&["module", "run", "/nonexistent/driver.efi"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/driver.efi"));
    if testkit::package_file(OVMF, "ovmf") {
        let o = smmlab(&["module", "run", OVMF]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("choose one with --module") && err.contains("VariableSmm"), "{err}");
        let o = smmlab(&["module", "run", OVMF, "--module", "NoSuchSmm"]);
        assert!(String::from_utf8_lossy(&o.stderr).contains("no MM module named NoSuchSmm"));
    }
}

#[test]
fn module_run_with_the_variable_store_and_a_companion_module_reaches_the_ftw_handler() {
    const VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
    if !testkit::package_file(OVMF, "ovmf") || !testkit::package_file(VARS, "ovmf") {
        return;
    }
    let o = smmlab(&["module", "run", OVMF, "--module", "SmmFaultTolerantWriteDxe", "--vars", VARS, "--with", "FvbServicesSmm"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("module FvbServicesSmm run first in the same SMRAM"), "{text}");
    assert!(text.contains("guid gEfiSmmFaultTolerantWriteProtocolGuid      SmmFaultTolerantWriteDxe+0x2d80    registered at SmmFaultTolerantWriteDxe+0x3811"), "{text}");
    // Bad input names the file or the module and exits 2.
    let o = smmlab(&["module", "run", OVMF, "--module", "SmmFaultTolerantWriteDxe", "--vars", "/nonexistent/VARS.fd"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("/nonexistent/VARS.fd"), "{err}");
    let o = smmlab(&["module", "run", OVMF, "--module", "SmmFaultTolerantWriteDxe", "--with", "NoSuchModule"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("NoSuchModule"), "{err}");
}

/// SMM_VARIABLE_COMMUNICATE_HEADER (Function, ReturnStatus) and an ACCESS_VARIABLE for
/// GetVariable of `name` with no room for data (edk2 MdeModulePkg/Include/Guid/
/// SmmVariableCommon.h: Guid, DataSize, NameSize, Attributes, Name).
fn get_variable(name: &str) -> Vec<u8> {
    let name: Vec<u8> = name.encode_utf16().chain([0]).flat_map(u16::to_le_bytes).collect();
    let mut m = Vec::new();
    m.extend_from_slice(&1u64.to_le_bytes()); // SMM_VARIABLE_FUNCTION_GET_VARIABLE
    m.extend_from_slice(&0u64.to_le_bytes());
    m.extend_from_slice(&[0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c]); // EFI_GLOBAL_VARIABLE
    m.extend_from_slice(&0u64.to_le_bytes());
    m.extend_from_slice(&(name.len() as u64).to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes());
    m.extend_from_slice(&name);
    m
}

#[test]
fn the_variable_handler_accepts_the_communication_buffer_after_ready_to_lock_and_answers() {
    // Once SMM is locked, edk2's SmmMemLib takes a communication buffer only from reserved,
    // ACPI NVS or runtime-services data memory in the UEFI memory map: the runner's map says
    // the buffer is runtime-services data, so GetVariable runs and fills in ReturnStatus.
    if !testkit::package_file(OVMF, "ovmf") {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("module-reply");
    std::fs::create_dir_all(&dir).unwrap();
    let (msg, reply) = (dir.join("get-variable.bin"), dir.join("reply.bin"));
    std::fs::write(&msg, get_variable("NoSuchVariable")).unwrap();
    let o = smmlab(&["module", "call", OVMF, "--module", "VariableSmm", "--guid", "ED32D533-99E6-4209-9CC0-2D72CDD998A7", "--buffer", msg.to_str().unwrap(), "--reply", reply.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let r = std::fs::read(&reply).unwrap();
    let status = u64::from_le_bytes(r[8..16].try_into().unwrap());
    assert_eq!(status, 0x8000_0000_0000_000e, "ReturnStatus: EFI_NOT_FOUND expected, got {status:#x}");
}
