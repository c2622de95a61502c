//! The scenarios of the built-in platform, each run as a user runs it (`smmlab run --scenario
//! NAME`), with its outcome asserted from what the firmware and its OS wrote on debugcon, the
//! summary JSON and the printed timeline.

use std::path::PathBuf;
use std::process::Command;

fn smmlab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smmlab"))
}

/// A directory of its own for each call (tests run in parallel, some with the same scenario).
fn tmpdir(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let k = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("smmlab-scenario-{}-{name}-{k}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Run {
    status: Option<i32>,
    stdout: String,
    debugcon: String,
    summary: serde_json::Value,
}

impl Run {
    fn has(&self, needle: &str) -> bool {
        self.debugcon.contains(needle)
    }

    fn assert_has(&self, needle: &str) {
        assert!(self.has(needle), "no {needle:?} in debugcon:\n{}", self.debugcon);
    }

    fn smis(&self, source: &str) -> u64 {
        self.summary["smis_by_source"][source].as_u64().unwrap_or(0)
    }

    fn lines(&self, prefix: &str) -> Vec<&str> {
        self.debugcon.lines().filter(|l| l.starts_with(prefix)).collect()
    }
}

fn scenario(name: &str, extra: &[&str]) -> Run {
    let d = tmpdir(name);
    let (con, json) = (d.join("debugcon.txt"), d.join("summary.json"));
    let o = smmlab()
        .args(["run", "--scenario", name])
        .args(extra)
        .arg("--debugcon")
        .arg(&con)
        .arg("--summary-json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let debugcon = std::fs::read_to_string(&con).unwrap_or_default();
    let summary = serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_else(|_| panic!("no summary; stderr: {}", String::from_utf8_lossy(&o.stderr))))
        .unwrap();
    Run { status: o.status.code(), stdout, debugcon, summary }
}

#[test]
fn scenarios_lists_every_use_of_smm() {
    let o = smmlab().arg("scenarios").output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    for name in ["default", "thermal-runaway", "keyboard", "memory-errors", "hardware-emulation", "configuration", "rootkit-unlocked", "rootkit-locked"] {
        assert!(out.lines().any(|l| l.starts_with(name) && l.len() > name.len() + 10), "{name} missing:\n{out}");
    }
}

#[test]
fn default_shows_every_use_of_smm_and_exits_zero() {
    let r = scenario("default", &[]);
    assert_eq!(r.status, Some(0), "{}", r.debugcon);
    r.assert_has("os: all checks passed, exiting with 0");
    // Configuration, device emulation, keyboard, memory errors, fan control, flash protection.
    r.assert_has("os: settings get fan-min-duty -> status 0x0000000000000000 value 40 [ok]");
    r.assert_has("line \"hello from the OS on COM2\"");
    r.assert_has("os: keyboard line \"smm\" [ok]");
    r.assert_has("os: CPER memory error record: corrected single-bit ECC at 0x0000000000320000");
    // Fan control: the duty follows the temperature up the curve (45 C -> the minimum, 40 %
    // once the OS set it; the high limit, 75 C -> 100 %).
    let fan: Vec<(u64, u64)> = r
        .lines("smm: periodic fan-control T=")
        .iter()
        .map(|l| {
            let num = |after: &str| l.split(after).nth(1).and_then(|x| x.split(|c: char| !c.is_ascii_digit()).next()).and_then(|x| x.parse().ok()).unwrap();
            (num("T="), num("duty "))
        })
        .collect();
    assert!(fan.len() >= 3, "{}", r.debugcon);
    for w in fan.windows(2) {
        assert!((w[1].0 >= w[0].0) == (w[1].1 >= w[0].1), "duty does not follow temperature: {fan:?}");
    }
    assert!(fan.iter().all(|&(t, d)| (t <= 45 && d == 40) || (t > 45 && d > 40)), "{fan:?}");
    r.assert_has("BIOSWE raised outside SMM: cleared again (BLE)");
    for source in ["apm", "io-trap", "usb", "swsmi-timer", "memory-error", "bios-write"] {
        assert!(r.smis(source) > 0, "no {source} SMI: {}", r.summary);
    }
    // The OS measured the time SMIs stole: gaps seen, and the 3 ms flash update cost ticks.
    let hwlat = r.lines("os: hwlat: ");
    assert_eq!(hwlat.len(), 1, "{}", r.debugcon);
    assert!(!hwlat[0].starts_with("os: hwlat: 0 gaps"), "{}", hwlat[0]);
    // The 3 ms flash update outlasts three ticks of the 1 kHz timer: the 8259 keeps one
    // request, so the OS loses two.
    let life = r.lines("os: timer since the OS started: ");
    assert!(life.len() == 1 && life[0].ends_with(" received, 2 lost"), "{life:?}");
}

#[test]
fn thermal_runaway_ends_in_a_thermal_shutdown_by_smm() {
    let r = scenario("thermal-runaway", &[]);
    assert_eq!(r.summary["exit"], "power-off", "{}", r.summary);
    // The run says why: the handler that switched the machine off, in its own words.
    let why = r.summary["exit_detail"].as_str().unwrap_or_default();
    assert!(why.starts_with("requested from SMM: smm: thermal T=95 C >= critical 95 C"), "{why}");
    assert!(r.stdout.contains("exit:             power-off (requested from SMM: smm: thermal"), "{}", r.stdout);
    assert_eq!(r.status, Some(0));
    r.assert_has("FAN FAILURE (no tachometer signal)");
    let shutdown = r.lines("smm: thermal T=");
    assert!(shutdown.iter().any(|l| l.contains(">= high limit 75 C: fan to 100%")), "{}", r.debugcon);
    assert!(shutdown.last().is_some_and(|l| l.contains(">= critical 95 C (fan failed): thermal shutdown, entering S5")), "{}", r.debugcon);
    // The machine went off in the middle of the OS's 2 s workload.
    assert!(!r.has("os: hwlat:"), "{}", r.debugcon);
    assert!(r.summary["guest_ns"].as_u64().unwrap() < 500_000_000, "{}", r.summary);
    assert!(r.smis("thermal") >= 2, "{}", r.summary);
}

#[test]
fn keyboard_line_arrives_through_the_emulated_i8042() {
    let r = scenario("keyboard", &[]);
    assert_eq!(r.status, Some(0), "{}", r.debugcon);
    r.assert_has("os: keyboard line \"Hello, SMM!\" [ok]");
    // 12 characters, each a key-down and a key-up report.
    assert_eq!(r.smis("usb"), 24, "{}", r.summary);
    assert!(r.smis("io-trap") > 24, "every poll of 0x64 and read of 0x60 is an SMI: {}", r.summary);
    r.assert_has("smm: legacy-usb i8042 emulation: in 0x60 -> 0x2a");
}

#[test]
fn memory_errors_are_counted_and_the_uncorrectable_page_is_retired() {
    let r = scenario("memory-errors", &[]);
    assert_eq!(r.status, Some(0), "{}", r.debugcon);
    assert_eq!(r.lines("os: CPER memory error record: corrected").len(), 3, "{}", r.debugcon);
    r.assert_has("os: CPER memory error record: uncorrectable multi-bit ECC at 0x0000000000305000 severity 0: page 0x0000000000305000 taken out of service");
    r.assert_has("smm: memory-error UNCORRECTABLE multi-bit ECC at 0x0000000000305000: page 0x0000000000305000 retired (1 retired), CPER record for the OS");
    r.assert_has("os: memory errors seen: 3 corrected, 1 uncorrectable, 1 pages taken out of service");
    assert_eq!(r.smis("memory-error"), 4, "{}", r.summary);
}

#[test]
fn hardware_emulation_answers_com2_from_smm() {
    let r = scenario("hardware-emulation", &[]);
    assert_eq!(r.status, Some(0), "{}", r.debugcon);
    r.assert_has("os: COM2 at 0x2f8: scratch register test passed (a 16550 answers) [ok]");
    for line in ["hello from the OS on COM2", "this UART exists only in SMM", "every register access is an SMI"] {
        r.assert_has(&format!("line \"{line}\""));
    }
    // Each byte: a read of LSR and a write of THR, each trapped.
    assert!(r.smis("io-trap") >= 2 * 87, "{}", r.summary);
}

#[test]
fn configuration_persists_in_flash_only_smm_can_write() {
    let d = tmpdir("nvram");
    let nv = d.join("settings.bin");
    let _ = std::fs::remove_file(&nv);
    let r = scenario("configuration", &["--nvram", nv.to_str().unwrap()]);
    assert_eq!(r.status, Some(0), "{}", r.debugcon);
    r.assert_has("os: settings get fan-min-duty -> status 0x800000000000000e [ok]");
    r.assert_has("os: settings set fan-min-duty 150 (invalid) -> status 0x8000000000000002 [ok]");
    r.assert_has("os: direct flash write without BIOSWE: dropped");
    r.assert_has("(cleared again by SMM), flash write dropped");
    r.assert_has("os: flash protected from the OS [ok]");
    // Two settings written, two 3 ms flash updates in SMM: four timer ticks lost.
    assert!(r.lines("os: timer since the OS started: ")[0].ends_with(" received, 4 lost"), "{}", r.debugcon);
    // The settings sector was saved: magic, then (key 1, 40) and (key 2, the asset tag).
    let sector = std::fs::read(&nv).unwrap();
    assert_eq!(sector.len(), 4096);
    assert_eq!(&sector[..8], b"SMLSET01");
    assert_eq!(u32::from_le_bytes(sector[8..12].try_into().unwrap()), 1);
    assert_eq!(u64::from_le_bytes(sector[16..24].try_into().unwrap()), 40);
    assert_eq!(u64::from_le_bytes(sector[32..40].try_into().unwrap()), 0x5eed_1234);
    // The next boot starts from the saved settings.
    let again = scenario("configuration", &["--nvram", nv.to_str().unwrap()]);
    again.assert_has("os: settings get fan-min-duty -> status 0x0000000000000000 value 40 [ok]");
}

#[test]
fn rootkit_gets_in_when_smram_is_unlocked() {
    let r = scenario("rootkit-unlocked", &[]);
    assert_eq!(r.status, Some(1), "the OS's own checks fail: {}", r.debugcon);
    r.assert_has("os: rootkit: step 1, clear ESMRAMC.T_EN: done");
    r.assert_has("os: rootkit: step 3, payload written to SMRAM at 0x07ff0000, SMI entry hooked");
    r.assert_has("invisible from outside SMM");
    r.assert_has("ROOTKIT ACTIVE, privilege escalation from SMM");
    // smmlab shows it: SMRAM written from outside SMM.
    assert!(r.stdout.contains("SMRAM written from outside SMM"), "{}", r.stdout);
    // ... and catches SMM running it: the payload's page and the hooked entry stub's page.
    for page in ["0x7ff0000", "0x7f48000"] {
        assert!(r.stdout.contains(&format!("!! SMM ran code from page {page}, which was written from outside SMM")), "{page}: {}", r.stdout);
    }
}

#[test]
fn rootkit_is_stopped_by_the_locked_firmware() {
    let r = scenario("rootkit-locked", &[]);
    assert_eq!(r.status, Some(0), "{}", r.debugcon);
    r.assert_has("refused, ESMRAMC=");
    r.assert_has("-> attack stopped by D_LCK");
    r.assert_has("no rootkit answered");
    assert!(!r.has("ROOTKIT ACTIVE"));
    assert!(r.stdout.contains("SMRAM lock violation"), "{}", r.stdout);
    assert!(!r.stdout.contains("SMRAM written from outside SMM"), "{}", r.stdout);
    assert!(!r.stdout.contains("SMM ran code from page"), "{}", r.stdout);
}

#[test]
fn scenario_runs_are_deterministic() {
    let (a, b) = (scenario("memory-errors", &[]), scenario("memory-errors", &[]));
    assert_eq!(a.debugcon, b.debugcon);
    assert_eq!(a.summary["instructions"], b.summary["instructions"]);
}

#[test]
fn a_settings_file_of_the_wrong_size_is_a_clear_error() {
    let d = tmpdir("bad-nvram");
    let nv = d.join("short.bin");
    std::fs::write(&nv, [0u8; 100]).unwrap();
    let o = smmlab().args(["run", "-q", "--scenario", "configuration", "--nvram"]).arg(&nv).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("short.bin is 100 bytes; the settings sector is 4096 bytes"), "{err}");
}

