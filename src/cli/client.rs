//! A small blocking client of the admin API for the CLI commands.
//!
//! Every message built from the server's answer is escaped (see
//! [`super::output::escape`]) before it can reach a terminal. Listings are
//! read page by page: the client follows an RFC 8288 `Link: <...>;
//! rel="next"` header or a `next` field of an object body when the server
//! sends one, and otherwise pages with `limit`/`after` where the API takes
//! them today, so a paginated server and today's server both work.

use std::io::Read;

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

use std::path::Path;

use super::output::escape;

/// Longest listing one command collects, so a runaway server (or a loop of
/// `next` links) cannot exhaust memory.
const MAX_ITEMS: usize = 10_000_000;

pub struct Client {
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
}

/// How a listing is paged when the server gives no `next` link.
#[derive(Debug, Clone, Copy)]
pub struct Paging<'a> {
    /// Page size to ask for (`limit=`); `None` leaves it to the server.
    pub page: Option<usize>,
    /// Item field whose value is the `after=` cursor of the next page,
    /// used when a page is full and the server named no next page.
    pub cursor_field: Option<&'a str>,
    /// Stop after this many items.
    pub max: Option<usize>,
}

impl Paging<'static> {
    /// Pages only if the server says so (a `next` link): for listings the
    /// API answers whole today.
    pub const SERVER: Paging<'static> = Paging {
        page: None,
        cursor_field: None,
        max: None,
    };
}

/// Items of a listing, and whether the server had more than `max`.
#[derive(Debug, Default)]
pub struct Listing {
    pub items: Vec<Value>,
    /// The cursor after the last item shown, when more items follow.
    pub more_after: Option<String>,
    pub more: bool,
}

impl Client {
    /// Checks the URL first: without a scheme (`127.0.0.1:8080`) the
    /// operator is told to add `http://` instead of a misleading "cannot
    /// reach".
    #[cfg(test)]
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Client> {
        Client::with_ca_cert(base, token, None)
    }

    /// Like [`new`](Self::new); `ca_cert` (PEM) is the only authority
    /// trusted for an https:// server (a self-signed admin certificate).
    /// Without it https:// uses the usual public roots.
    pub fn with_ca_cert(
        base: &str,
        token: Option<String>,
        ca_cert: Option<&Path>,
    ) -> anyhow::Result<Client> {
        let trimmed = base.trim().trim_end_matches('/');
        let lower = trimmed.to_ascii_lowercase();
        let rest = if let Some(rest) = lower.strip_prefix("http://") {
            rest
        } else if let Some(rest) = lower.strip_prefix("https://") {
            rest
        } else if lower.contains("://") {
            bail!(
                "invalid --server URL {}: the scheme must be http:// or https://",
                escape(base)
            )
        } else {
            bail!(
                "invalid --server URL {}: it has no scheme; add http:// (e.g. http://{})",
                escape(base),
                escape(trimmed)
            )
        };
        if rest.is_empty() || rest.starts_with('/') {
            bail!("invalid --server URL {}: no host", escape(base));
        }
        let mut agent = ureq::AgentBuilder::new();
        if let Some(path) = ca_cert {
            agent = agent.tls_config(tls_trusting(path)?);
        }
        Ok(Client {
            base: trimmed.to_string(),
            agent: agent.build(),
            token: token.filter(|t| !t.is_empty()),
        })
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.finish(self.request("GET", &self.url(path)).call())
            .map(|(v, _)| v)
    }

