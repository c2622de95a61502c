//! End-to-end: Debian's OVMF (package ovmf, edk2 2022.11) on smmlab's q35 from its two flash
//! units, as users run it in QEMU 7.2 (`-machine q35,smm=on -m 256 -global
//! driver=cfi.pflash01,property=secure,value=on -drive if=pflash,...`):
//! - the secure-boot build with SMM (PiSmmCore, PiSmmCpuDxeSmm, VariableSmm keeping the
//!   variables in the secure flash) reaches the UEFI Shell's prompt with SMRAM locked, several
//!   hundred SMIs, its variable writes taken in SMM and none refused, no SMRAM alert; its serial
//!   output is QEMU's byte for byte where QEMU is installed;
//! - the variable store is written back and the next boot (`--ovmf`, the per-user copy) starts
//!   from it and reaches the Shell the same way;
//! - the build without SMM boots with `--pflash-secure off`.
//!
//! Skipped (counted as skipped by scripts/test.sh) when the packages are missing, and failed
//! under CI=true (crates/testkit); scripts/test.sh installs them.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const CODE_SECBOOT: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
const CODE_PLAIN: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
const QEMU: &str = "qemu-system-x86_64";
/// The Shell's prompt, the end of every boot here.
const PROMPT: &str = "Shell>";
/// A bound well above a boot to the prompt (about 1.0 G instructions).
const MAX_INSTRUCTIONS: &str = "3000000000";

/// Whether Debian's OVMF `code` and the variable store template are installed (a skip, or a
/// failure under CI, when not).
fn ovmf_present(code: &str) -> bool {
    testkit::package_file(code, "ovmf") && testkit::package_file(VARS, "ovmf")
}

fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("smmlab-ovmf-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Boot {
    serial: Vec<u8>,
    summary: Value,
    stdout: String,
    stderr: String,
}

/// `smmlab run` to the Shell prompt with `args`, the serial and summary into `d` under `name`.
fn smmlab(d: &Path, name: &str, args: &[&str], env: &[(&str, &Path)]) -> Boot {
    let serial = d.join(format!("{name}.serial"));
    let json = d.join(format!("{name}.json"));
    let mut c = Command::new(env!("CARGO_BIN_EXE_smmlab"));
    c.arg("run").args(args).args(["--stop-on-serial", PROMPT, "--max-instructions", MAX_INSTRUCTIONS]);
    c.arg("--serial").arg(&serial).arg("--summary-json").arg(&json);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(0), "{name}: smmlab failed\nstderr:\n{stderr}\nstdout tail:\n{}", tail(&stdout));
    let summary: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    Boot { serial: std::fs::read(&serial).unwrap(), summary, stdout, stderr }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// What every boot of the SMM build to the prompt shows.
fn check_smm_boot(name: &str, b: &Boot) {
    let s = &b.summary;
    let serial = String::from_utf8_lossy(&b.serial);
    assert_eq!(s["exit"], "serial-text", "{name}: {s}");
    assert!(serial.contains("UEFI Interactive Shell v2.2") && serial.ends_with(PROMPT), "{name}: serial:\n{serial}");
    assert!(serial.contains("BdsDxe: starting Boot0001 \"EFI Internal Shell\""), "{name}: {serial}");
    // QEMU 7.2 takes 623 SMIs to the prompt (issue 12); smmlab about 600.
    let smis = s["smis"].as_u64().unwrap();
    assert!((500..=800).contains(&smis), "{name}: {smis} SMIs");
    assert_eq!(s["smis_by_source"]["ipi"], 1, "{name}: PiSmmCpuDxeSmm relocates SMBASE with an SMI IPI");
    assert_eq!(s["smram_after"]["d_lck"], true, "{name}: SMRAM locked: {s}");
    assert_eq!(s["smram_after"]["t_en"], true, "{name}: TSEG closed: {s}");
    assert!(s["pflash_writes_smm"].as_u64().unwrap() > 0, "{name}: VariableSmm programs the flash from SMM");
    assert_eq!(s["pflash_writes_refused"], 0, "{name}: nothing outside SMM writes the flash");
    assert_eq!(s["unimplemented"], serde_json::json!({}), "{name}: {s}");
    assert_eq!(s["missing_features"], serde_json::json!({}), "{name}: {s}");
    // The SMM IPL's set-up writes into TSEG are notes, not alerts.
    assert!(b.stdout.contains("SMRAM written from outside SMM"), "{name}: the IPL's copy of the SMM core is shown");
    let alerts: Vec<&str> = b.stdout.lines().filter(|l| l.contains(" !! ")).collect();
    assert!(alerts.is_empty(), "{name}: SMRAM alerts on a correct firmware:\n{}", alerts.join("\n"));
}

