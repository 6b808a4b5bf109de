//! The sans-IO CoAP peer: server and client in one endpoint (RFC 7252,
//! RFC 7641 Observe, RFC 7959 Block1/Block2).
//!
//! Driving contract (the shard loop in `server/shard.rs` follows it; the
//! simulated network in `tests/coap_sim.rs` too):
//!
//! 1. Make one endpoint per socket with [`Endpoint::new`] and a seed from
//!    the caller (tokens, Message IDs and retransmission jitter come from
//!    it; nothing here reads the clock or the OS's randomness).
//! 2. For every received datagram call [`Endpoint::handle`] with `now`,
//!    the local address it arrived on and the peer's address. It answers
//!    protocol matters itself (duplicates, pings, format errors, unknown
//!    critical options, Block1 pieces, ACKs of CON responses).
//! 3. To send a request call [`Endpoint::request`] (or
//!    [`Endpoint::observe`]); keep the [`ExchangeId`]. It ends exactly
//!    once, with [`Event::Response`] or [`Event::Failed`] (observations
//!    deliver [`Event::Notification`]s before that), unless cancelled.
//! 4. Every [`Event::Request`] must be answered, sooner or later, with
//!    [`Endpoint::respond`] (or [`Endpoint::accept_observe`] for a GET with
//!    Observe=0 the application wants to serve as an observe relation; then
//!    [`Endpoint::notify`] sends notifications).
//! 5. **Drain rule:** after any call above and after
//!    [`Endpoint::handle_timeout`], poll [`Endpoint::poll_event`] and
//!    [`Endpoint::poll_transmit`] until both return `None`, handling each
//!    event and sending each datagram to its peer. Handling an event may
//!    call in again; drain again after it.
//! 6. Call [`Endpoint::handle_timeout`] once [`Endpoint::poll_timeout`]'s
//!    instant is reached (it is the earliest deadline; ask again after
//!    every input, it only ever moves when the endpoint is called).
//!
//! Garbage is dropped and logged at `debug!`; nothing a peer sends can make
//! this struct return an error or panic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};

use super::amplification::{self, AmplificationConfig, Fitted, Guard, Proof};
use super::block::Block;
use super::block1::{Assemblies, Block1Limits, Piece};
use super::ctx::Ctx;
use super::dedup::Seen;
use super::exchange::Exchanges;
pub use super::exchange::{ClientLimits, ExchangeId};
use super::message::{self, Format};
pub use super::message::{error_response, uri_path};
use super::observe::Relations;
pub use super::observe::{NotifyError, ObserveLimits, RelationId};
use super::timer::{Timer, TransmissionParams};

/// Bound on remembered exchanges (≈ 100 bytes each plus the response of a
/// non-idempotent request, which is small: poll and report answers).
pub const DEDUP_CAPACITY: usize = 200_000;

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub peer: SocketAddr,
    pub bytes: Arc<[u8]>,
}

/// What the endpoint needs to address a response to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMeta {
    pub peer: SocketAddr,
    pub message_id: u16,
    pub token: Vec<u8>,
    pub confirmable: bool,
    /// Whether the response is remembered for deduplication. Safe methods
    /// (GET/FETCH) are not: re-running them yields the same bytes, and not
    /// caching block responses keeps memory flat during downloads.
    pub remembered: bool,
    /// A GET with Observe=0: the application may answer with
    /// [`Endpoint::accept_observe`] to make an observe relation.
    pub observe: bool,
    /// The last Block1 piece of a reassembled body; its echo (M=0) is added
    /// to the response (RFC 7959 §2.3).
    pub block1: Option<Block>,
    /// The request's Block2 option, if any.
    pub block2: Option<Block>,
    /// A GET or FETCH (its 2.05 body may be cut into blocks).
    pub safe: bool,
    /// Most bytes the response may take: the peer's address is not
    /// verified (`amplification.rs`); `None` when it is, or over DTLS.
    pub response_limit: Option<usize>,
}

