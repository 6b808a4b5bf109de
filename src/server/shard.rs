//! One shard: a UDP socket, the [`Endpoint`] it owns by `&mut`, and a loop
//! that follows the endpoint's driving contract (see `coap/endpoint.rs`).
//!
//! The loop sleeps until a datagram, a message on its channel (a deferred
//! reply, a request from [`CoapHandle`](super::coap_shell::CoapHandle), a
//! datagram forwarded by another shard), the endpoint's next deadline, or
//! shutdown. Every shard runs its own timers.

use std::collections::{HashMap, HashSet};
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use coap_lite::{Packet, ResponseType};
use futures_util::FutureExt;
use metrics::{Counter, Gauge};
use quinn_udp::{RecvMeta, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use crate::coap::endpoint::error_response;
use crate::coap::{Endpoint, Event, ExchangeId, RequestMeta, Why};
use crate::resources::{self, Reply};
use crate::state::App;
use crate::telemetry;

use super::directory::PeerDirectory;
use super::observation::NotificationSender;

/// Messages queued per shard before senders wait (deferred replies and
/// requests: back-pressure, not loss).
pub const CHANNEL_CAPACITY: usize = 4096;

/// Batches (up to `quinn_udp::BATCH_SIZE` datagrams each, one recvmmsg)
/// read in one go before the loop looks at its channel and timers again:
/// fairness between the socket and everything else.
const BURST: usize = 4;

/// Largest UDP payload: a datagram that big is garbage for us but must not
/// be truncated into something that parses. Pages are touched only as
/// datagrams land in them, so the batch costs little resident memory.
const DATAGRAM_MAX: usize = 65_535;

/// Receive buffers of one shard, reused for every batch.
struct RecvBuffers {
    bufs: Vec<Vec<u8>>,
    meta: Vec<RecvMeta>,
}

/// Peers this shard remembers having recorded in the directory; cleared
/// when full (the next datagram of each records it again, harmlessly).
const HEARD_CAPACITY: usize = 65_536;

/// Sources with a rate bucket per shard (see `coap::rate`).
const RATE_TABLE_CAPACITY: usize = 100_000;

pub enum ShardMsg {
    /// A resource's deferred answer to a request this shard received.
    Reply { meta: RequestMeta, packet: Packet },
    /// An outgoing request (or observation) for a peer this shard hears.
    Request {
        peer: SocketAddr,
        packet: Packet,
        observe: bool,
        waiter: Waiter,
    },
    /// A notification for an observe relation this shard serves
    /// (`resources/task_observe.rs`).
    Notify {
        relation: crate::coap::RelationId,
        packet: Packet,
    },
    /// The peer woke up: retransmit what waits for its ACK now.
    PeerAwake(SocketAddr),
    /// Cancel the exchanges whose requester stopped waiting.
    CancelAbandoned,
    /// Another shard verified this address (RFC 9175 Echo, or an answer
    /// to its request): responses to it are no longer bounded here either.
    Verified(std::net::IpAddr),
    /// A response no exchange of the previous shard matched.
    Forwarded {
        local: SocketAddr,
        peer: SocketAddr,
        datagram: Vec<u8>,
        hops: usize,
    },
}

/// Who waits for an outgoing exchange's outcome.
pub enum Waiter {
    Once(oneshot::Sender<Result<Packet, Why>>),
    Stream(NotificationSender),
}

/// The DTLS layer of a CoAPS shard (`dtls/`): ciphertext from the socket
/// becomes plaintext for the endpoint, the endpoint's datagrams become
/// ciphertext for the socket.
pub type Dtls = crate::dtls::table::SessionTable<crate::dtls::openssl::OpensslEngine>;

pub struct Shard {
    index: usize,
    socket: UdpSocket,
    /// quinn-udp reads batches with recvmmsg and reports each datagram's
    /// destination address (IP_PKTINFO), which the request must carry
    /// when the socket is bound to 0.0.0.0 or [::].
    state: UdpSocketState,
    local: SocketAddr,
    endpoint: Endpoint,
    rx: mpsc::Receiver<ShardMsg>,
    shards: Arc<[mpsc::Sender<ShardMsg>]>,
    directory: Arc<PeerDirectory>,
    app: App,
    waiters: HashMap<ExchangeId, Waiter>,
    heard: HashSet<SocketAddr>,
    /// Issue 11 item 4: datagrams per second per source address.
    limiter: crate::coap::rate::RateLimiter<SocketAddr>,
    /// How many shards the datagram being handled has passed through.
    hops: usize,
    /// CoAPS: the session table between the socket and the endpoint.
    dtls: Option<Dtls>,
    /// Handles registered once (cheap on the datagram path).
    meters: ShardMeters,
}

/// This shard's metrics (issue 12 item 2).
struct ShardMeters {
    received: Counter,
    sent: Counter,
    send_failed: Counter,
    dedup: Gauge,
    observe: Gauge,
    block1: Gauge,
    exchanges: Gauge,
    verified: Gauge,
}

impl ShardMeters {
    fn new(index: usize) -> ShardMeters {
        let shard = index.to_string();
        ShardMeters {
            received: metrics::counter!(telemetry::DATAGRAMS_RECEIVED),
            sent: metrics::counter!(telemetry::DATAGRAMS_SENT),
            send_failed: metrics::counter!(telemetry::DATAGRAMS_DROPPED, "reason" => "send_failed"),
            dedup: metrics::gauge!(telemetry::DEDUP_ENTRIES, "shard" => shard.clone()),
            observe: metrics::gauge!(telemetry::OBSERVE_RELATIONS, "shard" => shard.clone()),
            block1: metrics::gauge!(telemetry::BLOCK1_BODIES, "shard" => shard.clone()),
            exchanges: metrics::gauge!(telemetry::OUTGOING_EXCHANGES, "shard" => shard.clone()),
            verified: metrics::gauge!("lwota_coap_verified_addresses", "shard" => shard),
        }
    }
}

impl Shard {
    pub fn new(
        index: usize,
        socket: UdpSocket,
        endpoint: Endpoint,
        rx: mpsc::Receiver<ShardMsg>,
        shards: Arc<[mpsc::Sender<ShardMsg>]>,
        directory: Arc<PeerDirectory>,
        app: App,
    ) -> std::io::Result<Shard> {
        let local = socket.local_addr()?;
        let state = UdpSocketState::new((&socket).into())?;
        let limiter = crate::coap::rate::RateLimiter::new(
            f64::from(app.config.abuse.requests_per_s),
            app.config.abuse.burst,
            RATE_TABLE_CAPACITY,
        );
        Ok(Shard {
            index,
            socket,
            state,
            local,
            endpoint,
            rx,
            shards,
            directory,
            app,
            waiters: HashMap::new(),
            heard: HashSet::new(),
            limiter,
            hops: 0,
            dtls: None,
            meters: ShardMeters::new(index),
        })
    }

    /// Makes this a CoAPS shard: datagrams pass through `dtls`.
    pub fn with_dtls(mut self, dtls: Option<Dtls>) -> Shard {
        self.dtls = dtls;
        self
    }

    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let batch = quinn_udp::BATCH_SIZE.max(1);
        let mut buffers = RecvBuffers {
            bufs: (0..batch).map(|_| vec![0u8; DATAGRAM_MAX]).collect(),
            meta: vec![RecvMeta::default(); batch],
        };
        loop {
            let deadline = match (
                self.endpoint.poll_timeout(),
                self.dtls.as_ref().and_then(|d| d.poll_timeout()),
            ) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                ready = self.socket.readable() => {
                    if let Err(e) = ready {
                        tracing::debug!("udp readable: {e}");
                        continue;
                    }
                    self.read_burst(&mut buffers).await;
                }
                msg = self.rx.recv() => {
                    if let Some(msg) = msg {
                        self.on_msg(msg).await;
                    }
                }
                _ = sleep_until(deadline) => {
                    let now = Instant::now();
                    self.endpoint.handle_timeout(now);
                    if let Some(dtls) = self.dtls.as_mut() {
                        dtls.handle_timeout(now);
                    }
                    self.drain().await;
                }
                _ = shutdown.changed() => break,
            }
        }
    }

    async fn read_burst(&mut self, buffers: &mut RecvBuffers) {
        for _ in 0..BURST {
            let received = {
                let mut slices: Vec<IoSliceMut<'_>> = buffers
                    .bufs
                    .iter_mut()
                    .map(|b| IoSliceMut::new(b))
                    .collect();
                let (socket, state, meta) = (&self.socket, &self.state, &mut buffers.meta);
                socket.try_io(Interest::READABLE, || {
                    state.recv(socket.into(), &mut slices, meta)
                })
            };
            let count = match received {
                Ok(count) => count,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // ICMP errors surface here on some platforms; not fatal.
                    tracing::debug!("udp recv: {e}");
                    continue;
                }
            };
            for i in 0..count {
                let meta = buffers.meta[i];
                let local = meta
                    .dst_ip
                    .map_or(self.local, |ip| SocketAddr::new(ip, self.local.port()));
                let peer = meta.addr;
                self.record_peer(peer);
                let data = &buffers.bufs[i][..meta.len.min(DATAGRAM_MAX)];
                // With UDP GRO one buffer may hold several datagrams of
                // `stride` bytes each.
                for datagram in data.chunks(meta.stride.max(1)) {
                    self.meters.received.increment(1);
                    let now = Instant::now();
                    if !self.limiter.admit(now, &peer) {
                        metrics::counter!("lwota_coap_rate_limited_total").increment(1);
                        continue;
                    }
                    match self.dtls.as_mut() {
                        Some(dtls) => {
                            dtls.handle(now, peer, datagram);
                            while let Some(p) = dtls.poll_plaintext() {
                                self.endpoint
                                    .handle_secure(now, local, p.peer, &p.data, p.identity);
                            }
                        }
                        None => self.endpoint.handle(now, local, peer, datagram),
                    }
                    self.drain().await;
                }
            }
        }
    }

    /// Tells the directory that this shard hears `peer`, once.
    fn record_peer(&mut self, peer: SocketAddr) {
        if !self.heard.contains(&peer) {
            if self.heard.len() >= HEARD_CAPACITY {
                self.heard.clear();
            }
            self.heard.insert(peer);
            self.directory.record(peer, self.index);
        }
    }

    async fn on_msg(&mut self, msg: ShardMsg) {
        let now = Instant::now();
        match msg {
            ShardMsg::Reply { meta, packet } => self.endpoint.respond(now, meta, packet),
            ShardMsg::Request {
                peer,
                packet,
                observe,
                waiter,
            } => {
                let id = if observe {
                    self.endpoint.observe(now, peer, packet)
                } else {
                    self.endpoint.request(now, peer, packet)
                };
                self.waiters.insert(id, waiter);
            }
            ShardMsg::Verified(ip) => self.endpoint.mark_verified(now, ip),
            ShardMsg::PeerAwake(peer) => self.endpoint.peer_awake(now, peer),
            ShardMsg::CancelAbandoned => {
                let abandoned: Vec<ExchangeId> = self
                    .waiters
                    .iter()
                    .filter(|(_, w)| matches!(w, Waiter::Once(tx) if tx.is_closed()))
                    .map(|(id, _)| *id)
                    .collect();
                for id in abandoned {
                    self.waiters.remove(&id);
                    self.endpoint.cancel(now, id);
                }
            }
            ShardMsg::Notify { relation, packet } => {
                if self.endpoint.notify(now, relation, packet).is_err() {
                    self.app.task_observers.ended(self.index, relation);
                }
            }
            ShardMsg::Forwarded {
                local,
                peer,
                datagram,
                hops,
            } => {
                let may_forward = hops + 1 < self.shards.len();
                self.hops = hops;
                self.endpoint
                    .handle_forwarded(now, local, peer, &datagram, may_forward);
                // Events of a forwarded datagram are drained right here.
                self.drain().await;
                self.hops = 0;
                return;
            }
        }
        self.drain().await;
    }

    /// Contract step 5: events and datagrams until none is left.
    async fn drain(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(event) = self.endpoint.poll_event() {
                progressed = true;
                self.on_event(event);
            }
            while let Some(t) = self.endpoint.poll_transmit() {
                progressed = true;
                match self.dtls.as_mut() {
                    Some(dtls) => {
                        dtls.send(Instant::now(), t.peer, &t.bytes);
                    }
                    None => self.send_datagram(t.peer, &t.bytes).await,
                }
            }
            while let Some((peer, bytes)) = self.dtls.as_mut().and_then(|d| d.poll_transmit()) {
                progressed = true;
                self.send_datagram(peer, &bytes).await;
            }
            while let Some(ip) = self.endpoint.poll_verified() {
                for (i, tx) in self.shards.iter().enumerate() {
                    if i != self.index && tx.try_send(ShardMsg::Verified(ip)).is_err() {
                        // That shard verifies the address itself later.
                        tracing::debug!(%ip, "verified address not passed on: shard busy");
                    }
                }
            }
            if !progressed {
                let (exchanges, relations, bodies) = self.endpoint.load();
                let verified = self.endpoint.verified_addresses(Instant::now());
                self.meters.verified.set(verified as f64);
                self.meters.exchanges.set(exchanges as f64);
                self.meters.observe.set(relations as f64);
                self.meters.block1.set(bodies as f64);
                self.meters
                    .dedup
                    .set(self.endpoint.remembered_exchanges() as f64);
                return;
            }
        }
    }

    async fn send_datagram(&self, peer: SocketAddr, bytes: &[u8]) {
        let sent = match self.socket.try_send_to(bytes, peer) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.socket.send_to(bytes, peer).await.map(|_| ())
            }
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => self.meters.sent.increment(1),
            Err(e) => {
                tracing::debug!(%peer, "udp send: {e}");
                self.meters.send_failed.increment(1);
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::Request(request) => {
                // Issue 12 items 2 and 6: a span with the device and task
                // ids around the handling, and the answer counted.
                let resource = resources::resource_label(&request);
                let span = resources::request_span(&request, resource);
                let reply = span.in_scope(|| resources::dispatch(&self.app, &request));
                match reply {
                    Reply::Now(packet) => {
                        span.in_scope(|| answered(resource, &packet));
                        self.endpoint.respond(now, request.meta, packet)
                    }
                    Reply::Observe {
                        packet,
                        device,
                        sent,
                    } => {
                        span.in_scope(|| answered(resource, &packet));
                        if let Some(relation) =
                            self.endpoint.accept_observe(now, request.meta, packet)
                        {
                            let observers = &self.app.task_observers;
                            if !observers.register(&device, self.index, relation, sent) {
                                self.endpoint.end_relation(relation);
                            }
                        }
                    }
                    Reply::Later(future) => {
                        let tx = self.shards[self.index].clone();
                        let meta = request.meta;
                        let handling = async move {
                            // A panic must still answer, or the exchange stays
                            // "in progress" and retransmissions go unanswered.
                            let packet = std::panic::AssertUnwindSafe(future)
                                .catch_unwind()
                                .await
                                .unwrap_or_else(|_| {
                                    error_response(
                                        ResponseType::InternalServerError,
                                        "internal error",
                                    )
                                });
                            answered(resource, &packet);
                            let _ = tx.send(ShardMsg::Reply { meta, packet }).await;
                        };
                        tokio::spawn(handling.instrument(span));
                    }
                }
            }
            Event::Response { id, packet } => self.finish(id, Ok(packet)),
            Event::Failed { id, why } => self.finish(id, Err(why)),
            Event::Notification { id, packet } => {
                let closed = match self.waiters.get(&id) {
                    Some(Waiter::Stream(tx)) => !tx.notify(packet),
                    _ => false,
                };
                if closed {
                    self.waiters.remove(&id);
                    self.endpoint.cancel_observe(now, id);
                }
            }
            Event::RelationEnded { relation, why } => {
                tracing::debug!(?relation, "observe relation ended: {why}");
                self.app.task_observers.ended(self.index, relation);
            }
            Event::Unmatched {
                local,
                peer,
                datagram,
            } => {
                let next = (self.index + 1) % self.shards.len();
                let msg = ShardMsg::Forwarded {
                    local,
                    peer,
                    datagram,
                    hops: self.hops + 1,
                };
                if self.shards[next].try_send(msg).is_err() {
                    tracing::debug!(%peer, "unmatched datagram dropped: shard busy");
                    metrics::counter!(telemetry::DATAGRAMS_DROPPED, "reason" => "shard_busy")
                        .increment(1);
                }
            }
        }
    }

    fn finish(&mut self, id: ExchangeId, outcome: Result<Packet, Why>) {
        match self.waiters.remove(&id) {
            Some(Waiter::Once(tx)) => {
                let _ = tx.send(outcome);
            }
            Some(Waiter::Stream(tx)) => tx.finish(outcome),
            None => {}
        }
    }
}

/// Counts a request's answer and logs it (at debug, inside its span).
fn answered(resource: &'static str, packet: &Packet) {
    let code = packet.header.get_code();
    tracing::debug!(code = %code, "coap request answered");
    metrics::counter!(telemetry::COAP_REQUESTS, "resource" => resource, "code" => code)
        .increment(1);
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
