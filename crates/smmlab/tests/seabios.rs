//! End-to-end: Debian's SeaBIOS (`bios-256k.bin`, 1.16.2) and the Bochs BIOS on smmlab's pc
//! and q35 boards. SeaBIOS must reach "No bootable device" (fw_cfg `etc/boot-fail-wait` = 0
//! makes it reboot through 0xCF9 right after, which ends the run with exit reason "reset"),
//! with exactly one SMI (the SMBASE relocation, 0x30000 → 0xA0000) and SMRAM closed after.
//! Where QEMU 7.2 is installed, its debugcon text for the same ROM and device set is compared
//! line by line, twice: with smmlab's own ACPI and SMBIOS tables (what users run; every
//! difference allowed is named with its cause), and with QEMU's own table blobs, read out of
//! QEMU's fw_cfg by tests/roms/fw_cfg_dump.asm and handed to smmlab with `--fw-cfg` (then the
//! text is QEMU's except for two differences checked precisely, see
//! [`seabios_with_qemus_tables`]). The blobs go to a temporary directory, never into the
//! repository. [`fw_cfg_directories_of_qemu_and_smmlab`] compares the fw_cfg directories.
//!
//! Skipped (counted as skipped by scripts/test.sh) when the firmware packages or QEMU are
//! missing, and failed under CI=true (crates/testkit); scripts/test.sh installs them.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const SEABIOS: &str = "/usr/share/seabios/bios-256k.bin";
const BOCHS_BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";
/// The option ROM QEMU adds by itself on pc and q35 (TCG too) as `genroms/kvmvapic.bin`: a
/// legacy ROM, so SeaBIOS registers it as a BCV and calls it at boot. smmlab gets it through
/// `--option-rom`, from Debian's qemu-system-data (never a copy in this repository).
const KVMVAPIC: &str = "/usr/share/qemu/kvmvapic.bin";

/// `--option-rom` for QEMU's kvmvapic ROM, or nothing (with a message) if it is missing.
fn kvmvapic() -> Vec<&'static str> {
    if present(KVMVAPIC, "qemu-system-data") {
        vec!["--option-rom", KVMVAPIC]
    } else {
        Vec::new()
    }
}

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
    smmlab_with(rom, machine, test, max, &[])
}

