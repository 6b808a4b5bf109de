//! The tokio shell around the sans-IO [`Endpoint`]: owns the UDP socket,
//! the clock and the timer, and runs resources' deferred replies as tasks.
//!
//! Several receive loops share one socket so block serving can use every
//! core. They share one `Endpoint` behind a `std::sync::Mutex`: one
//! deduplication table (a retransmission may be read by any loop), and the
//! lock is held only for the endpoint's own bookkeeping (microseconds,
//! never across an await, never during file reads or database writes).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use coap_lite::ResponseType;
use futures_util::FutureExt;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::coap::endpoint::error_response;
use crate::coap::{Endpoint, IncomingRequest, RequestMeta, Transmit};
use crate::resources::{self, Reply};
use crate::state::App;

struct Shared {
    socket: UdpSocket,
    endpoint: Mutex<Endpoint>,
}

impl Shared {
    fn endpoint(&self) -> MutexGuard<'_, Endpoint> {
        // A panic while holding the lock cannot leave the endpoint's maps
        // half-updated in a way that matters more than dropping one reply.
        self.endpoint.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn flush(&self, transmits: Vec<Transmit>) {
        for transmit in transmits {
            if let Err(e) = self.socket.send_to(&transmit.bytes, transmit.peer).await {
                tracing::debug!(peer = %transmit.peer, "udp send: {e}");
            }
        }
    }
}

fn drain(endpoint: &mut Endpoint) -> Vec<Transmit> {
    std::iter::from_fn(|| endpoint.poll_transmit()).collect()
}

// Plain functions, so the lock can never be held across an await.
fn handle(
    shared: &Shared,
    now: Instant,
    peer: std::net::SocketAddr,
    datagram: &[u8],
) -> (Option<IncomingRequest>, Vec<Transmit>) {
    let mut endpoint = shared.endpoint();
    let request = endpoint.handle_datagram(now, peer, datagram);
    (request, drain(&mut endpoint))
}

fn respond(
    shared: &Shared,
    now: Instant,
    meta: RequestMeta,
    packet: coap_lite::Packet,
) -> Vec<Transmit> {
    let mut endpoint = shared.endpoint();
    endpoint.respond(now, meta, packet);
    drain(&mut endpoint)
}

fn next_timeout(shared: &Shared) -> Option<Instant> {
    shared.endpoint().poll_timeout()
}

fn expire(shared: &Shared) {
    shared.endpoint().handle_timeout(Instant::now());
}

/// Runs `loops` receive loops on `socket` until shutdown.
pub async fn run(socket: UdpSocket, app: App, shutdown: watch::Receiver<bool>, loops: usize) {
    let shared = Arc::new(Shared {
        socket,
        endpoint: Mutex::new(Endpoint::default()),
    });
    let mut handles = Vec::new();
    for i in 0..loops.max(1) {
        handles.push(tokio::spawn(receive_loop(
            shared.clone(),
            app.clone(),
            shutdown.clone(),
            i == 0,
        )));
    }
    for h in handles {
        let _ = h.await;
    }
}

async fn receive_loop(
    shared: Arc<Shared>,
    app: App,
    mut shutdown: watch::Receiver<bool>,
    runs_timers: bool,
) {
    // Largest UDP payload; a datagram that big is garbage for us but must
    // not be truncated into something that parses.
    let mut buf = vec![0u8; 65_535];
    loop {
        let timeout = if runs_timers {
            next_timeout(&shared)
        } else {
            None
        };
        tokio::select! {
            received = shared.socket.recv_from(&mut buf) => {
                let (len, peer) = match received {
                    Ok(x) => x,
                    Err(e) => {
                        // ICMP errors surface here on some platforms; not fatal.
                        tracing::debug!("udp recv: {e}");
                        continue;
                    }
                };
                let now = Instant::now();
                let (request, early) = handle(&shared, now, peer, &buf[..len]);
                shared.flush(early).await;
                let Some(request) = request else { continue };
                match resources::dispatch(&app, &request) {
                    Reply::Now(packet) => {
                        let out = respond(&shared, now, request.meta, packet);
                        shared.flush(out).await;
                    }
                    Reply::Later(future) => {
                        let shared = shared.clone();
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
                            let out = respond(&shared, Instant::now(), meta, packet);
                            shared.flush(out).await;
                        });
                    }
                }
            }
            _ = sleep_until(timeout) => {
                expire(&shared);
            }
            _ = shutdown.changed() => break,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
