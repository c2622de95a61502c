//! `smmlab run` driven as users drive it: the binary, real ROM files assembled with nasm,
//! exit statuses, the summary and its JSON, and clear errors for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn smmlab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smmlab"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("smmlab-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Assembles a test ROM with nasm (installed by scripts/test.sh).
fn assemble(name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/roms").join(format!("{name}.asm"));
    let out = tmpdir("roms").join(format!("{name}.bin"));
    let st = Command::new("nasm").args(["-f", "bin", "-o"]).arg(&out).arg(&src).status().expect("nasm must be installed (scripts/test.sh installs it)");
    assert!(st.success(), "nasm failed on {}", src.display());
    out
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn run_without_arguments_boots_the_builtin_firmware_and_exits_zero() {
    let o = smmlab().arg("run").output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("fw: smmlab built-in firmware"), "{out}");
    assert!(out.contains("exit:             debug-exit"), "{out}");
    assert!(out.contains("unimplemented:    none"), "{out}");
    assert!(out.contains("missing features: none"), "{out}");
}

#[test]
fn guest_exit_value_becomes_the_process_status_and_debugcon_goes_to_a_file() {
    let rom = assemble("exit_code");
    let d = tmpdir("exit");
    let con = d.join("con.txt");
    let json = d.join("summary.json");
    let o = smmlab().args(["run", "--machine", "minimal", "--bios"]).arg(&rom).arg("--debugcon").arg(&con).arg("--summary-json").arg(&json).output().unwrap();
    assert_eq!(o.status.code(), Some(42), "{:?}", text(&o));
    assert_eq!(std::fs::read_to_string(&con).unwrap(), "hello from the exit-code ROM\n");
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(j["exit"], "debug-exit");
    assert_eq!(j["exit_code"], 42);
    assert_eq!(j["smis"], 0);
    assert_eq!(j["smm_instructions"], 0);
    // 3 setup + 7 per character * 28 + the final test/jz + mov/out.
    let n = j["instructions"].as_u64().unwrap();
    assert!(n > 28 * 5 && n < 28 * 8, "instructions {n}");
    assert!(j["guest_ns"].as_u64().unwrap() > 0);
}

#[test]
fn the_same_rom_gives_the_same_instruction_count_every_time() {
    let rom = assemble("exit_code");
    let count = || {
        let json = tmpdir("det").join(format!("{}.json", rand_suffix()));
        smmlab().args(["run", "-q", "--bios"]).arg(&rom).arg("--summary-json").arg(&json).status().unwrap();
        let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        (j["instructions"].as_u64().unwrap(), j["guest_ns"].as_u64().unwrap())
    };
    assert_eq!(count(), count());
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

#[test]
fn triple_fault_is_a_guest_event_not_a_crash() {
    let rom = assemble("triple_fault");
    let json = tmpdir("tf").join("s.json");
    let o = smmlab().args(["run", "--bios"]).arg(&rom).arg("--summary-json").arg(&json).output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}{err}");
    assert!(out.contains("triple fault"), "{out}");
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(j["exit"], "shutdown");
    assert!(j["exit_detail"].as_str().unwrap().contains("triple fault"));
}

#[test]
fn unimplemented_instruction_raises_ud_in_the_guest_and_is_counted() {
    let rom = assemble("unimplemented");
    let d = tmpdir("ud");
    let json = d.join("s.json");
    let con = d.join("con");
    let o = smmlab().args(["run", "--bios"]).arg(&rom).arg("--summary-json").arg(&json).arg("--debugcon").arg(&con).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(std::fs::read_to_string(&con).unwrap(), "UD");
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(j["unimplemented"]["fsin"], 1, "{j}");
}

#[test]
fn a_missing_feature_is_reported_by_name_apart_from_unimplemented_instructions() {
    let rom = assemble("missing_feature");
    let d = tmpdir("missing");
    let json = d.join("s.json");
    let o = smmlab().args(["run", "--bios"]).arg(&rom).arg("--summary-json").arg(&json).output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("unimplemented:    none"), "{out}");
    assert!(out.contains("features the guest used that smmlab does not model"), "{out}");
    assert!(out.contains("hardware breakpoints in DR0-DR3 (enabled in DR7; never hit): 1"), "{out}");
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(j["unimplemented"], serde_json::json!({}), "{j}");
    assert_eq!(j["missing_features"]["hardware breakpoints in DR0-DR3 (enabled in DR7; never hit)"], 1, "{j}");
}

