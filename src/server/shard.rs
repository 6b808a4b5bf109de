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
use quinn_udp::{RecvMeta, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use crate::coap::endpoint::error_response;
use crate::coap::{Endpoint, Event, ExchangeId, RequestMeta, Why};
use crate::resources::{self, Reply};
use crate::state::App;

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
        })
    }

    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let batch = quinn_udp::BATCH_SIZE.max(1);
        let mut buffers = RecvBuffers {
            bufs: (0..batch).map(|_| vec![0u8; DATAGRAM_MAX]).collect(),
            meta: vec![RecvMeta::default(); batch],
        };
        loop {
            let deadline = self.endpoint.poll_timeout();
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
                    self.endpoint.handle_timeout(Instant::now());
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
                    let now = Instant::now();
                    if !self.limiter.admit(now, &peer) {
                        metrics::counter!("lwota_coap_rate_limited_total").increment(1);
                        continue;
                    }
                    self.endpoint.handle(now, local, peer, datagram);
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
                match self.socket.try_send_to(&t.bytes, t.peer) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if let Err(e) = self.socket.send_to(&t.bytes, t.peer).await {
                            tracing::debug!(peer = %t.peer, "udp send: {e}");
                        }
                    }
                    Err(e) => tracing::debug!(peer = %t.peer, "udp send: {e}"),
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::Request(request) => match resources::dispatch(&self.app, &request) {
                Reply::Now(packet) => self.endpoint.respond(now, request.meta, packet),
                Reply::Later(future) => {
                    let tx = self.shards[self.index].clone();
                    let meta = request.meta;
                    tokio::spawn(async move {
                        // A panic must still answer, or the exchange stays
                        // "in progress" and retransmissions go unanswered.
                        let packet = std::panic::AssertUnwindSafe(future)
                            .catch_unwind()
                            .await
                            .unwrap_or_else(|_| {
                                error_response(ResponseType::InternalServerError, "internal error")
                            });
                        let _ = tx.send(ShardMsg::Reply { meta, packet }).await;
                    });
                }
            },
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

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
