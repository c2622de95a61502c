//! Arbitrary bytes as guest code, in every mode, must never panic the CPU.
#![no_main]

#[path = "../../crates/cpu/tests/fuzz_support/mod.rs"]
mod fuzz_support;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz_support::run(data, 20_000);
});
