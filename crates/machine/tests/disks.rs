//! The disk controllers driven by small guests assembled with nasm at test time: the PIIX3
//! IDE function on `pc` (PIO through the legacy ports) and the ICH9 AHCI function on `q35`
//! (command lists, PRDT DMA into RAM, received FISes, error handling), through the real CPU.

use machine::devices::disk::Disk;
use machine::{BoardKind, ExitReason, Machine, MachineConfig};
use std::path::{Path, PathBuf};
use std::process::Command;

const SECTORS: usize = 1024;

fn tmpdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("smmlab-disks-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn assemble(name: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/roms");
    let out = tmpdir().join(format!("{name}.bin"));
    let st = Command::new("nasm")
        .args(["-f", "bin", "-I"])
        .arg(format!("{}/", dir.display()))
        .arg(format!("-DSECTORS={SECTORS}"))
        .arg("-o")
        .arg(&out)
        .arg(dir.join(format!("{name}.asm")))
        .status()
        .expect("nasm must be installed (scripts/test.sh installs it)");
    assert!(st.success(), "nasm failed on {name}");
    std::fs::read(&out).unwrap()
}

/// Sector n starts with the little-endian word n; the rest is a pattern.
fn image() -> Vec<u8> {
    let mut d = Vec::with_capacity(SECTORS * 512);
    for n in 0..SECTORS {
        let mut s: Vec<u8> = (0..512).map(|i| (n * 7 + i) as u8).collect();
        s[0..2].copy_from_slice(&(n as u16).to_le_bytes());
        d.extend_from_slice(&s);
    }
    d
}

fn run(kind: BoardKind, rom: &str) -> (Machine, machine::RunSummary) {
    let config = MachineConfig { memory_mib: 64, ..Default::default() };
    let mut m = Machine::new(kind, config, assemble(rom)).unwrap();
    m.attach_disk(Disk::from_bytes(image()).unwrap()).unwrap();
    let s = m.run(5_000_000);
    (m, s)
}

#[test]
fn ide_pio_identify_read_write_ext_multiple_errors_and_reset_on_pc() {
    let (_, s) = run(BoardKind::Pc, "ide_pio");
    assert_eq!(s.exit, ExitReason::DebugExit, "{s:?}");
    assert_eq!(s.exit_code, 0, "failed check number {}", s.exit_code);
}

#[test]
fn ahci_dma_prdt_fis_and_error_recovery_on_q35() {
    let (_, s) = run(BoardKind::Q35, "ahci_dma");
    assert_eq!(s.exit, ExitReason::DebugExit, "{s:?}");
    assert_eq!(s.exit_code, 0, "failed check number {}", s.exit_code);
}

#[test]
fn the_minimal_board_has_no_disk_controller() {
    let mut m = Machine::minimal(MachineConfig::default(), vec![0xf4; 0x10000]).unwrap();
    let e = m.attach_disk(Disk::from_bytes(vec![0; 512]).unwrap()).unwrap_err();
    assert!(e.to_string().contains("no disk controller"), "{e}");
}
