//! smmlab driven as a hostile or careless user drives it: bad flags and files, runs that no
//! instruction limit bounds (SMM costs, time skipped without instructions, SMI storms, SMM that
//! never returns), signals, firmware that never boots. Every run ends with a clear message and
//! its own exit status; nothing panics or hangs.
//!
//! Runs that could hang on a regression are spawned with [`finish`], which kills them after a
//! generous wall-clock bound and fails the test: a guard, not a speed measurement.

use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A run that takes longer than this is taken to hang.
const HANG: Duration = Duration::from_secs(120);

fn smmlab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smmlab"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("smmlab-hostile-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Assembles tests/roms/NAME.asm with nasm (installed by scripts/test.sh), with `defines`.
fn assemble(name: &str, defines: &[&str], tag: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/roms").join(format!("{name}.asm"));
    let out = tmpdir("roms").join(format!("{name}-{tag}.bin"));
    let st = Command::new("nasm").args(defines).args(["-f", "bin", "-o"]).arg(&out).arg(&src).status().expect("nasm must be installed (scripts/test.sh installs it)");
    assert!(st.success(), "nasm failed on {}", src.display());
    out
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Waits for `child` (reading its output meanwhile), killing it and failing the test after
/// [`HANG`].
fn wait_bounded(child: Child, what: &str) -> Output {
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(HANG) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on our own child, which has not been waited for yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let o = rx.recv().unwrap().unwrap();
            panic!("{what} did not finish within {HANG:?} (killed):\n{}", String::from_utf8_lossy(&o.stdout));
        }
    }
}

/// Runs `cmd` to its end within [`HANG`].
fn finish(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    wait_bounded(cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap(), &what)
}

fn summary(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("no summary {}: {e}", path.display()))).unwrap()
}

#[test]
fn smm_entry_and_rsm_times_beyond_10_ms_are_refused() {
    for flag in ["--smm-entry-ns", "--rsm-ns"] {
        for ns in ["18446744073709551615", "10000001"] {
            let o = finish(smmlab().args(["run", "-q", "--max-instructions", "1000000", flag, ns]));
            let (_, err) = text(&o);
            assert_eq!(o.status.code(), Some(2), "{flag} {ns}: {err}");
            assert!(err.contains(&format!("of {ns} ns is more than a platform takes: at most 10000000 ns (10 ms")) && err.contains(flag), "{flag} {ns}: {err}");
        }
        // 10 ms itself is a platform's time.
        let o = finish(smmlab().args(["run", "-q", "--max-instructions", "1000000", flag, "10000000"]));
        assert_eq!(o.status.code(), Some(4), "{flag} 10000000: {:?}", text(&o));
    }
}

/// The keyboard scenario waits, halted, for 3000 typed keys: 10 s of guest time in 22 M
/// instructions. --max-guest-time stops it at the limit exactly; without an instruction limit
/// that bounds anything, the default guest-time limit (60 s) ends a run whose SMM costs pass
/// all the time.
#[test]
fn guest_time_limit_ends_runs_whose_time_passes_without_instructions() {
    let d = tmpdir("guest-time");
    let j = d.join("keyboard.json");
    let keys = "k".repeat(3000);
    let o = finish(smmlab().args(["run", "--scenario", "keyboard", "--type", &keys, "--max-guest-time", "1000", "--summary-json"]).arg(&j));
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out}{err}");
    assert!(out.contains("exit:             guest-time-limit (1000.000 ms of guest time (--max-guest-time))"), "{out}");
    let s = summary(&j);
    assert_eq!((s["exit"].as_str(), s["guest_ns"].as_u64()), (Some("guest-time-limit"), Some(1_000_000_000)), "{s}");
    assert!(s["instructions"].as_u64().unwrap() < 100_000_000, "{s}");

    let j = d.join("costs.json");
    let o = finish(smmlab().args(["run", "-q", "--smm-entry-ns", "10000000", "--rsm-ns", "10000000", "--smm-watchdog", "0", "--summary-json"]).arg(&j));
    assert_eq!(o.status.code(), Some(4), "{:?}", text(&o));
    let s = summary(&j);
    assert_eq!(s["exit"], "guest-time-limit", "{s}");
    let ns = s["guest_ns"].as_u64().unwrap();
    assert!((60_000_000_000..60_100_000_000).contains(&ns), "the default 60 s: {ns} ns");
    assert!(s["instructions"].as_u64().unwrap() < 100_000_000, "{s}");
}

