//! Deterministic robustness test: thousands of mutated images (byte flips, truncations,
//! size-field corruption) must parse to `Ok` or `Err`, never panic. The fuzz target
//! `fuzz/fuzz_targets/fw_image.rs` explores the same ground without a fixed seed.

mod common;

use common::{ovmf, OVMF_SECBOOT};
use fwimage::section::{sections, GuidDefined};
use fwimage::{decompress, Image};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Offsets worth corrupting: volume headers, file headers and first-level section headers.
fn header_offsets(img: &Image, data: &[u8], decompressed: bool) -> Vec<usize> {
    let mut out: Vec<usize> = img
        .volumes
        .iter()
        .filter(|v| v.in_decompressed == decompressed)
        .map(|v| v.offset)
        .collect();
    for m in img
        .modules
        .iter()
        .filter(|m| m.in_decompressed == decompressed)
    {
        out.push(m.offset);
        let end = (m.offset + m.size as usize).min(data.len());
        if let Some(body) = data.get(m.offset + 24..end) {
            if let Ok(s) = sections(body) {
                out.extend(s.iter().map(|s| m.offset + 24 + s.offset));
            }
        }
    }
    out
}

/// Applies one random mutation.
fn mutate(rng: &mut StdRng, data: &[u8], headers: &[usize]) -> Vec<u8> {
    let mut d = data.to_vec();
    match rng.gen_range(0..6) {
        // Random byte flips anywhere.
        0 => {
            for _ in 0..rng.gen_range(1..16) {
                let i = rng.gen_range(0..d.len());
                d[i] ^= 1 << rng.gen_range(0..8);
            }
        }
        // Truncation.
        1 => d.truncate(rng.gen_range(0..d.len())),
        // A size or length field in a header set to a random, huge, zero or small value.
        2 | 3 if !headers.is_empty() => {
            let h = headers[rng.gen_range(0..headers.len())];
            // Section size (0..3), file size (20..23), FvLength (32..40), HeaderLength (48),
            // ExtHeaderOffset (52), block map (56..64), GUID-section DataOffset (20).
            let field = [0usize, 1, 2, 20, 21, 22, 32, 36, 48, 52, 56, 60, 4][rng.gen_range(0..13)];
            let value: u32 = match rng.gen_range(0..4) {
                0 => 0,
                1 => 0xffff_ffff,
                2 => rng.gen_range(0..64),
                _ => rng.gen(),
            };
            for (k, b) in value.to_le_bytes().iter().enumerate() {
                if let Some(x) = d.get_mut(h + field + k) {
                    *x = *b;
                }
            }
        }
        // Random bytes written over a header.
        4 if !headers.is_empty() => {
            let h = headers[rng.gen_range(0..headers.len())] + rng.gen_range(0..32);
            for i in h..(h + rng.gen_range(1..8)).min(d.len()) {
                d[i] = rng.gen();
            }
        }
        // Duplicate a chunk (shifts everything after it).
        _ => {
            let a = rng.gen_range(0..d.len());
            let n = rng.gen_range(1..64).min(d.len() - a);
            let chunk = d[a..a + n].to_vec();
            let at = rng.gen_range(0..d.len());
            d.splice(at..at, chunk);
        }
    }
    d
}

fn run(name: &str, data: &[u8], cases: usize, seed: u64) -> (usize, usize) {
    let img = fwimage::parse(data).unwrap_or_else(|e| panic!("{name}: unmutated input fails: {e}"));
    let headers = header_offsets(&img, data, false);
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut ok, mut err) = (0, 0);
    for case in 0..cases {
        let m = mutate(&mut rng, data, &headers);
        let r = std::panic::catch_unwind(|| fwimage::parse(&m).map(|i| i.modules.len()));
        match r {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => {
                assert!(!e.to_string().is_empty());
                err += 1
            }
            Err(_) => panic!("{name}: case {case} (seed {seed}) panicked"),
        }
    }
    eprintln!("{name}: {cases} cases, {ok} Ok, {err} Err");
    (ok, err)
}

/// The decompressed data of OVMF's compressed volume (PEIFV + DXEFV), without the cost of
/// decompressing it again for every case.
fn ovmf_inner() -> Vec<u8> {
    let data = ovmf(OVMF_SECBOOT);
    let img = fwimage::parse(&data).unwrap();
    let f = &img.modules[0];
    let body = &data[f.offset + 24..f.offset + f.size as usize];
    let s = sections(body).unwrap();
    let whole = &body[s[0].offset..s[0].offset + s[0].header.size];
    let g = GuidDefined::parse(whole, &s[0].header).unwrap();
    decompress::lzma(&whole[g.data_offset..], 64 << 20).unwrap()
}

#[test]
fn mutated_decompressed_ovmf_volumes_never_panic() {
    let inner = ovmf_inner();
    let (ok, err) = run("OVMF PEIFV+DXEFV", &inner, 1500, 0x5eed_0001);
    assert!(ok > 0 && err > 0);
}

#[test]
fn mutated_ovmf_sec_volume_never_panics() {
    let data = ovmf(OVMF_SECBOOT);
    let sec = &data[0x348000..];
    run("OVMF SECFV", sec, 1500, 0x5eed_0002);
}

#[test]
fn mutated_synthetic_lzma_image_never_panics() {
    run("synthetic", &common::synthetic(), 2000, 0x5eed_0003);
}

#[test]
fn mutated_whole_ovmf_image_never_panics() {
    // Each case may decompress the 12 MiB volume, so fewer of them.
    run("OVMF whole image", &ovmf(OVMF_SECBOOT), 40, 0x5eed_0004);
}

#[test]
fn limits_are_enforced() {
    let data = common::synthetic();
    let tight = fwimage::Limits {
        max_decompressed: 64,
        ..Default::default()
    };
    let e = fwimage::parse_with_limits(&data, tight).unwrap_err();
    assert!(format!("{e:?}").contains("DecompressedTooLarge"), "{e:?}");
    let shallow = fwimage::Limits {
        max_depth: 2,
        ..Default::default()
    };
    let e = fwimage::parse_with_limits(&data, shallow).unwrap_err();
    assert!(format!("{e:?}").contains("TooDeep"), "{e:?}");
}

/// Writes seed inputs for the cargo-fuzz target `fw_image` into `$FWIMAGE_SEED_DIR`
/// (`cargo test -p smmlab-fwimage --test mutate -- --ignored write_fuzz_seeds`).
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let Ok(dir) = std::env::var("FWIMAGE_SEED_DIR") else {
        return;
    };
    std::fs::create_dir_all(&dir).unwrap();
    use common::*;
    // A real PE header from OVMF: the first KiB of DxeCore's PE32 section.
    let inner = ovmf_inner();
    let pos = inner.windows(2).position(|w| w == b"MZ").unwrap();
    let pe = &inner[pos..pos + 1024];
    let plain = volume(&[
        file(
            [5; 16],
            0x07,
            &stream(&[section(0x13, &[0x06, 0x08]), section(0x10, pe), ui("Real")]),
        ),
        file(
            [6; 16],
            0x0b,
            &stream(&[section(0x17, &volume(&[file([7; 16], 0x0d, &ui("Core"))]))]),
        ),
        file([8; 16], 0xf0, &[0xff; 16]),
    ]);
    for (name, data) in [("synthetic.fd", synthetic()), ("plain.fd", plain)] {
        std::fs::write(std::path::Path::new(&dir).join(name), data).unwrap();
    }
}
