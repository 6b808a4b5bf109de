//! Which shard hears a peer.
//!
//! With `SO_REUSEPORT` the kernel picks the socket (shard) for a datagram
//! by a hash of its 4-tuple that we cannot compute, but it picks the same
//! one every time while the socket group stays the same. An outgoing
//! exchange must live on the shard that will receive the peer's answer, so
//! each shard records here the peers it hears from, and
//! [`CoapHandle`](super::coap_shell::CoapHandle) sends a request to the
//! shard that last heard the peer. A peer never heard from goes to a shard
//! chosen by our own hash; if its answer lands elsewhere, the receiving
//! shard passes it on (`Event::Unmatched`, see `shard.rs`).
//!
//! Striped mutexes rather than one lock: a shard writes here only the first
//! time it hears a peer (it remembers locally what it has recorded), so
//! the hot path takes no shared lock at all.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Mutex;

const STRIPES: usize = 64;

/// Peers remembered in all (≈ 60 bytes each): past this, the oldest
/// recorded peer of a stripe is forgotten; its next request goes to the
/// hashed shard and is forwarded if need be, which is slower, not wrong.
pub const DIRECTORY_CAPACITY: usize = 262_144;

#[derive(Debug, Default)]
struct Stripe {
    owner: HashMap<SocketAddr, usize>,
    order: VecDeque<SocketAddr>,
}

#[derive(Debug)]
pub struct PeerDirectory {
    stripes: Vec<Mutex<Stripe>>,
    per_stripe: usize,
}

impl PeerDirectory {
    pub fn new(capacity: usize) -> PeerDirectory {
        PeerDirectory {
            stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
            per_stripe: (capacity / STRIPES).max(1),
        }
    }

    fn stripe(&self, peer: &SocketAddr) -> std::sync::MutexGuard<'_, Stripe> {
        let i = (hash(peer) as usize) % STRIPES;
        // A panic while holding a stripe leaves at worst one stale entry.
        self.stripes[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `shard` heard `peer`.
    pub fn record(&self, peer: SocketAddr, shard: usize) {
        let per_stripe = self.per_stripe;
        let mut stripe = self.stripe(&peer);
        if stripe.owner.insert(peer, shard).is_none() {
            stripe.order.push_back(peer);
            while stripe.order.len() > per_stripe {
                if let Some(old) = stripe.order.pop_front() {
                    stripe.owner.remove(&old);
                }
            }
        }
    }

    /// The shard for a request to `peer`, out of `shards`.
    pub fn shard_for(&self, peer: SocketAddr, shards: usize) -> usize {
        let known = self.stripe(&peer).owner.get(&peer).copied();
        known
            .filter(|s| *s < shards)
            .unwrap_or_else(|| (hash(&peer) as usize) % shards.max(1))
    }
}

fn hash(peer: &SocketAddr) -> u64 {
    let mut h = DefaultHasher::new();
    peer.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_stays_bounded() {
        let dir = PeerDirectory::new(STRIPES * 2);
        let peer = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        dir.record(peer(1), 3);
        assert_eq!(dir.shard_for(peer(1), 4), 3);
        assert_eq!(
            dir.shard_for(peer(1), 2),
            dir.shard_for(peer(1), 2),
            "stable"
        );
        for port in 2..2000 {
            dir.record(peer(port), 1);
        }
        let total: usize = dir
            .stripes
            .iter()
            .map(|s| s.lock().unwrap().owner.len())
            .sum();
        assert!(total <= STRIPES * 2);
    }
}
