//! Message deduplication (RFC 7252 §4.5): a request seen again with the same
//! (peer, Message ID) within EXCHANGE_LIFETIME gets the response it got the
//! first time and is not applied twice.
//!
//! All entries live equally long, so insertion order is expiry order and a
//! FIFO queue finds the expired ones without a timer wheel. Bounded by
//! `capacity` entries: when full, the oldest ANSWERED entry is dropped
//! early (its retransmission would be re-applied, which the OTA operations
//! tolerate because reports are idempotent). An entry still in progress is
//! never dropped early: when all are in progress, [`Seen::Full`] tells the
//! endpoint to refuse the request (5.03) rather than risk applying it twice.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// RFC 7252 §4.8.2 EXCHANGE_LIFETIME with default parameters.
pub const EXCHANGE_LIFETIME: Duration = Duration::from_secs(247);

type Key = (SocketAddr, u16);

#[derive(Debug)]
enum Slot {
    /// Being processed (e.g. waiting for a durable commit).
    Pending,
    /// The encoded response, ready to be sent again.
    Done(Arc<[u8]>),
}

#[derive(Debug)]
struct Entry {
    slot: Slot,
    expires: Instant,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// First time: process it.
    New,
    /// A retransmission of a request still being processed: drop it, the
    /// response is on its way.
    InProgress,
    /// A retransmission of an answered request: send this again.
    Answered(Arc<[u8]>),
    /// Not seen, and not recorded: the cache is full of requests in
    /// progress. Refuse it unless applying it twice is harmless.
    Full,
}

#[derive(Debug)]
pub struct DedupCache {
    entries: HashMap<Key, Entry>,
    order: VecDeque<(Key, Instant)>,
    /// Answered entries in the order they were answered: the ones dropped
    /// first when the cache is full. May hold stale keys (expired or
    /// dropped); bounded by pruning at twice `capacity`.
    answered: VecDeque<(Key, Instant)>,
    capacity: usize,
    lifetime: Duration,
}

