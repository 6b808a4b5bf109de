//! A small deterministic generator for tokens, Message IDs and the random
//! part of retransmission timeouts.
//!
//! Hand-written (SplitMix64, public domain, a dozen lines) rather than one
//! of `rand`'s generators: the caller passes the seed, and a seed must
//! replay the same run of the simulated-network tests for good, while
//! `rand` does not promise that `SmallRng`/`StdRng` keep their algorithm
//! across versions. The tests' link uses the same generator. Tokens are
//! not a secret here (the server talks plain UDP); they only have to be
//! unlikely to collide.

#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// In [0, n) (0 when n is 0); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}
