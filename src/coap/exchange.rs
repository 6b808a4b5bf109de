//! Outgoing exchanges (this endpoint as a client): RFC 7252 §4.2
//! retransmission, §4.7 NSTART, §5.2 piggybacked and separate responses,
//! §5.3 token matching; RFC 7959 Block1 bodies sent in pieces and Block2
//! responses followed to the end; RFC 7641 registrations, whose
//! notifications arrive as `Event::Notification` until the exchange ends.
//!
//! Every exchange ends exactly once, with `Event::Response` or
//! `Event::Failed`, except one the application cancels itself.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, ResponseType};

use super::amplification::ECHO;
use super::block::Block;
use super::ctx::Ctx;
use super::endpoint::{Event, Why};
use super::message;
use super::timer::Timer;

/// Names an outgoing exchange (or observation) for its whole life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExchangeId(pub u64);

/// RFC 7641 §3.4: a notification older than this is fresh whatever its
/// sequence number.
const OBSERVE_FRESHNESS: Duration = Duration::from_secs(128);

#[derive(Debug, Clone)]
pub struct ClientLimits {
    /// Outgoing exchanges alive at once, queued ones included.
    pub max_exchanges: usize,
    /// Exchanges waiting for a peer's NSTART slot; more fail at once.
    pub max_queued_per_peer: usize,
    /// Block1 size exponent for request bodies larger than one block.
    pub block_szx: u8,
    /// Largest response body assembled from Block2 pieces.
    pub max_body: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_exchanges: 100_000,
            max_queued_per_peer: 64,
            block_szx: 6,
            max_body: 1 << 20,
        }
    }
}

#[derive(Debug)]
enum State {
    Queued,
    /// Holds an NSTART slot but nothing is on the wire: its first message
    /// could not be encoded, so ending it must free the slot.
    Unsent,
    /// A CON is out; retransmitted until ACKed (§4.2).
    AwaitAck {
        mid: u16,
        bytes: Arc<[u8]>,
        retransmits: u32,
        timeout: Duration,
    },
    /// A NON is out, or a CON was ACKed empty: waiting for a response.
    AwaitResponse {
        mid: u16,
    },
    /// A registration was accepted; notifications follow.
    Observing {
        last: Option<(u32, Instant)>,
    },
}

#[derive(Debug)]
struct Exchange {
    peer: SocketAddr,
    token: u64,
    observe: bool,
    confirmable: bool,
    /// The request as given, without its payload.
    template: Packet,
    body: Vec<u8>,
    /// Offset and size exponent of the body piece in the current message.
    block1: Option<(usize, u8)>,
    /// Response body assembled from Block2 pieces so far.
    block2: Vec<u8>,
    /// Block2 number and exponent asked for in the current message.
    block2_next: Option<(u32, u8)>,
    state: State,
}

/// What [`Exchanges::retransmit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resent {
    Sent,
    /// MAX_RETRANSMIT reached: the exchange gives up.
    Exhausted,
    /// Gone, or not waiting for an ACK.
    NotWaiting,
}

#[derive(Debug, Default)]
struct PeerSlots {
    active: usize,
    queue: VecDeque<ExchangeId>,
    /// Exchanges whose CON went out, for [`Exchanges::peer_awake`]; the
    /// ones no longer waiting for an ACK are dropped at each send, so it
    /// holds at most NSTART + 1.
    sent: Vec<ExchangeId>,
}

#[derive(Debug, Default)]
pub struct Exchanges {
    limits: ClientLimits,
    map: HashMap<ExchangeId, Exchange>,
    by_token: HashMap<(SocketAddr, u64), ExchangeId>,
    by_mid: HashMap<(SocketAddr, u16), ExchangeId>,
    peers: HashMap<SocketAddr, PeerSlots>,
    next_id: u64,
}

