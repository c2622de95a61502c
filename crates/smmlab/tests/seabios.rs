//! End-to-end: Debian's SeaBIOS (`bios-256k.bin`, 1.16.2) and the Bochs BIOS on smmlab's pc
//! and q35 boards. SeaBIOS must reach "No bootable device" (fw_cfg `etc/boot-fail-wait` = 0
//! makes it reboot through 0xCF9 right after, which ends the run with exit reason "reset"),
//! with exactly one SMI (the SMBASE relocation, 0x30000 → 0xA0000) and SMRAM closed after.
//! Where QEMU 7.2 is installed, its debugcon text for the same ROM and device set is compared
//! line by line; every difference allowed below is named with its cause.
//!
//! Skipped (with a message) when the firmware packages are missing; scripts/test.sh installs
//! them.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const SEABIOS: &str = "/usr/share/seabios/bios-256k.bin";
const BOCHS_BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";

fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("smmlab-seabios-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Run {
    debugcon: String,
    summary: Value,
}

fn smmlab(rom: &str, machine: &str, test: &str, max: u64) -> Run {
    let d = dir(test);
    let con = d.join(format!("{machine}.debugcon.txt"));
    let json = d.join(format!("{machine}.json"));
    let o = Command::new(env!("CARGO_BIN_EXE_smmlab"))
        .args(["run", "-q", "--machine", machine, "--bios", rom, "--max-instructions", &max.to_string()])
        .arg("--debugcon")
        .arg(&con)
        .arg("--summary-json")
        .arg(&json)
        .output()
        .unwrap();
    let debugcon = std::fs::read_to_string(&con).unwrap_or_default();
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_else(|_| panic!("no summary: {}", String::from_utf8_lossy(&o.stderr)))).unwrap();
    Run { debugcon, summary }
}

fn present(path: &str, package: &str) -> bool {
    let ok = Path::new(path).exists();
    if !ok {
        eprintln!("{path} missing (Debian package {package}; scripts/test.sh installs it): skipping");
    }
    ok
}

fn check_seabios(machine: &str, r: &Run) {
    let s = &r.summary;
    assert!(r.debugcon.contains("No bootable device."), "{machine}: no boot failure message:\n{}", r.debugcon);
    assert_eq!(s["exit"], "reset", "{machine}: {s}");
    assert_eq!(s["smis"], 1, "{machine}: one SMI, the relocation (QEMU -nodefaults: 1)");
    assert_eq!(s["smis_by_source"]["apm"], 1);
    assert_eq!(s["smbase_after"], 0xa0000, "SMBASE relocated");
    let smram = &s["smram_after"];
    assert_eq!(smram["d_open"], false, "SMRAM closed after relocation");
    assert_eq!(smram["g_smrame"], true, "SMRAM enabled (0x0A)");
    assert!(s["smm_instructions"].as_u64().unwrap() > 20);
    let n = s["instructions"].as_u64().unwrap();
    // QEMU: 5.8 M (pc) / 6.1 M (q35). With an AHCI controller SeaBIOS's probe waits on the PM
    // timer, whose rate against instructions differs (QEMU TCG: host time; smmlab: 1 GIPS
    // virtual clock), so q35 takes ~15.5 M here.
    assert!((4_000_000..20_000_000).contains(&n), "{machine}: {n} instructions");
    assert!(!r.debugcon.contains("WARNING"), "{}", r.debugcon);
}

#[test]
fn seabios_reaches_no_bootable_device_on_pc() {
    if !present(SEABIOS, "seabios") {
        return;
    }
    let r = smmlab(SEABIOS, "pc", "pc", 50_000_000);
    check_seabios("pc", &r);
    assert!(r.debugcon.contains("Running on QEMU (i440fx)"));
    assert!(r.debugcon.contains("Found QEMU fw_cfg\nQEMU fw_cfg DMA interface supported\n"));
    assert!(r.debugcon.contains("Found 1 cpu(s) max supported 1 cpu(s)"));
    compare_with_qemu("pc", &r.debugcon);
}

#[test]
fn seabios_reaches_no_bootable_device_on_q35() {
    if !present(SEABIOS, "seabios") {
        return;
    }
    let r = smmlab(SEABIOS, "q35", "q35", 50_000_000);
    check_seabios("q35", &r);
    assert!(r.debugcon.contains("Running on QEMU (q35)"));
    assert!(r.debugcon.contains("PCIe: using q35 mmconfig at 0xb0000000"), "ECAM in use");
    compare_with_qemu("q35", &r.debugcon);
}

#[test]
fn seabios_runs_are_deterministic() {
    if !present(SEABIOS, "seabios") {
        return;
    }
    let a = smmlab(SEABIOS, "pc", "det-a", 50_000_000);
    let b = smmlab(SEABIOS, "pc", "det-b", 50_000_000);
    assert_eq!(a.debugcon, b.debugcon);
    assert_eq!(a.summary["instructions"], b.summary["instructions"]);
    assert_eq!(a.summary["guest_ns"], b.summary["guest_ns"]);
}