/// SMM entries and RSMs of 10 ms each, longer together than the built-in firmware's 16 ms fan
/// timer: the next SMI is always pending at RSM and the OS never runs again. Before the SMM
/// watchdog this ran to the instruction limit (the default one took about 400 s).
#[test]
fn smm_costs_longer_than_the_smi_period_end_in_an_smi_storm() {
    let j = tmpdir("storm-builtin").join("s.json");
    let o = finish(smmlab().args(["run", "--smm-entry-ns", "10000000", "--rsm-ns", "10000000", "--max-instructions", "50000000", "--summary-json"]).arg(&j));
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(6), "{out}{err}");
    let line = out.lines().find(|l| l.starts_with("exit:")).unwrap_or_default();
    assert!(line.starts_with("exit:             smi-storm (") && line.contains("SMIs in 1000.0") && line.contains("left the code they interrupted 0 instructions") && line.contains("SMIs come faster than SMM finishes them"), "{line}");
    let s = summary(&j);
    assert_eq!((s["exit"].as_str(), s["exit_code"].as_i64()), (Some("smi-storm"), Some(6)), "{s}");
    assert!(s["guest_ns"].as_u64().unwrap() <= 2_100_000_000, "found within two watchdog windows: {s}");
}

/// Slower SMM (6 ms entry and RSM: 12 ms of every 16 ms fan period) leaves the OS a quarter
/// of the CPU: the scenario takes longer and still finishes.
#[test]
fn smm_costs_shorter_than_the_smi_period_are_no_storm() {
    let j = tmpdir("no-storm").join("s.json");
    let o = finish(smmlab().args(["run", "-q", "--smm-entry-ns", "6000000", "--rsm-ns", "6000000", "--summary-json"]).arg(&j));
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(summary(&j)["exit"], "debug-exit");
}

/// tests/roms/smm_runaway.asm -DSTORM: the SMI handler raises the next SMI before RSM.
#[test]
fn an_smi_handler_that_raises_its_own_smi_is_an_smi_storm() {
    let rom = assemble("smm_runaway", &["-DSTORM"], "storm");
    let j = tmpdir("storm-rom").join("s.json");
    let o = finish(smmlab().args(["run", "--machine", "pc", "--ips", "1000000", "--max-instructions", "20000000", "--bios"]).arg(&rom).arg("--summary-json").arg(&j));
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(6), "{err}");
    assert!(out.contains("exit:             smi-storm ("), "{}", &out[out.len().saturating_sub(3000)..]);
    let s = summary(&j);
    assert_eq!(s["exit"], "smi-storm");
    assert!(s["smis"].as_u64().unwrap() > 100_000, "{s}");
    assert_eq!(s["guest_ns"], 1_000_000_000, "the first 1 s window: {s}");
}

/// tests/roms/smm_runaway.asm: the SMI handler is `jmp $`.
#[test]
fn an_smi_handler_that_never_returns_is_stuck_in_smm() {
    let rom = assemble("smm_runaway", &[], "stuck");
    let j = tmpdir("stuck-rom").join("s.json");
    let o = finish(smmlab().args(["run", "--machine", "pc", "--ips", "1000000", "--max-instructions", "20000000", "--bios"]).arg(&rom).arg("--summary-json").arg(&j));
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(6), "{out}{err}");
    assert!(out.contains("exit:             stuck-in-smm (the CPU has been in SMM for 1000.000 ms of guest time without RSM, now at 3000:0x8000 (real mode))"), "{out}");
    let s = summary(&j);
    assert_eq!(s["exit"], "stuck-in-smm");
    // The stay in progress is counted.
    assert!(s["smm_instructions"].as_u64().unwrap() > 900_000 && s["smm_guest_ns"].as_u64().unwrap() > 900_000_000, "{s}");
    // --smm-watchdog 0 turns it off: the instruction limit ends the run.
    let o = finish(smmlab().args(["run", "-q", "--machine", "pc", "--ips", "1000000", "--max-instructions", "3000000", "--smm-watchdog", "0", "--bios"]).arg(&rom));
    assert_eq!(o.status.code(), Some(4), "{:?}", text(&o));
}

