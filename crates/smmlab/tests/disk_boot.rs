//! Acceptance: Debian's SeaBIOS (`bios-256k.bin`) boots a raw disk image given with `--disk`,
//! on `pc` (IDE primary master) and on `q35` (AHCI port 0), and so does the Bochs BIOS
//! (`BIOS-bochs-latest`, its own 16-bit ATA driver) on `pc`. The boot sector
//! (tests/roms/int13_loop.asm) reads sectors 100 times through INT 13h, checks them, prints
//! "INT13LOOP DONE" on debugcon and leaves through isa-debug-exit.
//!
//! SMI counts: SeaBIOS's AHCI driver is 32-bit only, so every INT 13h on q35 is a `call32`
//! through two SMIs; on pc the 16-bit IDE driver needs none. Where QEMU 7.2 is installed, the
//! same image runs there too. QEMU completes AHCI commands asynchronously, so SeaBIOS's
//! polling loop sometimes yields through extra `call16` SMI pairs, a host-timing-dependent
//! number (150-320 pairs in our runs); smmlab completes a command when PxCI is written and
//! never yields. The comparison is therefore on the deterministic part: the relocation SMI
//! plus the `call32` pairs, which must match within 5 %.

use std::path::{Path, PathBuf};
use std::process::Command;

const SEABIOS: &str = "/usr/share/seabios/bios-256k.bin";
const BOCHS_BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";
const SECTORS: usize = 2048;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("smmlab-disk-boot-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The boot sector followed by data sectors: sector n starts with the word n and ends with
/// the byte n ^ 0xA5.
fn disk_image(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/roms/int13_loop.asm");
    let bs = dir.join("int13_loop.bin");
    let st = Command::new("nasm").args(["-f", "bin", "-o"]).arg(&bs).arg(&src).status().expect("nasm must be installed");
    assert!(st.success());
    let mut img = std::fs::read(&bs).unwrap();
    assert_eq!(img.len(), 512);
    for n in 1..SECTORS {
        let mut s: Vec<u8> = (0..512).map(|i| (n * 7 + i) as u8).collect();
        s[0..2].copy_from_slice(&(n as u16).to_le_bytes());
        s[511] = (n as u8) ^ 0xa5;
        img.extend_from_slice(&s);
    }
    let p = dir.join("disk.img");
    std::fs::write(&p, &img).unwrap();
    p
}

struct Run {
    smis: u64,
    debugcon: String,
}

fn smmlab_boot(machine: &str, disk: &Path, dir: &Path) -> Run {
    smmlab_boot_with(SEABIOS, machine, disk, dir)
}

fn smmlab_boot_with(bios: &str, machine: &str, disk: &Path, dir: &Path) -> Run {
    let dc = dir.join(format!("{machine}-debugcon.txt"));
    let js = dir.join(format!("{machine}-summary.json"));
    let o = Command::new(env!("CARGO_BIN_EXE_smmlab"))
        .args(["run", "--machine", machine, "--bios", bios, "--max-instructions", "500000000", "-q", "--disk"])
        .arg(disk)
        .arg("--debugcon")
        .arg(&dc)
        .arg("--summary-json")
        .arg(&js)
        .output()
        .unwrap();
    let debugcon = std::fs::read_to_string(&dc).unwrap_or_default();
    assert_eq!(o.status.code(), Some(0), "{machine}: {}\n{debugcon}", String::from_utf8_lossy(&o.stderr));
    let j = std::fs::read_to_string(&js).unwrap();
    let smis = j
        .split("\"smis\":")
        .nth(1)
        .and_then(|t| t.trim_start().split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    Run { smis, debugcon }
}

/// QEMU's SMM entries on `machine` with the disk: (all entries, relocation + call32 entries).
/// None when QEMU is missing (a skip, or a failure under CI=true: crates/testkit).
fn qemu_boot(machine: &str, disk: &Path, dir: &Path) -> Option<(u64, u64)> {
    if !testkit::package_command("qemu-system-x86_64", "qemu-system-x86") {
        return None;
    }
    let log = dir.join(format!("qemu-{machine}.log"));
    let dc = dir.join(format!("qemu-{machine}-debugcon.txt"));
    let _ = std::fs::remove_file(&log);
    let st = Command::new("qemu-system-x86_64")
        .args(["-machine", &format!("{machine},smm=on"), "-nodefaults", "-m", "128", "-accel", "tcg", "-display", "none", "-bios", SEABIOS])
        .arg("-drive")
        .arg(format!("file={},format=raw,if=none,id=d0,snapshot=on", disk.display()))
        .args(["-device", "ide-hd,drive=d0,bus=ide.0"])
        .arg("-chardev")
        .arg(format!("file,id=dc,path={}", dc.display()))
        .args(["-device", "isa-debugcon,iobase=0x402,chardev=dc", "-device", "isa-debug-exit,iobase=0xf4,iosize=1", "-d", "int", "-D"])
        .arg(&log)
        .status()
        .ok()?;
    // isa-debug-exit: QEMU exits with (value << 1) | 1.
    assert_eq!(st.code(), Some(1), "QEMU run on {machine}");
    assert!(std::fs::read_to_string(&dc).unwrap().contains("INT13LOOP DONE"));
    let text = std::fs::read_to_string(&log).unwrap();
    // Each "SMM: enter" is followed by the interrupted registers: ECX 0x1234 marks a switch to
    // 32-bit code, from a call32 (at the site of the first one) or back from a call16.
    let mut entries = Vec::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.starts_with("SMM: enter") {
            let regs: String = lines.by_ref().take(3).collect::<Vec<_>>().join(" ");
            let field = |name: &str| regs.split(name).nth(1).map(|t| t[..8].to_string()).unwrap_or_default();
            entries.push((field("ECX="), field("EIP=")));
        }
    }
    let call32_site = entries.iter().find(|(ecx, _)| ecx == "00001234").map(|(_, eip)| eip.clone());
    let call32 = entries.iter().filter(|(ecx, eip)| ecx == "00001234" && Some(eip) == call32_site.as_ref()).count() as u64;
    Some((entries.len() as u64, 1 + 2 * call32))
}

fn seabios_present() -> bool {
    testkit::package_file(SEABIOS, "seabios")
}

#[test]
fn seabios_boots_the_disk_through_ahci_on_q35_with_two_smis_per_int13() {
    if !seabios_present() {
        return;
    }
    let dir = tmpdir("q35");
    let disk = disk_image(&dir);
    let before = std::fs::read(&disk).unwrap();
    let r = smmlab_boot("q35", &disk, &dir);
    assert!(r.debugcon.contains("AHCI/0: registering"), "{}", r.debugcon);
    assert!(r.debugcon.contains("INT13LOOP DONE"), "{}", r.debugcon);
    assert!((150..1000).contains(&r.smis), "SMIs in the hundreds, got {}", r.smis);
    assert_eq!(r.smis % 2, 1, "the relocation plus call32 pairs");
    assert_eq!(std::fs::read(&disk).unwrap(), before, "the image file is never modified");
    if let Some((total, deterministic)) = qemu_boot("q35", &disk, &dir) {
        eprintln!("q35 SMIs: smmlab {}, QEMU {} (relocation + call32: {})", r.smis, total, deterministic);
        assert!(total >= deterministic);
        let diff = (r.smis as f64 - deterministic as f64).abs() / deterministic as f64;
        assert!(diff <= 0.05, "smmlab {} vs QEMU relocation + call32 {}", r.smis, deterministic);
    }
}

#[test]
fn seabios_boots_the_disk_through_ide_on_pc_without_trampoline_smis() {
    if !seabios_present() {
        return;
    }
    let dir = tmpdir("pc");
    let disk = disk_image(&dir);
    let r = smmlab_boot("pc", &disk, &dir);
    assert!(r.debugcon.contains("ata0-0: SMMLAB HARDDISK"), "{}", r.debugcon);
    assert!(r.debugcon.contains("INT13LOOP DONE"), "{}", r.debugcon);
    assert!(r.smis <= 5, "a handful of SMIs, got {}", r.smis);
    if let Some((total, _)) = qemu_boot("pc", &disk, &dir) {
        eprintln!("pc SMIs: smmlab {}, QEMU {}", r.smis, total);
        assert_eq!(r.smis, total);
    }
}

/// INT 15h AH=86h (wait) and AH=83h (event wait): SeaBIOS implements both with the RTC
/// periodic interrupt (CMOS register B PIE, IRQ 8 through the slave 8259, register C read to
/// acknowledge). tests/roms/rtc_wait.asm waits 65.536 ms, then 50 ms, and prints
/// "RTCWAIT DONE".
#[test]
fn seabios_int15_waits_complete_on_the_rtc_interrupt() {
    if !seabios_present() {
        return;
    }
    let dir = tmpdir("rtc");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/roms/rtc_wait.asm");
    let bs = dir.join("rtc_wait.bin");
    let st = Command::new("nasm").args(["-f", "bin", "-o"]).arg(&bs).arg(&src).status().expect("nasm must be installed");
    assert!(st.success());
    let mut img = std::fs::read(&bs).unwrap();
    assert_eq!(img.len(), 512);
    img.resize(SECTORS * 512, 0);
    let disk = dir.join("rtc.img");
    std::fs::write(&disk, &img).unwrap();
    for machine in ["pc", "q35"] {
        let r = smmlab_boot(machine, &disk, &dir);
        assert!(r.debugcon.contains("RTCWAIT START\nRTCWAIT DONE\n"), "{machine}: {}", r.debugcon);
    }
}

/// The Bochs BIOS's ATA driver (bios/rombios.c: ata_detect, ata_cmd_data_io) reads the same
/// disk through the IDE primary master with PIO, polling status (BSY clear, DRQ set) with
/// interrupts masked by nIEN. It takes the PIO block size from IDENTIFY word 5, a retired
/// word that Bochs and QEMU fill with 512: without it every read moved no data and INT 13h
/// failed ("int13_harddisk: function 02, error 04"). The one "IDE time out" is the BIOS's own,
/// as on Bochs: the absent slave echoes the shared task file, so the BIOS resets it and waits
/// for a BSY that never comes (harddrv.cc also reads an absent device's status as 00h).
#[test]
fn bochs_bios_boots_the_disk_through_ide_on_pc() {
    if !testkit::package_file(BOCHS_BIOS, "bochsbios") {
        return;
    }
    let dir = tmpdir("bochs");
    let disk = disk_image(&dir);
    let r = smmlab_boot_with(BOCHS_BIOS, "pc", &disk, &dir);
    assert!(r.debugcon.contains("ata0-0: PCHS=2/16/63 translation=none LCHS=2/16/63"), "{}", r.debugcon);
    assert!(r.debugcon.contains("Booting from 0000:7c00"), "{}", r.debugcon);
    assert!(r.debugcon.contains("INT13LOOP START\nINT13LOOP DONE"), "{}", r.debugcon);
    assert!(!r.debugcon.contains("int13_harddisk"), "no INT 13h errors:\n{}", r.debugcon);
    assert_eq!(r.debugcon.matches("IDE time out").count(), 1, "only the absent slave's reset:\n{}", r.debugcon);
    assert_eq!(r.smis, 1, "the Bochs BIOS's one SMI, the SMBASE relocation");
}
