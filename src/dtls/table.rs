//! The DTLS session table of one CoAPS shard (driving contract in
//! `dtls/mod.rs`): peer address → session, with every bound enforced here.
//!
//! Bounds (docs/ARCHITECTURE.md "Bounds"): established + half-open sessions
//! (`max_sessions`), half-open handshakes in total (`max_half_open`) and per
//! source IP address (`max_half_open_per_ip`), a handshake deadline
//! (`handshake_timeout`) and idle expiry (`idle_timeout`). A peer without a
//! valid cookie costs nothing: the engine answers it statelessly.
//!
//! Metrics: `lwota_dtls_sessions`, `lwota_dtls_half_open` (gauges),
//! `lwota_dtls_handshakes_total{result="ok"|"failed"}`,
//! `lwota_dtls_hello_verify_total`, `lwota_dtls_dropped_total{reason}`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{is_client_hello, Accept, Engine, Failure, PeerIdentity, Session};

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_sessions: usize,
    pub max_half_open: usize,
    pub max_half_open_per_ip: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 10_000,
            max_half_open: 1_000,
            max_half_open_per_ip: 8,
            handshake_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
        }
    }
}

struct Entry<S> {
    session: S,
    established: bool,
    identity: Option<Arc<PeerIdentity>>,
    started: Instant,
    last_seen: Instant,
    deadline: Option<Instant>,
}

/// Plaintext from an authenticated peer.
#[derive(Debug)]
pub struct Plaintext {
    pub peer: SocketAddr,
    pub identity: Arc<PeerIdentity>,
    pub data: Vec<u8>,
}

/// Counts the table keeps for tests and `lwota bench`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    pub sessions: usize,
    pub half_open: usize,
}

pub struct SessionTable<E: Engine> {
    engine: E,
    limits: Limits,
    sessions: HashMap<SocketAddr, Entry<E::Session>>,
    half_open: usize,
    half_open_by_ip: HashMap<IpAddr, usize>,
    timers: BTreeSet<(Instant, SocketAddr)>,
    plaintext: VecDeque<Plaintext>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
}

fn dropped(reason: &'static str) {
    metrics::counter!("lwota_dtls_dropped_total", "reason" => reason).increment(1);
}

impl<E: Engine> SessionTable<E> {
    pub fn new(engine: E, limits: Limits) -> SessionTable<E> {
        SessionTable {
            engine,
            limits,
            sessions: HashMap::new(),
            half_open: 0,
            half_open_by_ip: HashMap::new(),
            timers: BTreeSet::new(),
            plaintext: VecDeque::new(),
            transmits: VecDeque::new(),
        }
    }

    pub fn stats(&self) -> TableStats {
        TableStats {
            sessions: self.sessions.len() - self.half_open,
            half_open: self.half_open,
        }
    }

    /// A datagram from the socket (contract step 1).
    pub fn handle(&mut self, now: Instant, peer: SocketAddr, datagram: &[u8]) {
        let restart = match self.sessions.get(&peer) {
            Some(entry) => entry.established && is_client_hello(datagram),
            None => true,
        };
        if !restart {
            let Some(entry) = self.sessions.get_mut(&peer) else {
                return;
            };
            entry.last_seen = now;
            let result = entry.session.handle(now, datagram);
            self.after(now, peer, result);
            return;
        }
        if !is_client_hello(datagram) {
            dropped("no_session");
            return;
        }
        match self.engine.accept(now, peer, datagram) {
            Accept::Reply(hvr) => {
                metrics::counter!("lwota_dtls_hello_verify_total").increment(1);
                self.transmits.push_back((peer, hvr));
            }
            Accept::Drop(reason) => dropped(reason),
            Accept::Session(session) => {
                let ip = peer.ip();
                let replacing = self.sessions.contains_key(&peer);
                let per_ip = self.half_open_by_ip.get(&ip).copied().unwrap_or(0);
                let reason = if self.half_open >= self.limits.max_half_open {
                    Some("half_open_full")
                } else if per_ip >= self.limits.max_half_open_per_ip {
                    Some("half_open_per_ip_full")
                } else if !replacing && self.sessions.len() >= self.limits.max_sessions {
                    Some("sessions_full")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    tracing::debug!(%peer, "dtls handshake refused: {reason}");
                    dropped(reason);
                    return;
                }
                if replacing {
                    tracing::debug!(%peer, "dtls: new handshake replaces the session");
                    self.remove(peer, "replaced");
                }
                self.half_open += 1;
                *self.half_open_by_ip.entry(ip).or_insert(0) += 1;
                metrics::gauge!("lwota_dtls_half_open").increment(1.0);
                self.sessions.insert(
                    peer,
                    Entry {
                        session,
                        established: false,
                        identity: None,
                        started: now,
                        last_seen: now,
                        deadline: None,
                    },
                );
                self.after(now, peer, Ok(()));
            }
        }
    }

    /// Encrypts a datagram for `peer` (contract step 2). False when the
    /// peer has no established session (the datagram is dropped).
    pub fn send(&mut self, now: Instant, peer: SocketAddr, plaintext: &[u8]) -> bool {
        let Some(entry) = self.sessions.get_mut(&peer) else {
            dropped("send_without_session");
            return false;
        };
        if !entry.established {
            dropped("send_without_session");
            return false;
        }
        let result = entry.session.send(now, plaintext);
        let ok = result.is_ok();
        self.after(now, peer, result);
        ok
    }

    /// Decrypted datagrams with the peer's identity (contract step 3).
    #[must_use]
    pub fn poll_plaintext(&mut self) -> Option<Plaintext> {
        self.plaintext.pop_front()
    }

