//! The tokio shell around the sans-IO [`Endpoint`]: owns the UDP socket,
//! the clock and the timer, and runs resources' deferred replies as tasks.
//! One loop owns the endpoint, so it needs no lock.

use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::coap::{Endpoint, RequestMeta};
use crate::resources::{self, Reply};
use crate::state::App;

/// Deferred replies waiting to go back into the loop. Bounded so a stalled
/// database pushes back on the tasks rather than growing memory.
const REPLY_QUEUE: usize = 4096;

pub async fn run(socket: UdpSocket, app: App, mut shutdown: watch::Receiver<bool>) {
    let mut endpoint = Endpoint::default();
    let (reply_tx, mut reply_rx) = mpsc::channel::<(RequestMeta, coap_lite::Packet)>(REPLY_QUEUE);
    // Largest UDP payload; a datagram that big is garbage for us but must
    // not be truncated into something that parses.
    let mut buf = vec![0u8; 65_535];
    loop {
        let timeout = endpoint.poll_timeout();
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (len, peer) = match received {
                    Ok(x) => x,
                    Err(e) => {
                        // ICMP errors surface here on some platforms; not fatal.
                        tracing::debug!("udp recv: {e}");
                        continue;
                    }
                };
                let now = Instant::now();
                if let Some(request) = endpoint.handle_datagram(now, peer, &buf[..len]) {
                    match resources::dispatch(&app, &request) {
                        Reply::Now(packet) => endpoint.respond(now, request.meta, packet),
                        Reply::Later(future) => {
                            let tx = reply_tx.clone();
                            let meta = request.meta;
                            tokio::spawn(async move {
                                let packet = future.await;
                                let _ = tx.send((meta, packet)).await;
                            });
                        }
                    }
                }
            }
            Some((meta, packet)) = reply_rx.recv() => {
                endpoint.respond(Instant::now(), meta, packet);
            }
            _ = sleep_until(timeout) => {
                endpoint.handle_timeout(Instant::now());
            }
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
        while let Some(transmit) = endpoint.poll_transmit() {
            if let Err(e) = socket.send_to(&transmit.bytes, transmit.peer).await {
                tracing::debug!(peer = %transmit.peer, "udp send: {e}");
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
