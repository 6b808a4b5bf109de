//! The CoAP side of the server: N shards, each one UDP socket bound with
//! `SO_REUSEPORT` to the same address and one [`Endpoint`] owned by `&mut`
//! in its own loop (`shard.rs`), so nothing on the datagram path is shared.
//!
//! The kernel keeps a peer's 4-tuple on one socket, so per-shard
//! deduplication and Block1 reassembly stay correct. Outgoing requests go
//! through the cloneable [`CoapHandle`], which picks the shard that hears
//! the peer (`directory.rs`).

use std::net::SocketAddr;
use std::sync::Arc;

use coap_lite::Packet;
use tokio::sync::{mpsc, oneshot, watch};

use crate::coap::{AmplificationConfig, Endpoint, EndpointConfig, TransmissionParams, Why};
use crate::config::CoapConfig;
use crate::state::App;

use super::directory::{PeerDirectory, DIRECTORY_CAPACITY};
use super::observation::NotificationReader;
use super::shard::{Shard, ShardMsg, Waiter, CHANNEL_CAPACITY};

/// Binds `shards` UDP sockets to `addr` (port 0: a free port is picked,
/// all take the same). With one shard no `SO_REUSEPORT` is set, so the
/// socket is exactly what it was before sharding.
pub fn bind(addr: SocketAddr, shards: usize) -> std::io::Result<Vec<std::net::UdpSocket>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let shards = shards.max(1);
    if shards == 1 {
        return Ok(vec![std::net::UdpSocket::bind(addr)?]);
    }
    // SO_REUSEPORT would let this group join another process's group on
    // the same port (same user) and split its traffic silently. A plain
    // bind first proves the port free (or picks one for port 0) and gives
    // "port in use" its usual error; it is released just before the group
    // binds, a window too small to matter.
    let probe = std::net::UdpSocket::bind(addr)?;
    let mut target = probe.local_addr()?;
    drop(probe);
    let mut sockets = Vec::with_capacity(shards);
    for _ in 0..shards {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_port(true)?;
        socket.bind(&target.into())?;
        let socket: std::net::UdpSocket = socket.into();
        target = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Number of shards for `config`: `shards = 0` means one per core.
pub fn shard_count(config: &CoapConfig) -> usize {
    match config.shards {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// The endpoint settings from `[coap]`.
pub fn endpoint_config(config: &CoapConfig, shards: usize) -> EndpointConfig {
    EndpointConfig {
        params: TransmissionParams {
            ack_timeout: std::time::Duration::from_millis(config.ack_timeout_ms),
            ack_random_factor: config.ack_random_factor,
            max_retransmit: config.max_retransmit,
            nstart: config.nstart,
            ..TransmissionParams::default()
        },
        forward_unmatched: shards > 1,
        ..EndpointConfig::default()
    }
}

/// Why an outgoing request got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("{0}")]
    Failed(Why),
    #[error("the CoAP server is stopping")]
    Stopped,
}

/// Sends requests to peers from anywhere in the server. Cheap to clone.
#[derive(Clone)]
pub struct CoapHandle {
    shards: Arc<[mpsc::Sender<ShardMsg>]>,
    directory: Arc<PeerDirectory>,
    local: SocketAddr,
}

/// The notifications of an observation: `next` yields each in order, then
/// the final response (`Ok`) or the failure, then `None`. Dropping it
/// cancels the observation (the next notification gets RST).
pub struct Observation {
    rx: NotificationReader,
}

impl Observation {
    pub async fn next(&mut self) -> Option<Result<Packet, Why>> {
        self.rx.next().await
    }
}

impl CoapHandle {
    /// The address the shards are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Sends `packet` to `peer` (CON unless its type is NON) and waits for
    /// the final response, retransmissions and Block1/Block2 included.
    pub async fn request(&self, peer: SocketAddr, packet: Packet) -> Result<Packet, RequestError> {
        let (tx, rx) = oneshot::channel();
        self.send(peer, packet, false, Waiter::Once(tx)).await?;
        match rx.await {
            Ok(Ok(packet)) => Ok(packet),
            Ok(Err(why)) => Err(RequestError::Failed(why)),
            Err(_) => Err(RequestError::Stopped),
        }
    }

    /// Registers as an observer of `packet`'s resource on `peer`.
    pub async fn observe(
        &self,
        peer: SocketAddr,
        packet: Packet,
    ) -> Result<Observation, RequestError> {
        // Beyond `UNREAD_NOTIFICATIONS` unread, the oldest are dropped
        // (RFC 7641 only promises the latest state); the final outcome
        // never is.
        let (tx, rx) = super::observation::queue();
        self.send(peer, packet, true, Waiter::Stream(tx)).await?;
        Ok(Observation { rx })
    }

    /// `peer` can hear us now (a queue-mode device woke up): requests to
    /// it waiting for an ACK go out again at once. Best effort: a busy
    /// shard leaves them to their back-off.
    pub fn peer_awake(&self, peer: SocketAddr) {
        let shard = self.directory.shard_for(peer, self.shards.len());
        let _ = self.shards[shard].try_send(ShardMsg::PeerAwake(peer));
    }

    /// Cancels the exchanges with `peer`'s shard whose requester is gone
    /// (its `request` future was dropped): they are neither sent nor
    /// retransmitted any more, and free their NSTART slot. Best effort,
    /// like `peer_awake`.
    pub fn cancel_abandoned(&self, peer: SocketAddr) {
        let shard = self.directory.shard_for(peer, self.shards.len());
        let _ = self.shards[shard].try_send(ShardMsg::CancelAbandoned);
    }

    async fn send(
        &self,
        peer: SocketAddr,
        packet: Packet,
        observe: bool,
        waiter: Waiter,
    ) -> Result<(), RequestError> {
        let shard = self.directory.shard_for(peer, self.shards.len());
        self.shards[shard]
            .send(ShardMsg::Request {
                peer,
                packet,
                observe,
                waiter,
            })
            .await
            .map_err(|_| RequestError::Stopped)
    }
}

/// What a CoAPS shard needs to make its DTLS session table.
#[derive(Clone)]
pub struct DtlsSetup {
    pub keys: crate::dtls::keys::PskDirectory,
    pub config: crate::config::DtlsConfig,
}

impl DtlsSetup {
    /// A session table with a fresh cookie secret (OS randomness: this is
    /// the shell; the table and engine take it as an argument).
    fn table(&self) -> std::io::Result<super::shard::Dtls> {
        use rand::RngCore;
        let mut cookie_secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut cookie_secret);
        let engine = crate::dtls::openssl::OpensslEngine::new(
            self.keys.clone(),
            crate::dtls::openssl::EngineConfig {
                mtu: self.config.mtu,
                cookie_secret,
            },
        )
        .map_err(std::io::Error::other)?;
        let c = &self.config;
        let limits = crate::dtls::table::Limits {
            max_sessions: c.max_sessions,
            max_half_open: c.max_half_open,
            max_half_open_per_ip: c.max_half_open_per_ip,
            handshake_timeout: std::time::Duration::from_secs(c.handshake_timeout),
            idle_timeout: std::time::Duration::from_secs(c.idle_timeout),
        };
        Ok(crate::dtls::table::SessionTable::new(engine, limits))
    }
}

/// Starts one shard per socket; returns the handle and the shards' tasks.
/// With `dtls`, the shards speak CoAPS: a DTLS session table sits between
/// each socket and its endpoint.
pub fn spawn(
    sockets: Vec<tokio::net::UdpSocket>,
    app: App,
    shutdown: watch::Receiver<bool>,
    config: &CoapConfig,
    seed: u64,
    dtls: Option<DtlsSetup>,
) -> std::io::Result<(CoapHandle, Vec<tokio::task::JoinHandle<()>>)> {
    let n = sockets.len();
    let local = sockets
        .first()
        .map(|s| s.local_addr())
        .transpose()?
        .ok_or_else(|| std::io::Error::other("no CoAP socket"))?;
    let directory = Arc::new(PeerDirectory::new(DIRECTORY_CAPACITY));
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..n).map(|_| mpsc::channel(CHANNEL_CAPACITY)).unzip();
    let senders: Arc<[mpsc::Sender<ShardMsg>]> = senders.into();
    let notify_to = senders.clone();
    app.task_observers
        .set_notifier(Arc::new(move |shard, relation, packet| {
            notify_to
                .get(shard)
                .is_some_and(|tx| tx.try_send(ShardMsg::Notify { relation, packet }).is_ok())
        }));
    // One Echo key and epoch for all shards: an Echo value handed out by
    // one is good at every other. Over DTLS the handshake's cookie
    // exchange already verified the address: no bound.
    let amplification = (config.amplification_factor > 0 && dtls.is_none()).then(|| {
        use rand::RngCore;
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        AmplificationConfig {
            factor: config.amplification_factor,
            verified_for: std::time::Duration::from_secs(config.verified_for_s),
            max_verified: config.max_verified,
            secret,
            epoch: std::time::Instant::now(),
        }
    });
    let mut tasks = Vec::with_capacity(n);
    for (index, (socket, rx)) in sockets.into_iter().zip(receivers).enumerate() {
        let mut endpoint_config = endpoint_config(config, n);
        endpoint_config.amplification = amplification.clone();
        // A DTLS peer stays on the socket that holds its session, so no
        // datagram of it can belong to another shard.
        endpoint_config.forward_unmatched &= dtls.is_none();
        let endpoint = Endpoint::new(
            endpoint_config,
            seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let table = dtls.as_ref().map(DtlsSetup::table).transpose()?;
        let shard = Shard::new(
            index,
            socket,
            endpoint,
            rx,
            senders.clone(),
            directory.clone(),
            app.clone(),
        )?
        .with_dtls(table);
        tasks.push(tokio::spawn(shard.run(shutdown.clone())));
    }
    Ok((
        CoapHandle {
            shards: senders,
            directory,
            local,
        },
        tasks,
    ))
}
