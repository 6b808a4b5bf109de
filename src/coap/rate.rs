//! Per-source token buckets (issue 11 item 4, RFC 7252 §11.3): how many
//! datagrams one peer may make us handle per second. Sans-IO: the caller
//! passes `now`.
//!
//! Bounded: at most `capacity` sources are tracked. When the table is
//! full, buckets that have refilled (idle sources) are dropped; if none
//! has, the table is cleared. Clearing fails open on purpose: a spoofed
//! flood of many sources must not lock out real devices that would
//! otherwise find no free slot.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

#[derive(Debug)]
pub struct RateLimiter<K> {
    per_s: f64,
    burst: f64,
    capacity: usize,
    buckets: HashMap<K, (f64, Instant)>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `per_s` 0 means no limit.
    pub fn new(per_s: f64, burst: u32, capacity: usize) -> RateLimiter<K> {
        RateLimiter {
            per_s,
            burst: f64::from(burst.max(1)),
            capacity: capacity.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `key` at `now`; false when its bucket is empty.
    pub fn admit(&mut self, now: Instant, key: &K) -> bool {
        if self.per_s <= 0.0 {
            return true;
        }
        if let Some((tokens, at)) = self.buckets.get_mut(key) {
            let elapsed = now.saturating_duration_since(*at).as_secs_f64();
            *tokens = (*tokens + elapsed * self.per_s).min(self.burst);
            *at = now;
            if *tokens >= 1.0 {
                *tokens -= 1.0;
                return true;
            }
            return false;
        }
        if self.buckets.len() >= self.capacity {
            let (per_s, burst) = (self.per_s, self.burst);
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * per_s < burst
            });
            if self.buckets.len() >= self.capacity {
                self.buckets.clear();
            }
        }
        self.buckets.insert(key.clone(), (self.burst - 1.0, now));
        true
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills_and_stays_bounded() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(10.0, 5, 3);
        for _ in 0..5 {
            assert!(r.admit(t0, &1));
        }
        assert!(!r.admit(t0, &1), "burst used up");
        assert!(r.admit(t0, &2), "another source has its own bucket");
        assert!(
            r.admit(t0 + Duration::from_millis(100), &1),
            "one token back"
        );
        assert!(!r.admit(t0 + Duration::from_millis(100), &1));
        for k in 3..100 {
            assert!(r.admit(t0, &k));
            assert!(r.len() <= 3);
        }
        let mut off = RateLimiter::new(0.0, 0, 1);
        assert!((0..1000).all(|k| off.admit(t0, &k)) && off.is_empty());
    }
}
