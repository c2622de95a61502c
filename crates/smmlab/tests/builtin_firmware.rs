//! The built-in firmware (`/firmware`, embedded by `crates/firmware-image`), driven through the
//! binary as a user runs it: `smmlab run` with no arguments boots it on q35. The firmware and
//! its OS report on debugcon; these tests read those lines and the summary JSON.
//!
//! Memory map for the default 128 MiB: TSEG (1 MiB) at 0x07F00000, SMBASE at TSEG + 0x40000.

use std::path::PathBuf;
use std::process::Command;

fn smmlab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smmlab"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("smmlab-builtin-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Run {
    status: Option<i32>,
    debugcon: String,
    summary: serde_json::Value,
}

/// Runs the built-in firmware with `args`, debugcon and the summary going to files.
fn run(name: &str, args: &[&str]) -> Run {
    let d = tmpdir(name);
    let (con, json) = (d.join("debugcon.txt"), d.join("summary.json"));
    let o = smmlab().arg("run").args(args).arg("--debugcon").arg(&con).arg("--summary-json").arg(&json).output().unwrap();
    let debugcon = std::fs::read_to_string(&con).unwrap();
    let summary = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    Run { status: o.status.code(), debugcon, summary }
}

fn assert_line(r: &Run, line: &str) {
    assert!(r.debugcon.lines().any(|l| l == line), "no line {line:?} in debugcon:\n{}", r.debugcon);
}

#[test]
fn default_run_exits_zero_and_prints_what_smm_did() {
    let o = smmlab().arg("run").output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    // The debugcon lines, then the summary with SMIs by source and time in SMM.
    assert!(out.contains("smm: sw 0x01 ping #1 -> rax=0x00000001504f4e47\n"), "{out}");
    assert!(out.contains("os: all checks passed, exiting with 0\n"), "{out}");
    assert!(out.contains("exit:             debug-exit"), "{out}");
    // SW SMIs, the fan control timer, the emulated devices, the keyboard, ECC errors, the
    // BIOS write protection: every source of the default scenario is counted.
    for source in ["apm", "bios-write", "io-trap", "memory-error", "swsmi-timer", "usb"] {
        assert!(out.lines().any(|l| l.starts_with(&format!("  {source} "))), "{source}: {out}");
    }
    assert!(out.contains("guest time in SMM:"), "{out}");
    assert!(out.contains("unimplemented:    none"), "{out}");
}

#[test]
fn relocation_smi_moves_smbase_into_tseg() {
    let r = run("reloc", &[]);
    assert_eq!(r.status, Some(0), "{}", r.debugcon);
    assert_line(&r, "fw: SMBASE relocated 0x00030000 -> 0x07f40000 (revision 0x00030101, intel64 map)");
    assert_eq!(r.summary["smbase_after"], 0x07f4_0000);
    // The relocation SMI, ready-to-lock, 3 pings, 5 communication requests, ready-to-lock
    // again, then the OS's 4 calls of the settings service.
    assert_eq!(r.summary["smis_by_source"]["apm"], 15);
    assert!(r.summary["smm_instructions"].as_u64().unwrap() > 1000);
    assert!(r.summary["smm_guest_ns"].as_u64().unwrap() > 0);
}

#[test]
fn smram_is_locked_and_tseg_unreadable_after_hand_off() {
    let r = run("lock", &[]);
    assert_eq!(r.status, Some(0), "{}", r.debugcon);
    assert_line(&r, "fw: TSEG 0x07f00000-0x07ffffff enabled: ESMRAMC=0x39 SMRAM=0x0a");
    assert_line(&r, "os: SMRAM=0x1a (D_LCK set, D_OPEN clear) [ok]");
    assert_line(&r, "os: SMRAM after writing D_OPEN=0x1a [ok]");
    assert_line(&r, "os: TSEG 0x07f00000 reads 0xffffffff from outside SMM [ok]");
    assert_line(&r, "os: TSEG after writing 0x90909090 reads 0xffffffff [ok]");
    assert_eq!(r.summary["smram_after"]["d_lck"], true);
    assert_eq!(r.summary["smram_after"]["d_open"], false);
    assert_eq!(r.summary["smram_after"]["t_en"], true);
}

