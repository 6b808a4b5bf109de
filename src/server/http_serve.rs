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
//! - graceful shutdown: stop accepting, let requests in flight finish.

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
        let io = TokioIo::new(JsonErrorStream::new(stream));
        let service = TowerToHyperService::new(router.clone());
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(io, service);
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!("http connection ended: {e}");
            }
            metrics::gauge!("lwota_http_connections").decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
