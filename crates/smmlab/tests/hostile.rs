//! smmlab driven as a hostile or careless user drives it: bad flags and files, runs that no
//! instruction limit bounds (SMM costs, time skipped without instructions, SMI storms, SMM that
//! never returns), signals, firmware that never boots. Every run ends with a clear message and
//! its own exit status; nothing panics or hangs.
//!
//! Runs that could hang on a regression are spawned with [`finish`], which kills them after a
//! generous wall-clock bound and fails the test: a guard, not a speed measurement.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

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