#[derive(Debug)]
pub struct IncomingRequest {
    pub meta: RequestMeta,
    pub method: RequestType,
    /// The whole request; a Block1 body is already reassembled.
    pub packet: Packet,
    /// The local address the request arrived on (an LwM2M Package URI must
    /// name the address the device talks to).
    pub local: SocketAddr,
    /// Over CoAPS: who the peer proved to be in its DTLS-PSK handshake
    /// (`None` on plain CoAP, where devices are unauthenticated). Resources
    /// refuse a request for another device than `identity.device` (4.03).
    pub identity: Option<Arc<PeerIdentity>>,
}

/// A peer authenticated by DTLS-PSK: its PSK identity and the device that
/// identity belongs to. Set by the shell that decrypted the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub identity: String,
    pub device: String,
}

/// Why an exchange failed or an observe relation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Why {
    #[error("no answer in time")]
    TimedOut,
    #[error("the peer answered with RST")]
    Reset,
    #[error("too many exchanges or relations")]
    Overloaded,
    #[error("response body too large")]
    TooLarge,
    #[error("Block2 pieces out of sequence")]
    BadBlock,
    #[error("the message could not be encoded")]
    Unencodable,
    #[error("the peer registered again with the same token")]
    Replaced,
    #[error("the peer deregistered (Observe=1)")]
    Deregistered,
}

#[derive(Debug)]
pub enum Event {
    /// A new request the application must answer (contract step 4).
    Request(IncomingRequest),
    /// The final response of an outgoing exchange.
    Response { id: ExchangeId, packet: Packet },
    /// A notification of an observation, in order, stale ones dropped.
    Notification { id: ExchangeId, packet: Packet },
    /// An outgoing exchange ended without a response.
    Failed { id: ExchangeId, why: Why },
    /// An observe relation this endpoint served is over.
    RelationEnded { relation: RelationId, why: Why },
    /// With `forward_unmatched`: a response, ACK or RST no exchange of this
    /// endpoint matches. Another endpoint on the same address may own the
    /// exchange: pass it there with [`Endpoint::handle_forwarded`].
    Unmatched {
        local: SocketAddr,
        peer: SocketAddr,
        datagram: Vec<u8>,
    },
}

#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub params: TransmissionParams,
    pub dedup_capacity: usize,
    pub client: ClientLimits,
    pub observe: ObserveLimits,
    pub block1: Block1Limits,
    /// Report unmatched responses, ACKs and RSTs as [`Event::Unmatched`]
    /// instead of rejecting them (several endpoints share one address).
    pub forward_unmatched: bool,
    /// Take requests with Accept (17) to the application instead of
    /// answering 4.02 (for applications that choose a representation).
    pub understand_accept: bool,
    /// Bound responses to unverified addresses (RFC 7252 §11.3, RFC 9175
    /// Echo); `None`: no bound (a DTLS endpoint, tests).
    pub amplification: Option<AmplificationConfig>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            params: TransmissionParams::default(),
            dedup_capacity: DEDUP_CAPACITY,
            client: ClientLimits::default(),
            observe: ObserveLimits::default(),
            block1: Block1Limits::default(),
            forward_unmatched: false,
            understand_accept: false,
            amplification: None,
        }
    }
}

#[derive(Debug)]
pub struct Endpoint {
    ctx: Ctx,
    exchanges: Exchanges,
    relations: Relations,
    assemblies: Assemblies,
    forward_unmatched: bool,
    understand_accept: bool,
    /// The identity of the datagram being handled ([`Endpoint::handle_secure`]).
    identity: Option<Arc<PeerIdentity>>,
    /// Verified addresses and the Echo key (`amplification.rs`).
    guard: Option<Guard>,
}

