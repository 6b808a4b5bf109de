//! Observe relations this endpoint serves (RFC 7641 §4). The client side
//! (registering as an observer) lives with the other outgoing exchanges in
//! `exchange.rs`.
//!
//! A relation is (peer, token). It is made when the application accepts a
//! GET with Observe=0 (`Endpoint::accept_observe`) and ends on a RST to a
//! notification, on a CON notification that is never ACKed, on a GET with
//! Observe=1 or a new registration with the same token, on a non-2.xx
//! notification, or when the application drops it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coap_lite::{MessageType, Packet};

use super::ctx::Ctx;
use super::endpoint::{Event, Why};
use super::message;
use super::timer::Timer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelationId(pub u64);

/// RFC 7641 §4.5: at least one notification in 24 h is confirmable, so a
/// client that went away is noticed.
pub const CON_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Message IDs of past NON notifications remembered per relation, to match
/// a RST to one of them (a client rejects a notification it no longer
/// wants with RST, RFC 7641 §3.6).
const RECENT_MIDS: usize = 4;

/// Observe sequence numbers are 24 bits (RFC 7641 §3.4).
const SEQ_MASK: u32 = 0x00ff_ffff;

#[derive(Debug, Clone)]
pub struct ObserveLimits {
    pub max_relations: usize,
    pub max_per_peer: usize,
}

