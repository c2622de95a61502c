//! scripts/test.sh's closing count (scripts/count-tests.awk): on a made-up `cargo test` log, and
//! end to end on this binary's own ignored test whose prerequisite never exists, run as
//! scripts/test.sh runs the suite (skipped outside CI, failed under CI=true).

use std::path::{Path, PathBuf};
use std::process::Command;

const MISSING: &str = "/nonexistent/smmlab-testkit/prerequisite.bin";

/// Run by the tests below only (`--ignored`): its prerequisite never exists.
#[test]
#[ignore = "run by counting_a_real_skip_and_a_real_ci_failure"]
fn a_test_whose_prerequisite_is_missing() {
    if !testkit::file(MISSING, "nothing installs it") {
        return;
    }
    panic!("{MISSING} exists");
}

fn awk_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/count-tests.awk")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("smmlab-testkit-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// The script's output on a skip log and a cargo log.
fn count(skips: &str, log: &str, name: &str) -> String {
    let (s, l) = (tmp(&format!("{name}.skips")), tmp(&format!("{name}.log")));
    std::fs::write(&s, skips).unwrap();
    std::fs::write(&l, log).unwrap();
    let o = Command::new("awk").arg("-f").arg(awk_script()).arg(&s).arg(&l).output().expect("awk runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn closing(out: &str) -> &str {
    out.lines().last().unwrap_or_default()
}

#[test]
fn skipped_tests_move_from_passed_to_skipped() {
    let log = "\
   Compiling smmlab v0.1.0
     Running unittests src/lib.rs (target/debug/deps/machine-1111)

running 2 tests
test clock::tests::a ... ok
test seabios_like ... ok

test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s

     Running tests/seabios.rs (target/debug/deps/seabios-2222)

running 4 tests
test seabios_like ... ok
test partly_skipped_then_failed ... FAILED
test bochs ... ok
test plain ... ok

failures:

---- partly_skipped_then_failed stdout ----
SKIPPED: partly_skipped_then_failed: qemu is missing

test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s

   Doc-tests machine

running 1 test
test crates/machine/src/lib.rs - plain (line 3) ... ok

test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.10s
";
    // seabios_like skipped in the seabios binary only (the machine binary's test of the same
    // name passed for real), recorded twice; a skip that then failed stays a failure.
    let skips = "SKIPPED\tseabios-2222\tseabios_like\t/usr/share/seabios/bios-256k.bin is missing (Debian package seabios)\n\
                 SKIPPED\tseabios-2222\tseabios_like\tthe command qemu-system-x86_64 is missing\n\
                 SKIPPED\tseabios-2222\tpartly_skipped_then_failed\tqemu is missing\n\
                 SKIPPED\tseabios-2222\tbochs\t/usr/share/bochs/BIOS-bochs-latest is missing (Debian package bochsbios)\n";
    let out = count(skips, log, "made-up");
    assert_eq!(closing(&out), "tests: 4 passed, 1 failed, 2 skipped", "{out}");
    assert!(out.contains("skipped: seabios_like (seabios-2222): /usr/share/seabios/bios-256k.bin is missing (Debian package seabios)\n"), "{out}");
    assert!(out.contains("skipped: bochs (seabios-2222): "), "{out}");
    // Without skips the count is libtest's.
    assert_eq!(closing(&count("", log, "none")), "tests: 6 passed, 1 failed, 0 skipped");
}

/// Runs this binary's ignored test as scripts/test.sh runs tests; returns (success, output).
fn run_demo(ci: bool, skip_log: &Path) -> (bool, String) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(&exe);
    cmd.args(["--ignored", "--exact", "a_test_whose_prerequisite_is_missing", "--test-threads", "1"]).env(testkit::SKIP_LOG_ENV, skip_log).env_remove(testkit::HIDE_ENV);
    if ci {
        cmd.env("CI", "true");
    } else {
        cmd.env_remove("CI");
    }
    let o = cmd.output().unwrap();
    let stem = exe.file_stem().unwrap().to_string_lossy().into_owned();
    let text = format!("     Running tests/counting.rs (target/debug/deps/{stem})\n{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.success(), text)
}

#[test]
fn counting_a_real_skip_and_a_real_ci_failure() {
    let skip_log = tmp("real.skips");
    let _ = std::fs::remove_file(&skip_log);
    let (ok, log) = run_demo(false, &skip_log);
    assert!(ok, "outside CI the test returns: {log}");
    let skips = std::fs::read_to_string(&skip_log).unwrap();
    assert!(skips.starts_with("SKIPPED\t") && skips.contains("\ta_test_whose_prerequisite_is_missing\t") && skips.contains(MISSING), "{skips}");
    let out = count(&skips, &log, "real");
    assert_eq!(closing(&out), "tests: 0 passed, 0 failed, 1 skipped", "{out}\n{log}");

    let _ = std::fs::remove_file(&skip_log);
    let (ok, log) = run_demo(true, &skip_log);
    assert!(!ok, "under CI the test fails: {log}");
    assert!(log.contains(&format!("missing prerequisite: {MISSING} is missing (nothing installs it)")), "{log}");
    assert!(!skip_log.exists(), "no skip recorded under CI");
    assert_eq!(closing(&count("", &log, "ci")), "tests: 0 passed, 1 failed, 0 skipped", "{log}");
}