#[test]
fn smm_entry_and_rsm_costs_are_guest_time_the_os_sees() {
    let plain = scenario("default", &[]);
    assert_eq!(plain.summary["smm_guest_ns"], plain.summary["smm_instructions"], "by default time in SMM is its instructions (1 ns each)");
    let r = scenario("default", &["--smm-entry-ns", "20000", "--rsm-ns", "5000"]);
    assert_eq!(r.status, Some(0), "{}", r.debugcon);
    let (smis, ns, instr) = (r.summary["smis"].as_u64().unwrap(), r.summary["smm_guest_ns"].as_u64().unwrap(), r.summary["smm_instructions"].as_u64().unwrap());
    assert_eq!(ns - instr, smis * 25_000, "{}", r.summary);
    // The OS's gap detector sees each SMI during its workload as at least 25 us.
    let hwlat = r.lines("os: hwlat: ")[0].to_string();
    let max: u64 = hwlat.split("max ").nth(1).and_then(|x| x.split(' ').next()).and_then(|x| x.parse().ok()).unwrap();
    assert!(max >= 25, "{hwlat}");
}

/// The trapped-I/O handlers read the I/O instruction from the save state; on an AMD CPU that
/// is the AMD64 map's I/O trap dword (APM vol. 2 10.2.4), not Intel's IO_MISC.
#[test]
fn device_emulation_works_with_the_amd64_save_state_map() {
    let r = scenario("keyboard", &["--cpu", "amd64"]);
    assert_eq!(r.status, Some(0), "{}", r.debugcon);
    r.assert_has("os: keyboard line \"Hello, SMM!\" [ok]");
    r.assert_has("map=amd64");
    let r = scenario("hardware-emulation", &["--cpu", "amd64"]);
    assert_eq!(r.status, Some(0), "{}", r.debugcon);
    r.assert_has("line \"this UART exists only in SMM\"");
}