impl Endpoint {
    pub fn new(config: EndpointConfig, seed: u64) -> Endpoint {
        Endpoint {
            ctx: Ctx::new(config.params, config.dedup_capacity, seed),
            exchanges: Exchanges::new(config.client),
            relations: Relations::new(config.observe),
            assemblies: Assemblies::new(config.block1),
            forward_unmatched: config.forward_unmatched,
            understand_accept: config.understand_accept,
            identity: None,
            guard: config.amplification.map(Guard::new),
        }
    }

    /// Feeds one received datagram (contract step 2).
    pub fn handle(&mut self, now: Instant, local: SocketAddr, peer: SocketAddr, datagram: &[u8]) {
        self.handle_inner(now, local, peer, datagram, self.forward_unmatched);
    }

    /// Like [`handle`](Self::handle) for a datagram decrypted by a DTLS
    /// session: requests it completes carry `identity`.
    pub fn handle_secure(
        &mut self,
        now: Instant,
        local: SocketAddr,
        peer: SocketAddr,
        datagram: &[u8],
        identity: Arc<PeerIdentity>,
    ) {
        self.identity = Some(identity);
        self.handle_inner(now, local, peer, datagram, self.forward_unmatched);
        self.identity = None;
    }

    /// Feeds a datagram another endpoint reported as [`Event::Unmatched`].
    /// With `may_forward` false, one that matches nothing here is rejected
    /// as usual (the last endpoint that could own it).
    pub fn handle_forwarded(
        &mut self,
        now: Instant,
        local: SocketAddr,
        peer: SocketAddr,
        datagram: &[u8],
        may_forward: bool,
    ) {
        self.handle_inner(now, local, peer, datagram, may_forward);
    }

    /// Answers a request delivered as [`Event::Request`]. `response`
    /// carries code, options and payload; the rest is filled in: a
    /// piggybacked ACK for a CON, a NON for a NON.
    pub fn respond(&mut self, now: Instant, meta: RequestMeta, mut response: Packet) {
        response.header.set_version(1);
        if meta.confirmable {
            response.header.set_type(MessageType::Acknowledgement);
            response.header.message_id = meta.message_id;
        } else {
            response.header.set_type(MessageType::NonConfirmable);
            response.header.message_id = self.ctx.message_id();
        }
        response.set_token(meta.token.clone());
        if let Some(b) = meta.block1 {
            if response.get_first_option(CoapOption::Block1).is_none() {
                let echo = Block { more: false, ..b };
                response.add_option(CoapOption::Block1, echo.encode());
            }
        }
        if let (Some(limit), Some(guard)) = (meta.response_limit, self.guard.as_ref()) {
            let echo = guard.echo_value(now, meta.peer.ip());
            let fitted = amplification::fit(&mut response, limit, &echo, meta.block2, meta.safe);
            let action = match fitted {
                Fitted::AsIs => None,
                Fitted::Shrunk => Some("shrunk"),
                Fitted::Trimmed => Some("trimmed"),
                Fitted::Challenged => Some("challenged"),
            };
            if let Some(action) = action {
                tracing::debug!(peer = %meta.peer, action, "response to an unverified address bounded");
                metrics::counter!(amplification::BOUNDED, "action" => action).increment(1);
            }
        }
        let bytes: Arc<[u8]> = match response.to_bytes() {
            Ok(bytes) => bytes.into(),
            Err(e) => {
                tracing::warn!("response could not be encoded: {e:?}");
                let mut fallback = error_response(ResponseType::InternalServerError, "");
                fallback.header = response.header.clone();
                fallback.set_token(meta.token.clone());
                match fallback.to_bytes() {
                    Ok(bytes) => bytes.into(),
                    Err(_) => return,
                }
            }
        };
        if meta.remembered {
            self.ctx
                .dedup
                .complete(meta.peer, meta.message_id, bytes.clone());
        }
        self.ctx.send(meta.peer, bytes);
    }