fn smmlab_with(rom: &str, machine: &str, test: &str, max: u64, extra: &[&str]) -> Run {
    let d = dir(test);
    let con = d.join(format!("{machine}.debugcon.txt"));
    let json = d.join(format!("{machine}.json"));
    let o = Command::new(env!("CARGO_BIN_EXE_smmlab"))
        .args(["run", "-q", "--machine", machine, "--bios", rom, "--max-instructions", &max.to_string()])
        .args(extra)
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

/// Whether a Debian package's file is there: outside CI a missing one skips the test (or the
/// part that needs it), under CI=true it fails the test (crates/testkit).
fn present(path: &str, package: &str) -> bool {
    testkit::package_file(path, package)
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
    // QEMU: 5.8 M (pc) / 6.1 M (q35); smmlab 5.5 M / 5.7 M (15.6 M on q35 with --exact-time).
    // On q35 SeaBIOS probes the six AHCI ports in threads, and each empty port
    // (PxSSTS.DET = 0, as on QEMU and real hardware) is given up after its 10 ms link timeout,
    // measured on the PM timer: 10 ms is 10 M instructions on smmlab's 1 GIPS virtual clock
    // unless the poll fast-forward (machine::poll) speeds up guest time while SeaBIOS only
    // polls. The wait is the firmware's, not a device that never becomes ready.
    assert!((4_000_000..20_000_000).contains(&n), "{machine}: {n} instructions");
    assert!(!r.debugcon.contains("WARNING"), "{}", r.debugcon);
}

/// smmlab's ACPI tables reached SeaBIOS through the table-loader: the PM base moved to 0x600,
/// the RSDP and RSDT led to the FACP and the DSDT, and the DSDT's PNP0303 kept the PS/2
/// keyboard (SeaBIOS skips PS/2 when a parsed DSDT lacks it).
fn check_acpi(machine: &str, con: &str) {
    for l in ["Moving pm_base to 0x600", "Using pmtimer, ioport 0x608", "(via rsdt)", "ACPI: parse DSDT at 0x07fe0040", "PS2 keyboard initialized"] {
        assert!(con.contains(l), "{machine}: missing {l:?}:\n{con}");
    }
    for l in ["ACPI DSDT=", "Copying ACPI RSDP", "No ACPI RSDP", "parse error", "overrun", "Invalid SMBIOS"] {
        assert!(!con.contains(l), "{machine}: {l:?}:\n{con}");
    }
}

/// With QEMU's kvmvapic ROM in fw_cfg, SeaBIOS looks up its boot priority while scanning
/// option ROMs, deploys it at 0xC0000 (the UMB space starts after its 9 KiB, 2 KiB-aligned),
/// and calling its BCV at boot puts a Hard Disk entry first, as on QEMU. Without it the
/// C-segment stays free and the default order (Floppy, then Hard Disk) is used.
fn check_kvmvapic(machine: &str, con: &str, with_rom: bool) {
    let order = |first: &str, second: &str| {
        let (a, b) = (con.find(first), con.find(second));
        assert!(a.is_some() && b.is_some() && a < b, "{machine}: {first:?} should come before {second:?}:\n{con}");
    };
    if with_rom {
        assert!(con.contains("Searching bootorder for: /rom@genroms/kvmvapic.bin\n"), "{machine}:\n{con}");
        order("Running option rom at c000:0003\n", "Space available for UMB: c2800-");
        order("Booting from Hard Disk...", "Booting from Floppy...");
    } else {
        assert!(!con.contains("Running option rom"), "{machine}:\n{con}");
        assert!(con.contains("Space available for UMB: c0000-"), "{machine}:\n{con}");
        order("Booting from Floppy...", "Booting from Hard Disk...");
    }
}

/// The ROM is what changes the boot order and the C-segment use: the same board without it
/// boots the default order (this is the difference the QEMU comparison had before
/// `--option-rom`).
#[test]
fn seabios_without_the_kvmvapic_rom_keeps_the_default_boot_order() {
    if !present(SEABIOS, "seabios") {
        return;
    }
    let r = smmlab(SEABIOS, "pc", "no-vapic", 50_000_000);
    check_seabios("pc", &r);
    check_kvmvapic("pc", &r.debugcon, false);
}

#[test]
fn seabios_reaches_no_bootable_device_on_pc() {
    if !present(SEABIOS, "seabios") {
        return;
    }
    let rom = kvmvapic();
    let r = smmlab_with(SEABIOS, "pc", "pc", 50_000_000, &rom);
    check_seabios("pc", &r);
    check_kvmvapic("pc", &r.debugcon, !rom.is_empty());
    assert!(r.debugcon.contains("Running on QEMU (i440fx)"));
    assert!(r.debugcon.contains("Found QEMU fw_cfg\nQEMU fw_cfg DMA interface supported\n"));
    assert!(r.debugcon.contains("Found 1 cpu(s) max supported 1 cpu(s)"));
    check_acpi("pc", &r.debugcon);
    compare_with_qemu("pc", &r.debugcon, !rom.is_empty());
}

#[test]
fn seabios_reaches_no_bootable_device_on_q35() {
    if !present(SEABIOS, "seabios") {
        return;
    }
    let rom = kvmvapic();
    let r = smmlab_with(SEABIOS, "q35", "q35", 50_000_000, &rom);
    check_seabios("q35", &r);
    check_kvmvapic("q35", &r.debugcon, !rom.is_empty());
    assert!(r.debugcon.contains("Running on QEMU (q35)"));
    assert!(r.debugcon.contains("PCIe: using q35 mmconfig at 0xb0000000"), "ECAM in use");
    assert!(r.debugcon.contains("Found 4 PCI devices"), "00:00.0, 1F.0, 1F.2 (AHCI), 1F.3 (SMBus)");
    assert!(r.debugcon.contains("PCI: init bdf=00:1f.3 id=8086:2930"), "ICH9 SMBus");
    check_acpi("q35", &r.debugcon);
    compare_with_qemu("q35", &r.debugcon, !rom.is_empty());
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

/// On q35 SeaBIOS waits 10 ms for the empty AHCI ports' links on the PM timer: the poll
/// fast-forward skips most of that wait, the same way on every run, and changes nothing the
/// firmware prints; `--exact-time` turns it off.
#[test]
fn seabios_poll_fast_forward_is_deterministic_and_invisible_in_the_output() {
    if !present(SEABIOS, "seabios") {
        return;
    }
    let a = smmlab(SEABIOS, "q35", "poll-a", 50_000_000);
    let b = smmlab(SEABIOS, "q35", "poll-b", 50_000_000);
    let exact = smmlab_with(SEABIOS, "q35", "poll-exact", 50_000_000, &["--exact-time"]);
    for k in ["instructions", "guest_ns", "poll_skipped_ns"] {
        assert_eq!(a.summary[k], b.summary[k], "{k}");
    }
    assert_eq!(a.debugcon, b.debugcon);
    assert_eq!(a.debugcon, exact.debugcon, "the fast-forward changes no output");
    let skipped = a.summary["poll_skipped_ns"].as_u64().unwrap();
    assert!(skipped > 9_000_000, "most of the 10 ms link timeout is skipped: {skipped} ns");
    assert_eq!(exact.summary["poll_skipped_ns"], 0);
    let (fast, slow) = (a.summary["instructions"].as_u64().unwrap(), exact.summary["instructions"].as_u64().unwrap());
    assert!(slow > fast + 9_000_000, "--exact-time polls through the wait: {slow} vs {fast} instructions");
    // Guest time still covers the whole wait.
    assert!(a.summary["guest_ns"].as_u64().unwrap() >= 10_000_000, "{}", a.summary);
}

/// Lines whose text legitimately differs between smmlab and QEMU 7.2 for this device set.
/// Each pattern names why; they are dropped from both sides before the comparison. Closed
/// (checked line by line now): the PM base move to 0x600 and the PM timer port (smmlab's own
/// ACPI tables through `etc/table-loader`; SMBIOS tables through `etc/smbios/*` are smmlab's
/// too), the high-zone size and the e820 map (the table
/// blob is padded to 128 KiB as QEMU's; AMD's HyperTransport hole for the amd64 CPU), the PCI
/// device count and the IDE/AHCI/SMBus functions, and QEMU's kvmvapic option ROM (given to
/// smmlab with `--option-rom`: its bootorder lookup, "Running option rom at c000:0003", the
/// UMB space after it and the boot order its BCV makes, Hard Disk before Floppy).
fn named_difference(machine: &str, line: &str) -> bool {
    const PATTERNS: &[(&str, &str)] = &[
        // smmlab's ACPI tables are its own and smaller than QEMU's (QEMU's DSDT describes every
        // device in AML; smmlab's has the PCI root, PS/2 keyboard and mouse and the RTC), so the
        // FACP lands elsewhere in the blob and the DSDT length differs. The DSDT address (the
        // blob's start + 64 after the FACS) is the same.
        ("table(50434146)=", "FACP offset inside smmlab's own ACPI tables"),
        ("ACPI: parse DSDT at", "length of smmlab's own DSDT"),
        // Both pass SMBIOS tables through etc/smbios/smbios-tables and -anchor, but smmlab's
        // are its own (types 1, 3, 4, 16, 17, 19, 32, 127 with smmlab's strings) and of
        // another size than QEMU's, which moves the F-segment and temporary high-memory
        // allocations made around them.
        ("Copying SMBIOS", "size of smmlab's own SMBIOS tables"),
        // SeaBIOS probes devices in threads whose interleaving follows the PM timer, which
        // QEMU runs from host time; the line's presence is checked separately.
        ("PS2 keyboard initialized", "thread interleaving under QEMU's host-time PM timer"),
    ];
    // q35: smmlab's ICH9 SMBus BAR4 (SMB_BASE) is 32 bytes as the ICH9 datasheet (§18.1.5)
    // gives it; QEMU decodes 64 bytes, which changes the I/O window and the BAR placement.
    const Q35_PATTERNS: &[(&str, &str)] = &[
        ("PCI: IO: ", "SMBus SMB_BASE size (32 bytes here, 64 in QEMU)"),
        ("PCI: map device bdf=00:1f.3  bar 4", "SMBus SMB_BASE size"),
        ("PCI: map device bdf=00:1f.2  bar 4", "placed after/before SMB_BASE by size"),
    ];
    PATTERNS.iter().any(|(p, _why)| line.contains(p)) || (machine == "q35" && Q35_PATTERNS.iter().any(|(p, _why)| line.contains(p)))
}

/// A debugcon line as compared: None for a named difference. Two lines are compared in part:
/// - the UMB line keeps its C-segment range (after the option ROMs) and loses its F-segment
///   range, whose end is the lowest F-segment allocation: the SMBIOS tables (at most 600
///   bytes go to the F-segment, SeaBIOS `smbios_build_tables`) and their entry point, so it
///   follows the size of smmlab's own SMBIOS tables, like the "Copying SMBIOS" line;
/// - "Copying MPTABLE from <low>/<temporary high copy> to <F-segment>" keeps its F-segment
///   address, which follows the MP table's size (one interrupt entry per PCI function with
///   an interrupt pin), and loses the temporary copy's address, which follows the number and
///   size of earlier temporary high-memory allocations (fw_cfg file entries, SMBIOS tables).
fn comparable(machine: &str, line: &str) -> Option<String> {
    if named_difference(machine, line) {
        return None;
    }
    if let Some((c_segment, _f_segment)) = line.strip_prefix("Space available for UMB: ").and_then(|r| r.split_once(", ")) {
        return Some(format!("Space available for UMB: {c_segment}, (F-segment range follows the SMBIOS size)"));
    }
    if let Some((from, to)) = line.strip_prefix("Copying MPTABLE from ").and_then(|r| r.split_once(" to ")) {
        let low = from.split_once('/').map_or(from, |(low, _high)| low);
        return Some(format!("Copying MPTABLE from {low}/(temporary copy) to {to}"));
    }
    Some(line.to_string())
}

const QEMU: &str = "qemu-system-x86_64";

/// Whether QEMU is installed (as [`present`]).
fn qemu_present() -> bool {
    testkit::package_command(QEMU, "qemu-system-x86")
}

/// QEMU 7.2 with the device set smmlab's pc/q35 boards model (one CPU, 128 MiB, no default
/// devices, TCG), debugcon at 0x402 into `con`, firmware `bios`, plus `extra`. Returns the
/// exit status and the debugcon text.
fn qemu_run(machine: &str, bios: &Path, con: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let _ = std::fs::remove_file(con);
    let st = Command::new("timeout")
        .args(["60", QEMU, "-machine", &format!("{machine},smm=on"), "-nodefaults", "-m", "128", "-accel", "tcg", "-display", "none", "-no-reboot"])
        // etc/boot-fail-wait = 0, as smmlab's fw_cfg provides.
        .args(["-boot", "reboot-timeout=0", "-bios"])
        .arg(bios)
        .arg("-chardev")
        .arg(format!("file,id=dc,path={}", con.display()))
        .args(["-device", "isa-debugcon,iobase=0x402,chardev=dc"])
        .args(extra)
        .status()
        .unwrap();
    (st.code(), std::fs::read_to_string(con).unwrap_or_default())
}

/// SeaBIOS's debugcon text on QEMU (which ends the run at SeaBIOS's reboot: -no-reboot).
fn qemu_seabios(machine: &str, test: &str) -> String {
    let con = dir(&format!("qemu-{machine}-{test}")).join("qemu.debugcon.txt");
    let (code, text) = qemu_run(machine, Path::new(SEABIOS), &con, &[]);
    assert_eq!(code, Some(0), "QEMU did not exit at the reboot:\n{text}");
    text
}

/// Compares two debugcon texts line by line after `keep` (None drops a line).
fn assert_same_lines(machine: &str, ours: &str, theirs: &str, keep: impl Fn(&str) -> Option<String>) {
    let keep_all = |t: &str| t.lines().filter_map(&keep).collect::<Vec<_>>();
    let (a, b) = (keep_all(ours), keep_all(theirs));
    for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
        assert_eq!(x, y, "{machine}: debugcon line {i} differs (after dropping named differences)\nsmmlab:\n{ours}\nQEMU:\n{theirs}");
    }
    assert_eq!(a.len(), b.len(), "{machine}: line counts differ\nsmmlab:\n{ours}\nQEMU:\n{theirs}");
}

/// Runs QEMU on the same ROM with the equivalent device set and compares debugcon text.
/// `with_rom`: smmlab had QEMU's kvmvapic ROM, which QEMU always adds.
fn compare_with_qemu(machine: &str, ours: &str, with_rom: bool) {
    if !qemu_present() {
        return;
    }
    if !with_rom {
        // kvmvapic() recorded the skip (or failed the test under CI).
        eprintln!("{KVMVAPIC} is missing, so smmlab ran without QEMU's option ROM: no QEMU comparison");
        return;
    }
    let theirs = qemu_seabios(machine, "own-tables");
    assert_same_lines(machine, ours, &theirs, |l| comparable(machine, l));
    // Both end the same way, and the order-insensitive line is on both sides.
    assert!(theirs.contains("No bootable device."));
    assert!(ours.contains("PS2 keyboard initialized") && theirs.contains("PS2 keyboard initialized"));
}

/// A fw_cfg file as tests/roms/fw_cfg_dump.asm printed it.
#[derive(Clone, Debug, PartialEq)]
struct FwCfgFile {
    name: String,
    select: u16,
    data: Vec<u8>,
}

/// Parses the dump ROM's framing (see fw_cfg_dump.asm) from debugcon text; whatever the
/// firmware printed before it is skipped.
fn parse_fw_cfg_dump(text: &str) -> Vec<FwCfgFile> {
    let start = text.find("FWCFG-DUMP ").unwrap_or_else(|| panic!("no fw_cfg dump:\n{text}"));
    let mut lines = text[start..].lines();
    let count = u32::from_str_radix(lines.next().unwrap().trim_start_matches("FWCFG-DUMP "), 16).unwrap();
    let mut files: Vec<(FwCfgFile, usize)> = Vec::new();
    for l in lines.by_ref() {
        if l == "END" {
            break;
        }
        if let Some(rest) = l.strip_prefix("FILE ") {
            let mut f = rest.splitn(3, ' ');
            let select = u16::from_str_radix(f.next().unwrap(), 16).unwrap();
            let size = usize::from_str_radix(f.next().unwrap(), 16).unwrap();
            let name = f.next().unwrap_or_default().to_string();
            files.push((FwCfgFile { name, select, data: Vec::with_capacity(size) }, size));
        } else if let Some(hex) = l.strip_prefix("D ") {
            let (f, _) = files.last_mut().expect("data before a FILE line");
            f.data.extend((0..hex.len() / 2).map(|k| u8::from_str_radix(&hex[2 * k..2 * k + 2], 16).unwrap()));
        } else {
            panic!("unexpected line in the fw_cfg dump: {l:?}");
        }
    }
    assert!(text.contains("\nEND\n"), "the dump did not finish:\n{text}");
    assert_eq!(files.len(), count as usize, "directory count");
    files
        .into_iter()
        .map(|(f, size)| {
            assert_eq!(f.data.len(), size, "{}: size in the directory and bytes read", f.name);
            f
        })
        .collect()
}

/// Assembles the dump ROM: the flat 64 KiB reset-vector build, or the option-ROM build with
/// its checksum byte set so that its 1024 bytes sum to 0.
fn dump_rom(option_rom: bool, test: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/roms/fw_cfg_dump.asm");
    let out = dir(test).join(if option_rom { "fw_cfg_dump.rom" } else { "fw_cfg_dump.bin" });
    let mut cmd = Command::new("nasm");
    if option_rom {
        cmd.arg("-DOPTION_ROM");
    }
    let st = cmd.args(["-f", "bin", "-o"]).arg(&out).arg(&src).status().expect("nasm must be installed (scripts/test.sh installs it)");
    assert!(st.success(), "nasm failed on {}", src.display());
    if option_rom {
        let mut d = std::fs::read(&out).unwrap();
        let last = d.len() - 1;
        d[last] = 0u8.wrapping_sub(d.iter().fold(0u8, |a, b| a.wrapping_add(*b)));
        std::fs::write(&out, d).unwrap();
    }
    out
}

/// QEMU's fw_cfg files as a guest sees them from the reset vector (`-bios` = the dump ROM).
fn qemu_fw_cfg_at_reset(machine: &str, test: &str) -> Vec<FwCfgFile> {
    let rom = dump_rom(false, &format!("fwcfg-qemu-{machine}-{test}"));
    let (code, text) = qemu_run(machine, &rom, &rom.with_extension("qemu.txt"), &["-device", "isa-debug-exit,iobase=0xf4"]);
    // isa-debug-exit turns the guest's 0 into exit status 1.
    assert_eq!(code, Some(1), "QEMU did not exit through isa-debug-exit:\n{text}");
    parse_fw_cfg_dump(&text)
}

/// QEMU's fw_cfg files as SeaBIOS got them: the dump ROM runs as an option ROM after SeaBIOS
/// has read the ACPI files. This matters: QEMU builds its ACPI tables again, from the machine
/// state of that moment, when the firmware first reads them after a reset (the fw_cfg
/// callback `acpi_build_update`, QEMU hw/i386/acpi-build.c), and by then SeaBIOS has set up
/// PCI: on q35 the DSDT gains the MMCONFIG window's PNP0C01 resource device (DRAC) and PCI0's
/// resources follow the BARs SeaBIOS placed (8180 bytes instead of 8096 at reset). Later
/// reads return the same blob until the next reset.
fn qemu_fw_cfg_as_seabios_read_it(machine: &str) -> Vec<FwCfgFile> {
    let rom = dump_rom(true, &format!("fwcfg-qemu-orom-{machine}"));
    let (code, text) = qemu_run(machine, Path::new(SEABIOS), &rom.with_extension("qemu.txt"), &["-option-rom", rom.to_str().unwrap(), "-device", "isa-debug-exit,iobase=0xf4"]);
    assert_eq!(code, Some(1), "QEMU did not exit through isa-debug-exit:\n{text}");
    assert!(text.contains("Copying ACPI RSDP") || text.contains("table(50434146)="), "SeaBIOS read the ACPI tables before the dump:\n{text}");
    parse_fw_cfg_dump(&text)
}

/// smmlab's fw_cfg files as the dump ROM sees them from the reset vector, with the kvmvapic
/// ROM as in the SeaBIOS comparison.
fn smmlab_fw_cfg_at_reset(machine: &str, test: &str) -> Vec<FwCfgFile> {
    let tag = format!("fwcfg-smmlab-{machine}-{test}");
    let rom = dump_rom(false, &tag);
    let r = smmlab_with(rom.to_str().unwrap(), machine, &tag, 50_000_000, &kvmvapic());
    assert_eq!(r.summary["exit"], "debug-exit", "{}", r.summary);
    parse_fw_cfg_dump(&r.debugcon)
}

/// The fw_cfg files that carry a machine's ACPI and SMBIOS tables.
const TABLE_FILES: [&str; 5] = ["etc/acpi/tables", "etc/acpi/rsdp", "etc/table-loader", "etc/smbios/smbios-tables", "etc/smbios/smbios-anchor"];

/// Temporary high memory SeaBIOS spends per fw_cfg directory entry (`qemu_romfile_add` in
/// src/fw/paravirt.c): a `struct qemu_romfile_s` (148 bytes, 16-byte aligned: 160) and its
/// `struct allocdetail_s` record (44 bytes, aligned: 48), src/malloc.c.
const SEABIOS_TMP_BYTES_PER_FILE: u64 = 208;

/// With QEMU's own ACPI and SMBIOS blobs (the five files, handed to smmlab with `--fw-cfg`),
/// SeaBIOS's debugcon text on smmlab is QEMU's, line for line, except:
/// - the temporary high-memory copy of the MP table, which is exactly
///   [`SEABIOS_TMP_BYTES_PER_FILE`] higher per fw_cfg file QEMU has and smmlab does not (since
///   smmlab lists the same files, none: checked to the byte; see
///   [`fw_cfg_directories_of_qemu_and_smmlab`]);
/// - q35: the ICH9 SMBus BAR4 (SMB_BASE). smmlab decodes 32 bytes of I/O, as the ICH9
///   datasheet (316972, §18.1.5: bits 15:5 hold the base) gives it; QEMU's ICH9 SMBus
///   registers its "pm-smbus" I/O region with 64 bytes (hw/i2c/pm_smbus.c). SeaBIOS sizes BARs
///   and places the larger first, so the PCI I/O window's end and the order and addresses of
///   the 1F.2 and 1F.3 BAR4 mappings follow. smmlab keeps the datasheet's size.
fn seabios_with_qemus_tables(machine: &str) {
    if !present(SEABIOS, "seabios") || !qemu_present() {
        return;
    }
    if !present(KVMVAPIC, "qemu-system-data") {
        return;
    }
    let blobs = qemu_fw_cfg_as_seabios_read_it(machine);
    let d = dir(&format!("qemu-tables-{machine}"));
    let mut args: Vec<String> = kvmvapic().iter().map(|s| s.to_string()).collect();
    for name in TABLE_FILES {
        let f = blobs.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("QEMU has no {name}"));
        let path = d.join(name.replace('/', "_"));
        std::fs::write(&path, &f.data).unwrap();
        args.push("--fw-cfg".into());
        args.push(format!("{name}={}", path.display()));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = smmlab_with(SEABIOS, machine, &format!("qemu-tables-{machine}"), 50_000_000, &args);
    check_seabios(machine, &r);
    let ours = &r.debugcon;
    let theirs = qemu_seabios(machine, "qemu-tables");
    // The MP table's temporary copy, to the byte.
    let extra_files = (qemu_fw_cfg_at_reset(machine, "tables").len() - smmlab_fw_cfg_at_reset(machine, "tables").len()) as u64;
    let tmp_copy = |t: &str| {
        let l = t.lines().find_map(|l| l.strip_prefix("Copying MPTABLE from ")).unwrap_or_else(|| panic!("no MP table:\n{t}"));
        let high = l.split_once('/').and_then(|(_, r)| r.split_once(' ')).map(|(h, _)| h).unwrap();
        u64::from_str_radix(high, 16).unwrap()
    };
    assert_eq!(tmp_copy(ours), tmp_copy(&theirs) + extra_files * SEABIOS_TMP_BYTES_PER_FILE, "{machine}: MP table temporary copy ({extra_files} fw_cfg files fewer)");
    let keep = |l: &str| -> Option<String> {
        if machine == "q35" && ["PCI: IO: ", "PCI: map device bdf=00:1f.3  bar 4", "PCI: map device bdf=00:1f.2  bar 4"].iter().any(|p| l.starts_with(p)) {
            return None;
        }
        if let Some((from, to)) = l.strip_prefix("Copying MPTABLE from ").and_then(|r| r.split_once(" to ")) {
            let low = from.split_once('/').map_or(from, |(low, _high)| low);
            return Some(format!("Copying MPTABLE from {low}/(checked above) to {to}"));
        }
        Some(l.to_string())
    };
    assert_same_lines(machine, ours, &theirs, keep);
    // Lines that smmlab's own tables change are now compared, not dropped.
    for l in ["ACPI: parse DSDT at", "table(50434146)=", "Copying SMBIOS", "Space available for UMB:", "PS2 keyboard initialized"] {
        assert!(ours.contains(l), "{machine}: {l:?} missing:\n{ours}");
    }
}

#[test]
fn seabios_debugcon_is_qemus_with_qemus_tables_on_pc() {
    seabios_with_qemus_tables("pc");
}

#[test]
fn seabios_debugcon_is_qemus_with_qemus_tables_on_q35() {
    seabios_with_qemus_tables("q35");
}

/// fw_cfg files in QEMU 7.2's directory that smmlab does not provide, with why (none: smmlab
/// also lists the empty bios-geometry, bootorder and etc/tpm/log, which SeaBIOS 1.16.2 treats
/// as missing, `romfile_loadfile` in src/romfile.c, but whose directory entries cost it
/// temporary memory).
const QEMU_ONLY_FILES: &[(&str, &str)] = &[];

/// Files of the same name and size whose contents differ, with why.
const CONTENT_DIFFERENCES: &[(&str, &str)] = &[(
    "etc/system-states",
    "the sleep states: QEMU offers S3 and S4 (80 00 00 81 82 80); smmlab models S0 and S5 only, S5 with the chipset's own sleep type (pc 00, q35 07)",
)];

/// Files in both directories whose sizes differ, with why.
const SIZE_DIFFERENCES: &[(&str, &str)] = &[
    ("etc/smbios/smbios-tables", "smmlab's own SMBIOS structures and strings"),
    ("etc/table-loader", "QEMU pads its loader script to 4 KiB; smmlab's is its commands only"),
];

/// The fw_cfg file directories (names and sizes) of QEMU and smmlab, as the dump ROM sees
/// them from the reset vector, differ only as named above; files that do not come from the
/// tables are identical byte for byte.
#[test]
fn fw_cfg_directories_of_qemu_and_smmlab() {
    if !qemu_present() || !present(KVMVAPIC, "qemu-system-data") {
        return;
    }
    for machine in ["pc", "q35"] {
        let (q, s) = (qemu_fw_cfg_at_reset(machine, "dir"), smmlab_fw_cfg_at_reset(machine, "dir"));
        for (set, what) in [(&q, "QEMU"), (&s, "smmlab")] {
            let names: Vec<&str> = set.iter().map(|f| f.name.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(names, sorted, "{what} {machine}: directory in name order");
            assert!(set.iter().enumerate().all(|(i, f)| f.select == 0x20 + i as u16), "{what} {machine}: keys from 0x20");
        }
        let only_qemu: Vec<&str> = q.iter().filter(|f| !s.iter().any(|g| g.name == f.name)).map(|f| f.name.as_str()).collect();
        let only_smmlab: Vec<&str> = s.iter().filter(|f| !q.iter().any(|g| g.name == f.name)).map(|f| f.name.as_str()).collect();
        assert_eq!(only_qemu, QEMU_ONLY_FILES.iter().map(|(n, _)| *n).collect::<Vec<&str>>(), "{machine}: files only QEMU has");
        let states = s.iter().find(|f| f.name == "etc/system-states").map(|f| f.data.clone());
        assert_eq!(states, Some(vec![0x80, 0, 0, 0, 0, if machine == "q35" { 0x87 } else { 0x80 }]), "{machine}: smmlab's sleep states");
        assert!(only_smmlab.is_empty(), "{machine}: files only smmlab has: {only_smmlab:?}");
        for f in &s {
            let g = q.iter().find(|g| g.name == f.name).unwrap();
            let sized = SIZE_DIFFERENCES.iter().any(|(n, _)| *n == f.name);
            assert_eq!(f.data.len() != g.data.len(), sized, "{machine}: {}: smmlab {} bytes, QEMU {}", f.name, f.data.len(), g.data.len());
            if !TABLE_FILES.contains(&f.name.as_str()) {
                let differs = CONTENT_DIFFERENCES.iter().any(|(n, _)| *n == f.name);
                assert_eq!(f.data != g.data, differs, "{machine}: {} contents: smmlab {:02x?}, QEMU {:02x?}", f.name, f.data, g.data);
            }
        }
        for (name, size) in [("etc/acpi/tables", 128 << 10), ("etc/acpi/rsdp", 20), ("etc/smbios/smbios-anchor", 31)] {
            assert_eq!(s.iter().find(|f| f.name == name).map(|f| f.data.len()), Some(size), "{machine}: {name}");
        }
    }
}

#[test]
fn bochs_bios_relocates_smbase_and_finishes_post() {
    if !present(BOCHS_BIOS, "bochsbios") {
        return;
    }
    let r = smmlab(BOCHS_BIOS, "pc", "bochs", 100_000_000);
    let s = &r.summary;
    // rombios32 logs to port 0x402 and finishes its table setup after smm_init.
    assert!(r.debugcon.contains("Starting rombios32"), "{}", r.debugcon);
    assert!(r.debugcon.contains("Found 1 cpu(s)"));
    assert!(r.debugcon.contains("bios_table_cur_addr"), "rombios32 finished:\n{}", r.debugcon);
    // Back in 16-bit POST it waits on the BIOS tick count (INT 08h from the 8254 through the
    // 8259, with the APIC enabled by rombios32 and LINT0 in virtual-wire mode), probes the
    // drives, then INT 19h tries the boot devices and stops with its panic (cli; hlt), as
    // Bochs 2.7 does without a boot device.
    assert!(r.debugcon.contains("CDROM boot failure code : 0002\nNo bootable device.\n"), "POST finished:\n{}", r.debugcon);
    assert_eq!(s["exit"], "halted", "{s}");
    let n = s["instructions"].as_u64().unwrap();
    assert!((5_000_000..50_000_000).contains(&n), "{n} instructions to the boot failure");
    assert_eq!(s["smis"], 1, "the relocation SMI (Bochs 2.7: 1)");
    assert_eq!(s["smbase_after"], 0xa0000);
    let n = s["smm_instructions"].as_u64().unwrap();
    assert!((8..=16).contains(&n), "about 10 instructions in SMM (Bochs 2.7: 10), got {n}");
    assert_eq!(s["smram_after"]["d_open"], false);
}
