//! Builds the built-in firmware (`/firmware`, a separate no_std workspace) with cargo, then
//! flattens its two static ELF files into the ROM image that `src/lib.rs` embeds:
//!
//! - `smm`: linked at SMM_VA; its loadable segments become a flat image, prefixed with a
//!   header (magic, sizes, entry point) and stored at the start of the ROM (0xFFFE0000);
//! - `boot`: every loadable segment is stored at its load address (p_paddr) in the ROM,
//!   which ends at 4 GiB (the reset vector is its last 16 bytes).
//!
//! The firmware's compiler flags live in `firmware/.cargo/config.toml` (with `build.target`
//! set, so they reach neither its build script nor this workspace). Flags from the environment
//! are removed so that nothing meant for the host build (RUSTFLAGS, a host `target-cpu`, the
//! outer target directory) leaks into the firmware. The firmware has its own target directory
//! next to the main build's profile directories, shared by debug, test and release builds.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Must match firmware/src/layout.rs.
const ROM_BASE: u64 = 0xfffe_0000;
const ROM_SIZE: usize = 0x2_0000;
const ROM_BOOT_IMAGE: u64 = 0xffff_0000;
/// The SMM image area ends where the settings flash sector (0xFFFEF000) starts.
const ROM_SMM_IMAGE_MAX: usize = 0xf000;
const SMM_VA: u64 = 0xffff_ffff_8000_0000;
const SMM_IMAGE_MAGIC: u32 = 0x494d_4d53;
const SMM_HEADER_SIZE: usize = 32;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let fw = manifest.join("../../firmware");
    for p in ["Cargo.toml", "Cargo.lock", "build.rs", "boot.ld", "smm.ld", "src", ".cargo/config.toml"] {
        println!("cargo:rerun-if-changed={}", fw.join(p).display());
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let target_dir = out.ancestors().nth(4).expect("OUT_DIR has the usual layout").join("smmlab-firmware");

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&fw).args(["build", "--release", "--bins", "--target-dir"]).arg(&target_dir);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        let leaks = matches!(k.as_str(), "RUSTFLAGS" | "CARGO_ENCODED_RUSTFLAGS" | "RUSTDOCFLAGS" | "CARGO_ENCODED_RUSTDOCFLAGS" | "CARGO_TARGET_DIR" | "CARGO_BUILD_TARGET_DIR")
            || k.starts_with("CARGO_BUILD_")
            || k.starts_with("CARGO_PROFILE_")
            || k.starts_with("CARGO_TARGET_");
        if leaks {
            cmd.env_remove(&k);
        }
    }
    let st = cmd.status().expect("cannot run cargo to build the firmware");
    assert!(st.success(), "building the built-in firmware (firmware/) failed");

    let bin = target_dir.join("x86_64-unknown-linux-gnu/release");
    let rom = build_rom(&bin.join("boot"), &bin.join("smm"));
    std::fs::write(out.join("smmlab-builtin.rom"), rom).unwrap();
}

struct Segment {
    vaddr: u64,
    paddr: u64,
    data: Vec<u8>,
    memsz: u64,
}

struct Elf {
    entry: u64,
    segments: Vec<Segment>,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// The PT_LOAD segments of a little-endian ELF64 file (ELF spec, "Program Header").
fn read_elf(path: &Path) -> Elf {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(b.len() > 64 && &b[..4] == b"\x7fELF" && b[4] == 2 && b[5] == 1, "{} is not an ELF64 LE file", path.display());
    let entry = u64_at(&b, 0x18);
    let (phoff, phentsize, phnum) = (u64_at(&b, 0x20) as usize, u16_at(&b, 0x36) as usize, u16_at(&b, 0x38) as usize);
    let mut segments = Vec::new();
    for k in 0..phnum {
        let p = phoff + k * phentsize;
        if u32_at(&b, p) != 1 {
            continue;
        }
        let (offset, vaddr, paddr) = (u64_at(&b, p + 8) as usize, u64_at(&b, p + 16), u64_at(&b, p + 24));
        let (filesz, memsz) = (u64_at(&b, p + 32) as usize, u64_at(&b, p + 40));
        segments.push(Segment { vaddr, paddr, data: b[offset..offset + filesz].to_vec(), memsz });
    }
    Elf { entry, segments }
}

fn build_rom(boot: &Path, smm: &Path) -> Vec<u8> {
    let mut rom = vec![0xffu8; ROM_SIZE];

    let smm = read_elf(smm);
    let mut image = Vec::new();
    let mut mem_size = 0u64;
    for s in &smm.segments {
        let off = s.vaddr.checked_sub(SMM_VA).expect("SMM segment below SMM_VA") as usize;
        if image.len() < off + s.data.len() {
            image.resize(off + s.data.len(), 0);
        }
        image[off..off + s.data.len()].copy_from_slice(&s.data);
        mem_size = mem_size.max(off as u64 + s.memsz);
    }
    assert!(SMM_HEADER_SIZE + image.len() <= ROM_SMM_IMAGE_MAX, "SMM image too large: {} bytes", image.len());
    let mut hdr = Vec::new();
    hdr.extend_from_slice(&SMM_IMAGE_MAGIC.to_le_bytes());
    hdr.extend_from_slice(&(image.len() as u32).to_le_bytes());
    hdr.extend_from_slice(&(mem_size as u32).to_le_bytes());
    hdr.extend_from_slice(&0u32.to_le_bytes());
    hdr.extend_from_slice(&smm.entry.to_le_bytes());
    hdr.extend_from_slice(&0u64.to_le_bytes());
    assert_eq!(hdr.len(), SMM_HEADER_SIZE);
    rom[..SMM_HEADER_SIZE].copy_from_slice(&hdr);
    rom[SMM_HEADER_SIZE..SMM_HEADER_SIZE + image.len()].copy_from_slice(&image);

    let boot = read_elf(boot);
    for s in &boot.segments {
        if s.data.is_empty() {
            continue;
        }
        assert!(s.paddr >= ROM_BOOT_IMAGE && s.paddr + s.data.len() as u64 <= ROM_BASE + ROM_SIZE as u64, "boot segment at {:#x} outside the ROM", s.paddr);
        let off = (s.paddr - ROM_BASE) as usize;
        rom[off..off + s.data.len()].copy_from_slice(&s.data);
    }
    rom
}
