//! Arbitrary bytes as guest code, in every mode and CPU model, never panic the emulator.
//! The same harness backs the `guest_bytes` cargo-fuzz target in fuzz/.

mod fuzz_support;

use rand::{Rng, SeedableRng};

#[test]
fn random_guest_bytes_never_panic_in_any_mode() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_f022);
    let mut retired = 0u64;
    for case in 0..3000u32 {
        let len = rng.gen_range(1..400);
        let mut data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        data[0] = case as u8;
        let cpu = fuzz_support::run(&data, 3000);
        retired += cpu.icount;
    }
    // The harness really executes guest code (not just faulting at the first byte).
    assert!(retired > 20_000, "only {retired} instructions retired");
}
