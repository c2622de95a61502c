//! An optional edge-coverage map of the code the CPU runs in SMM, for the fuzzer
//! (crates/fuzz-smm).
//!
//! Off by default ([`crate::Cpu::smm_edges`] is `None`): `run_block` then pays one check, as
//! for [`crate::smm_blocks`]. When on, every block started in SMM bumps the counter of the
//! edge (previous block, this block) in the map, after AFL's scheme (its technical details,
//! "1) Coverage measurements"): `map[cur ^ prev]++`, then `prev = cur >> 1`, where `cur` is a
//! hash of the block's physical address. The shift keeps A->B apart from B->A and a tight loop
//! A->A off slot 0. The previous block is forgotten at every SMM entry, so an edge never joins
//! two SMIs.

/// The map and the previous block.
pub struct EdgeMap {
    /// Hit counts (wrapping), one per hashed edge; the length is a power of two.
    map: Box<[u8]>,
    /// The previous block's hash, shifted.
    prev: usize,
}

impl EdgeMap {
    /// A map of `size` counters (rounded up to a power of two, at least 2), all zero.
    pub fn new(size: usize) -> Self {
        EdgeMap { map: vec![0; size.max(2).next_power_of_two()].into_boxed_slice(), prev: 0 }
    }

    /// The counters. Their address does not change while the map lives, even when the map
    /// is moved (the fuzzer's observer reads them in place).
    pub fn counters(&mut self) -> &mut [u8] {
        &mut self.map
    }

    /// Called on every SMM entry: the next block starts no edge from the last SMI's.
    pub fn entered(&mut self) {
        self.prev = 0;
    }

    /// Called for every block started in SMM, at physical address `phys`.
    pub fn hit(&mut self, phys: u64) {
        let mask = self.map.len() - 1;
        // Fibonacci hashing: the top bits of the product spread nearby addresses apart.
        let cur = (phys.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize & mask;
        let slot = &mut self.map[cur ^ self.prev];
        *slot = slot.wrapping_add(1);
        self.prev = cur >> 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(blocks: &[u64]) -> Vec<u8> {
        let mut m = EdgeMap::new(1 << 16);
        m.entered();
        for &b in blocks {
            m.hit(b);
        }
        m.counters().to_vec()
    }

    #[test]
    fn the_same_blocks_in_another_order_give_another_map() {
        // A, B, C and A, C, B run the same blocks once each (a block map cannot tell them
        // apart) but over different edges.
        let (a, b, c) = (0x7f0_1000, 0x7f0_1040, 0x7f0_2000);
        let abc = run(&[a, b, c]);
        let acb = run(&[a, c, b]);
        assert_ne!(abc, acb);
        assert_eq!(abc.iter().map(|&n| n as u32).sum::<u32>(), 3);
        assert_eq!(acb.iter().map(|&n| n as u32).sum::<u32>(), 3);
        assert_eq!(run(&[a, b, c]), abc, "deterministic");
    }

    #[test]
    fn an_edge_and_its_reverse_are_apart() {
        let (a, b) = (0x7f0_1000, 0x7f0_1040);
        assert_ne!(run(&[a, b]), run(&[b, a]));
    }

    #[test]
    fn an_smm_entry_starts_afresh() {
        let (a, b) = (0x7f0_1000, 0x7f0_1040);
        let mut m = EdgeMap::new(1 << 16);
        m.hit(a);
        m.entered();
        m.hit(b);
        assert_eq!(m.counters().to_vec(), run(&[b]).iter().zip(run(&[a])).map(|(x, y)| x + y).collect::<Vec<_>>());
    }
}