    pub fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.finish(
            self.request("POST", &self.url(path))
                .send_json(body.clone()),
        )
        .map(|(v, _)| v)
    }

    pub fn put_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.finish(self.request("PUT", &self.url(path)).send_json(body.clone()))
            .map(|(v, _)| v)
    }

    /// Uploads `body` (`len` bytes) as the raw request body.
    pub fn post_body(
        &self,
        path: &str,
        query: &[(&str, &str)],
        len: u64,
        body: impl Read,
    ) -> anyhow::Result<Value> {
        let mut request = self.request("POST", &self.url(path));
        for (k, v) in query {
            request = request.query(k, v);
        }
        request = request.set("Content-Length", &len.to_string());
        self.finish(request.send(body)).map(|(v, _)| v)
    }

    /// Streams the body of `GET path` into `out`; returns the bytes.
    pub fn download(&self, path: &str, out: &mut impl std::io::Write) -> anyhow::Result<u64> {
        match self.request("GET", &self.url(path)).call() {
            Ok(response) => {
                let mut body = response.into_reader();
                std::io::copy(&mut body, out).context("reading the response")
            }
            Err(e) => self.finish(Err(e)).map(|_| 0),
        }
    }

    /// A JSON body with another method (`PUT`, `PATCH`).
    pub fn send_json(&self, method: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.finish(
            self.request(method, &self.url(path))
                .send_json(body.clone()),
        )
        .map(|(v, _)| v)
    }

    pub fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.finish(self.request("DELETE", &self.url(path)).call())
            .map(|_| ())
    }

    /// Reads a whole listing, page after page (see [`Paging`]).
    pub fn get_all(&self, path: &str, paging: Paging<'_>) -> anyhow::Result<Listing> {
        let max = paging.max.unwrap_or(MAX_ITEMS).min(MAX_ITEMS);
        let with_limit = |after: Option<&str>| {
            let mut params: Vec<(&str, String)> = Vec::new();
            if let Some(n) = paging.page {
                params.push(("limit", n.to_string()));
            }
            if let Some(a) = after {
                params.push(("after", a.to_string()));
            }
            self.url(&append_query(path, &params))
        };
        let mut url = with_limit(None);
        let mut out = Listing::default();
        loop {
            let (body, link) = self.finish(self.request("GET", &url).call())?;
            let (items, body_next) = split_page(body)?;
            let count = items.len();
            for item in items {
                if out.items.len() >= max {
                    out.more = true;
                    break;
                }
                out.items.push(item);
            }
            let next = match (link, body_next) {
                (Some(link), _) => Some(self.resolve(&link)),
                (None, Some(next)) if next.starts_with('/') || next.contains("://") => {
                    Some(self.resolve(&next))
                }
                (None, Some(cursor)) => Some(with_limit(Some(&cursor))),
                (None, None) => match (paging.page, paging.cursor_field) {
                    (Some(page), Some(field)) if count >= page => out
                        .items
                        .last()
                        .and_then(|last| cursor_of(&last[field]))
                        .map(|c| with_limit(Some(&c))),
                    _ => None,
                },
            };
            let Some(next) = next else { break };
            if out.items.len() >= max {
                out.more = true;
            }
            if out.more || count == 0 || next == url {
                break;
            }
            url = next;
        }
        if out.more {
            if let Some(field) = paging.cursor_field {
                out.more_after = out.items.last().and_then(|l| cursor_of(&l[field]));
            }
        }
        Ok(out)
    }

    fn request(&self, method: &str, url: &str) -> ureq::Request {
        let request = self.agent.request(method, url);
        match &self.token {
            Some(token) => request.set("Authorization", &format!("Bearer {token}")),
            None => request,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A `next` link as a full URL: a path is relative to the server.
    fn resolve(&self, link: &str) -> String {
        if link.contains("://") {
            link.to_string()
        } else {
            self.url(link)
        }
    }

    /// The JSON body and the `rel="next"` link of a response.
    fn finish(
        &self,
        result: Result<ureq::Response, ureq::Error>,
    ) -> anyhow::Result<(Value, Option<String>)> {
        match result {
            Ok(response) => {
                let next = response.header("Link").and_then(next_link);
                let text = response.into_string().context("reading response")?;
                if text.is_empty() {
                    return Ok((Value::Null, next));
                }
                let value = serde_json::from_str(&text).context("server sent invalid JSON")?;
                Ok((value, next))
            }
            Err(ureq::Error::Status(status, response)) => {
                let text = response.into_string().unwrap_or_default();
                let message = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                    .unwrap_or(text);
                let hint = match status {
                    401 => " (give a token: --token, LWOTA_TOKEN or ./data/admin.token)",
                    _ => "",
                };
                Err(anyhow!(
                    "server said {status}: {}{hint}",
                    escape(message.trim())
                ))
            }
            Err(ureq::Error::Transport(t)) => {
                let base = escape(&self.base);
                let detail = escape(&t.to_string());
                Err(match t.kind() {
                    ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => {
                        anyhow!("invalid --server URL {base}: {detail}")
                    }
                    ureq::ErrorKind::Dns => anyhow!("cannot resolve the host of {base}: {detail}"),
                    _ => anyhow!("cannot reach {base}: {detail}"),
                })
            }
        }
    }
}

/// The target of the `rel="next"` entry of a `Link` header (RFC 8288).
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|entry| {
        let (target, params) = entry.trim().split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}

/// The items of a page and the body's own `next` (cursor or link), for
/// either a bare array (today) or an object wrapping one.
fn split_page(body: Value) -> anyhow::Result<(Vec<Value>, Option<String>)> {
    match body {
        Value::Array(items) => Ok((items, None)),
        Value::Object(mut map) => {
            let next = map.get("next").and_then(cursor_of);
            for key in ["items", "data", "entries", "devices", "history", "tasks"] {
                if let Some(Value::Array(items)) = map.remove(key) {
                    return Ok((items, next));
                }
            }
            Err(anyhow!("server sent an object where a list was expected"))
        }
        Value::Null => Ok((Vec::new(), None)),
        _ => Err(anyhow!("server sent something else than a list")),
    }
}

fn cursor_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `path` with `params` added to its query string, percent-encoded.
pub fn append_query(path: &str, params: &[(&str, String)]) -> String {
    let mut out = path.to_string();
    for (k, v) in params {
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(k);
        out.push('=');
        out.push_str(&encode(v));
    }
    out
}

/// Percent-encoding of a query value; hand-written because the unreserved
/// set is all that is needed and ureq's `url` is not re-exported.
pub fn encode(value: &str) -> String {
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

/// A TLS client configuration trusting only the certificates in `path`.
fn tls_trusting(path: &Path) -> anyhow::Result<std::sync::Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let pem = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read --ca-cert {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert =
            cert.map_err(|e| anyhow::anyhow!("bad PEM in --ca-cert {}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| anyhow::anyhow!("unusable certificate in {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        bail!("no certificate in --ca-cert {}", path.display());
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_is_found_among_others() {
        assert_eq!(
            next_link("</api/v1/x?limit=2&after=b>; rel=\"next\"").as_deref(),
            Some("/api/v1/x?limit=2&after=b")
        );
        assert_eq!(
            next_link("</a>; rel=\"prev\", </b>; rel=next").as_deref(),
            Some("/b")
        );
        assert_eq!(next_link("</a>; rel=\"prev\""), None);
    }

    #[test]
    fn pages_may_be_arrays_or_wrapped() {
        let (items, next) = split_page(serde_json::json!([1, 2])).unwrap();
        assert_eq!((items.len(), next), (2, None));
        let (items, next) = split_page(serde_json::json!({"items": [1], "next": "d9"})).unwrap();
        assert_eq!((items.len(), next.as_deref()), (1, Some("d9")));
        assert!(split_page(serde_json::json!({"x": 1})).is_err());
    }

    #[test]
    fn server_urls_need_a_scheme() {
        let err = Client::new("127.0.0.1:8080", None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("add http://") && !err.contains("cannot reach"),
            "{err}"
        );
        assert!(Client::new("ftp://x", None).is_err());
        assert!(Client::new("http://", None).is_err());
        assert!(Client::new("http://127.0.0.1:8080/", None).is_ok());
        assert!(Client::new("HTTP://host", None).is_ok());
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            append_query("/p?x=1", &[("after", "a b&c".into())]),
            "/p?x=1&after=a%20b%26c"
        );
        assert_eq!(append_query("/p", &[("limit", "5".into())]), "/p?limit=5");
    }
}
