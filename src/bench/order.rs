//! The order in which a scenario visits (or inserts) its devices:
//! sequential, or scattered over the whole name space. Sequential order
//! flatters a B-tree (neighbouring keys share pages), so every benchmark
//! that touches devices also runs scattered.

/// How a benchmark walks its devices `0..n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// bench-0000000, bench-0000001, …: neighbours in the B-tree.
    Sequential,
    /// A fixed permutation: step `i` visits device `i·m mod n` with `m`
    /// the integer nearest `0.618·n` coprime to `n` (a golden-ratio
    /// stride), so consecutive steps land about 0.38·n or 0.62·n names
    /// apart and any run of steps is spread evenly over the whole range.
    Scattered,
}

impl Order {
    pub fn name(self) -> &'static str {
        match self {
            Order::Sequential => "sequential",
            Order::Scattered => "scattered",
        }
    }

    /// The device visited at step `i` (taken modulo `n`) of `n` devices.
    pub fn index(self, i: usize, n: usize) -> usize {
        let n = n.max(1);
        let i = i % n;
        match self {
            Order::Sequential => i,
            Order::Scattered => (i as u128 * stride(n) as u128 % n as u128) as usize,
        }
    }
}

/// The multiplier of the scattered permutation of `0..n`: coprime to `n`,
/// so `i ↦ i·m mod n` is a bijection.
fn stride(n: usize) -> usize {
    if n <= 2 {
        return 1;
    }
    let mut m = ((n as f64) * 0.618_033_988_75).round() as usize;
    while gcd(m, n) != 1 {
        m += 1;
    }
    m
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scattered_is_a_permutation_that_jumps_far() {
        for n in [1, 2, 3, 10, 1_000, 10_000, 65_536, 200_000] {
            let mut seen = vec![false; n];
            for i in 0..n {
                let j = Order::Scattered.index(i, n);
                assert!(!seen[j], "{n}: {j} twice");
                seen[j] = true;
            }
        }
        // Consecutive steps are far apart, not a small stride.
        let n = 1_000_000;
        for i in 0..1_000 {
            let a = Order::Scattered.index(i, n) as i64;
            let b = Order::Scattered.index(i + 1, n) as i64;
            let gap = (a - b)
                .rem_euclid(n as i64)
                .min((b - a).rem_euclid(n as i64));
            assert!(gap > n as i64 / 4, "step {i}: {a} -> {b}");
        }
        assert_eq!(Order::Sequential.index(12, 10), 2);
    }
}