#[test]
fn instruction_limit_stops_a_runaway_guest() {
    // 10 lands in the built-in firmware's straight-line entry code: a REP string instruction
    // (its copy and zeroing loops) counts every iteration and runs to completion before the
    // limit is looked at again, so a limit inside one overshoots.
    let o = smmlab().args(["run", "--max-instructions", "10"]).output().unwrap();
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(4));
    assert!(out.contains("instruction-limit"), "{out}");
    assert!(out.contains("instructions:     10\n"), "{out}");
}

#[test]
fn missing_rom_is_a_clear_error_naming_the_file() {
    let o = smmlab().args(["run", "--bios", "/nonexistent/bios.bin"]).output().unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("/nonexistent/bios.bin") && err.contains("cannot read ROM"), "{err}");
}

#[test]
fn empty_and_wrongly_sized_roms_are_rejected() {
    let d = tmpdir("bad");
    let empty = d.join("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    let o = smmlab().args(["run", "--bios"]).arg(&empty).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("is empty"), "{:?}", text(&o));
    let odd = d.join("odd.bin");
    std::fs::write(&odd, vec![0x90u8; 1000]).unwrap();
    let o = smmlab().args(["run", "--bios"]).arg(&odd).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o).1;
    assert!(err.contains("odd.bin") && err.contains("1000 bytes"), "{err}");
}

#[test]
fn bad_flags_are_rejected() {
    let o = smmlab().args(["run", "--machine", "nonsense"]).output().unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).1.contains("nonsense"));
    let o = smmlab().args(["run", "--memory", "0"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("memory size"), "{:?}", text(&o));
}

#[test]
fn a_guest_that_refaults_forever_ends_with_a_livelock_reason() {
    let rom = assemble("livelock");
    let o = smmlab().args(["run", "--bios"]).arg(&rom).output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}{err}");
    assert!(out.contains("livelock") && out.contains("f000:"), "{out}");
}

#[test]
fn bad_disk_images_are_clear_errors_naming_the_file() {
    let dir = tmpdir("disks");
    let empty = dir.join("empty.img");
    std::fs::write(&empty, []).unwrap();
    let odd = dir.join("odd.img");
    std::fs::write(&odd, [0u8; 1000]).unwrap();
    let good = dir.join("good.img");
    std::fs::write(&good, [0u8; 1024]).unwrap();
    for (file, machine, what) in [
        (dir.join("missing.img"), "pc", "missing.img"),
        (empty, "q35", "is empty"),
        (odd, "pc", "not a multiple of 512"),
        (good, "minimal", "no disk controller"),
    ] {
        let o = smmlab().args(["run", "--machine", machine, "--max-instructions", "1000", "--disk"]).arg(&file).output().unwrap();
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(what), "{err}");
        if machine != "minimal" {
            assert!(err.contains(&file.display().to_string()), "{err}");
        }
    }
}

/// `--option-rom` refuses files SeaBIOS could not run, naming the file, with exit status 2
/// and before the guest starts; a good ROM is accepted on pc and q35 but not on minimal.
#[test]
fn bad_option_roms_are_clear_errors_naming_the_file() {
    let dir = tmpdir("optionroms");
    let write = |name: &str, data: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        p
    };
    let mut good = vec![0u8; 1024];
    good[..3].copy_from_slice(&[0x55, 0xaa, 2]);
    let good = write("good.rom", &good);
    let mut long_header = vec![0u8; 512];
    long_header[..3].copy_from_slice(&[0x55, 0xaa, 4]);
    for (file, machine, what) in [
        (dir.join("missing.rom"), "pc", "cannot read option ROM"),
        (write("empty.rom", &[]), "q35", "is empty"),
        (write("odd.rom", &[0x55, 0xaa, 1, 0]), "pc", "not a multiple of 512"),
        (write("nosig.rom", &[0u8; 512]), "q35", "no 0x55AA signature"),
        (write("long.rom", &long_header), "pc", "declares 4 blocks"),
        (good.clone(), "minimal", "no fw_cfg"),
    ] {
        let o = smmlab().args(["run", "-q", "--machine", machine, "--max-instructions", "1000", "--option-rom"]).arg(&file).output().unwrap();
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(what), "{what}: {err}");
        if machine != "minimal" {
            assert!(err.contains(&file.display().to_string()), "{err}");
        }
    }
    // Two ROMs with the same file name would share one fw_cfg name.
    let o = smmlab().args(["run", "-q", "--machine", "pc", "--max-instructions", "1000", "--option-rom"]).arg(&good).arg("--option-rom").arg(&good).output().unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("genroms/good.rom"), "{err}");
    // A good one runs (the built-in firmware ignores it; instruction limit: exit 4 or better).
    let o = smmlab().args(["run", "-q", "--machine", "q35", "--max-instructions", "1000", "--option-rom"]).arg(&good).output().unwrap();
    assert_ne!(o.status.code(), Some(2), "{:?}", text(&o));
}