    /// Answers a GET with Observe=0 (`meta.observe`) and makes an observe
    /// relation (RFC 7641 §4.1). A non-2.xx response, a request without
    /// Observe=0 or a full relation table: answered like
    /// [`respond`](Self::respond), and `None`.
    pub fn accept_observe(
        &mut self,
        now: Instant,
        meta: RequestMeta,
        mut response: Packet,
    ) -> Option<RelationId> {
        let relation = if meta.observe && message::is_success(response.header.code) {
            let unverified = meta.response_limit.is_some() && self.guard.is_some();
            self.relations
                .establish(&mut self.ctx, now, meta.peer, &meta.token, unverified)
        } else {
            None
        };
        match relation {
            Some((id, seq)) => {
                response.set_observe_value(seq);
                self.respond(now, meta, response);
                Some(id)
            }
            None => {
                response.clear_option(CoapOption::Observe);
                self.respond(now, meta, response);
                None
            }
        }
    }

    /// Sends a notification on `relation`: NON, and CON at least once in
    /// 24 h (RFC 7641 §4.5). A non-2.xx `packet` ends the relation.
    pub fn notify(
        &mut self,
        now: Instant,
        relation: RelationId,
        packet: Packet,
    ) -> Result<(), NotifyError> {
        self.relations
            .notify(&mut self.ctx, now, relation, packet, false)
    }

    /// Like [`notify`](Self::notify), but always CON (retransmitted; the
    /// relation ends with `Why::TimedOut` if never ACKed).
    pub fn notify_confirmable(
        &mut self,
        now: Instant,
        relation: RelationId,
        packet: Packet,
    ) -> Result<(), NotifyError> {
        self.relations
            .notify(&mut self.ctx, now, relation, packet, true)
    }

    /// Drops a relation without telling the peer (its next notification
    /// would; RFC 7641 lets the server forget observers).
    pub fn end_relation(&mut self, relation: RelationId) -> bool {
        self.relations.remove(&mut self.ctx, relation)
    }

    /// Starts an outgoing request (contract step 3): CON unless `packet`'s
    /// type is NON; a body larger than the Block1 size goes in pieces; a
    /// Block2 response is followed to its end unless `packet` asks for one
    /// block itself. At most NSTART exchanges per peer are in flight; the
    /// rest wait in a bounded queue.
    pub fn request(&mut self, now: Instant, peer: SocketAddr, packet: Packet) -> ExchangeId {
        self.exchanges
            .start(&mut self.ctx, now, peer, packet, false)
    }

    /// Registers as an observer (a GET with Observe=0 is made of `packet`).
    /// Notifications arrive as [`Event::Notification`], in order.
    pub fn observe(&mut self, now: Instant, peer: SocketAddr, packet: Packet) -> ExchangeId {
        self.exchanges.start(&mut self.ctx, now, peer, packet, true)
    }

    /// Forgets an exchange or observation without an event; later
    /// notifications of it are answered with RST (RFC 7641 §3.6).
    pub fn cancel(&mut self, now: Instant, id: ExchangeId) -> bool {
        self.exchanges.cancel(&mut self.ctx, now, id)
    }

    /// Same as [`cancel`](Self::cancel), under the name RFC 7641 readers
    /// look for.
    pub fn cancel_observe(&mut self, now: Instant, id: ExchangeId) -> bool {
        self.cancel(now, id)
    }

    /// `peer` can hear us now (a queue-mode LwM2M device sent an
    /// Update): requests to it waiting for an ACK are retransmitted at
    /// once rather than at their back-off.
    pub fn peer_awake(&mut self, now: Instant, peer: SocketAddr) {
        self.exchanges.peer_awake(&mut self.ctx, now, peer);
    }

