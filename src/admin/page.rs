//! Paging of long listings (a campaign's devices, a device's history):
//! `?limit=N` (default 1,000, at most 10,000) and `?after=CURSOR`; a page
//! that may not be the last says where the next one starts in a
//! `Link: <PATH?...&after=CURSOR>; rel="next"` header (RFC 8288), so the
//! body keeps its array shape.

use axum::http::{header, HeaderMap, HeaderValue};

pub const DEFAULT_LIMIT: usize = 1_000;
pub const MAX_LIMIT: usize = 10_000;

/// The page size asked for, clamped to 1..=MAX_LIMIT.
pub fn limit(asked: Option<usize>) -> usize {
    asked.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

/// Headers carrying the next page's link, if there is a next cursor.
/// `query` holds the other parameters to repeat (already URL-safe).
pub fn next_link(
    path: &str,
    query: &[(&str, String)],
    limit: usize,
    cursor: Option<String>,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let Some(cursor) = cursor else {
        return headers;
    };
    let mut url = format!("{path}?limit={limit}");
    for (k, v) in query {
        url.push_str(&format!("&{k}={}", encode(v)));
    }
    url.push_str(&format!("&after={}", encode(&cursor)));
    if let Ok(value) = HeaderValue::from_str(&format!("<{url}>; rel=\"next\"")) {
        headers.insert(header::LINK, value);
    }
    headers
}

/// Percent-encodes what is not safe in a query value. Device names and
/// states are already `[A-Za-z0-9._:-]`; this keeps anything else intact.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
