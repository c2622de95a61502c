//! Prerequisites of smmlab's tests that live outside the repository: files and commands from
//! Debian packages (SeaBIOS, OVMF, the Bochs BIOS, QEMU, sigrok-cli) and files scripts/test.sh
//! fetches (the SARIF schema). scripts/test.sh installs them all; a machine without one of
//! them must not count a test that could not run as passed.
//!
//! - Under CI (`CI` set to `true` or `1`), a missing prerequisite fails the test with a
//!   message that names what is missing and where it comes from.
//! - Otherwise the test is skipped: it says so and returns. libtest has no runtime skip, so
//!   the skip is recorded: with [`SKIP_LOG_ENV`] set (scripts/test.sh sets it) as a line
//!   `SKIPPED <tab> test binary <tab> test <tab> reason` appended to that file, which the
//!   script's closing count (`scripts/count-tests.awk`) reads to move the test from "passed"
//!   to "skipped"; without it, straight to stderr (past libtest's capture) so that a plain
//!   `cargo test` shows it.
//!
//! A test that checks part of its work without the prerequisite (say, smmlab's half of a
//! comparison with QEMU) records the skip all the same: it did not fully run.
//!
//! ```no_run
//! const SEABIOS: &str = "/usr/share/seabios/bios-256k.bin";
//! if !testkit::package_file(SEABIOS, "seabios") {
//!     return;
//! }
//! ```
//!
//! To see the skip and failure paths on a machine that has everything, list prerequisites to
//! treat as missing in [`HIDE_ENV`] (comma-separated paths or command names).

use std::io::Write;
use std::path::Path;

/// The file skips are appended to (set by scripts/test.sh).
pub const SKIP_LOG_ENV: &str = "SMMLAB_SKIP_LOG";

/// Prerequisites to treat as missing, comma-separated (paths or command names).
pub const HIDE_ENV: &str = "SMMLAB_TEST_HIDE";

/// Whether this is a CI run: the environment variable `CI` is `true` (any case) or `1`.
pub fn ci() -> bool {
    ci_from(std::env::var("CI").ok().as_deref())
}

/// [`ci`] for a given value of `CI`.
pub fn ci_from(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Where a Debian package's files come from, for messages.
pub fn debian(package: &str) -> String {
    format!("Debian package {package}; scripts/test.sh installs it")
}

/// True if the file `path` (from the Debian package `package`) exists; otherwise the test
/// fails under CI, or the skip is recorded and false returned.
pub fn package_file(path: impl AsRef<Path>, package: &str) -> bool {
    file(path, &debian(package))
}

/// True if `command --version` runs and succeeds (the command comes from the Debian package
/// `package`); otherwise as [`package_file`].
pub fn package_command(command: &str, package: &str) -> bool {
    let runs = !hidden(command) && std::process::Command::new(command).arg("--version").output().is_ok_and(|o| o.status.success());
    runs || {
        missing(&format!("the command {command}"), &debian(package));
        false
    }
}

/// True if the file `path` exists; otherwise the test fails under CI, or the skip is recorded
/// and false returned. `how` says where the file comes from.
pub fn file(path: impl AsRef<Path>, how: &str) -> bool {
    let path = path.as_ref();
    let present = !hidden(&path.to_string_lossy()) && path.exists();
    present || {
        missing(&path.display().to_string(), how);
        false
    }
}

/// `what` is missing (`how` says where it comes from): panics under CI, records a skip
/// otherwise. The caller returns (or leaves out the part that needed it).
pub fn missing(what: &str, how: &str) {
    match decide(ci(), what, how) {
        Decision::Fail(msg) => panic!("{msg}"),
        Decision::Skip(reason) => record_skip(&reason),
    }
}

/// What to do about a missing prerequisite.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Fail the test with this message.
    Fail(String),
    /// Skip, for this reason.
    Skip(String),
}

