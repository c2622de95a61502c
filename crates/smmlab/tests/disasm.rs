//! `smmlab disasm`: the code that ran in SMM, disassembled, each block annotated with the SMIs
//! that ran it. The built-in firmware's SMI entry stub is compared with the ROM's bytes;
//! SeaBIOS (skipped when missing, failed under CI=true; scripts/test.sh installs it) shows its
//! relocation entry at 0x38000 and its entry at 0xA8000.

use iced_x86::{Decoder, DecoderOptions, FlowControl, Formatter, IntelFormatter};
use std::process::Command;

const SEABIOS: &str = "/usr/share/seabios/bios-256k.bin";

fn disasm(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_smmlab")).arg("disasm").args(args).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn final_smbase(out: &str) -> u64 {
    let s = out.split("final SMBASE 0x").nth(1).expect("a final SMBASE line");
    let hex: String = s.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
    u64::from_str_radix(&hex, 16).unwrap()
}

/// The listing's lines for `bytes` decoded as 16-bit code at CS:0x8000 (physical `phys`),
/// from `skip` bytes in, up to and including the first jump.
fn expected_lines(bytes: &[u8], skip: usize, phys: u64) -> Vec<String> {
    let mut d = Decoder::with_ip(16, &bytes[skip..], 0x8000 + skip as u64, DecoderOptions::NONE);
    let mut f = IntelFormatter::new();
    let mut lines = Vec::new();
    while d.can_decode() {
        let i = d.decode();
        let mut t = String::new();
        f.format(&i, &mut t);
        lines.push(format!("  {:#010x}  {t}", phys + (i.ip() - 0x8000)));
        if i.flow_control() != FlowControl::Next {
            break;
        }
    }
    lines
}

#[test]
fn builtin_firmware_entry_stub_rsm_and_ping_counts() {
    let out = disasm(&[]);
    let smbase = final_smbase(&out);
    assert!(smbase >= 0x10_0000, "SMBASE is relocated into TSEG: {smbase:#x}");
    let entry = smbase + 0x8000;
    assert!(out.contains(&format!("== SMI entry (SMBASE {smbase:#x} + 0x8000): {entry:#x}-")), "{out}");
    assert!(out.contains("== relocation entry (default SMBASE 0x30000 + 0x8000): 0x38000-"), "{out}");

    // The stub in the ROM: its GDT (32-bit code, data) sits at +0x40.
    let rom = firmware_image::ROM;
    let gdt: Vec<u8> = [0x00cf_9b00_0000_ffffu64, 0x00cf_9300_0000_ffff].iter().flat_map(|q| q.to_le_bytes()).collect();
    let at = rom.windows(gdt.len()).position(|w| w == gdt).expect("the stub's GDT is in the ROM") - 0x40;
    let stub = &rom[at..at + 0x100];
    // Its first instruction jumps over the data block; the 16-bit code after it, to the far
    // jump into 32-bit code, is listed exactly as decoded from the ROM.
    let first = expected_lines(stub, 0, entry);
    assert_eq!(first.len(), 1);
    assert!(first[0].contains("jmp short 8058h"), "{first:?}");
    let code16 = expected_lines(stub, 0x58, entry);
    assert!(code16.len() >= 4 && code16[0].contains("lgdt"), "{code16:?}");
    let lines: Vec<&str> = out.lines().collect();
    let pos = lines.iter().position(|l| *l == first[0]).unwrap_or_else(|| panic!("no {:?} in\n{out}", first[0]));
    assert!(lines[pos - 1].contains(&format!("; block {entry:#x} (16-bit, rip 0x8000): ran ")), "{}", lines[pos - 1]);
    let pos = lines.iter().position(|l| *l == code16[0]).unwrap_or_else(|| panic!("no {:?} in\n{out}", code16[0]));
    // (LGDT and MOV CR0 end blocks: skip the block headers between.)
    let listed: Vec<&str> = lines[pos..].iter().copied().filter(|l| l.starts_with("  0x")).take(code16.len()).collect();
    assert_eq!(listed, code16.iter().map(String::as_str).collect::<Vec<_>>());

    assert!(out.lines().any(|l| l.ends_with("  rsm")), "RSM is listed");
    // The demo OS pings (SW SMI 0x01) three times: the SMI summary and blocks say so.
    assert!(out.contains("apm 0x01 3x in 3 SMIs #"), "{out}");
    assert!(out.lines().any(|l| l.contains("; block ") && l.contains("apm 0x01 3x in 3 SMIs")), "{out}");
    // Every SMI ran the entry stub's first block once (the relocation SMI ran 0x38000 instead).
    let entry_block = &lines[lines.iter().position(|l| *l == first[0]).unwrap() - 1];
    assert!(entry_block.contains("apm 0x01 3x in 3 SMIs"), "{entry_block}");

    assert_eq!(disasm(&[]), out, "two runs print the same listing");
}

#[test]
fn output_file_and_bad_input() {
    let p = std::env::temp_dir().join(format!("smmlab-disasm-{}.txt", std::process::id()));
    let o = Command::new(env!("CARGO_BIN_EXE_smmlab")).args(["disasm", "--scenario", "bug-callout", "--output"]).arg(&p).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&p).unwrap();
    let _ = std::fs::remove_file(&p);
    assert!(text.contains("scenario bug-callout") && text.contains("apm 0x01"), "{text}");
    for bad in [&["disasm", "--scenario", "nope"][..], &["disasm", "--bios", "/nonexistent/rom.bin"], &["disasm", "--bios", "/dev/null"]] {
        let o = Command::new(env!("CARGO_BIN_EXE_smmlab")).args(bad).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"), "{bad:?}");
    }
}

#[test]
fn seabios_relocation_entry_and_relocated_entry() {
    if !testkit::package_file(SEABIOS, "seabios") {
        return;
    }
    let out = disasm(&["--machine", "pc", "--bios", SEABIOS]);
    assert_eq!(final_smbase(&out), 0xa0000, "{out}");
    assert!(out.contains("== SMI entry (SMBASE 0xa0000 + 0x8000): 0xa8000"), "{out}");
    assert!(out.contains("== relocation entry (default SMBASE 0x30000 + 0x8000): 0x38000-"), "{out}");
    assert!(out.contains("; block 0x38000 (16-bit, rip 0x8000): ran 1x: apm 0x00 1x in 1 SMI #1"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("  0x000a8000  ")), "the entry's first instruction: {out}");
    assert_eq!(disasm(&["--machine", "pc", "--bios", SEABIOS]), out);
}

/// The rootkit the OS plants in TSEG is recovered from SMRAM like any handler: its region, the
/// SMIs that ran it (the backdoor SW SMI and the periodic SMI it passes on), its code.
#[test]
fn the_planted_rootkit_is_recovered_and_disassembled() {
    let out = disasm(&["--scenario", "rootkit-unlocked"]);
    assert!(out.contains("== handler region: 0x7ff0000-"), "{out}");
    assert!(out.contains("; block 0x7ff0000 (64-bit, rip 0x7ff0000): ran 2x: apm 0x66 1x in 1 SMI"), "{out}");
    // Its first instructions, as assembled in firmware/src/boot/os/rootkit.rs.
    let at = out.find("== handler region: 0x7ff0000").unwrap();
    let code = &out[at..];
    for insn in ["push rdx", "mov dx,634h", "in eax,dx", "test al,20h"] {
        assert!(code.contains(insn), "{insn}: {code}");
    }
    // Against the locked firmware nothing runs from there.
    assert!(!disasm(&["--scenario", "rootkit-locked"]).contains("0x7ff0000"));
}