impl DedupCache {
    pub fn new(capacity: usize, lifetime: Duration) -> DedupCache {
        DedupCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            answered: VecDeque::new(),
            capacity,
            lifetime,
        }
    }

    /// Looks up (peer, mid); a new key is recorded as in progress.
    pub fn check(&mut self, now: Instant, peer: SocketAddr, mid: u16) -> Seen {
        self.expire(now);
        let key = (peer, mid);
        if let Some(entry) = self.entries.get(&key) {
            return match &entry.slot {
                Slot::Pending => Seen::InProgress,
                Slot::Done(bytes) => Seen::Answered(bytes.clone()),
            };
        }
        while self.entries.len() >= self.capacity {
            match self.answered.pop_front() {
                Some((old, expires)) => self.remove_if_same(old, expires),
                // Every entry is in progress: dropping one could apply its
                // retransmission twice.
                None => return Seen::Full,
            }
        }
        let expires = now + self.lifetime;
        self.entries.insert(
            key,
            Entry {
                slot: Slot::Pending,
                expires,
            },
        );
        self.order.push_back((key, expires));
        Seen::New
    }

    /// Looks up (peer, mid) without recording anything: for responses and
    /// notifications, which are recorded only once processed.
    pub fn peek(&mut self, now: Instant, peer: SocketAddr, mid: u16) -> Option<Seen> {
        self.expire(now);
        self.entries
            .get(&(peer, mid))
            .map(|entry| match &entry.slot {
                Slot::Pending => Seen::InProgress,
                Slot::Done(bytes) => Seen::Answered(bytes.clone()),
            })
    }

    /// Records (peer, mid) as answered with `response` (e.g. the empty ACK
    /// of a CON response), so a retransmission gets the same answer.
    pub fn insert_done(&mut self, now: Instant, peer: SocketAddr, mid: u16, response: Arc<[u8]>) {
        if self.check(now, peer, mid) == Seen::New {
            self.complete(peer, mid, response);
        }
    }

    /// Stores the response for a request recorded by [`check`](Self::check).
    pub fn complete(&mut self, peer: SocketAddr, mid: u16, response: Arc<[u8]>) {
        let key = (peer, mid);
        if let Some(entry) = self.entries.get_mut(&key) {
            if matches!(entry.slot, Slot::Pending) {
                self.answered.push_back((key, entry.expires));
            }
            entry.slot = Slot::Done(response);
        }
        if self.answered.len() > 2 * self.capacity.max(1) {
            let entries = &self.entries;
            self.answered.retain(|(key, expires)| {
                entries
                    .get(key)
                    .is_some_and(|e| e.expires == *expires && matches!(e.slot, Slot::Done(_)))
            });
        }
    }

    /// Drops entries whose lifetime is over.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(key, expires)) = self.order.front() {
            if expires > now {
                break;
            }
            self.order.pop_front();
            self.remove_if_same(key, expires);
        }
        while self.answered.front().is_some_and(|&(_, at)| at <= now) {
            self.answered.pop_front();
        }
    }

    /// When the oldest entry expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.order.front().map(|(_, at)| *at)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn remove_if_same(&mut self, key: Key, expires: Instant) {
        if self.entries.get(&key).is_some_and(|e| e.expires == expires) {
            self.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn replay_within_lifetime_then_forget() {
        let t0 = Instant::now();
        let mut cache = DedupCache::new(10, Duration::from_secs(10));
        assert_eq!(cache.check(t0, peer(1), 7), Seen::New);
        assert_eq!(cache.check(t0, peer(1), 7), Seen::InProgress);
        cache.complete(peer(1), 7, Arc::from(&b"resp"[..]));
        assert_eq!(
            cache.check(t0 + Duration::from_secs(9), peer(1), 7),
            Seen::Answered(Arc::from(&b"resp"[..]))
        );
        assert_eq!(
            cache.check(t0, peer(2), 7),
            Seen::New,
            "other peer, same mid"
        );
        assert_eq!(
            cache.check(t0 + Duration::from_secs(10), peer(1), 7),
            Seen::New
        );
    }

    #[test]
    fn capacity_is_a_hard_bound() {
        let t0 = Instant::now();
        let mut cache = DedupCache::new(3, Duration::from_secs(10));
        for mid in 0..10 {
            assert_eq!(cache.check(t0, peer(1), mid), Seen::New);
            assert!(cache.len() <= 3);
            cache.complete(peer(1), mid, Arc::from(&b"r"[..]));
        }
        assert!(matches!(cache.check(t0, peer(1), 9), Seen::Answered(_)));
        assert_eq!(cache.check(t0, peer(1), 0), Seen::New, "oldest was evicted");
    }

    /// Fails without the fix: the oldest entry was dropped although still
    /// in progress, so its retransmission would be applied again.
    #[test]
    fn in_progress_entries_are_never_evicted() {
        let t0 = Instant::now();
        let mut cache = DedupCache::new(3, Duration::from_secs(10));
        for mid in 0..3 {
            assert_eq!(cache.check(t0, peer(1), mid), Seen::New);
        }
        cache.complete(peer(1), 1, Arc::from(&b"r"[..]));
        // Full: the answered one goes first, not the older pending one.
        assert_eq!(cache.check(t0, peer(1), 3), Seen::New);
        assert_eq!(cache.check(t0, peer(1), 0), Seen::InProgress);
        assert_eq!(cache.check(t0, peer(1), 1), Seen::Full);
        // Full of requests in progress: refused, nothing dropped.
        assert_eq!(cache.check(t0, peer(1), 4), Seen::Full);
        assert_eq!(cache.len(), 3);
        for mid in [0, 2, 3] {
            assert_eq!(cache.check(t0, peer(1), mid), Seen::InProgress);
        }
        // Expiry still frees them.
        assert_eq!(
            cache.check(t0 + Duration::from_secs(10), peer(1), 4),
            Seen::New
        );
    }
}