impl Exchanges {
    pub fn new(limits: ClientLimits) -> Exchanges {
        Exchanges {
            limits,
            ..Exchanges::default()
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Starts a request (or an Observe registration) to `peer`. The type
    /// of `packet` says CON or NON (CON unless NON is set); code, options
    /// and payload are the application's, the rest is filled in here.
    pub fn start(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        peer: SocketAddr,
        mut packet: Packet,
        observe: bool,
    ) -> ExchangeId {
        self.next_id += 1;
        let id = ExchangeId(self.next_id);
        if self.map.len() >= self.limits.max_exchanges {
            ctx.events.push_back(Event::Failed {
                id,
                why: Why::Overloaded,
            });
            return id;
        }
        let slots = self.peers.entry(peer).or_default();
        let nstart = ctx.params.nstart.max(1);
        if slots.active >= nstart && slots.queue.len() >= self.limits.max_queued_per_peer {
            ctx.events.push_back(Event::Failed {
                id,
                why: Why::Overloaded,
            });
            return id;
        }
        let token = loop {
            let t = ctx.rng.next_u64();
            if !self.by_token.contains_key(&(peer, t)) {
                break t;
            }
        };
        let body = std::mem::take(&mut packet.payload);
        if observe {
            packet.set_observe_value(0);
        }
        let block_size = 16usize << self.limits.block_szx;
        let block1 = (body.len() > block_size).then_some((0, self.limits.block_szx));
        let confirmable = packet.header.get_type() != MessageType::NonConfirmable;
        self.map.insert(
            id,
            Exchange {
                peer,
                token,
                observe,
                confirmable,
                template: packet,
                body,
                block1,
                block2: Vec::new(),
                block2_next: None,
                state: State::Queued,
            },
        );
        self.by_token.insert((peer, token), id);
        if slots.active < nstart {
            slots.active += 1;
            self.transmit(ctx, now, id);
        } else {
            slots.queue.push_back(id);
        }
        id
    }

    /// Forgets an exchange without an event (the application cancelled
    /// it). Later notifications of a cancelled observation get RST (RFC
    /// 7641 §3.6). Returns whether it existed.
    pub fn cancel(&mut self, ctx: &mut Ctx, now: Instant, id: ExchangeId) -> bool {
        self.end(ctx, now, id, None)
    }

    /// An empty ACK or a RST with `mid` from `peer`; false if it is not ours.
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
            self.end(ctx, now, id, Some(Why::Reset));
            return true;
        }
        if let Some(ex) = self.map.get_mut(&id) {
            if let State::AwaitAck { mid, .. } = ex.state {
                // §5.2.2: a separate response will follow.
                ex.state = State::AwaitResponse { mid };
                ctx.timers.cancel(Timer::Retransmit(id));
                ctx.timers.set(
                    Timer::ResponseDeadline(id),
                    now + ctx.params.exchange_lifetime(),
                );
            }
        }
        true
    }

    /// A response from `peer`: piggybacked in an ACK, or separate (CON/NON).
    /// False if no exchange of ours matches; the caller then rejects it.
    pub fn on_response(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        peer: SocketAddr,
        packet: Packet,
    ) -> bool {
        let kind = packet.header.get_type();
        let mid = packet.header.message_id;
        let token = packet.get_token();
        let id = match <[u8; 8]>::try_from(token) {
            Ok(t) => self.by_token.get(&(peer, u64::from_be_bytes(t))).copied(),
            Err(_) => None,
        };
        let Some(id) = id else { return false };
        if kind == MessageType::Acknowledgement && self.by_mid.get(&(peer, mid)) != Some(&id) {
            // A piggybacked response must answer our current message.
            return false;
        }
        match kind {
            MessageType::Confirmable => ctx.ack_and_remember(now, peer, mid),
            MessageType::Acknowledgement | MessageType::NonConfirmable => {}
            MessageType::Reset => return false,
        }
        self.step(ctx, now, id, packet);
        true
    }

    pub fn on_timer(&mut self, ctx: &mut Ctx, now: Instant, timer: Timer) {
        match timer {
            // The guard sends the retransmission; an exchange out of
            // retransmissions ends here.
            Timer::Retransmit(id) if self.retransmit(ctx, now, id, true) == Resent::Exhausted => {
                self.end(ctx, now, id, Some(Why::TimedOut));
            }
            Timer::ResponseDeadline(id) => {
                self.end(ctx, now, id, Some(Why::TimedOut));
            }
            _ => {}
        }
    }