/// Starts `args`, waits until `ready` holds (the run is under way), sends `signal` and
/// returns the run's output.
fn interrupt(args: &[&std::ffi::OsStr], ready: impl Fn() -> bool, signal: i32) -> Output {
    let mut child = smmlab().args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    while !ready() {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("the run ended ({st}) before it was interrupted: {err}");
        }
        assert!(t0.elapsed() < HANG, "the run never got under way");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill(2) with the pid of our own child process and a valid signal number.
    let r = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(r, 0, "kill failed");
    wait_bounded(child, "the interrupted run")
}

/// tests/roms/loop_output.asm writes 28 bytes to debugcon without a newline, "ready\n" and
/// "tail" to COM1, then loops forever. SIGTERM and SIGINT stop it with every byte in its file,
/// the summary printed and written, and 128 + the signal as the status.
#[test]
fn sigterm_and_sigint_stop_a_run_with_its_output_flushed_and_its_summary() {
    let rom = assemble("loop_output", &[], "signals");
    for (signal, name, status) in [(libc::SIGTERM, "SIGTERM", 143), (libc::SIGINT, "SIGINT", 130)] {
        let d = tmpdir(&format!("signal-{name}"));
        let (con, serial, json) = (d.join("debugcon.bin"), d.join("serial.txt"), d.join("summary.json"));
        let args: Vec<&std::ffi::OsStr> = vec!["run".as_ref(), "--machine".as_ref(), "pc".as_ref(), "--bios".as_ref(), rom.as_os_str(), "--debugcon".as_ref(), con.as_os_str(), "--serial".as_ref(), serial.as_os_str(), "--summary-json".as_ref(), json.as_os_str()];
        let o = interrupt(&args, || std::fs::read_to_string(&serial).is_ok_and(|t| t.starts_with("ready\n")), signal);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(status), "{name}: {out}{err}");
        assert_eq!(std::fs::read(&con).unwrap(), b"no newline ends this output.", "{name}: debugcon");
        assert_eq!(std::fs::read_to_string(&serial).unwrap(), "ready\ntail", "{name}: serial");
        assert!(out.contains(&format!("exit:             interrupted (by {name})\nexit code:        {status}\n")), "{name}: {out}");
        assert!(err.contains(&format!("smmlab: run interrupted by {name} after ")), "{name}: {err}");
        let s = summary(&json);
        assert_eq!((s["exit"].as_str(), s["exit_code"].as_i64()), (Some("interrupted"), Some(status as i64)), "{name}: {s}");
    }
}

/// The built-in firmware in an SMI storm with the watchdog and the guest-time limit off runs
/// until stopped; SIGINT still saves the --nvram file.
#[test]
fn an_interrupted_builtin_run_saves_its_nvram_file() {
    let d = tmpdir("signal-nvram");
    let (nvram, con) = (d.join("settings.bin"), d.join("debugcon.txt"));
    let _ = std::fs::remove_file(&nvram);
    let args: Vec<&std::ffi::OsStr> = vec![
        "run".as_ref(),
        "-q".as_ref(),
        "--smm-entry-ns".as_ref(),
        "10000000".as_ref(),
        "--rsm-ns".as_ref(),
        "10000000".as_ref(),
        "--smm-watchdog".as_ref(),
        "0".as_ref(),
        "--max-guest-time".as_ref(),
        "100000000000".as_ref(),
        "--nvram".as_ref(),
        nvram.as_os_str(),
        "--debugcon".as_ref(),
        con.as_os_str(),
    ];
    let o = interrupt(&args, || std::fs::read_to_string(&con).is_ok_and(|t| t.contains("fw: low RAM top")), libc::SIGINT);
    assert_eq!(o.status.code(), Some(130), "{:?}", text(&o));
    assert_eq!(std::fs::read(&nvram).map(|d| d.len()).ok(), Some(4096), "the settings sector was saved");
}

