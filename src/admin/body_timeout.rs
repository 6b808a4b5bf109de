//! Issue 11 item 6: a request body that sends nothing for `[admin]
//! body_timeout_s` fails (the handler sees a body error, the client gets
//! 400 and the connection is closed), so a slow client cannot hold a
//! connection and a handler forever. The header block has its own
//! timeout in `server/http_serve.rs`.
//!
//! Hand-written because the one-line alternative (tower-http's
//! `RequestBodyTimeoutLayer`) is a new dependency for ten lines.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;

use crate::state::App;

pub async fn limit(State(app): State<App>, request: Request, next: Next) -> Response {
    let idle = Duration::from_secs(app.config.admin.body_timeout_s.max(1));
    let (parts, body) = request.into_parts();
    let stream = body.into_data_stream();
    let timed = futures_util::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(item)) => Some((item, Some(stream))),
            Ok(None) => None,
            Err(_) => {
                metrics::counter!("lwota_http_body_timeouts_total").increment(1);
                let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "request body stalled");
                Some((Err(axum::Error::new(e)), None))
            }
        }
    });
    next.run(Request::from_parts(parts, Body::from_stream(timed)))
        .await
}