    /// `peer` hears us now (a queue-mode device just woke up, RFC 7252
    /// leaves when to retransmit to the sender): each CON to it still
    /// waiting for an ACK goes out again at once instead of at its
    /// back-off. Each counts as a retransmission, so an exchange still
    /// gives up after MAX_RETRANSMIT (on its timer).
    pub fn peer_awake(&mut self, ctx: &mut Ctx, now: Instant, peer: SocketAddr) {
        let Some(slots) = self.peers.get(&peer) else {
            return;
        };
        for id in slots.sent.clone() {
            if self.map.get(&id).is_some_and(|ex| ex.peer == peer) {
                self.retransmit(ctx, now, id, false);
            }
        }
    }

    /// Sends the CON of `id` again, if it still waits for an ACK and has
    /// retransmissions left; the next one is due after the timeout,
    /// doubled first when `back_off` (§4.2).
    fn retransmit(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        id: ExchangeId,
        back_off: bool,
    ) -> Resent {
        let Some(ex) = self.map.get_mut(&id) else {
            return Resent::NotWaiting;
        };
        let State::AwaitAck {
            bytes,
            retransmits,
            timeout,
            ..
        } = &mut ex.state
        else {
            return Resent::NotWaiting;
        };
        if *retransmits >= ctx.params.max_retransmit {
            return Resent::Exhausted;
        }
        *retransmits += 1;
        if back_off {
            *timeout *= 2;
        }
        ctx.timers.set(Timer::Retransmit(id), now + *timeout);
        let bytes = bytes.clone();
        ctx.send(ex.peer, bytes);
        Resent::Sent
    }

    /// Handles a response to the current message of exchange `id`.
    fn step(&mut self, ctx: &mut Ctx, now: Instant, id: ExchangeId, mut packet: Packet) {
        let Some(ex) = self.map.get_mut(&id) else {
            return;
        };
        // RFC 9175 §2.3: a response's Echo value goes into our next
        // message to the peer; a 4.01 with a new one repeats the request.
        if let Some(echo) = packet.get_first_option(ECHO).cloned() {
            let before = ex.template.get_first_option(ECHO).cloned();
            ex.template.clear_option(ECHO);
            ex.template.add_option(ECHO, echo.clone());
            let challenge =
                packet.header.code == MessageClass::Response(ResponseType::Unauthorized);
            if challenge && before.as_ref() != Some(&echo) {
                self.next_message(ctx, now, id);
                return;
            }
        }
        let success = message::is_success(packet.header.code);
        if ex.observe && success && packet.get_first_option(CoapOption::Observe).is_some() {
            let seq = packet
                .get_first_option(CoapOption::Observe)
                .and_then(|v| message::read_uint(v))
                .unwrap_or(0);
            let fresh = match ex.state {
                State::Observing {
                    last: Some((v1, t1)),
                } => is_fresh(v1, seq, now > t1 + OBSERVE_FRESHNESS),
                _ => true,
            };
            if !matches!(ex.state, State::Observing { .. }) {
                self.settle(ctx, now, id);
            }
            let Some(ex) = self.map.get_mut(&id) else {
                return;
            };
            if fresh {
                ex.state = State::Observing {
                    last: Some((seq, now)),
                };
                ctx.events.push_back(Event::Notification { id, packet });
            } else {
                tracing::debug!(?id, seq, "reordered notification dropped");
            }
            return;
        }
        if matches!(ex.state, State::Observing { .. }) && success && ex.observe {
            // A 2.xx without Observe ends the observation (RFC 7641 §3.2).
            self.end_with_response(ctx, now, id, packet);
            return;
        }
        // Block1: the server wants the next piece (RFC 7959 §2.5).
        if let Some((offset, szx)) = ex.block1 {
            let sent = (Block::size_of(szx)).min(ex.body.len() - offset);
            let more = offset + sent < ex.body.len();
            let continue_ = packet.header.code == MessageClass::Response(ResponseType::Continue);
            let echo = packet
                .get_first_option(CoapOption::Block1)
                .and_then(|v| Block::parse(v).ok());
            if continue_ && echo.is_some_and(|b| b.num as usize != offset / Block::size_of(szx)) {
                // A late duplicate 2.31 for an earlier piece (NON pieces
                // share the token): not an answer to the current one.
                tracing::debug!(?id, "stale 2.31 dropped");
                return;
            }
            if more && continue_ {
                // The server may ask for smaller blocks from now on (§2.5).
                let asked = echo.map_or(szx, |b| b.szx.min(szx));
                ex.block1 = Some((offset + sent, asked));
                self.next_message(ctx, now, id);
                return;
            }
        }
        // Block2: follow the response's pieces (RFC 7959 §2.4).
        let block2 = packet
            .get_first_option(CoapOption::Block2)
            .and_then(|v| Block::parse(v).ok());
        let asked_for_block = ex.template.get_first_option(CoapOption::Block2).is_some();
        if let (true, false, Some(b)) = (success, asked_for_block, block2) {
            if b.more || ex.block2_next.is_some() {
                let offset = b.num as usize * b.size();
                if offset != ex.block2.len() {
                    if ex.block2_next.is_some() {
                        // A late duplicate of an earlier block.
                        tracing::debug!(?id, "unexpected block {} dropped", b.num);
                        return;
                    }
                    self.end(ctx, now, id, Some(Why::BadBlock));
                    return;
                }
                if ex.block2.len() + packet.payload.len() > self.limits.max_body {
                    self.end(ctx, now, id, Some(Why::TooLarge));
                    return;
                }
                ex.block2.extend_from_slice(&packet.payload);
                if b.more {
                    ex.block2_next = Some((b.num + 1, b.szx));
                    ex.block1 = None;
                    ex.body.clear();
                    self.next_message(ctx, now, id);
                    return;
                }
                packet.payload = std::mem::take(&mut ex.block2);
                packet.clear_option(CoapOption::Block2);
            }
        }
        self.end_with_response(ctx, now, id, packet);
    }

