//! The page shell (head, navigation, logout), the embedded assets and the
//! small helpers every page uses. Every asset is compiled into the binary
//! (`include_str!`): the console fetches nothing from anywhere else, and
//! the Content-Security-Policy below forbids it to.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

use super::session::Operator;
use crate::admin::error::ApiError;

pub const CSS: &str = include_str!("assets/console.css");
pub const JS: &str = include_str!("assets/console.js");

/// Headers on every console response: nothing from elsewhere (scripts,
/// styles, frames), no framing by other sites, no MIME sniffing, and
/// pages not kept in shared caches.
pub async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "same-origin");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    response
}

pub async fn css() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

pub async fn js() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// Which navigation entry a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Campaigns,
    Firmware,
    Devices,
    Versions,
    Audit,
    None,
}

/// A whole page for a logged-in operator.
pub fn page(title: &str, nav: Nav, op: &Operator, body: Markup) -> Markup {
    let entries = [
        (Nav::Campaigns, "/campaigns", "Campaigns"),
        (Nav::Firmware, "/firmware", "Firmware"),
        (Nav::Devices, "/devices", "Devices"),
        (Nav::Versions, "/versions", "Versions"),
        (Nav::Audit, "/audit", "Audit log"),
    ];
    shell(
        title,
        &op.csrf,
        html! {
            header.top {
                a.brand href="/" { "lwota" }
                nav aria-label="Main" {
                    ul {
                        @for (which, href, label) in entries {
                            li {
                                @if which == nav {
                                    a href=(href) aria-current="page" { (label) }
                                } @else {
                                    a href=(href) { (label) }
                                }
                            }
                        }
                    }
                }
                form.logout method="post" action="/logout" {
                    input type="hidden" name="csrf" value=(op.csrf);
                    span.who {
                        (op.principal.name)
                        @if !op.admin() { " (read-only)" }
                    }
                    button type="submit" { "Log out" }
                }
            }
            main id="main" {
                h1 { (title) }
                (body)
            }
        },
    )
}

/// The HTML document around `body`.
pub fn shell(title: &str, csrf: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf-token" content=(csrf);
                title { (title) " · lwota" }
                link rel="stylesheet" href="/console/console.css";
                script src="/console/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                (body)
            }
        }
    }
}

/// An HTML response with a status.
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

/// An error box (role=alert so screen readers announce it).
pub fn error_box(message: &str) -> Markup {
    html! { p.error role="alert" { (message) } }
}

/// A page that only says what went wrong (an API error behind a page).
pub fn error_page(op: &Operator, e: &ApiError, back: &str) -> Response {
    let body = html! {
        (error_box(&e.message))
        p { a href=(back) { "Back" } }
    };
    respond(e.status, page("Error", Nav::None, op, body))
}

/// Percent-encodes a path segment or query value (device names are
/// device-supplied text).
pub fn enc(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A JSON value as short text: strings bare, `null` as a dash, the rest
/// as compact JSON (shown escaped, like everything device-supplied).
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `a` field of a JSON object as text.
pub fn field(v: &Value, key: &str) -> String {
    text(v.get(key).unwrap_or(&Value::Null))
}

/// An RFC 3339 time shown shorter: `2026-11-30 01:02:03Z`.
pub fn when(v: &Value) -> String {
    match v.as_str() {
        Some(s) => {
            let s = s.replacen('T', " ", 1);
            match s.split_once('.') {
                Some((head, _)) => format!("{head}Z"),
                None => s,
            }
        }
        None => "—".into(),
    }
}

/// Bytes in human units.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A task state as a coloured label (colour is never the only cue: the
/// word is the label).
pub fn state_badge(state: &str) -> Markup {
    let class = match state {
        "updated" | "finished" => "badge ok",
        "failed" | "cancelled" | "paused" => "badge bad",
        "queued" | "scheduled" | "—" => "badge idle",
        _ => "badge busy",
    };
    html! { span class=(class) { (state) } }
}

/// A `<progress>` with its label text for screen readers and the eye.
pub fn progress(label: &str, value: u64, max: u64) -> Markup {
    let max = max.max(1);
    let pct = value.saturating_mul(100) / max;
    html! {
        span.meter {
            progress value=(value) max=(max) aria-label=(label) { (pct) "%" }
            span.pct { (pct) "%" }
        }
    }
}