impl Default for ObserveLimits {
    fn default() -> Self {
        ObserveLimits {
            max_relations: 100_000,
            max_per_peer: 32,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error("no such observe relation (it ended)")]
    NoRelation,
    #[error("notification could not be encoded")]
    Unencodable,
}

#[derive(Debug)]
struct InFlight {
    mid: u16,
    bytes: Arc<[u8]>,
    retransmits: u32,
    timeout: Duration,
}

#[derive(Debug)]
struct Relation {
    peer: SocketAddr,
    token: Vec<u8>,
    seq: u32,
    last_con: Instant,
    inflight: Option<InFlight>,
    recent: VecDeque<u16>,
    /// Registered from an address that has not proven it receives our
    /// datagrams (RFC 7252 §11.3, `amplification.rs`): notifications are
    /// CON until one is acknowledged, so a registration with a spoofed
    /// source earns its victim one notification and its retransmissions,
    /// then the relation ends, instead of a stream of NONs.
    unconfirmed_peer: bool,
}

#[derive(Debug, Default)]
pub struct Relations {
    limits: ObserveLimits,
    map: HashMap<RelationId, Relation>,
    by_key: HashMap<(SocketAddr, Vec<u8>), RelationId>,
    by_mid: HashMap<(SocketAddr, u16), RelationId>,
    per_peer: HashMap<SocketAddr, usize>,
    next_id: u64,
}

impl Relations {
    pub fn new(limits: ObserveLimits) -> Relations {
        Relations {
            limits,
            ..Relations::default()
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Ends the relation (peer, token), if any, with an event.
    pub fn end_key(&mut self, ctx: &mut Ctx, peer: SocketAddr, token: &[u8], why: Why) {
        if let Some(&id) = self.by_key.get(&(peer, token.to_vec())) {
            self.end(ctx, id, Some(why));
        }
    }

    /// Makes a relation; `None` when a bound is reached (the registration
    /// is then answered as a plain GET, which RFC 7641 §4.1 allows).
    /// Returns the id and the sequence number for the first response.
    pub fn establish(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        peer: SocketAddr,
        token: &[u8],
        unconfirmed_peer: bool,
    ) -> Option<(RelationId, u32)> {
        // Two registrations with one token answered late: the newer wins.
        self.end_key(ctx, peer, token, Why::Replaced);
        let count = self.per_peer.get(&peer).copied().unwrap_or(0);
        if self.map.len() >= self.limits.max_relations || count >= self.limits.max_per_peer {
            return None;
        }
        self.next_id += 1;
        let id = RelationId(self.next_id);
        self.map.insert(
            id,
            Relation {
                peer,
                token: token.to_vec(),
                seq: 0,
                last_con: now,
                inflight: None,
                recent: VecDeque::new(),
                unconfirmed_peer,
            },
        );
        self.by_key.insert((peer, token.to_vec()), id);
        *self.per_peer.entry(peer).or_default() += 1;
        Some((id, 0))
    }

    /// Sends a notification. NON, except that one notification in every
    /// 24 h is CON (and `confirmable` asks for CON now). A non-2.xx
    /// notification is the last one: the relation ends without an event.
    pub fn notify(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        id: RelationId,
        mut packet: Packet,
        confirmable: bool,
    ) -> Result<(), NotifyError> {
        let rel = self.map.get_mut(&id).ok_or(NotifyError::NoRelation)?;
        let last = !message::is_success(packet.header.code);
        rel.seq = (rel.seq + 1) & SEQ_MASK;
        let con = !last
            && (confirmable
                || rel.unconfirmed_peer
                || rel.inflight.is_some()
                || now >= rel.last_con + CON_INTERVAL);
        let mid = ctx.message_id();
        packet.header.set_version(1);
        packet.header.set_type(if con {
            MessageType::Confirmable
        } else {
            MessageType::NonConfirmable
        });
        packet.header.message_id = mid;
        packet.set_token(rel.token.clone());
        if last {
            packet.clear_option(coap_lite::CoapOption::Observe);
        } else {
            packet.set_observe_value(rel.seq);
        }
        let bytes: Arc<[u8]> = match packet.to_bytes() {
            Ok(b) => b.into(),
            Err(e) => {
                tracing::debug!(?id, "notification could not be encoded: {e:?}");
                return Err(NotifyError::Unencodable);
            }
        };
        let peer = rel.peer;
        ctx.send(peer, bytes.clone());
        if last {
            self.end(ctx, id, None);
            return Ok(());
        }
        // Remember the Message ID for ACK/RST matching, boundedly.
        rel.recent.push_back(mid);
        self.by_mid.insert((peer, mid), id);
        if rel.recent.len() > RECENT_MIDS {
            if let Some(old) = rel.recent.pop_front() {
                self.by_mid.remove(&(peer, old));
            }
        }
        if con {
            // RFC 7641 §4.5.2: a newer notification replaces one still in
            // flight; the retransmission counter and timeout carry on.
            match &mut rel.inflight {
                Some(f) => {
                    f.mid = mid;
                    f.bytes = bytes;
                }
                None => {
                    let timeout = ctx.params.initial_timeout(ctx.rng.unit());
                    rel.inflight = Some(InFlight {
                        mid,
                        bytes,
                        retransmits: 0,
                        timeout,
                    });
                    ctx.timers
                        .set(Timer::NotificationRetransmit(id), now + timeout);
                }
            }
        }
        Ok(())
    }

    /// An empty ACK or RST from `peer` for one of our notifications.
    pub fn on_empty(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        peer: SocketAddr,
        mid: u16,
        reset: bool,
    ) -> bool {
        let Some(&id) = self.by_mid.get(&(peer, mid)) else {
            return false;
        };
        if reset {
            self.end(ctx, id, Some(Why::Reset));
            return true;
        }
        if let Some(rel) = self.map.get_mut(&id) {
            if rel.inflight.as_ref().is_some_and(|f| f.mid == mid) {
                rel.inflight = None;
                rel.last_con = now;
                rel.unconfirmed_peer = false;
                ctx.timers.cancel(Timer::NotificationRetransmit(id));
            }
        }
        true
    }

    pub fn on_timer(&mut self, ctx: &mut Ctx, now: Instant, id: RelationId) {
        let Some(rel) = self.map.get_mut(&id) else {
            return;
        };
        let Some(f) = &mut rel.inflight else {
            return;
        };
        if f.retransmits >= ctx.params.max_retransmit {
            self.end(ctx, id, Some(Why::TimedOut));
            return;
        }
        f.retransmits += 1;
        f.timeout *= 2;
        ctx.timers
            .set(Timer::NotificationRetransmit(id), now + f.timeout);
        let bytes = f.bytes.clone();
        ctx.send(rel.peer, bytes);
    }

    /// Drops a relation (the application no longer serves it).
    pub fn remove(&mut self, ctx: &mut Ctx, id: RelationId) -> bool {
        self.end(ctx, id, None)
    }

    fn end(&mut self, ctx: &mut Ctx, id: RelationId, why: Option<Why>) -> bool {
        let Some(rel) = self.map.remove(&id) else {
            return false;
        };
        self.by_key.remove(&(rel.peer, rel.token));
        for mid in rel.recent {
            self.by_mid.remove(&(rel.peer, mid));
        }
        if let Some(count) = self.per_peer.get_mut(&rel.peer) {
            *count -= 1;
            if *count == 0 {
                self.per_peer.remove(&rel.peer);
            }
        }
        ctx.timers.cancel(Timer::NotificationRetransmit(id));
        if let Some(why) = why {
            ctx.events
                .push_back(Event::RelationEnded { relation: id, why });
        }
        true
    }
}
