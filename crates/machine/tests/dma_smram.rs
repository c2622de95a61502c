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

/// AHCI DMA overwrites code that already ran: the CPU must run the new bytes (the board
/// reports the written range, the machine drops the code decoded from it).
#[test]
fn ahci_dma_overwritten_code_runs_its_new_bytes_on_q35() {
    let config = MachineConfig { memory_mib: MIB, instructions_per_second: 1_000_000_000, ..Default::default() };
    let mut m = Machine::new(BoardKind::Q35, config, assemble("ahci_code", &[])).unwrap();
    let mut disk = vec![0u8; 8 * 512];
    disk[..3].copy_from_slice(&[0xb0, 0x02, 0xc3]); // mov al, 2; ret
    m.attach_disk(machine::devices::disk::Disk::from_bytes(disk).unwrap()).unwrap();
    let s = m.run(1_000_000);
    assert_eq!(s.exit, ExitReason::DebugExit, "{s:?}");
    assert_eq!(s.exit_code, 0, "1 first call, 2 the command failed, 3 the stale code ran");
}

/// Bus-master traffic driven through the board as the CPU would drive it: random traffic from
/// every device mixed with CPU traffic outside SMM against closed or locked SMRAM, and the
/// open-TSEG watch.
mod through_the_board {
    use super::*;
    use cpu::Bus;
    use machine::board::Board;
    use machine::devices::disk::Disk;
    use proptest::prelude::*;

    const ABAR: u64 = 0xfebf_0000;
    const P0: u64 = ABAR + 0x100;
    const SECTORS: usize = 64;
    /// Fill byte of SMRAM at `addr`.
    fn secret(addr: u64) -> u8 {
        (addr.wrapping_mul(0x9e37_79b9) >> 13) as u8 | 1
    }

    /// Guest physical addresses an attacker would aim at: SMRAM windows and their edges, HSEG,
    /// and ordinary RAM (where descriptors and command lists live).
    fn addr() -> impl Strategy<Value = u64> {
        prop_oneof![
            0x9_f000u64..0xc_1000,
            (TSEG - 0x2000)..(TSEG + 0x10_1000),
            0xfed9_f000u64..0xfedc_1000,
            0x1_0000u64..0x9_0000,
        ]
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// A CPU write outside SMM.
        Write { addr: u64, size: u8, value: u64 },
        /// A CPU read outside SMM.
        Read { addr: u64, size: u8 },
        /// A host-bridge configuration byte (SMRAM, ESMRAMC, PAM), only once SMRAM is locked.
        Config { reg: u8, value: u8 },
        /// A fw_cfg DMA descriptor written at `at` (by the CPU) and started.
        FwCfg { at: u64, control: u32, length: u32, address: u64 },
        /// An AHCI command (q35): command list, table and one or two PRDs at these addresses.
        Ahci { clb: u64, ctba: u64, write: bool, lba: u32, count: u8, prds: Vec<(u64, u32)> },
        /// An IDE PIO sector read (pc) stored by the CPU at `to`, or written from `to`.
        Ide { lba: u8, to: u64, write: bool },
    }

    fn step(keys: Vec<u16>) -> impl Strategy<Value = Step> {
        let size = prop_oneof![Just(1u8), Just(2), Just(4), Just(8)];
        let control = (proptest::sample::select(keys), prop_oneof![Just(0x02u32), Just(0x10), Just(0x04), 0u32..0x20], any::<bool>())
            .prop_map(|(k, op, select)| (k as u32) << 16 | op | if select { 0x08 } else { 0 });
        let length = prop_oneof![0u32..0x40, 0x40u32..0x3000, Just(0x2_0000)];
        prop_oneof![
            (addr(), size.clone(), any::<u64>()).prop_map(|(addr, size, value)| Step::Write { addr, size, value }),
            (addr(), size).prop_map(|(addr, size)| Step::Read { addr, size }),
            (prop_oneof![Just(0x72u8), Just(0x9d), Just(0x9e), 0x59u8..0x60, 0x90u8..0x97], any::<u8>()).prop_map(|(reg, value)| Step::Config { reg, value }),
            (addr(), control, length, addr()).prop_map(|(at, control, length, address)| Step::FwCfg { at, control, length, address }),
            (addr(), addr(), any::<bool>(), 0u32..(SECTORS as u32 + 2), 1u8..5, proptest::collection::vec((addr(), 1u32..0x1000), 1..3))
                .prop_map(|(clb, ctba, write, lba, count, prds)| Step::Ahci { clb: clb & !0x3ff, ctba: ctba & !0x7f, write, lba, count, prds }),
            (0u8..(SECTORS as u8 + 2), addr(), any::<bool>()).prop_map(|(lba, to, write)| Step::Ide { lba, to, write }),
        ]
    }