/// Lines whose text legitimately differs between smmlab and QEMU 7.2 for this device set.
/// Each pattern names why; they are dropped from both sides before the comparison.
fn named_difference(line: &str) -> bool {
    const PATTERNS: &[(&str, &str)] = &[
        // QEMU provides ACPI through etc/table-loader; smmlab has no ACPI tables of QEMU's,
        // so SeaBIOS keeps its PM base at 0xB000 and builds its own tables.
        ("Moving pm_base to 0x600", "no etc/table-loader"),
        ("Using pmtimer, ioport", "PM base 0xB000 without etc/table-loader"),
        ("table(", "QEMU's ACPI tables"),
        ("ACPI: parse DSDT", "QEMU's ACPI tables"),
        ("ACPI DSDT=", "SeaBIOS's own ACPI tables"),
        ("Copying ACPI RSDP", "SeaBIOS's own ACPI tables"),
        // Table sizes and allocations follow from the ACPI/SMBIOS tables above.
        ("Copying MPTABLE", "high-zone addresses depend on QEMU's tables"),
        ("Copying SMBIOS", "QEMU's SMBIOS tables (etc/smbios/*) are not provided"),
        ("Returned ", "high zone size depends on QEMU's tables"),
        ("e820 map has", "QEMU's table-loader reserves more high memory"),
        ("= 1 RAM", "the RAM/reserved split at the top follows the tables"),
        ("= 2 RESERVED", "same; QEMU also adds the 0xFD00000000 HyperTransport hole"),
        // PCI functions smmlab does not have yet: PIIX3 IDE 00:01.1 (pc), ICH9 AHCI 00:1F.2
        // and SMBus 00:1F.3 (q35). The disk work adds IDE/AHCI.
        ("Found ", "PCI device count (IDE/AHCI/SMBus absent)"),
        ("PCI: IO: ", "I/O window sized by the absent BARs"),
        ("PCI: 32: ", "MMIO window sized by the absent BARs"),
        ("PCI: map device", "BARs of the absent functions"),
        ("PCI: init bdf=00:01.1", "PIIX3 IDE absent"),
        ("PCI: init bdf=00:1f.2", "AHCI absent"),
        ("PCI: init bdf=00:1f.3", "SMBus absent"),
        ("ATA controller", "PIIX3 IDE absent"),
        ("AHCI controller", "AHCI absent"),
        // With no IDE/AHCI, SeaBIOS's fallback adds the floppy entry before the disk one.
        ("Booting from ", "boot-entry order without a disk controller"),
        ("Boot failed:", "follows the order above"),
        ("enter handle_1", "follows the order above"),
        ("  NULL", "follows the order above"),
        // SeaBIOS probes devices in threads; on q35 QEMU's AHCI probe yields while waiting on
        // the PM timer, so the keyboard thread's line comes earlier there. Its presence is
        // checked separately.
        ("PS2 keyboard initialized", "thread interleaving around the absent AHCI probe"),
        // QEMU's kvmvapic option ROM (genroms/kvmvapic.bin) is not provided.
        ("kvmvapic", "no kvmvapic option ROM"),
        ("Running option rom at c000:0003", "no kvmvapic option ROM"),
        ("Space available for UMB", "no option ROM in 0xC0000"),
    ];
    PATTERNS.iter().any(|(p, _why)| line.contains(p))
}

/// Runs QEMU on the same ROM with the equivalent device set and compares debugcon text.
fn compare_with_qemu(machine: &str, ours: &str) {
    let qemu = "qemu-system-x86_64";
    if Command::new(qemu).arg("--version").output().is_err() {
        eprintln!("{qemu} is not installed: skipping the QEMU comparison");
        return;
    }
    let con = dir(&format!("qemu-{machine}")).join("qemu.debugcon.txt");
    let _ = std::fs::remove_file(&con);
    let st = Command::new("timeout")
        .args(["30", qemu, "-machine", &format!("{machine},smm=on"), "-nodefaults", "-m", "128", "-accel", "tcg", "-display", "none", "-no-reboot"])
        // etc/boot-fail-wait = 0, as smmlab's fw_cfg provides.
        .args(["-boot", "reboot-timeout=0", "-bios", SEABIOS])
        .arg("-chardev")
        .arg(format!("file,id=dc,path={}", con.display()))
        .args(["-device", "isa-debugcon,iobase=0x402,chardev=dc"])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(0), "QEMU did not exit at the reboot");
    let theirs = std::fs::read_to_string(&con).unwrap();
    let keep = |t: &str| t.lines().filter(|l| !named_difference(l)).map(str::to_string).collect::<Vec<_>>();
    let (a, b) = (keep(ours), keep(&theirs));
    for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
        assert_eq!(x, y, "{machine}: debugcon line {i} differs (after dropping named differences)\nsmmlab:\n{ours}\nQEMU:\n{theirs}");
    }
    assert_eq!(a.len(), b.len(), "{machine}: line counts differ\nsmmlab:\n{ours}\nQEMU:\n{theirs}");
    // Both end the same way, and the order-insensitive line is on both sides.
    assert!(theirs.contains("No bootable device."));
    assert!(ours.contains("PS2 keyboard initialized") && theirs.contains("PS2 keyboard initialized"));
}

#[test]
fn bochs_bios_relocates_smbase_during_post() {
    if !present(BOCHS_BIOS, "bochsbios") {
        return;
    }
    let r = smmlab(BOCHS_BIOS, "pc", "bochs", 200_000_000);
    let s = &r.summary;
    // rombios32 logs to port 0x402 and finishes its table setup after smm_init.
    assert!(r.debugcon.contains("Starting rombios32"), "{}", r.debugcon);
    assert!(r.debugcon.contains("Found 1 cpu(s)"));
    assert!(r.debugcon.contains("bios_table_cur_addr"), "rombios32 finished:\n{}", r.debugcon);
    assert_eq!(s["smis"], 1, "the relocation SMI (Bochs 2.7: 1)");
    assert_eq!(s["smbase_after"], 0xa0000);
    let n = s["smm_instructions"].as_u64().unwrap();
    assert!((8..=16).contains(&n), "about 10 instructions in SMM (Bochs 2.7: 10), got {n}");
    assert_eq!(s["smram_after"]["d_open"], false);
}