    fn end_with_response(&mut self, ctx: &mut Ctx, now: Instant, id: ExchangeId, packet: Packet) {
        if self.end(ctx, now, id, None) {
            ctx.events.push_back(Event::Response { id, packet });
        }
    }

    /// The current message is answered: no more retransmission, no more
    /// matching of its Message ID, and the peer's NSTART slot is free.
    fn settle(&mut self, ctx: &mut Ctx, now: Instant, id: ExchangeId) {
        let Some(ex) = self.map.get_mut(&id) else {
            return;
        };
        let peer = ex.peer;
        if let State::AwaitAck { mid, .. } | State::AwaitResponse { mid } = ex.state {
            self.by_mid.remove(&(peer, mid));
        }
        ex.state = State::Observing { last: None };
        ctx.timers.cancel(Timer::Retransmit(id));
        ctx.timers.cancel(Timer::ResponseDeadline(id));
        self.release_slot(ctx, now, peer);
    }

    /// Sends the next message of a multi-message exchange (next block).
    fn next_message(&mut self, ctx: &mut Ctx, now: Instant, id: ExchangeId) {
        if let Some(ex) = self.map.get(&id) {
            if let State::AwaitAck { mid, .. } | State::AwaitResponse { mid } = ex.state {
                self.by_mid.remove(&(ex.peer, mid));
            }
        }
        ctx.timers.cancel(Timer::Retransmit(id));
        ctx.timers.cancel(Timer::ResponseDeadline(id));
        self.transmit(ctx, now, id);
    }