    fn wr(b: &mut dyn Bus, addr: u64, size: u8, value: u64) {
        b.write(Access { addr, size, kind: AccessKind::Write, smm: false }, value);
    }
    fn rd(b: &mut dyn Bus, addr: u64, size: u8) -> u64 {
        b.read(Access { addr, size, kind: AccessKind::Read, smm: false })
    }
    fn out(b: &mut dyn Bus, port: u16, size: u8, value: u32) {
        b.io_out(Access { addr: port as u64, size, kind: AccessKind::IoOut, smm: false }, value);
    }
    fn inp(b: &mut dyn Bus, port: u16, size: u8) -> u32 {
        b.io_in(Access { addr: port as u64, size, kind: AccessKind::IoIn, smm: false })
    }
    fn cfg(b: &mut dyn Bus, dev: u32, func: u32, reg: u8, size: u8, value: u32) {
        out(b, 0xcf8, 4, 0x8000_0000 | dev << 11 | func << 8 | (reg as u32 & 0xfc));
        out(b, 0xcfc + (reg as u16 & 3), size, value);
    }

    /// RAM bytes straight from the board (no decoding).
    fn ram(m: &Machine, r: std::ops::Range<u64>) -> Vec<u8> {
        match &m.board {
            Board::Q35(p) => p.ram.to_vec(r),
            Board::Pc(p) => p.ram.to_vec(r),
            Board::Minimal(_) => unreachable!(),
        }
    }
    fn fill(m: &mut Machine, r: std::ops::Range<u64>) {
        let bytes: Vec<u8> = r.clone().map(secret).collect();
        match &mut m.board {
            Board::Q35(p) => p.ram.write(r.start, &bytes),
            Board::Pc(p) => p.ram.write(r.start, &bytes),
            Board::Minimal(_) => unreachable!(),
        };
    }

    /// A board with SMRAM filled, then closed (`lock` = false) or locked, a disk, and (q35)
    /// AHCI port 0 running. Returns the SMRAM ranges.
    fn setup(kind: BoardKind, lock: bool) -> (Machine, Vec<std::ops::Range<u64>>) {
        let config = MachineConfig { memory_mib: MIB, ..Default::default() };
        let mut m = Machine::new(kind, config, vec![0xf4; 0x10000]).unwrap();
        let disk: Vec<u8> = (0..SECTORS * 512).map(|i| (i * 31 + 7) as u8).collect();
        m.attach_disk(Disk::from_bytes(disk).unwrap()).unwrap();
        let q35 = kind == BoardKind::Q35;
        let mut smram = vec![machine::smram::AB_SEG];
        if q35 {
            smram.push(TSEG..MIB << 20);
        }
        for r in &smram {
            fill(&mut m, r.clone());
        }
        let b = m.board.bus();
        if q35 {
            cfg(b, 0, 0, 0x9e, 1, 0x01); // T_EN, 1 MiB
            cfg(b, 0, 0, 0x9d, 1, if lock { 0x1a } else { 0x0a });
            cfg(b, 0x1f, 2, 0x24, 4, ABAR as u32);
            cfg(b, 0x1f, 2, 0x04, 2, 0x6); // memory space, bus master
            wr(b, P0 + 0x08, 4, 0x7_0000); // FB
            wr(b, P0 + 0x30, 4, 0xffff_ffff);
            wr(b, P0 + 0x18, 4, 0x11); // FRE | ST
        } else {
            cfg(b, 0, 0, 0x72, 1, if lock { 0x1a } else { 0x0a });
            cfg(b, 1, 1, 0x04, 2, 1); // IOSE
            cfg(b, 1, 1, 0x40, 4, 0x8000_8000); // IDE decode
        }
        let c = m.board.smram_config().unwrap();
        assert!(c.g_smrame && !c.open() && c.d_lck == lock && (!q35 || c.tseg() == Some(TSEG..MIB << 20)), "{c:?}");
        (m, smram)
    }