#[test]
fn smrr_covers_tseg_and_smi_lock_and_code_check_are_set() {
    let r = run("smrr", &[]);
    assert_eq!(r.status, Some(0), "{}", r.debugcon);
    assert_line(
        &r,
        "smm: sw 0xe0 ready-to-lock smbase=0x07f40000 map=intel64 smrr=0x07f00006/0xfff00800 smm_feature_control=0x0005 -> rax=0x0000000000000000",
    );
    assert_line(&r, "os: SMRR base=0x07f00006 mask=0xfff00800 covers TSEG [ok]");
    assert_line(&r, "os: GEN_PMCON_1=0x0010 (SMI_LOCK set) [ok]");
    assert_line(&r, "os: SMI_EN=0x00002069, after clearing GBL_SMI_EN 0x00002069 [ok]");
    assert_line(&r, "smm: sw 0xe0 ready-to-lock refused: already locked -> rax=0x800000000000000f");
}

#[test]
fn ping_answers_in_the_saved_rax() {
    let r = run("ping", &[]);
    for k in 1..=3 {
        assert_line(&r, &format!("smm: sw 0x01 ping #{k} -> rax=0x{k:08x}504f4e47"));
        assert_line(&r, &format!("os: ping {k} -> rax=0x{k:08x}504f4e47 [ok]"));
    }
}

#[test]
fn communication_buffer_is_served_and_bad_ones_are_rejected() {
    let r = run("comm", &[]);
    assert_eq!(r.status, Some(0), "{}", r.debugcon);
    // FNV-1a 64 of "smmlab: hash me".
    let hash = "smmlab: hash me".bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    assert_line(&r, &format!("smm: sw 0x10 comm buf=0x0000000000200000 len=15 guid=9b1f0d2e-5c4a-4e33-8f6a-2d7c11e0a5b4 hash=0x{hash:016x} -> rax=0x0000000000000000"));
    assert_line(&r, "smm: sw 0x10 comm buf=0x0000000007f00100 rejected: header not in OS memory -> rax=0x800000000000000f");
    assert_line(&r, "smm: sw 0x10 comm buf=0x0000000007efffc0 len=256 rejected: message not in OS memory -> rax=0x800000000000000f");
    assert_line(&r, "smm: sw 0x10 comm buf=0x0000000000200000 len=1048576 rejected: message larger than 4096 -> rax=0x8000000000000004");
    assert_line(&r, "os: comm buffer in SMRAM -> status=0x800000000000000f [ok]");
    assert!(r.debugcon.contains("unknown service -> rax=0x800000000000000e"), "{}", r.debugcon);
}

#[test]
fn two_runs_are_identical() {
    let (a, b) = (run("det-a", &[]), run("det-b", &[]));
    assert_eq!(a.debugcon, b.debugcon);
    for k in ["instructions", "smm_instructions", "guest_ns", "smm_guest_ns", "smis"] {
        assert_eq!(a.summary[k], b.summary[k], "{k}");
    }
}

#[test]
fn amd64_cpu_uses_the_amd64_map_and_locks_with_hwcr() {
    let r = run("amd", &["--cpu", "amd64"]);
    assert_eq!(r.status, Some(0), "{}", r.debugcon);
    assert_line(&r, "fw: SMBASE relocated 0x00030000 -> 0x07f40000 (revision 0x00030064, amd64 map)");
    assert!(r.debugcon.contains("map=amd64 smm_addr=0x07f00000 smm_mask=0x0000fffffff06002 hwcr.smmlock=1 -> rax=0x0000000000000000"), "{}", r.debugcon);
}

#[test]
fn tseg_follows_the_memory_size() {
    let r = run("mem", &["--memory", "512"]);
    assert_eq!(r.status, Some(0), "{}", r.debugcon);
    assert_line(&r, "fw: low RAM top 0x20000000, CPU vendor Intel");
    assert_line(&r, "os: TSEG 0x1ff00000 reads 0xffffffff from outside SMM [ok]");
    assert_eq!(r.summary["smbase_after"], 0x1ff4_0000);
}

#[test]
fn a_cpu_without_long_mode_is_refused_clearly() {
    let r = run("i686", &["--cpu", "i686"]);
    assert_eq!(r.status, Some(1));
    assert_eq!(r.debugcon, "fw: this CPU model has no long mode; the built-in firmware needs it\n");
}