/// `--fw-cfg NAME=FILE` refuses what it cannot use with exit status 2 and a message naming
/// the argument or the file, before the guest starts.
#[test]
fn bad_fw_cfg_files_are_clear_errors() {
    let dir = tmpdir("fwcfg-bad");
    let blob = dir.join("blob.bin");
    std::fs::write(&blob, b"abc").unwrap();
    let missing = dir.join("missing.bin");
    let long = format!("opt/{}={}", "n".repeat(52), blob.display());
    for (arg, machine, what) in [
        (format!("opt/x={}", missing.display()), "pc", missing.display().to_string()),
        (blob.display().to_string(), "q35", "expected NAME=FILE".to_string()),
        (format!("={}", blob.display()), "pc", "name is empty".to_string()),
        (long, "pc", "at most 55 bytes".to_string()),
        (format!("opt/x={}", dir.display()), "pc", format!("cannot read fw_cfg file {}", dir.display())),
        (format!("opt/x={}", blob.display()), "minimal", "no fw_cfg".to_string()),
    ] {
        let o = smmlab().args(["run", "-q", "--machine", machine, "--max-instructions", "1000", "--fw-cfg", &arg]).output().unwrap();
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{arg}: {err}");
        assert!(err.contains(&what), "{arg}: expected {what:?} in {err}");
    }
    let twice = format!("opt/x={}", blob.display());
    let o = smmlab().args(["run", "-q", "--machine", "pc", "--max-instructions", "1000", "--fw-cfg", &twice, "--fw-cfg", &twice]).output().unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("names opt/x twice"), "{err}");
}

/// The fw_cfg dump ROM (tests/roms/fw_cfg_dump.asm) sees a `--fw-cfg` file as the guest does:
/// a new name is added in name order, a name the board has (etc/acpi/rsdp) is replaced.
#[test]
fn fw_cfg_files_reach_the_guest_and_replace_the_boards_own() {
    let rom = assemble("fw_cfg_dump");
    let dir = tmpdir("fwcfg-good");
    std::fs::write(dir.join("new.bin"), [0xde, 0xad, 0xbe, 0xef]).unwrap();
    std::fs::write(dir.join("rsdp.bin"), b"not an RSDP").unwrap();
    let con = dir.join("con.txt");
    let o = smmlab()
        .args(["run", "-q", "--machine", "pc", "--bios"])
        .arg(&rom)
        .arg("--fw-cfg")
        .arg(format!("opt/smmlab/new={}", dir.join("new.bin").display()))
        .arg("--fw-cfg")
        .arg(format!("etc/acpi/rsdp={}", dir.join("rsdp.bin").display()))
        .arg("--debugcon")
        .arg(&con)
        .output()
        .unwrap();
    let out = std::fs::read_to_string(&con).unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}\n{out}", text(&o));
    assert!(out.ends_with("END\n"), "{out}");
    let files: Vec<&str> = out.lines().filter(|l| l.starts_with("FILE ")).collect();
    // Name order from key 0x20: bios-geometry, bootorder, then the replaced etc/acpi/rsdp.
    assert_eq!(files.get(2).copied().unwrap_or_default(), "FILE 0022 0000000b etc/acpi/rsdp", "{out}");
    let last = files.last().copied().unwrap_or_default();
    assert_eq!(last, format!("FILE {:04x} 00000004 opt/smmlab/new", 0x20 + files.len() - 1), "{out}");
    assert!(out.contains("FILE 0022 0000000b etc/acpi/rsdp\nD 6e6f7420616e2052534450\n"), "{out}");
    assert!(out.ends_with("opt/smmlab/new\nD deadbeef\nEND\n"), "{out}");
}

#[test]
fn bench_reports_mips_and_smi_round_trip() {
    let o = smmlab().args(["bench", "--alu", "20000", "--smi", "2000", "--runs", "1"]).output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("20000 iterations, 140012 instructions") && out.contains("MIPS"), "{out}");
    assert!(out.contains("2000 SMIs") && out.contains("us per SMI round trip"), "{out}");
}

#[test]
fn a_reader_that_goes_away_ends_the_run_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_smmlab")).arg("run").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with("smmlab: the built-in firmware on q35"), "{first}");
    // The reader is gone (stdout dropped with the BufReader): like `smmlab run | head -1`.
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn an_instruction_rate_out_of_range_is_a_clear_error() {
    for ips in ["0", "1", "999999", "1000000000001"] {
        let o = smmlab().args(["run", "-q", "--ips", ips]).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "--ips {ips}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("--ips must be between 1000000 and 1000000000000"), "--ips {ips}");
    }
    let o = smmlab().args(["run", "-q", "--ips", "1000000"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
}
