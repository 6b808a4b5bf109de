//! The admin listener's accept loop (issue 11 item 6: slow HTTP clients).
//!
//! `axum::serve` has no header timeout and no connection limit: 1,100
//! half-sent requests used up the process's file descriptors and
//! `/healthz` stopped answering. This loop is hyper's own connection
//! driver with:
//! - `header_read_timeout` (`[admin] header_timeout_s`): a client that has
//!   not sent its whole header block by then is disconnected;
//! - a connection limit (`[admin] max_connections`): past it a new
//!   connection is closed at once (counted in
//!   `lwota_http_connections_refused_total`), so descriptors stay free for
//!   the CoAP side and the database;
//! - body stalls are cut by `admin::body_timeout` (a request body that
//!   sends nothing for `[admin] body_timeout_s` fails);
//! - graceful shutdown: stop accepting, let requests in flight finish;
//! - optional TLS (`http_tls.rs`): the handshake holds a connection slot
//!   and must finish within the header timeout.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::http_io::JsonErrorStream;

pub struct HttpLimits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

pub async fn run(
    listener: TcpListener,
    router: axum::Router,
    limits: HttpLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!("http accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics::counter!("lwota_http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        metrics::gauge!("lwota_http_connections").increment(1.0);
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let builder = {
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            b
        };
        match tls.clone() {
            None => {
                let io = TokioIo::new(JsonErrorStream::new(stream));
                let watched = graceful.watch(builder.serve_connection(io, service));
                tokio::spawn(async move {
                    if let Err(e) = watched.await {
                        tracing::debug!("http connection ended: {e}");
                    }
                    metrics::gauge!("lwota_http_connections").decrement(1.0);
                    drop(permit);
                });
            }
            Some(acceptor) => {
                // The handshake holds a connection slot and gets the header
                // timeout too: a client that stalls in it is cut off.
                let header_timeout = limits.header_timeout;
                let mut stop = shutdown.clone();
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(header_timeout, acceptor.accept(stream));
                    let tls_stream = tokio::select! {
                        done = handshake => done,
                        _ = stopping(&mut stop) => {
                            metrics::gauge!("lwota_http_connections").decrement(1.0);
                            return;
                        }
                    };
                    match tls_stream {
                        Ok(Ok(tls_stream)) => {
                            let io = TokioIo::new(JsonErrorStream::new(tls_stream));
                            let connection = builder.serve_connection(io, service);
                            let mut connection = std::pin::pin!(connection);
                            let ended = tokio::select! {
                                ended = connection.as_mut() => ended,
                                _ = stopping(&mut stop) => {
                                    connection.as_mut().graceful_shutdown();
                                    connection.await
                                }
                            };
                            if let Err(e) = ended {
                                tracing::debug!("https connection ended: {e}");
                            }
                        }
                        Ok(Err(e)) => {
                            metrics::counter!("lwota_http_tls_handshake_failed_total").increment(1);
                            tracing::debug!("tls handshake failed: {e}");
                        }
                        Err(_) => {
                            metrics::counter!("lwota_http_tls_handshake_failed_total").increment(1);
                            tracing::debug!("tls handshake timed out");
                        }
                    }
                    metrics::gauge!("lwota_http_connections").decrement(1.0);
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Resolves once shutdown is signalled (the watch guard is not held).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
