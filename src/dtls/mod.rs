//! DTLS 1.2 with pre-shared keys for CoAPS (RFC 6347, RFC 7925 profile),
//! sans-IO: nothing here owns a socket or spawns a task.
//!
//! Two layers:
//!
//! - [`Engine`] / [`Session`]: the small trait a DTLS implementation fills
//!   in. `openssl.rs` is the one implementation (OpenSSL driven through
//!   in-memory datagram queues; docs/ARCHITECTURE.md says why not `dimpl`).
//! - [`table::SessionTable`]: one per CoAPS shard, between the socket and
//!   the CoAP `Endpoint`. It owns every session by peer address, enforces
//!   the caps (half-open handshakes in total and per source address,
//!   established sessions), handshake deadlines and idle expiry, and turns
//!   ciphertext into plaintext events and plaintext into ciphertext.
//!
//! Driving contract of the table (the CoAPS shard follows it):
//!
//! 1. For every datagram from the socket call `handle(now, peer, bytes)`.
//! 2. For every datagram the CoAP endpoint wants to send call
//!    `send(now, peer, plaintext)` (dropped when the peer has no
//!    established session: a server cannot start a PSK handshake).
//! 3. Drain: `poll_event` (plaintext with the peer's authenticated
//!    identity) and `poll_transmit` (ciphertext for the socket) until
//!    both are `None`.
//! 4. Call `handle_timeout(now)` once `poll_timeout()` is reached
//!    (retransmission of lost flights, handshake deadlines, idle expiry),
//!    then drain again.
//!
//! The one exception to "no clock inside": OpenSSL times its own flight
//! retransmissions with the system clock. The table still asks for and
//! reports the deadline (`DTLSv1_get_timeout`) and only calls in when its
//! caller says the time has come, so retransmissions happen in the
//! caller's loop; the table's own deadlines (handshake, idle) use `now`.

pub mod keys;
pub mod openssl;
pub mod table;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

pub use crate::coap::PeerIdentity;

/// What the engine answers to a datagram from a peer without a session.
pub enum Accept<S> {
    /// A stateless answer (HelloVerifyRequest with a cookie); nothing kept.
    Reply(Vec<u8>),
    /// The peer returned a valid cookie: a handshake in progress (half-open).
    Session(S),
    /// Not a ClientHello, or malformed: dropped, the reason for metrics.
    Drop(&'static str),
}

/// A server-side DTLS implementation: makes sessions from ClientHellos.
pub trait Engine {
    type Session: Session;
    /// A datagram from `peer`, which has no session (or sends a new
    /// ClientHello over an old one). Must keep no state unless the
    /// ClientHello carries a valid cookie for `peer` (RFC 6347 §4.2.1).
    fn accept(&mut self, now: Instant, peer: SocketAddr, datagram: &[u8]) -> Accept<Self::Session>;
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The client named an identity no device has.
    UnknownIdentity(String),
    /// The handshake failed (wrong key, protocol error, bad record).
    Handshake(String),
    /// The peer sent close_notify or a fatal alert after the handshake.
    Closed,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::UnknownIdentity(id) => write!(f, "unknown PSK identity {id:?}"),
            Failure::Handshake(why) => write!(f, "handshake failed: {why}"),
            Failure::Closed => write!(f, "closed by the peer"),
        }
    }
}

/// One DTLS association with one peer. Every method is sans-IO: input
/// bytes in, output bytes queued for `poll_transmit`/`poll_plaintext`.
pub trait Session {
    /// A datagram from the peer (handshake or application records).
    fn handle(&mut self, now: Instant, datagram: &[u8]) -> Result<(), Failure>;
    /// Encrypts one plaintext datagram (the session must be established).
    fn send(&mut self, now: Instant, plaintext: &[u8]) -> Result<(), Failure>;
    /// The next ciphertext datagram for the peer.
    fn poll_transmit(&mut self) -> Option<Vec<u8>>;
    /// The next decrypted datagram from the peer.
    fn poll_plaintext(&mut self) -> Option<Vec<u8>>;
    /// When a lost flight must be sent again (handshake only).
    fn poll_timeout(&self, now: Instant) -> Option<Instant>;
    /// Retransmits the last flight if its timer ran out.
    fn handle_timeout(&mut self, now: Instant) -> Result<(), Failure>;
    /// Whether the handshake is complete.
    fn is_established(&self) -> bool;
    /// Who the peer proved to be, once the handshake is complete.
    fn identity(&self) -> Option<Arc<PeerIdentity>>;
    /// The negotiated cipher suite's name (for logs and tests).
    fn cipher(&self) -> Option<String>;
}

/// Is this datagram a plaintext (epoch 0) ClientHello? A new one over an
/// established session means the device restarted (RFC 6347 §4.2.8).
pub fn is_client_hello(datagram: &[u8]) -> bool {
    // Record: type(1) version(2) epoch(2) seq(6) length(2), then the
    // handshake header whose first byte is the message type.
    datagram.len() > 13
        && datagram[0] == 22
        && datagram[3] == 0
        && datagram[4] == 0
        && datagram[13] == 1
}
