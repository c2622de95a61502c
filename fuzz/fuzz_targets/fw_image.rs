//! Arbitrary bytes as a firmware image: parsing must return Ok or Err, never panic, and stay
//! within its decompression and nesting limits. Seeds: `FWIMAGE_SEED_DIR=fuzz/corpus/fw_image
//! cargo test -p smmlab-fwimage --test mutate -- --ignored write_fuzz_seeds`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The bytes as a PCD database too (a PCD driver's RAW section): every token read.
    if let Some(db) = fwimage::pcd::Database::parse(data) {
        for i in 0..db.token_count() {
            let _ = db.value(i);
        }
    }
    if let Ok(image) = fwimage::parse(data) {
        // Exercise the JSON form too.
        let _ = serde_json::to_string(&image.modules);
        if let Some(p) = fwimage::pcd::Pcds::from_image(&image) {
            let _ = p.value(1);
        }
    }
});