    /// Ciphertext for the socket (contract step 3).
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// The earliest deadline of any session (contract step 4).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Retransmissions, handshake deadlines and idle expiry due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, peer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, peer));
            let Some(entry) = self.sessions.get_mut(&peer) else {
                continue;
            };
            if entry.deadline != Some(at) {
                continue;
            }
            entry.deadline = None;
            if entry.established {
                if entry.last_seen + self.limits.idle_timeout <= now {
                    tracing::debug!(%peer, "dtls session idle: closed");
                    self.remove(peer, "idle");
                    continue;
                }
                self.after(now, peer, Ok(()));
            } else if entry.started + self.limits.handshake_timeout <= now {
                // A wrong key looks exactly like this: DTLS drops records
                // it cannot decrypt. The key itself is never logged.
                let who = entry
                    .session
                    .identity()
                    .map_or_else(|| "?".to_string(), |i| i.identity.clone());
                tracing::warn!(%peer, identity = %who, "dtls handshake timed out (wrong key?)");
                metrics::counter!("lwota_dtls_handshakes_total", "result" => "failed").increment(1);
                self.remove(peer, "handshake_timeout");
            } else {
                let result = entry.session.handle_timeout(now);
                self.after(now, peer, result);
            }
        }
    }

    /// Collects a session's output, notices the end of its handshake,
    /// ends it on failure and sets its next deadline.
    fn after(&mut self, now: Instant, peer: SocketAddr, result: Result<(), Failure>) {
        let Some(entry) = self.sessions.get_mut(&peer) else {
            return;
        };
        while let Some(bytes) = entry.session.poll_transmit() {
            self.transmits.push_back((peer, bytes));
        }
        if let Err(failure) = result {
            let was_established = entry.established;
            let identity = entry.identity.clone();
            self.fail(peer, was_established, identity, &failure);
            return;
        }
        if !entry.established {
            if let Some(identity) = entry.session.identity().filter(|_| established(entry)) {
                entry.established = true;
                entry.identity = Some(identity.clone());
                let cipher = entry.session.cipher().unwrap_or_default();
                tracing::info!(
                    %peer,
                    identity = %identity.identity,
                    device = %identity.device,
                    cipher,
                    "dtls session established"
                );
                metrics::counter!("lwota_dtls_handshakes_total", "result" => "ok").increment(1);
                self.leave_half_open(peer.ip());
                metrics::gauge!("lwota_dtls_sessions").increment(1.0);
            }
        }
        let Some(entry) = self.sessions.get_mut(&peer) else {
            return;
        };
        if let Some(identity) = entry.identity.clone() {
            while let Some(data) = entry.session.poll_plaintext() {
                self.plaintext.push_back(Plaintext {
                    peer,
                    identity: identity.clone(),
                    data,
                });
            }
        }
        let deadline = if entry.established {
            Some(entry.last_seen + self.limits.idle_timeout)
        } else {
            let limit = entry.started + self.limits.handshake_timeout;
            Some(
                entry
                    .session
                    .poll_timeout(now)
                    .map_or(limit, |t| t.min(limit)),
            )
        };
        if deadline != entry.deadline {
            if let Some(old) = entry.deadline {
                self.timers.remove(&(old, peer));
            }
            if let Some(at) = deadline {
                self.timers.insert((at, peer));
            }
            entry.deadline = deadline;
        }
    }

    fn fail(
        &mut self,
        peer: SocketAddr,
        was_established: bool,
        identity: Option<Arc<PeerIdentity>>,
        failure: &Failure,
    ) {
        match (failure, was_established) {
            (Failure::Closed, true) => tracing::debug!(%peer, "dtls session closed by the peer"),
            (_, true) => tracing::info!(%peer, "dtls session ended: {failure}"),
            (Failure::UnknownIdentity(id), false) => {
                // Printable only, and bounded: the identity is the peer's text.
                let shown: String = id
                    .chars()
                    .take(128)
                    .map(|c| {
                        if c.is_ascii_graphic() || c == ' ' {
                            c
                        } else {
                            '?'
                        }
                    })
                    .collect();
                tracing::warn!(%peer, identity = %shown, "dtls handshake refused: unknown PSK identity");
            }
            (_, false) => {
                // The key is never logged: only who tried and what failed.
                let who = identity
                    .map(|i| i.identity.clone())
                    .unwrap_or_else(|| "?".into());
                tracing::warn!(%peer, identity = %who, "dtls {failure} (wrong key?)");
            }
        }
        if !was_established {
            metrics::counter!("lwota_dtls_handshakes_total", "result" => "failed").increment(1);
        }
        self.remove(peer, "failed");
    }

    fn leave_half_open(&mut self, ip: IpAddr) {
        self.half_open = self.half_open.saturating_sub(1);
        metrics::gauge!("lwota_dtls_half_open").decrement(1.0);
        if let Some(n) = self.half_open_by_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.half_open_by_ip.remove(&ip);
            }
        }
    }

    fn remove(&mut self, peer: SocketAddr, reason: &'static str) {
        let Some(entry) = self.sessions.remove(&peer) else {
            return;
        };
        if let Some(at) = entry.deadline {
            self.timers.remove(&(at, peer));
        }
        if entry.established {
            metrics::gauge!("lwota_dtls_sessions").decrement(1.0);
        } else {
            self.leave_half_open(peer.ip());
        }
        metrics::counter!("lwota_dtls_closed_total", "reason" => reason).increment(1);
    }
}

fn established<S: Session>(entry: &Entry<S>) -> bool {
    entry.session.is_established()
}