    /// Encodes and sends the current message of `id`.
    fn transmit(&mut self, ctx: &mut Ctx, now: Instant, id: ExchangeId) {
        let Some(ex) = self.map.get_mut(&id) else {
            return;
        };
        let mut packet = ex.template.clone();
        let mid = ctx.message_id();
        packet.header.set_version(1);
        packet.header.set_type(if ex.confirmable {
            MessageType::Confirmable
        } else {
            MessageType::NonConfirmable
        });
        packet.header.message_id = mid;
        packet.set_token(ex.token.to_be_bytes().to_vec());
        if let Some((offset, szx)) = ex.block1 {
            let size = Block::size_of(szx);
            let end = (offset + size).min(ex.body.len());
            let block = Block {
                num: (offset / size) as u32,
                more: end < ex.body.len(),
                szx,
            };
            packet.add_option(CoapOption::Block1, block.encode());
            if offset == 0 {
                packet.add_option(CoapOption::Size1, message::uint(ex.body.len() as u32));
            }
            packet.payload = ex.body[offset..end].to_vec();
        } else if let Some((num, szx)) = ex.block2_next {
            packet.clear_option(CoapOption::Observe);
            packet.add_option(
                CoapOption::Block2,
                Block {
                    num,
                    more: false,
                    szx,
                }
                .encode(),
            );
        } else {
            packet.payload = ex.body.clone();
        }
        let bytes: Arc<[u8]> = match packet.to_bytes() {
            Ok(bytes) => bytes.into(),
            Err(e) => {
                tracing::debug!(?id, "request could not be encoded: {e:?}");
                // transmit() runs only once the exchange holds a slot: a
                // first message that fails must still give the slot back.
                if matches!(ex.state, State::Queued) {
                    ex.state = State::Unsent;
                }
                self.end(ctx, now, id, Some(Why::Unencodable));
                return;
            }
        };
        let peer = ex.peer;
        if ex.confirmable {
            let timeout = ctx.params.initial_timeout(ctx.rng.unit());
            ex.state = State::AwaitAck {
                mid,
                bytes: bytes.clone(),
                retransmits: 0,
                timeout,
            };
            ctx.timers.set(Timer::Retransmit(id), now + timeout);
            if let Some(slots) = self.peers.get_mut(&peer) {
                let map = &self.map;
                slots.sent.retain(|sent| {
                    map.get(sent)
                        .is_some_and(|e| matches!(e.state, State::AwaitAck { .. }))
                });
                slots.sent.push(id);
            }
        } else {
            ex.state = State::AwaitResponse { mid };
            ctx.timers.set(
                Timer::ResponseDeadline(id),
                now + ctx.params.max_transmit_wait(),
            );
        }
        self.by_mid.insert((peer, mid), id);
        ctx.send(peer, bytes);
    }

    /// Removes `id`; pushes `Failed` when `why` is given. Returns whether
    /// it existed (so an exchange ends exactly once).
    fn end(&mut self, ctx: &mut Ctx, now: Instant, id: ExchangeId, why: Option<Why>) -> bool {
        let Some(ex) = self.map.remove(&id) else {
            return false;
        };
        self.by_token.remove(&(ex.peer, ex.token));
        let holds_slot = match ex.state {
            State::AwaitAck { mid, .. } | State::AwaitResponse { mid } => {
                self.by_mid.remove(&(ex.peer, mid));
                true
            }
            State::Unsent => true,
            State::Queued => {
                if let Some(slots) = self.peers.get_mut(&ex.peer) {
                    slots.queue.retain(|q| *q != id);
                }
                false
            }
            State::Observing { .. } => false,
        };
        ctx.timers.cancel(Timer::Retransmit(id));
        ctx.timers.cancel(Timer::ResponseDeadline(id));
        if let Some(why) = why {
            ctx.events.push_back(Event::Failed { id, why });
        }
        if holds_slot {
            self.release_slot(ctx, now, ex.peer);
        } else {
            self.forget_idle_peer(ex.peer);
        }
        true
    }

    /// Frees one NSTART slot of `peer` and starts its next queued exchange.
    fn release_slot(&mut self, ctx: &mut Ctx, now: Instant, peer: SocketAddr) {
        let next = match self.peers.get_mut(&peer) {
            Some(slots) => match slots.queue.pop_front() {
                Some(next) => Some(next),
                None => {
                    slots.active = slots.active.saturating_sub(1);
                    None
                }
            },
            None => None,
        };
        match next {
            Some(next) => self.transmit(ctx, now, next),
            None => self.forget_idle_peer(peer),
        }
    }

    /// Keeps `peers` bounded by the live exchanges.
    fn forget_idle_peer(&mut self, peer: SocketAddr) {
        if self
            .peers
            .get(&peer)
            .is_some_and(|s| s.active == 0 && s.queue.is_empty())
        {
            self.peers.remove(&peer);
        }
    }
}

/// RFC 7641 §3.4: whether notification `v2` is newer than `v1` (24-bit
/// serial numbers), or fresh anyway because 128 s have passed.
pub fn is_fresh(v1: u32, v2: u32, expired: bool) -> bool {
    const HALF: u32 = 1 << 23;
    (v1 < v2 && v2 - v1 < HALF) || (v1 > v2 && v1 - v2 > HALF) || expired
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_follows_rfc_7641() {
        assert!(is_fresh(1, 2, false));
        assert!(!is_fresh(2, 1, false));
        assert!(!is_fresh(2, 2, false));
        assert!(is_fresh(2, 2, true));
        assert!(is_fresh((1 << 24) - 1, 0, false), "wrap-around");
        assert!(!is_fresh(0, 1 << 23, false));
    }
}
