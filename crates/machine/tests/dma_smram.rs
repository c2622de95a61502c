//! Bus masters against SMRAM, end to end: ROMs assembled with nasm at test time aim fw_cfg DMA
//! at closed and locked SMRAM from outside SMM on `pc` and `q35`; SMRAM must stay as the SMI
//! handler filled it, ordinary RAM transfers must still work, and code a DMA overwrote must run
//! its new bytes.

use cpu::{Access, AccessKind};
use machine::clock::Ticks;
use machine::devices::PortDevice;
use machine::{BoardKind, ExitReason, Machine, MachineConfig};
use std::path::Path;
use std::process::Command;

const MIB: u64 = 64;
/// q35's 1 MiB TSEG below the top of RAM.
const TSEG: u64 = (MIB << 20) - (1 << 20);
/// What the ROM's SMI handler fills SMRAM with.
const FILL: u8 = 0xa5;
/// The fw_cfg file whose bytes replace the code: mov al, 2; retf.
const CODE_FILE: &str = "smmlab-test/code";

/// Assembles tests/roms/`name`.asm with `defines` (nasm is installed by scripts/test.sh).
fn assemble(name: &str, defines: &[String]) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/roms");
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = std::env::temp_dir().join(format!("smmlab-dma-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let out = tmp.join(format!("{name}-{seq}.bin"));
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

/// The key of fw_cfg file `name`, read from the file directory (key 0x19) as firmware does.
fn fw_cfg_key(m: &mut Machine, name: &str) -> u16 {
    let f = &mut m.board.legacy().expect("a board with fw_cfg").fw_cfg;
    f.write(0, 2, 0x19, Ticks(0));
    let mut next = |n: usize| -> Vec<u8> { (0..n).map(|_| f.read(1, 1, Ticks(0)) as u8).collect() };
    let count = u32::from_be_bytes(next(4).try_into().unwrap());
    for _ in 0..count {
        let e = next(64);
        if e[8..].split(|&b| b == 0).next() == Some(name.as_bytes()) {
            return u16::from_be_bytes([e[4], e[5]]);
        }
    }
    panic!("no fw_cfg file {name}");
}

/// Every SMRAM byte as SMM sees it (data accesses: D_CLS stays 0).
fn smram_bytes(m: &mut Machine, r: std::ops::Range<u64>) -> Vec<u8> {
    let bus = m.board.bus();
    r.step_by(8).flat_map(|a| bus.read(Access { addr: a, size: 8, kind: AccessKind::Read, smm: true }).to_le_bytes()).collect()
}

fn run_fw_cfg_rom(kind: BoardKind) -> (Machine, machine::RunSummary) {
    let config = MachineConfig { memory_mib: MIB, instructions_per_second: 1_000_000_000, ..Default::default() };
    // The ROM is assembled once the keys are known: build a machine to read them first.
    let mut probe = Machine::new(kind, config.clone(), vec![0xf4; 0x10000]).unwrap();
    probe.board.legacy().unwrap().fw_cfg.add_file(CODE_FILE, vec![0xb0, 0x02, 0xcb]);
    let code = fw_cfg_key(&mut probe, CODE_FILE);
    let mut defines = vec![format!("-DCODE={code:#x}")];
    if kind == BoardKind::Q35 {
        let req = fw_cfg_key(&mut probe, "etc/smi/requested-features");
        defines.extend(["-DQ35".to_string(), format!("-DTSEG={TSEG:#x}"), format!("-DREQ={req:#x}")]);
    } else {
        defines.push("-DREQ=1".into()); // FW_CFG_ID: read-only
    }
    let mut m = Machine::new(kind, config, assemble("fw_cfg_dma_smram", &defines)).unwrap();
    m.board.legacy().unwrap().fw_cfg.add_file(CODE_FILE, vec![0xb0, 0x02, 0xcb]);
    let s = m.run(20_000_000);
    (m, s)
}

fn check(kind: BoardKind) {
    let (mut m, s) = run_fw_cfg_rom(kind);
    assert_eq!(s.exit, ExitReason::DebugExit, "{s:?}");
    let why = [
        (1, "the A/B segment changed"),
        (2, "TSEG changed"),
        (4, "a 4-byte read into RAM"),
        (8, "a long read into RAM (zero-fill)"),
        (16, "the write/read-back"),
        (32, "the DMA-overwritten code did not run"),
        (64, "the SMI handler did not run twice"),
    ];
    let failed: Vec<&str> = why.iter().filter(|(b, _)| s.exit_code & b != 0).map(|(_, w)| *w).collect();
    eprintln!("exit code {:#x}: {failed:?}", s.exit_code);
    let c = m.board.smram_config().unwrap();
    assert!(c.g_smrame && c.d_lck && !c.open(), "SMRAM closed and locked: {c:?}");
    // Where each attack aimed, then all of SMRAM.
    let mut bases = vec![("A/B segment", 0xa_0000u64)];
    if kind == BoardKind::Q35 {
        assert_eq!(c.tseg(), Some(TSEG..MIB << 20));
        bases.push(("TSEG", TSEG));
    }
    let mut changed = Vec::new();
    for &(window, base) in &bases {
        for (attack, off, len) in [("(a) the signature", 0, 4), ("(b) the zero-fill", 0x1000, 0x1000), ("(c) the chosen bytes", 0x3000, 8)] {
            let got = smram_bytes(&mut m, base + off..base + off + len);
            if got.iter().any(|&b| b != FILL) {
                changed.push(format!("{attack} landed in {window} at {:#x}: {:02x?}", base + off, &got[..got.len().min(8)]));
            }
        }
    }
    assert!(changed.is_empty(), "{changed:#?}\nexit code {:#x}: {failed:?}", s.exit_code);
    assert!(failed.is_empty(), "exit code {:#x}: {failed:?}", s.exit_code);
    let ab = smram_bytes(&mut m, 0xa_0000..0xc_0000);
    assert!(ab.iter().all(|&b| b == FILL), "A/B segment changed at {:#x}", 0xa_0000 + ab.iter().position(|&b| b != FILL).unwrap());
    if kind == BoardKind::Q35 {
        let t = smram_bytes(&mut m, TSEG..MIB << 20);
        assert!(t.iter().all(|&b| b == FILL), "TSEG changed at {:#x}", TSEG + t.iter().position(|&b| b != FILL).unwrap() as u64);
    }
}

#[test]
fn fw_cfg_dma_cannot_write_locked_smram_and_overwritten_code_runs_on_q35() {
    check(BoardKind::Q35);
}

#[test]
fn fw_cfg_dma_cannot_write_locked_smram_and_overwritten_code_runs_on_pc() {
    check(BoardKind::Pc);
}
