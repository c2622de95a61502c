//! Deterministic robustness test: mutated SMM drivers (byte flips in the headers, truncations,
//! corrupted size and relocation fields) either fail to load with an error or load and run
//! with whatever outcome the guest code has, a returned status or a fault; the runner never
//! panics. The fuzz target `fuzz/fuzz_targets/smm_module.rs` explores the same ground without a
//! fixed seed.

use module_runner::{loader, CallResult, Module, ModuleKind, Runner};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

fn seed_image() -> Option<Vec<u8>> {
    let dir = testkit::smm_drivers(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("smm-drivers-hostile"))?;
    Some(std::fs::read(Path::new(dir).join("comm_pointer.efi")).expect("built"))
}

#[test]
fn mutated_drivers_load_with_an_error_or_run_without_a_panic() {
    let Some(good) = seed_image() else { return };
    assert!(loader::load(&good, 0x7f0_0000).is_ok());
    let pe = u32::from_le_bytes(good[0x3c..0x40].try_into().unwrap()) as usize;
    let mut rng = StdRng::seed_from_u64(0x5eed_0014);
    let (mut refused, mut ran, mut faulted) = (0, 0, 0);
    for i in 0..300 {
        let mut img = good.clone();
        match i % 4 {
            // A byte of the headers (DOS, COFF, optional header, section table).
            0 | 1 => {
                for _ in 0..rng.gen_range(1..4) {
                    let at = rng.gen_range(0..(pe + 0x200).min(img.len()));
                    img[at] = rng.gen();
                }
            }
            // Truncated.
            2 => img.truncate(rng.gen_range(0..good.len())),
            // A 32-bit field of the optional header set to an extreme (SizeOfImage,
            // SizeOfHeaders, AddressOfEntryPoint, the relocation directory...).
            _ => {
                let at = pe + 24 + 4 * rng.gen_range(0..60usize);
                let v: u32 = [0, 1, 0x7fff_ffff, 0xffff_ffff, rng.gen()][rng.gen_range(0..5)];
                if at + 4 <= img.len() {
                    img[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        let m = Module { name: format!("mutant{i}"), guid: None, pe: img, kind: ModuleKind::DxeSmmDriver, pcd: None };
        match Runner::new(cpu::CpuModel::default(), &m) {
            Err(e) => {
                assert!(e.to_string().starts_with(&format!("mutant{i}")), "the error names the module: {e}");
                refused += 1;
            }
            Ok(mut r) => match r.run_entry() {
                CallResult::Fault { .. } => faulted += 1,
                _ => ran += 1,
            },
        }
    }
    // Each kind of outcome happened: the test reaches the loader's checks and the runner.
    assert!(refused > 0 && ran > 0, "refused {refused}, ran {ran}, faulted {faulted}");
}
