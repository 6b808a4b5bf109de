//! What a web page the operator visits could otherwise do to the admin
//! API (issue 11 item 6, critical), checked before authentication:
//!
//! - **DNS rebinding**: a page on `evil.example` whose name is re-pointed
//!   to 127.0.0.1 talks to us with `Host: evil.example`. Only IP literals,
//!   `localhost` and the names in `[admin] allowed_hosts` are answered
//!   (a rebinding attack needs a name; an IP literal cannot be rebound).
//! - **Cross-site requests**: a browser sends `Origin` on every CORS
//!   request and on same-site writes. It must be this server's own origin
//!   (the `Host` the request was sent to) or one in `[admin]
//!   allowed_origins`; `Origin: null` (sandboxed frames, `file:`) is
//!   refused. A write marked `Sec-Fetch-Site: cross-site` is refused too.
//! - **Simple requests**: a form can POST `text/plain`, `multipart/form-data`
//!   or `application/x-www-form-urlencoded` cross-site without a preflight.
//!   A JSON route (`/api/...`) with a body accepts only `application/json`
//!   (or `*/*+json`), 415 otherwise; the raw-body upload refuses the three
//!   form types.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::is_read_only;
use super::error::ApiError;
use crate::config::AdminConfig;
use crate::state::App;

pub async fn guard(State(app): State<App>, request: Request, next: Next) -> Response {
    if let Err(e) = check(
        &app.config.admin,
        request.method(),
        request.uri().path(),
        request.headers(),
    ) {
        metrics::counter!("lwota_admin_browser_refused_total", "check" => e.code).increment(1);
        return e.into_response();
    }
    next.run(request).await
}

pub fn check(
    config: &AdminConfig,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(host) = host {
        if !host_allowed(config, host) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "host_not_allowed",
                "this Host name is not served (add it to [admin] allowed_hosts)",
            ));
        }
    } else if headers.contains_key(header::HOST) {
        return Err(ApiError::bad_request("unreadable Host header"));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        if !origin_allowed(config, origin, host) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "cross-origin requests are refused (add the origin to [admin] allowed_origins)",
            ));
        }
    }
    let writes = !is_read_only(method);
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"));
    if writes && cross_site && headers.get(header::ORIGIN).is_none() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "cross-site writes are refused",
        ));
    }
    if writes && has_body(headers) && path.starts_with("/api/") {
        let ctype = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let raw = method == Method::POST && path == "/api/v1/firmware";
        let ok = match (raw, ctype.as_deref()) {
            (true, None) => true,
            (true, Some(t)) => !matches!(
                t,
                "text/plain" | "multipart/form-data" | "application/x-www-form-urlencoded"
            ),
            (false, Some(t)) => is_json(t),
            (false, None) => false,
        };
        if !ok {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                if raw {
                    "send the image as application/octet-stream"
                } else {
                    "the body must be Content-Type: application/json"
                },
            ));
        }
    }
    Ok(())
}

fn is_json(media_type: &str) -> bool {
    media_type == "application/json"
        || media_type
            .split_once('/')
            .is_some_and(|(_, sub)| sub.ends_with("+json"))
}

fn has_body(headers: &HeaderMap) -> bool {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    length.is_some_and(|n| n > 0) || headers.contains_key(header::TRANSFER_ENCODING)
}

/// The host name of a `Host` value (`name`, `name:port`, `[v6]:port`).
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

pub fn host_allowed(config: &AdminConfig, host: &str) -> bool {
    let name = host_name(host).trim_end_matches('.');
    name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || config
            .allowed_hosts
            .iter()
            .any(|h| h.trim_end_matches('.').eq_ignore_ascii_case(name))
}

fn origin_allowed(config: &AdminConfig, origin: &str, host: Option<&str>) -> bool {
    let origin = origin.trim().trim_end_matches('/');
    if config
        .allowed_origins
        .iter()
        .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false; // "null" and garbage
    };
    let scheme_ok = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    // Same origin: the authority the page was loaded from is the one the
    // request is sent to (a default port may be left out on either side).
    let same = host.is_some_and(|h| {
        let strip = |a: &str, default: &str| {
            a.strip_suffix(default)
                .map(str::to_string)
                .unwrap_or_else(|| a.to_string())
                .to_ascii_lowercase()
        };
        let default = if scheme.eq_ignore_ascii_case("https") {
            ":443"
        } else {
            ":80"
        };
        strip(authority, default) == strip(h.trim(), default)
    });
    scheme_ok && same && host.is_some_and(|h| host_allowed(config, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn hosts() {
        let mut c = AdminConfig::default();
        for ok in [
            "127.0.0.1:8080",
            "localhost",
            "[::1]:8080",
            "10.1.2.3",
            "LOCALHOST:1",
        ] {
            assert!(host_allowed(&c, ok), "{ok}");
        }
        assert!(!host_allowed(&c, "evil.example:8080"));
        c.allowed_hosts.push("ota.lan".into());
        assert!(host_allowed(&c, "ota.lan:8080"));
    }

    #[test]
    fn origins_and_types() {
        let c = AdminConfig::default();
        let get = Method::GET;
        let post = Method::POST;
        let same = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert!(check(&c, &get, "/api/v1/devices", &same).is_ok());
        let other = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
        ]);
        assert_eq!(
            check(&c, &get, "/x", &other).unwrap_err().code,
            "origin_not_allowed"
        );
        let null = headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]);
        assert!(check(&c, &get, "/x", &null).is_err());
        let form = headers(&[
            ("host", "127.0.0.1:8080"),
            ("content-type", "text/plain"),
            ("content-length", "5"),
        ]);
        let e = check(&c, &post, "/api/v1/devices", &form).unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(check(&c, &post, "/api/v1/firmware", &form).is_err());
        let json = headers(&[
            ("content-type", "application/json; charset=utf-8"),
            ("content-length", "5"),
        ]);
        assert!(check(&c, &post, "/api/v1/devices", &json).is_ok());
        let raw = headers(&[("content-length", "5")]);
        assert!(check(&c, &post, "/api/v1/firmware", &raw).is_ok());
        assert!(check(&c, &post, "/api/v1/devices", &raw).is_err());
        let empty = headers(&[("content-length", "0")]);
        assert!(check(&c, &post, "/api/v1/campaigns/1/cancel", &empty).is_ok());
        let xsite = headers(&[("sec-fetch-site", "cross-site")]);
        assert!(check(&c, &post, "/api/v1/campaigns/1/cancel", &xsite).is_err());
    }
}