#[test]
fn the_command_line_types_keys_and_injects_errors() {
    let r = scenario("keyboard", &["--type", "Typed: 42/7"]);
    assert_eq!(r.status, Some(0), "{}", r.debugcon);
    r.assert_has("os: keyboard line \"Typed: 42/7\" [ok]");
    let r = scenario("memory-errors", &["--inject-ecc", "15:0x310000:uc", "--inject-ecc", "25:3213312"]);
    assert_eq!(r.status, Some(0), "{}", r.debugcon);
    r.assert_has("os: CPER memory error record: uncorrectable multi-bit ECC at 0x0000000000310000 severity 0: page 0x0000000000310000 taken out of service");
    r.assert_has("os: memory errors seen: 4 corrected, 2 uncorrectable, 2 pages taken out of service");
    for (args, err) in [
        (&["--inject-ecc", "15:zz"][..], "--inject-ecc \"15:zz\": expected MS:ADDR or MS:ADDR:uc"),
        (&["--inject-ecc=-1:0x1000"][..], "expected MS:ADDR"),
        (&["--inject-ecc", "1:0x1000:ce"][..], "expected MS:ADDR"),
        (&["--type", "\u{e9}"][..], "cannot type '\u{e9}' on the modelled keyboard"),
    ] {
        let o = smmlab().args(["run", "-q"]).args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(err), "{args:?}: {e}");
    }
}