/// Deterministic bytes that are no firmware.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Before, such targets were audited in whatever state the run ended ("findings", exit 1),
/// and SMM106 blamed "SW SMI 0x00" while no SW SMI had been raised.
#[test]
fn auditing_firmware_that_never_boots_is_an_error_saying_where_it_stopped() {
    let d = tmpdir("audit-noboot");
    let random = d.join("random.rom");
    std::fs::write(&random, noise(0x10000)).unwrap();
    // The built-in firmware without its first half (the SMM image).
    let truncated = d.join("truncated-builtin.rom");
    std::fs::write(&truncated, &firmware_image::ROM[0x10000..]).unwrap();
    let mut cases = vec![(random, "q35", "nothing was written to debugcon"), (truncated, "q35", "last debugcon line: \"fw: FAILED: SMM image header in the ROM\"")];
    const OVMF: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
    if testkit::package_file(OVMF, "ovmf") {
        let cut = d.join("truncated-ovmf.fd");
        std::fs::write(&cut, &std::fs::read(OVMF).unwrap()[..1 << 20]).unwrap();
        cases.push((cut, "pc", "the run ended with"));
    }
    for (rom, machine, tail) in cases {
        let o = finish(smmlab().args(["audit", "--machine", machine, "--max-instructions", "20000000", "--bios"]).arg(&rom));
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{}: {out}{err}", rom.display());
        assert!(err.contains("the firmware never reached a hand-off point") && err.contains("the run ended with ") && err.contains(" instructions at ") && err.contains(tail), "{}: {err}", rom.display());
        assert!(!out.contains("SMM106") && !err.contains("SMM106"), "{out}{err}");
    }
}

#[test]
fn builtin_firmware_memory_below_16_mib_is_refused_naming_the_minimum() {
    for args in [&["run", "-q", "--memory", "1"][..], &["run", "-q", "--memory", "2"], &["run", "-q", "--memory", "8"], &["run", "-q", "--memory", "15"], &["audit", "--memory", "3"], &["disasm", "--memory", "8"], &["smram", "dump", "--output", "/dev/null", "--memory", "4"]] {
        let o = finish(smmlab().args(args));
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("the built-in firmware needs at least 16 MiB of RAM"), "{args:?}: {err}");
    }
    let o = finish(smmlab().args(["run", "-q", "--memory", "16"]));
    assert_eq!(o.status.code(), Some(0), "16 MiB is enough: {:?}", text(&o));
}

