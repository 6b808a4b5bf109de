//! A span around every admin request (issue 12 item 6): method, route
//! pattern, the path's ids (`id` for firmware and campaigns, `device` for
//! devices) and, once answered, the status; events logged while handling
//! (e.g. "firmware uploaded", storage errors) carry it, which
//! `--log-format json` shows as the line's `span`. Also counts requests
//! for `lwota_http_requests_total`.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::telemetry;

pub async fn trace(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    // The pattern (bounded set), not the raw path: unmatched paths are
    // one label value, not one per probe.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_string();
    let span = tracing::info_span!(
        "http",
        method = %method,
        route = %route,
        device = tracing::field::Empty,
        id = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    record_ids(&span, &route, request.uri().path());
    let started = std::time::Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("status", status);
    span.in_scope(|| {
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "http request answered"
        )
    });
    metrics::counter!(
        telemetry::HTTP_REQUESTS,
        "method" => method.to_string(),
        "route" => route,
        "status" => status.to_string()
    )
    .increment(1);
    response
}

/// Puts `{name}` (a device) and `{id}` of the route into the span, when
/// they are plain names (no control characters reach a log line).
fn record_ids(span: &tracing::Span, route: &str, path: &str) {
    for (pattern, value) in route.split('/').zip(path.split('/')) {
        match pattern {
            "{name}" if crate::ota::valid_device_name(value) => {
                span.record("device", value);
            }
            "{id}" if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() => {
                span.record("id", value);
            }
            _ => {}
        }
    }
}
