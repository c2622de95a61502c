//! Arbitrary bytes as a firmware image: parsing must return Ok or Err, never panic, and stay
//! within its decompression and nesting limits. Seeds: `FWIMAGE_SEED_DIR=fuzz/corpus/fw_image
//! cargo test -p smmlab-fwimage --test mutate -- --ignored write_fuzz_seeds`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(image) = fwimage::parse(data) {
        // Exercise the JSON form too.
        let _ = serde_json::to_string(&image.modules);
    }
});