    fn run_step(b: &mut dyn Bus, q35: bool, lock: bool, s: &Step) {
        match s.clone() {
            Step::Write { addr, size, value } => wr(b, addr, size, value),
            Step::Read { addr, size } => {
                rd(b, addr, size);
            }
            Step::Config { reg, value } => {
                // Unlocked, the guest may legitimately reopen or disable SMRAM: not this property.
                let smram_reg = matches!(reg, 0x72 | 0x9d | 0x9e);
                if lock || !smram_reg {
                    cfg(b, 0, 0, reg, 1, value as u32);
                }
            }
            Step::FwCfg { at, control, length, address } => {
                wr(b, at, 4, control.to_be() as u64);
                wr(b, at + 4, 4, length.to_be() as u64);
                wr(b, at + 8, 8, address.to_be());
                out(b, 0x514, 4, 0);
                out(b, 0x518, 4, (at as u32).to_be());
            }
            Step::Ahci { clb, ctba, write, lba, count, prds } if q35 => {
                wr(b, P0 + 0x18, 4, 0x10); // stop: clears PxCI and a halted port
                wr(b, P0, 4, clb);
                wr(b, P0 + 0x18, 4, 0x11);
                wr(b, clb, 4, 5 | (write as u64) << 6 | (prds.len() as u64) << 16);
                wr(b, clb + 4, 4, 0);
                wr(b, clb + 8, 4, ctba);
                wr(b, clb + 12, 4, 0);
                let cmd: u64 = if write { 0x35 } else { 0x25 };
                wr(b, ctba, 4, 0x0000_8027 | cmd << 16);
                wr(b, ctba + 4, 4, 0x4000_0000 | lba as u64);
                wr(b, ctba + 8, 4, 0);
                wr(b, ctba + 12, 4, count as u64);
                for (k, (a, n)) in prds.iter().enumerate() {
                    let e = ctba + 0x80 + 16 * k as u64;
                    wr(b, e, 8, *a);
                    wr(b, e + 12, 4, (*n - 1) as u64);
                }
                wr(b, P0 + 0x10, 4, 0xffff_ffff);
                wr(b, P0 + 0x38, 4, 1);
            }
            Step::Ide { lba, to, write } if !q35 => {
                out(b, 0x1f2, 1, 1);
                out(b, 0x1f3, 1, lba as u32);
                out(b, 0x1f4, 1, 0);
                out(b, 0x1f5, 1, 0);
                out(b, 0x1f6, 1, 0xe0);
                out(b, 0x1f7, 1, if write { 0x30 } else { 0x20 });
                for k in 0..256 {
                    let a = to + 2 * k;
                    if write {
                        let v = rd(b, a, 2) as u32;
                        out(b, 0x1f0, 2, v);
                    } else {
                        let v = inp(b, 0x1f0, 2) as u64;
                        wr(b, a, 2, v);
                    }
                }
            }
            Step::Ahci { .. } | Step::Ide { .. } => {}
        }
    }

    fn property(kind: BoardKind, lock: bool, steps: &[Step]) -> Result<(), TestCaseError> {
        let (mut m, smram) = setup(kind, lock);
        let q35 = kind == BoardKind::Q35;
        for s in steps {
            run_step(m.board.bus(), q35, lock, s);
            prop_assert!(!m.board.smram_config().unwrap().open());
        }
        for r in &smram {
            let now = ram(&m, r.clone());
            if let Some(i) = now.iter().zip(r.clone()).position(|(&b, a)| b != secret(a)) {
                return Err(TestCaseError::fail(format!("SMRAM changed at {:#x}", r.start + i as u64)));
            }
        }
        Ok(())
    }

    fn keys(kind: BoardKind) -> Vec<u16> {
        let (mut m, _) = setup(kind, false);
        let mut k = vec![0, 1, 0x19, 0x20, 0x7fff];
        if kind == BoardKind::Q35 {
            k.push(fw_cfg_key(&mut m, "etc/smi/requested-features"));
        }
        k
    }

    /// A DMA write into TSEG while firmware has it open (T_EN cleared after it was enabled)
    /// is reported as a write from outside SMM, as a CPU write there is.
    #[test]
    fn dma_into_an_open_tseg_is_reported_like_a_cpu_write() {
        let config = MachineConfig { memory_mib: MIB, ..Default::default() };
        let mut m = Machine::new(BoardKind::Q35, config, vec![0xf4; 0x10000]).unwrap();
        let b = m.board.bus();
        cfg(b, 0, 0, 0x9e, 1, 0x01);
        cfg(b, 0, 0, 0x9d, 1, 0x0a);
        cfg(b, 0, 0, 0x9e, 1, 0x00); // open TSEG, as OVMF does to load its SMM core
        for (k, v) in [0x0000_000au32, 4, 0].iter().enumerate() {
            wr(b, 0x1000 + 4 * k as u64, 4, v.to_be() as u64);
        }
        wr(b, 0x100c, 4, ((TSEG + 0x2000) as u32).to_be() as u64);
        out(b, 0x514, 4, 0);
        out(b, 0x518, 4, 0x1000u32.to_be());
        assert_eq!(ram(&m, TSEG + 0x2000..TSEG + 0x2004), b"QEMU", "open TSEG is plain RAM for DMA");
        let ev = m.drain_events();
        assert!(
            ev.iter().any(|e| matches!(e, machine::events::MachineEvent::SmramWrittenOutsideSmm { addr, .. } if *addr == TSEG + 0x2000)),
            "{ev:?}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn dma_and_cpu_traffic_never_change_closed_or_locked_smram_on_q35(
            lock in any::<bool>(),
            steps in proptest::collection::vec(step(keys(BoardKind::Q35)), 1..40),
        ) {
            property(BoardKind::Q35, lock, &steps)?;
        }

        #[test]
        fn dma_and_cpu_traffic_never_change_closed_or_locked_smram_on_pc(
            lock in any::<bool>(),
            steps in proptest::collection::vec(step(keys(BoardKind::Pc)), 1..40),
        ) {
            property(BoardKind::Pc, lock, &steps)?;
        }
    }
}
