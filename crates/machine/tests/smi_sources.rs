//! End-to-end SMI sources and SMRAM decoding: small ROMs assembled with nasm at test time
//! run on the `pc` and `q35` boards through the real CPU.

use machine::events::MachineEvent;
use machine::smi::SmiCause;
use machine::{BoardKind, ExitReason, Machine, MachineConfig};
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmpdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("smmlab-machine-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Assembles tests/roms/`name`.asm with `defines` (nasm is installed by scripts/test.sh).
fn assemble(name: &str, defines: &[&str]) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/roms");
    let tag: String = defines.iter().map(|d| d.replace(['=', '-'], "_")).collect();
    // Tests run in parallel: every call gets its own output file.
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = tmpdir().join(format!("{name}{tag}-{seq}.bin"));
    let st = Command::new("nasm")
        .args(["-f", "bin", "-I"])
        .arg(format!("{}/", dir.display()))
        .args(defines)
        .arg("-o")
        .arg(&out)
        .arg(dir.join(format!("{name}.asm")))
        .status()
        .expect("nasm must be installed (scripts/test.sh installs it)");
    assert!(st.success(), "nasm failed on {name}");
    std::fs::read(&out).unwrap()
}

fn machine(kind: BoardKind, rom: Vec<u8>, ips: u64) -> Machine {
    let config = MachineConfig { memory_mib: 64, instructions_per_second: ips, ..Default::default() };
    Machine::new(kind, config, rom).unwrap()
}

#[test]
fn benchmark_smi_loop_raises_n_apm_smis_on_pc() {
    let mut m = machine(BoardKind::Pc, assemble("loop-rom", &["-DSMI", "-DCOUNT=100"]), 1_000_000_000);
    let s = m.run(1_000_000);
    assert_eq!(s.exit, ExitReason::DebugExit, "{s:?}");
    assert_eq!(s.smis_raised, 100);
    let ev = m.drain_events();
    let apm = ev.iter().filter(|e| matches!(e, MachineEvent::SmiRaised { cause: SmiCause::Apm { cmd: 1, .. }, .. })).count();
    assert_eq!(apm, 100);
}

#[test]
fn benchmark_alu_loop_raises_no_smi_on_pc() {
    let mut m = machine(BoardKind::Pc, assemble("loop-rom", &["-DCOUNT=1000"]), 1_000_000_000);
    let s = m.run(1_000_000);
    assert_eq!(s.exit, ExitReason::DebugExit);
    assert_eq!((s.smis, s.smis_raised), (0, 0));
}

#[test]
fn benchmark_smi_loop_counts_n_smis_on_pc() {
    let n = 100;
    let mut m = machine(BoardKind::Pc, assemble("loop-rom", &["-DSMI", &format!("-DCOUNT={n}")]), 1_000_000_000);
    let s = m.run(10_000_000);
    assert_eq!(s.exit, ExitReason::DebugExit, "{s:?}");
    assert_eq!(s.smis, n);
    assert_eq!(s.smis_by_source.get("apm"), Some(&n));
    assert_eq!(s.smm_instructions, n, "each SMI runs one RSM");
    let ev = m.drain_events();
    let rsm = ev.iter().filter(|e| matches!(e, MachineEvent::RsmCompleted { smbase: 0x30000, .. })).count();
    assert_eq!(rsm as u64, n);
}

#[test]
fn q35_smi_lock_apm_sts_and_write_one_to_clear_through_the_cpu() {
    let mut m = machine(BoardKind::Q35, assemble("q35_smi_lock", &[]), 1_000_000_000);
    let s = m.run(1_000_000);
    assert_eq!(s.exit, ExitReason::DebugExit, "{s:?}");
    assert_eq!(s.exit_code, 7, "1 GBL_SMI_EN stuck, 2 APM_STS set, 4 APM_STS cleared");
    assert_eq!(s.smis_raised, 1);
}

fn smram_close(kind: BoardKind, defines: &[&str]) {
    let mut m = machine(kind, assemble("smram_close", defines), 1_000_000_000);
    let s = m.run(1_000_000);
    assert_eq!(s.exit, ExitReason::DebugExit, "{s:?}");
    assert_eq!(s.exit_code, 7, "1 open reads RAM, 2 closed reads the VGA hole, 4 reopened reads RAM");
    let ev = m.drain_events();
    assert_eq!(ev.iter().filter(|e| matches!(e, MachineEvent::SmramConfigChanged { .. })).count(), 3, "{ev:?}");
}

#[test]
fn closing_smram_is_seen_by_the_next_instruction_on_q35() {
    smram_close(BoardKind::Q35, &["-DCFG=0x9c", "-DPORT=0xcfd", "-DOPEN=0x4a", "-DCLOSED=0x0a"]);
}

#[test]
fn closing_smram_is_seen_by_the_next_instruction_on_pc() {
    smram_close(BoardKind::Pc, &["-DCFG=0x70", "-DPORT=0xcfe", "-DOPEN=0x4a", "-DCLOSED=0x0a"]);
}

#[test]
fn periodic_smi_wakes_a_halted_cpu_at_8_second_intervals_on_q35() {
    let mut m = machine(BoardKind::Q35, assemble("q35_periodic_hlt", &[]), 1_000_000);
    let s = m.run(1_000_000);
    assert_eq!(s.exit, ExitReason::DebugExit, "{s:?}");
    assert_eq!(s.smis_by_source.get("periodic"), Some(&3));
    assert!(s.guest_ns >= 24_000_000_000 && s.guest_ns < 25_000_000_000, "guest time {} ns", s.guest_ns);
    let ev = m.drain_events();
    let times: Vec<u64> = ev.iter().filter_map(|e| if let MachineEvent::SmiRaised { cause: SmiCause::Periodic, icount } = e { Some(*icount) } else { None }).collect();
    // The timer restarts when the ROM selects the 8 s rate, a few instructions after reset.
    assert_eq!(times.len(), 3, "{times:?}");
    assert!((8_000_000..8_000_100).contains(&times[0]), "{times:?}");
    assert_eq!((times[1] - times[0], times[2] - times[1]), (8_000_000, 8_000_000));
}

#[test]
fn io_trap_smis_are_taken_with_their_cause() {
    let mut m = machine(BoardKind::Q35, assemble("io_trap", &[]), 1_000_000_000);
    m.board.io_traps().unwrap().add(0x80..=0x80, false, true);
    let s = m.run(1_000_000);
    assert_eq!(s.exit, ExitReason::DebugExit, "{s:?}");
    assert_eq!(s.smis_by_source.get("io-trap"), Some(&3));
    let ev = m.drain_events();
    assert!(ev.iter().any(|e| matches!(e, MachineEvent::SmmEntered { cause: Some(SmiCause::IoTrap { port: 0x80, write: true }), .. })));
}

#[test]
fn smi_pin_is_taken_at_its_guest_time() {
    let mut m = machine(BoardKind::Pc, assemble("loop-rom", &["-DCOUNT=100000"]), 1_000_000_000);
    m.board.smi_pin().unwrap().raise_at(machine::clock::Ticks(5_000));
    let s = m.run(10_000_000);
    assert_eq!(s.smis_by_source.get("pin"), Some(&1), "{s:?}");
    let ev = m.drain_events();
    let entered = ev.iter().find_map(|e| if let MachineEvent::SmmEntered { icount, .. } = e { Some(*icount) } else { None });
    assert!(entered.is_some_and(|t| (5_000..5_010).contains(&t)), "{entered:?}");
}