/// The decision for a missing prerequisite, under CI or not.
pub fn decide(ci: bool, what: &str, how: &str) -> Decision {
    let reason = format!("{what} is missing ({how})");
    if ci {
        Decision::Fail(format!("missing prerequisite: {reason}; CI is set, so this test fails instead of skipping"))
    } else {
        Decision::Skip(reason)
    }
}

fn hidden(name: &str) -> bool {
    std::env::var(HIDE_ENV).is_ok_and(|list| list.split(',').any(|h| !h.is_empty() && h.trim() == name))
}

/// The running test's name (libtest names each test's thread after it).
fn test_name() -> String {
    std::thread::current().name().unwrap_or("unknown test").to_string()
}

/// The test binary's file name without its extension, as cargo prints it in "Running ...".
fn binary_name() -> String {
    std::env::current_exe().ok().and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned())).unwrap_or_default()
}

/// One skip record: `SKIPPED <tab> binary <tab> test <tab> reason`, newline-terminated.
pub fn skip_record(binary: &str, test: &str, reason: &str) -> String {
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    format!("SKIPPED\t{}\t{}\t{}\n", clean(binary), clean(test), clean(reason))
}

fn record_skip(reason: &str) {
    let test = test_name();
    let line = format!("SKIPPED: {test}: {reason}\n");
    match std::env::var_os(SKIP_LOG_ENV) {
        Some(log) => {
            // Shown with --nocapture; the count comes from the log.
            eprint!("{line}");
            let record = skip_record(&binary_name(), &test, reason);
            // One write per record on a file opened for appending: records from tests and
            // binaries running at the same time do not mix.
            let written = std::fs::OpenOptions::new().create(true).append(true).open(&log).and_then(|mut f| f.write_all(record.as_bytes()));
            if let Err(e) = written {
                panic!("cannot record the skip in {} ({SKIP_LOG_ENV}): {e}; {}", Path::new(&log).display(), line.trim_end());
            }
        }
        // Past libtest's output capture, which only takes print!/eprint!.
        None => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

/// Builds the planted-bug SMM drivers (crates/module-runner/tests/drivers, C built with
/// Debian's clang and lld-link) into `out`, once per test binary, and returns `out`; None when
/// clang or lld-link is missing (a skip, or a failure under CI).
pub fn smm_drivers(out: &Path) -> Option<&'static Path> {
    static BUILT: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            if !package_command("clang", "clang") || !package_file("/usr/bin/lld-link", "lld") {
                return None;
            }
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../module-runner/tests/drivers/build.sh");
            let st = std::process::Command::new("bash").arg(&script).arg(out).status().expect("runs bash");
            assert!(st.success(), "{} failed", script.display());
            Some(out.to_path_buf())
        })
        .as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_is_true_or_1() {
        for v in ["true", "TRUE", "True", "1"] {
            assert!(ci_from(Some(v)), "{v}");
        }
        for v in ["", "0", "false", "yes", "2"] {
            assert!(!ci_from(Some(v)), "{v}");
        }
        assert!(!ci_from(None));
    }

    #[test]
    fn under_ci_a_missing_prerequisite_fails_naming_it() {
        let Decision::Fail(msg) = decide(true, "/usr/share/seabios/bios-256k.bin", &debian("seabios")) else { panic!("CI must fail") };
        assert!(msg.contains("/usr/share/seabios/bios-256k.bin is missing (Debian package seabios; scripts/test.sh installs it)"), "{msg}");
        assert_eq!(decide(false, "x", "y"), Decision::Skip("x is missing (y)".into()));
    }

    #[test]
    fn records_are_one_clean_line() {
        assert_eq!(skip_record("seabios-0123", "a_test", "why\tnot\nnow"), "SKIPPED\tseabios-0123\ta_test\twhy not now\n");
    }

    #[test]
    fn present_prerequisites_pass_without_a_record() {
        assert!(file(env!("CARGO_MANIFEST_DIR"), "the crate itself"));
        assert!(package_command(env!("CARGO"), "cargo"));
    }
}