/// The hardware monitor in the traces: temperature and fan duty as VCD vectors and as Chrome
/// trace counters, following the thermal runaway up to the critical limit.
#[test]
fn thermal_runaway_traces_show_the_temperature_climbing() {
    let d = tmpdir("thermal-traces");
    let (vcd_path, json_path) = (d.join("t.vcd"), d.join("t.json"));
    let o = smmlab()
        .args(["run", "-q", "--scenario", "thermal-runaway", "--vcd"])
        .arg(&vcd_path)
        .arg("--trace-json")
        .arg(&json_path)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    // VCD: read back with the vcd crate.
    let mut p = vcd::Parser::new(std::io::BufReader::new(std::fs::File::open(&vcd_path).unwrap()));
    let h = p.parse_header().unwrap();
    let temp = h.find_var(&["smmlab", "sensor", "temp_c"]).expect("sensor.temp_c").code;
    let duty = h.find_var(&["smmlab", "sensor", "fan_duty"]).expect("sensor.fan_duty").code;
    let value = |v: &vcd::Vector| v.iter().fold(0u32, |a, b| a << 1 | u32::from(b == vcd::Value::V1));
    let (mut temps, mut duties) = (Vec::new(), Vec::new());
    for c in p {
        match c.unwrap() {
            vcd::Command::ChangeVector(i, v) if i == temp => temps.push(value(&v)),
            vcd::Command::ChangeVector(i, v) if i == duty => duties.push(value(&v)),
            _ => {}
        }
    }
    assert!(temps.windows(2).filter(|w| w[1] < w[0]).count() == 0, "the failed fan cannot cool: {temps:?}");
    assert_eq!(temps.last(), Some(&95), "{temps:?}");
    assert_eq!(duties.last(), Some(&100), "{duties:?}");
    // Chrome trace: the same readings as counter tracks.
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    let temp_counters: Vec<u64> = j["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "C" && e["name"] == "CPU temperature (C)")
        .map(|e| e["args"]["C"].as_u64().unwrap())
        .collect();
    // The VCD shows a vector only when it changes (and starts at 0): the same values.
    let mut changes = temp_counters.clone();
    changes.dedup();
    assert_eq!(changes.iter().map(|&t| t as u32).collect::<Vec<_>>(), temps[1..], "{temp_counters:?}");
    assert_eq!(temp_counters.iter().max(), Some(&95));
}

/// `--heat` and `--fan-fail` drive the thermal handlers from the command line: a hotter CPU
/// trips the high limit and the fan goes to full speed; hotter still, or with the fan broken,
/// the critical limit switches the machine off.
#[test]
fn heat_and_fan_failure_from_the_command_line() {
    let r = scenario("default", &["--heat", "1200"]);
    assert_eq!((r.status, r.summary["exit"].as_str()), (Some(0), Some("debug-exit")), "{}", r.debugcon);
    r.assert_has("smm: thermal T=75 C >= high limit 75 C: fan to 100%");
    assert!(!r.has("critical"), "{}", r.debugcon);
    for args in [&["--heat", "1500"][..], &["--fan-fail"]] {
        let r = scenario("default", args);
        assert_eq!(r.summary["exit"], "power-off", "{args:?}: {}", r.debugcon);
        assert!(r.has(">= critical 95 C"), "{args:?}: {}", r.debugcon);
    }
    let o = smmlab().args(["run", "-q", "--heat", "50"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}