/// The OS's reason appears once, after the file's name (it was printed twice).
#[test]
fn missing_files_name_the_file_and_the_os_error_once() {
    let dir = tmpdir("missing");
    let missing = dir.join("missing.bin");
    let m = missing.to_str().unwrap();
    let fw_cfg = format!("opt/x={m}");
    for args in [
        &["run", "--bios", m][..],
        &["run", "--machine", "pc", "--bios", m],
        &["run", "--machine", "pc", "--disk", m],
        &["run", "--machine", "pc", "--option-rom", m],
        &["run", "--machine", "pc", "--fw-cfg", &fw_cfg],
        &["disasm", "--bios", m],
        &["audit", "--bios", m],
        &["fw", "inspect", m],
    ] {
        let o = finish(smmlab().args(args));
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(m), "{args:?}: {err}");
        assert_eq!(err.matches("No such file or directory").count(), 1, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn bench_refuses_zero_iterations_and_runs() {
    for args in [&["bench", "--smi", "0", "--runs", "0"][..], &["bench", "--smi", "0"], &["bench", "--alu", "0"], &["bench", "--runs", "0"]] {
        let o = finish(smmlab().args(args));
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {out}{err}");
        assert!(err.contains("invalid value '0'") && err.contains("1..="), "{args:?}: {err}");
        assert!(!out.contains("-"), "no figure printed: {out}");
    }
}

#[test]
fn run_help_says_what_the_default_limits_take() {
    let o = finish(smmlab().args(["run", "--help"]));
    let (out, _) = text(&o);
    let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
    for s in ["10^10, is 10 s of guest time", "wall time about 40 s", "about 2 minutes", "--max-guest-time <MS>", "[default: 60000]", "--smm-watchdog <MS>", "[default: 1000]", "at most 10000000 (10 ms)"] {
        assert!(flat.contains(s), "{s:?} not in:\n{out}");
    }
}

/// `cmd` with its address space limited to 2 GiB, so that a regression that reads an endless
/// input fails here quickly instead of filling the machine's memory.
fn limited(mut cmd: Command) -> Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe and touches only the child about to exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 2 << 30, rlim_max: 2 << 30 };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Before, every input was read whole: /dev/zero as a ROM, option ROM, fw_cfg file, settings
/// file or firmware image filled memory until the process died.
#[test]
fn endless_and_oversized_inputs_are_refused_before_they_fill_memory() {
    for (args, limit) in [
        (&["run", "--bios", "/dev/zero"][..], "16 MiB"),
        (&["run", "--machine", "pc", "--option-rom", "/dev/zero"], "16 MiB"),
        (&["run", "--machine", "pc", "--fw-cfg", "opt/x=/dev/zero"], "256 MiB"),
        (&["run", "--nvram", "/dev/zero"], "4 KiB"),
        (&["fw", "inspect", "/dev/zero"], "64 MiB"),
    ] {
        let o = finish(limited(smmlab()).args(args));
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("/dev/zero") && err.contains(&format!("it holds more than the {limit} smmlab takes for it")), "{args:?}: {err}");
    }
    // A disk image is held in memory: at most 2 GiB (a sparse file, never read).
    let big = tmpdir("big-disk").join("big.img");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len((2 << 30) + 512).unwrap();
    drop(f);
    let o = finish(limited(smmlab()).args(["run", "--machine", "pc", "--disk"]).arg(&big));
    let _ = std::fs::remove_file(&big);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot read disk image") && err.contains("it is 2147484160 bytes, more than the 2 GiB smmlab takes for it"), "{err}");
}

/// Output files are written after the run: a path that cannot be written is refused before
/// it, not after minutes of running.
#[test]
fn output_paths_that_cannot_be_written_are_refused_before_the_run() {
    let dir = tmpdir("outputs");
    let d = dir.to_str().unwrap();
    let nowhere = dir.join("no/such/dir/out.json");
    let n = nowhere.to_str().unwrap();
    for (args, says) in [
        (&["run", "--summary-json", d][..], format!("--summary-json {d}: that is a directory, not a file")),
        (&["run", "--vcd", n], format!("--vcd {n}: the directory {} does not exist", nowhere.parent().unwrap().display())),
        (&["run", "--trace-json", d], format!("--trace-json {d}: that is a directory")),
        (&["run", "--nvram", d], format!("--nvram {d}: that is a directory")),
        (&["audit", "--output", d], format!("--output {d}: that is a directory")),
        (&["disasm", "--output", n], "does not exist".to_string()),
        (&["smram", "dump", "--output", d], format!("--output {d}: that is a directory")),
    ] {
        let o = finish(smmlab().args(args));
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(&says), "{args:?}: {err}");
        assert!(out.is_empty(), "refused before the run: {out}");
    }
}

#[test]
fn the_builtin_firmware_on_another_machine_says_how_to_run_it() {
    for m in ["pc", "minimal"] {
        let o = finish(smmlab().args(["run", "-q", "--machine", m]));
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("the built-in firmware runs on the q35 machine only (leave out --machine, or give --bios FILE to run other firmware)"), "{m}: {err}");
    }
}

/// ECC protects DRAM; an error injected past the end of RAM was accepted and never seen.
#[test]
fn ecc_errors_past_the_end_of_ram_are_refused() {
    let o = finish(smmlab().args(["run", "-q", "--memory", "64", "--inject-ecc", "5:0x4000000:uc"]));
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("address 0x4000000 is past the end of RAM (64 MiB: 0x0-0x3ffffff)"), "{err}");
    let o = finish(smmlab().args(["run", "-q", "--memory", "64", "--scenario", "memory-errors", "--inject-ecc", "5:0x3fff000"]));
    assert_eq!(o.status.code(), Some(0), "the last page of RAM is RAM: {:?}", text(&o));
}