    /// The next event for the application (contract step 5).
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.ctx.events.pop_front()
    }

    /// The next datagram to send (contract step 5).
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ctx.transmits.pop_front()
    }

    /// The earliest deadline of any timer (contract step 6).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ctx.timers.next()
    }

    /// Runs every timer due at `now`: retransmissions, give-ups,
    /// deduplication expiry, Block1 expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.ctx.timers.pop_due(now) {
            match timer {
                Timer::Retransmit(_) | Timer::ResponseDeadline(_) => {
                    self.exchanges.on_timer(&mut self.ctx, now, timer)
                }
                Timer::NotificationRetransmit(id) => {
                    self.relations.on_timer(&mut self.ctx, now, id)
                }
                Timer::DedupExpiry => {
                    self.ctx.dedup.expire(now);
                    self.ctx.refresh_dedup_timer();
                }
                Timer::Block1Expiry(id) => self.assemblies.on_timer(&mut self.ctx, id),
            }
        }
    }

    /// Marks `ip` as receiving our datagrams (RFC 9175 §2.4 item 3): its
    /// responses are no longer bounded. For proofs the endpoint cannot see
    /// itself, e.g. another shard's Echo or a response it matched.
    pub fn mark_verified(&mut self, now: Instant, ip: std::net::IpAddr) {
        if let Some(guard) = self.guard.as_mut() {
            guard.verify(now, ip, Proof::Application);
        }
    }

    /// An address this endpoint verified (valid Echo, or an answer to a
    /// request it sent), for the shell to pass to
    /// [`mark_verified`](Self::mark_verified) of its other endpoints.
    #[must_use]
    pub fn poll_verified(&mut self) -> Option<std::net::IpAddr> {
        self.guard.as_mut().and_then(Guard::poll_verified)
    }

    /// Verified addresses remembered (for metrics and tests).
    pub fn verified_addresses(&mut self, now: Instant) -> usize {
        self.guard.as_mut().map_or(0, |g| {
            g.expire(now);
            g.len()
        })
    }

    /// Number of remembered exchanges (for metrics and tests).
    pub fn remembered_exchanges(&self) -> usize {
        self.ctx.dedup.len()
    }

    /// Outgoing exchanges alive, observe relations served, Block1 bodies
    /// being reassembled (for metrics and tests).
    pub fn load(&self) -> (usize, usize, usize) {
        (
            self.exchanges.len(),
            self.relations.len(),
            self.assemblies.len(),
        )
    }

    fn handle_inner(
        &mut self,
        now: Instant,
        local: SocketAddr,
        peer: SocketAddr,
        datagram: &[u8],
        may_forward: bool,
    ) {
        match message::check(datagram) {
            Format::Ok => {}
            Format::Garbage => {
                tracing::debug!(%peer, "undecodable datagram dropped");
                dropped("undecodable");
                return;
            }
            Format::Error {
                confirmable,
                message_id,
            } => {
                tracing::debug!(%peer, "message format error");
                dropped("format_error");
                if confirmable {
                    self.ctx.send_empty(peer, MessageType::Reset, message_id);
                }
                return;
            }
        }
        let packet = match Packet::from_bytes(datagram) {
            Ok(packet) => packet,
            Err(e) => {
                tracing::debug!(%peer, "undecodable datagram dropped: {e:?}");
                dropped("undecodable");
                return;
            }
        };
        let kind = packet.header.get_type();
        let mid = packet.header.message_id;
        match packet.header.code {
            MessageClass::Empty => match kind {
                // A CON ping is answered with RST (§4.3).
                MessageType::Confirmable => self.ctx.send_empty(peer, MessageType::Reset, mid),
                MessageType::NonConfirmable => {}
                MessageType::Acknowledgement | MessageType::Reset => {
                    let reset = kind == MessageType::Reset;
                    let ours = self
                        .exchanges
                        .on_empty(&mut self.ctx, now, peer, mid, reset)
                        || self
                            .relations
                            .on_empty(&mut self.ctx, now, peer, mid, reset);
                    if !ours && may_forward {
                        self.unmatched(local, peer, datagram);
                    }
                }
            },
            MessageClass::Request(method) => {
                self.on_request(now, local, peer, packet, method, datagram.len())
            }
            // §5.8: codes 0.08-0.31 are methods this server does not know.
            MessageClass::Reserved(code) if code >> 5 == 0 => self.on_request(
                now,
                local,
                peer,
                packet,
                RequestType::UnKnown,
                datagram.len(),
            ),
            MessageClass::Response(_) => {
                self.on_response(now, local, peer, packet, datagram, may_forward)
            }
            // Response codes coap-lite has no name for (say 4.07) are still
            // responses (§5.9: unknown codes are treated like x.00).
            MessageClass::Reserved(code) if matches!(code >> 5, 2 | 4 | 5) => {
                self.on_response(now, local, peer, packet, datagram, may_forward)
            }
            MessageClass::Reserved(code) => {
                tracing::debug!(%peer, "reserved code class {}", code >> 5);
                if kind == MessageType::Confirmable {
                    self.ctx.send_empty(peer, MessageType::Reset, mid);
                }
            }
        }
    }

    fn on_request(
        &mut self,
        now: Instant,
        local: SocketAddr,
        peer: SocketAddr,
        mut packet: Packet,
        method: RequestType,
        datagram_len: usize,
    ) {
        let kind = packet.header.get_type();
        if matches!(kind, MessageType::Acknowledgement | MessageType::Reset) {
            tracing::debug!(%peer, "request in ACK/RST dropped");
            dropped("request_in_ack_or_rst");
            return;
        }
        let confirmable = kind == MessageType::Confirmable;
        // A Block1 piece is remembered whatever the method: its retransmission
        // must get the same answer, not be taken for a gap.
        let remembered = !matches!(method, RequestType::Get | RequestType::Fetch)
            || packet.get_first_option(CoapOption::Block1).is_some();
        let observe_value = packet
            .get_first_option(CoapOption::Observe)
            .and_then(|v| message::read_uint(v));
        let mut meta = RequestMeta {
            peer,
            message_id: packet.header.message_id,
            token: packet.get_token().to_vec(),
            confirmable,
            remembered,
            observe: method == RequestType::Get && observe_value == Some(0),
            block1: None,
            block2: packet
                .get_first_option(CoapOption::Block2)
                .and_then(|v| Block::parse(v).ok()),
            safe: matches!(method, RequestType::Get | RequestType::Fetch),
            response_limit: None,
        };
        if self.identity.is_none() {
            if let Some(guard) = self.guard.as_mut() {
                let echo = packet.get_first_option(amplification::ECHO);
                meta.response_limit =
                    guard.limit(now, peer, datagram_len, echo.map(|v| v.as_slice()));
            }
        }
        if remembered {
            let seen = self.ctx.dedup.check(now, peer, meta.message_id);
            self.ctx.refresh_dedup_timer();
            match seen {
                Seen::New => {}
                Seen::Full => {
                    // Not recorded: only a request that is harmless to
                    // apply twice may go on (PUT, DELETE, iPATCH, ...).
                    meta.remembered = false;
                    let once_only = matches!(method, RequestType::Post | RequestType::Patch)
                        || packet.get_first_option(CoapOption::Block1).is_some();
                    if once_only {
                        tracing::debug!(%peer, "dedup cache full of requests in progress: 5.03");
                        let mut reply = error_response(
                            ResponseType::ServiceUnavailable,
                            "too many requests in progress",
                        );
                        reply.add_option(CoapOption::MaxAge, vec![5]);
                        self.respond(now, meta, reply);
                        return;
                    }
                }
                Seen::InProgress => return,
                Seen::Answered(bytes) => {
                    self.ctx.send(peer, bytes);
                    return;
                }
            }
        }
        let accept: &[u16] = if self.understand_accept { &[17] } else { &[] };
        let bad_option = message::unsupported_critical_option_but(&packet, accept)
            .or_else(|| message::repeated_critical_option(&packet));
        if let Some(number) = bad_option {
            if !confirmable {
                // §5.4.1: a NON with an unrecognised critical option is
                // rejected silently.
                tracing::debug!(%peer, number, "NON with a bad critical option dropped");
                dropped("bad_critical_option");
                return;
            }
            let code = if number == 35 || number == 39 {
                ResponseType::ProxyingNotSupported
            } else {
                ResponseType::BadOption
            };
            self.respond(
                now,
                meta,
                error_response(code, "unsupported critical option"),
            );
            return;
        }
        if method == RequestType::UnKnown {
            self.respond(
                now,
                meta,
                error_response(ResponseType::MethodNotAllowed, ""),
            );
            return;
        }
        if method == RequestType::Get {
            // RFC 7641 §3.6 / §4.1: a deregistration, or a registration
            // with the token of a live relation, ends that relation.
            let why = match observe_value {
                Some(0) => Some(Why::Replaced),
                Some(1) => Some(Why::Deregistered),
                _ => None,
            };
            if let Some(why) = why {
                self.relations
                    .end_key(&mut self.ctx, peer, &meta.token, why);
            }
        }
        if let Some(raw) = packet.get_first_option(CoapOption::Block1) {
            let block = match Block::parse(raw) {
                Ok(block) => block,
                Err(e) => {
                    self.respond(
                        now,
                        meta,
                        error_response(ResponseType::BadOption, &e.to_string()),
                    );
                    return;
                }
            };
            match self
                .assemblies
                .offer(&mut self.ctx, now, peer, &packet, block)
            {
                Piece::Respond(reply) => {
                    self.respond(now, meta, reply);
                    return;
                }
                Piece::Complete(body) => {
                    packet.payload = body;
                    packet.clear_option(CoapOption::Block1);
                    packet.clear_option(CoapOption::Size1);
                    meta.block1 = Some(block);
                }
            }
        }
        self.ctx.events.push_back(Event::Request(IncomingRequest {
            meta,
            method,
            packet,
            local,
            identity: self.identity.clone(),
        }));
    }

    fn on_response(
        &mut self,
        now: Instant,
        local: SocketAddr,
        peer: SocketAddr,
        packet: Packet,
        datagram: &[u8],
        may_forward: bool,
    ) {
        let kind = packet.header.get_type();
        let mid = packet.header.message_id;
        if kind == MessageType::Reset {
            tracing::debug!(%peer, "RST with a code dropped");
            dropped("rst_with_code");
            return;
        }
        if kind == MessageType::Confirmable {
            // A retransmitted separate response or notification whose ACK
            // was lost: ACK it again, deliver nothing twice.
            if let Some(Seen::Answered(bytes)) = self.ctx.dedup.peek(now, peer, mid) {
                self.ctx.send(peer, bytes);
                return;
            }
        }
        if self.exchanges.on_response(&mut self.ctx, now, peer, packet) {
            // It answered a request of ours, token and all: it receives
            // our datagrams (RFC 9175 §2.4 item 3).
            if let Some(guard) = self.guard.as_mut() {
                guard.verify(now, peer.ip(), Proof::Response);
            }
            return;
        }
        if may_forward {
            self.unmatched(local, peer, datagram);
        } else if kind != MessageType::Acknowledgement {
            // Unknown token: reject (§5.3.2; RFC 7641 §3.6 for notifications).
            self.ctx.send_empty(peer, MessageType::Reset, mid);
        }
    }

    fn unmatched(&mut self, local: SocketAddr, peer: SocketAddr, datagram: &[u8]) {
        self.ctx.events.push_back(Event::Unmatched {
            local,
            peer,
            datagram: datagram.to_vec(),
        });
    }
}

/// Counts a datagram dropped without being delivered (issue 12 item 2;
/// `lwota_coap_datagrams_dropped_total{reason}`). A metrics counter is no
/// I/O: the endpoint stays sans-IO.
fn dropped(reason: &'static str) {
    metrics::counter!(crate::telemetry::DATAGRAMS_DROPPED, "reason" => reason).increment(1);
}