/// QEMU 7.2 booting the same units to the prompt: its serial output.
fn qemu_serial(d: &Path, code: &str, vars: &Path) -> Vec<u8> {
    let serial = d.join("qemu.serial");
    let mut q = Command::new(QEMU)
        .args(["-machine", "q35,smm=on", "-m", "256", "-accel", "tcg", "-display", "none", "-nodefaults", "-no-reboot"])
        .args(["-global", "driver=cfi.pflash01,property=secure,value=on"])
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,unit=0,file={code},readonly=on"))
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,unit=1,file={}", vars.display()))
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .spawn()
        .unwrap();
    // The Shell counts down 5 s of real time before its prompt.
    let t0 = std::time::Instant::now();
    let got = loop {
        let text = std::fs::read(&serial).unwrap_or_default();
        if text.windows(PROMPT.len()).any(|w| w == PROMPT.as_bytes()) || t0.elapsed().as_secs() > 120 {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = q.kill();
    let _ = q.wait();
    got
}

#[test]
fn secboot_reaches_the_shell_as_in_qemu_and_keeps_its_variables() {
    if !ovmf_present(CODE_SECBOOT) {
        return;
    }
    let d = dir("secboot");
    let vars = d.join("vars.fd");
    std::fs::copy(VARS, &vars).unwrap();
    let units = [format!("{CODE_SECBOOT},readonly"), vars.display().to_string()];
    let first = smmlab(&d, "first", &["--pflash", &units[0], "--pflash", &units[1], "--memory", "256"], &[]);
    check_smm_boot("first boot", &first);
    // The variable store was written back: the boot wrote variables (boot options, the
    // memory type information, ...), so the file is not the template any more.
    let after = std::fs::read(&vars).unwrap();
    assert_ne!(after, std::fs::read(VARS).unwrap(), "the variable store was not written back");
    assert_eq!(after.len() as u64, std::fs::metadata(VARS).unwrap().len());
    assert!(first.stderr.contains("flash written back to"), "{}", first.stderr);

    // QEMU from the same template: the same bytes on the serial port up to the prompt.
    if testkit::package_command(QEMU, "qemu-system-x86") {
        let qvars = d.join("qemu-vars.fd");
        std::fs::copy(VARS, &qvars).unwrap();
        let theirs = qemu_serial(&d, CODE_SECBOOT, &qvars);
        let n = first.serial.len();
        assert!(theirs.len() >= n, "QEMU's serial ended early:\n{}", String::from_utf8_lossy(&theirs));
        assert_eq!(String::from_utf8_lossy(&first.serial), String::from_utf8_lossy(&theirs[..n]), "serial output differs from QEMU 7.2's");
    }

    // The second boot starts from the written-back store, through --ovmf's per-user copy.
    let state = d.join("state");
    std::fs::create_dir_all(state.join("smmlab")).unwrap();
    let copy = state.join("smmlab/OVMF_VARS_4M.fd");
    std::fs::copy(&vars, &copy).unwrap();
    let second = smmlab(&d, "second", &["--ovmf"], &[("XDG_STATE_HOME", &state)]);
    check_smm_boot("second boot", &second);
    assert_eq!(second.serial, first.serial, "the second boot's serial output differs");
    // The store still holds a valid variable store header (the firmware volume signature).
    let kept = std::fs::read(&copy).unwrap();
    assert_eq!(&kept[0x28..0x2c], b"_FVH", "the variable store lost its firmware volume header");
}

#[test]
fn ovmf_makes_its_variable_store_from_the_template() {
    if !ovmf_present(CODE_SECBOOT) {
        return;
    }
    let d = dir("template");
    let o = Command::new(env!("CARGO_BIN_EXE_smmlab"))
        .args(["run", "-q", "--ovmf", "--max-instructions", "1000", "--pflash-snapshot"])
        .env("XDG_STATE_HOME", &d)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(d.join("smmlab/OVMF_VARS_4M.fd")).unwrap(), std::fs::read(VARS).unwrap());
}

#[test]
fn plain_build_without_smm_boots_from_flash_that_is_not_secure() {
    if !ovmf_present(CODE_PLAIN) {
        return;
    }
    let d = dir("plain");
    let vars = d.join("vars.fd");
    std::fs::copy(VARS, &vars).unwrap();
    let units = [format!("{CODE_PLAIN},readonly"), vars.display().to_string()];
    let b = smmlab(&d, "plain", &["-q", "--pflash", &units[0], "--pflash", &units[1], "--pflash-secure", "off", "--pflash-snapshot"], &[]);
    let s = &b.summary;
    assert_eq!(s["exit"], "serial-text", "{s}");
    assert!(String::from_utf8_lossy(&b.serial).contains("UEFI Interactive Shell v2.2"));
    assert_eq!(s["smis"], 0, "this build has no SMM: {s}");
    assert_eq!(s["pflash_writes_smm"], 0, "{s}");
    // --pflash-snapshot: the file is untouched.
    assert_eq!(std::fs::read(&vars).unwrap(), std::fs::read(VARS).unwrap());
}

#[test]
fn bad_flash_arguments_are_refused_with_the_file_named() {
    let d = dir("bad");
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_smmlab")).arg("run").args(args).output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let missing = d.join("nope.fd");
    let (code, err) = run(&["--pflash", missing.to_str().unwrap()]);
    assert_ne!(code, Some(0));
    assert!(err.contains("cannot read pflash file") && err.contains("nope.fd"), "{err}");
    let odd = d.join("odd.fd");
    std::fs::write(&odd, vec![0u8; 5000]).unwrap();
    let (code, err) = run(&["--pflash", odd.to_str().unwrap()]);
    assert_ne!(code, Some(0));
    assert!(err.contains("odd.fd is 5000 bytes") && err.contains("multiple of 4096"), "{err}");
    let ok = d.join("ok.fd");
    std::fs::write(&ok, vec![0xffu8; 64 << 10]).unwrap();
    let (code, err) = run(&["--pflash", ok.to_str().unwrap(), "--machine", "minimal"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("minimal machine has no system flash"), "{err}");
    let (code, err) = run(&["--pflash", ok.to_str().unwrap(), "--type", "hello"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("--type needs the built-in firmware"), "{err}");
    let (code, err) = run(&["--pflash", ok.to_str().unwrap(), "--bios", ok.to_str().unwrap()]);
    assert_ne!(code, Some(0));
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn smm_inventory_names_every_module_and_handler_of_ovmf() {
    if !ovmf_present(CODE_SECBOOT) {
        return;
    }
    let d = dir("inventory");
    let vars = d.join("vars.fd");
    std::fs::copy(VARS, &vars).unwrap();
    let json = d.join("inventory.json");
    let o = Command::new(env!("CARGO_BIN_EXE_smmlab"))
        .args(["smm", "inventory", "--pflash", &format!("{CODE_SECBOOT},readonly"), "--pflash"])
        .arg(&vars)
        .args(["--memory", "256", "--stop-on-serial", PROMPT, "--pflash-snapshot", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}\n{text}", String::from_utf8_lossy(&o.stderr));
    let inv: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    // The MM modules `fw inspect` lists: seven resident, named from the firmware volume;
    // CpuHotplugSmm's entry point fails on one CPU without QEMU's hot-plug registers, and the
    // core unloads it (as on QEMU).
    let names: Vec<&str> = inv["modules"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    for want in ["PiSmmCore", "PiSmmCpuDxeSmm", "CpuIo2Smm", "SmmLockBox", "FvbServicesSmm", "SmmFaultTolerantWriteDxe", "VariableSmm"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(inv["modules"].as_array().unwrap().iter().all(|m| m["named_by"] == "firmware-volume"), "{}", inv["modules"]);
    assert_eq!(inv["not_resident"][0]["name"], "CpuHotplugSmm");
    let handler = |guid: &str| inv["handlers"].as_array().unwrap().iter().find(|h| h["guid"] == guid).unwrap_or_else(|| panic!("no handler for {guid}: {text}")).clone();
    for (guid, module) in [
        ("ed32d533-99e6-4209-9cc0-2d72cdd998a7", "VariableSmm"),
        ("3868fc3b-7e45-43a7-906c-4ba47de1754d", "SmmFaultTolerantWriteDxe"),
        ("2a3cfebd-27e8-4d0a-8b79-d688c2a3e1c0", "SmmLockBox"),
        ("27abf055-b1b8-4c26-8048-748f37baa2df", "PiSmmCore"),
    ] {
        let h = handler(guid);
        assert_eq!(h["handler"]["module"], module, "{h}");
        assert_eq!(h["handler"]["in_code"], true, "the handler lands in {module}'s code: {h}");
        assert_eq!(h["registered_by"]["module"], module, "{module} registered its own handler: {h}");
        assert!(h["handler"]["at"].as_str().unwrap().starts_with(&format!("{module}+0x")));
    }
    assert_eq!(handler("ed32d533-99e6-4209-9cc0-2d72cdd998a7")["guid_name"], "gEfiSmmVariableProtocolGuid");
    // Protocols: SMM CPU I/O from CpuIo2Smm's image, the variable protocol from VariableSmm's.
    let protocol = |guid: &str| inv["protocols"].as_array().unwrap().iter().find(|p| p["guid"] == guid).cloned().unwrap_or_else(|| panic!("no protocol {guid}"));
    assert_eq!(protocol("3242a9d8-ce70-4aa0-955d-5e7b140de4d2")["interfaces"][0]["module"], "CpuIo2Smm");
    assert_eq!(protocol("ed32d533-99e6-4209-9cc0-2d72cdd998a7")["interfaces"][0]["module"], "VariableSmm");
    // Dated from looks at the core's lists after every RSM: the variable handler was there
    // from the driver-dispatch SMIs on; the core's own dispatch and ready-to-lock handlers
    // were registered, then removed at SMRAM's ready-to-lock.
    let seen = handler("ed32d533-99e6-4209-9cc0-2d72cdd998a7")["seen"]["smi"].as_u64().unwrap();
    assert!((1..10).contains(&seen), "{seen}");
    let removed = inv["removed_handlers"].as_array().unwrap();
    let dispatch = removed.iter().find(|h| h["guid_name"] == "gEfiEventDxeDispatchGuid").unwrap_or_else(|| panic!("{removed:?}"));
    assert_eq!(dispatch["handler"]["module"], "PiSmmCore");
    assert!(dispatch["removed"]["smi"].as_u64().unwrap() > dispatch["seen"]["smi"].as_u64().unwrap() + 50, "{dispatch}");
    assert!(removed.iter().any(|h| h["guid_name"] == "gEfiDxeSmmReadyToLockProtocolGuid"), "{removed:?}");
    // The SMST's services watched from when the table exists: who produces, awaits and
    // consumes what. LockBox looks for the Sx dispatcher at EndOfDxe (OVMF has none); the
    // variable driver's SmiHandlerRegister call returns where the core's record says.
    let calls = inv["service_calls"].as_array().unwrap();
    let by = |service: &str, guid_name: &str| calls.iter().find(|c| c["service"] == service && c["guid_name"] == guid_name).cloned();
    let sx = by("locate-protocol", "gEfiSmmSxDispatch2ProtocolGuid").unwrap_or_else(|| panic!("{calls:?}"));
    assert_eq!(sx["caller"]["module"], "SmmLockBox");
    let reg = by("handler-register", "gEfiSmmVariableProtocolGuid").unwrap();
    assert_eq!(reg["caller"]["at"], handler("ed32d533-99e6-4209-9cc0-2d72cdd998a7")["registered_by"]["at"]);
    let install = by("install-protocol", "gEfiSmmVariableProtocolGuid").unwrap();
    assert_eq!(install["caller"]["module"], "VariableSmm");
    // CpuHotplugSmm finds SMRAM at the default SMBASE (QEMU's MCH register 0x9C, as PlatformPei
    // probes it), locates the CPU protocols, then leaves (one possible CPU: nothing to do, as
    // on QEMU 7.2 with one CPU). Its memory is reused by the next driver; its calls are still
    // named after it, by the image they ran in at the call.
    let hotplug: Vec<&Value> = calls.iter().filter(|c| c["caller"]["module"] == "CpuHotplugSmm").collect();
    let located: std::collections::BTreeSet<&str> = hotplug.iter().filter(|c| c["service"] == "locate-protocol").filter_map(|c| c["guid_name"].as_str()).collect();
    assert_eq!(located, ["gEfiSmmCpuIo2ProtocolGuid", "gEfiSmmCpuServiceProtocolGuid"].into_iter().collect(), "{calls:?}");
    assert!(inv["not_resident"].as_array().unwrap().iter().any(|m| m["name"] == "CpuHotplugSmm"), "{}", inv["not_resident"]);
    assert!(text.contains("CpuHotplugSmm                not in SMRAM (dispatched, made 2 SMST call(s), then unloaded"), "{text}");
    // The text says the same.
    assert!(text.contains("gEfiSmmVariableProtocolGuid") && text.contains("registered at VariableSmm+0x"), "{text}");
    assert!(text.contains("SMI handlers registered and removed during the run"), "{text}");
    // Latency by handler: the variable handler is entered by hundreds of the boot's SMIs, each a
    // sample of its cost; the core's DXE-dispatch handler by the dispatch SMIs.
    let lat = inv["handler_latency"].as_array().unwrap_or_else(|| panic!("no handler_latency: {text}"));
    let var = lat.iter().find(|l| l["handler"]["handler"]["at"] == handler("ed32d533-99e6-4209-9cc0-2d72cdd998a7")["handler"]["at"]).unwrap_or_else(|| panic!("{lat:?}"));
    assert!(var["smis"].as_u64().unwrap() > 100, "{var}");
    assert!(var["p50_ns"].as_u64().unwrap() > 0 && var["p50_ns"].as_u64().unwrap() <= var["max_ns"].as_u64().unwrap(), "{var}");
    assert!(lat.iter().any(|l| l["handler"]["guid_name"] == "gEfiEventDxeDispatchGuid" && l["handler"]["handler"]["module"] == "PiSmmCore"), "{lat:?}");
    assert!(text.contains("SMI latency by handler") && text.contains("VariableSmm+0x6b1c"), "{text}");
    // PiSmmCpuDxeSmm run on its own (`smmlab module run`) installs the SMM protocols it
    // installs in this boot, from the same RVAs, and awaits the same ones.
    let alone = d.join("cpu-alone.json");
    let o = Command::new(env!("CARGO_BIN_EXE_smmlab")).args(["module", "run", CODE_SECBOOT, "--module", "PiSmmCpuDxeSmm", "--json"]).arg(&alone).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let alone: Value = serde_json::from_slice(&std::fs::read(&alone).unwrap()).unwrap();
    let by_cpu_driver = |calls: &[Value]| -> std::collections::BTreeSet<(String, String, String)> {
        calls
            .iter()
            .filter(|c| c["caller"]["module"] == "PiSmmCpuDxeSmm" && (c["service"] == "install-protocol" || c["service"] == "register-notify"))
            .map(|c| (c["service"].to_string(), c["guid"].to_string(), c["caller"]["at"].to_string()))
            .collect()
    };
    let in_boot = by_cpu_driver(calls);
    assert!(in_boot.len() >= 4, "{in_boot:?}");
    assert_eq!(by_cpu_driver(alone[0]["inventory"]["service_calls"].as_array().unwrap()), in_boot);
    assert_eq!(alone[0]["smi_entry"]["registered"]["status"], 0, "{}", alone[0]["smi_entry"]);
}

#[test]
fn audit_of_ovmf_finds_nothing_in_its_handlers_and_explains_the_platform_findings() {
    if !ovmf_present(CODE_SECBOOT) {
        return;
    }
    let d = dir("audit");
    let o = Command::new(env!("CARGO_BIN_EXE_smmlab")).args(["audit", "--ovmf", "--format", "json"]).env("XDG_STATE_HOME", &d).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let r: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}\n{}", String::from_utf8_lossy(&o.stderr)));
    let verdicts = r["verdicts"].as_array().unwrap();
    let status = |rule: &str| verdicts.iter().find(|v| v["rule"] == rule).map(|v| v["status"].as_str().unwrap().to_string());
    assert_eq!(status("SMM001").as_deref(), Some("pass"), "SMRAM locked: {text}");
    assert_eq!(status("SMM003").as_deref(), Some("pass"), "TSEG locked: {text}");
    // Zero false positives: no behaviour finding (SMM1xx) on OVMF's SMM.
    let behaviour: Vec<&Value> = verdicts.iter().filter(|v| v["rule"].as_str().unwrap().starts_with("SMM1")).collect();
    assert!(behaviour.is_empty(), "behaviour findings on OVMF: {behaviour:?}");
    assert!(r["smis_raised"].as_u64().unwrap() > 1000, "{}", r["smis_raised"]);
    let notes = r["notes"].to_string();
    assert!(notes.contains("SMM_CORE_PRIVATE_DATA"), "the core's communication area is recognized: {notes}");
    assert!(notes.contains("platform design finding"), "{notes}");
    // The GUID handlers of the inventory were reached through the communication path: the
    // variable handler answered, and a buffer running into SMRAM was refused (no SMM105).
    assert!(notes.contains("6 GUID handlers driven through the SMM core's communication path"), "{notes}");
    assert!(notes.contains("gEfiSmmVariableProtocolGuid comm-header: EFI_SUCCESS"), "{notes}");
    assert!(notes.contains("gEfiSmmLockBoxCommunicationGuid comm-pointers-to-smram"), "{notes}");
    // The firmware's files are never written by an audit.
    assert_eq!(std::fs::read(d.join("smmlab/OVMF_VARS_4M.fd")).unwrap(), std::fs::read(VARS).unwrap());
}

#[test]
fn disasm_groups_ovmfs_smm_code_by_module_and_names_the_handlers() {
    if !ovmf_present(CODE_SECBOOT) {
        return;
    }
    let d = dir("disasm");
    let out = d.join("smm.asm");
    let o = Command::new(env!("CARGO_BIN_EXE_smmlab")).args(["disasm", "--ovmf", "--output"]).arg(&out).env("XDG_STATE_HOME", &d).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("; run: stopped at the hand-off: serial \"Shell>\""), "{}", &text[..text.len().min(400)]);
    for module in ["PiSmmCore", "PiSmmCpuDxeSmm", "VariableSmm", "SmmLockBox"] {
        assert!(text.contains(&format!("==== module {module} (")), "{module} has no section");
    }
    // The SMI entry comes first, outside every module; then the modules, lowest first.
    let entry = text.find("== SMI entry").unwrap();
    assert!(entry < text.find("==== module").unwrap());
    // The variable handler, named: nearly every SMI of the boot runs it.
    let line = text.lines().find(|l| l.contains("[SMI handler for gEfiSmmVariableProtocolGuid]")).expect("the variable handler's block");
    assert!(line.contains("(VariableSmm+0x"), "{line}");
    let runs: u64 = line.split("ran ").nth(1).and_then(|r| r.split('x').next()).and_then(|n| n.parse().ok()).unwrap();
    assert!(runs > 400, "{line}");
}

#[test]
fn the_variable_store_is_written_back_when_a_limit_ends_the_run() {
    if !ovmf_present(CODE_SECBOOT) {
        return;
    }
    let d = dir("limit");
    let vars = d.join("vars.fd");
    std::fs::copy(VARS, &vars).unwrap();
    // 900 M instructions: VariableSmm has written the store, the Shell is not up yet.
    let o = Command::new(env!("CARGO_BIN_EXE_smmlab"))
        .args(["run", "-q", "--memory", "256", "--max-instructions", "900000000", "--pflash", &format!("{CODE_SECBOOT},readonly"), "--pflash"])
        .arg(&vars)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "instruction limit: {}", String::from_utf8_lossy(&o.stderr));
    let after = std::fs::read(&vars).unwrap();
    assert_ne!(after, std::fs::read(VARS).unwrap(), "the guest's variable writes were not kept");
    assert!(!d.join("vars.fd.smmlab-new").exists(), "the temporary file was renamed over the store");
}
