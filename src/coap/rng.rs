//! A small deterministic generator for tokens, Message IDs and the random
//! part of retransmission timeouts.
//!
//! Hand-written (SplitMix64, public domain, a dozen lines) rather than the
//! `rand` crate so the endpoint never seeds itself from the OS: the caller
//! passes the seed, which makes every run of the simulated-network tests
//! reproducible from one number. Tokens are not a secret here (the server
//! talks plain UDP); they only have to be unlikely to collide.

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
}
