//! Console sessions: a random session id in an HttpOnly, SameSite=Strict,
//! Path=/ cookie, mapped in memory to the token it was started with.
//!
//! Why a server-side table rather than an HMAC-signed cookie: logging out
//! (or restarting the server) really ends the session, there is no signing
//! key to create, persist and rotate, and the token is checked again on
//! every request (`auth::verify`), so revoking a token ends its sessions at
//! once. The cost is that a restart logs everyone out, which an operator
//! console can live with.
//!
//! CSRF: SameSite=Strict already keeps the cookie off cross-site requests;
//! on top of that every state-changing request carries the session's CSRF
//! token (hidden form field `csrf` or header `X-CSRF-Token`), compared in
//! constant time, and a request whose `Origin` (or, without it,
//! `Sec-Fetch-Site`) says it comes from another site is refused.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, HOST, ORIGIN};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;

use super::auth::{self, Principal};
use super::ConsoleState;
use crate::time::Timestamp;

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "lwota_session";
/// A session ends this long after login, used or not.
pub const SESSION_TTL_MS: u64 = 8 * 3600 * 1000;
/// Sessions held at once. A login beyond it ends the session closest to
/// its expiry, so the table (one entry per login) cannot grow without end.
pub const MAX_SESSIONS: usize = 10_000;

struct Session {
    token: String,
    csrf: String,
    expires: Timestamp,
}

/// The session table (see the module docs for why it is in memory).
#[derive(Default)]
pub struct Sessions {
    // A std mutex: held for a map look-up only, never across an await.
    map: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes from the OS, hex: session ids and CSRF tokens.
fn random_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Sessions {
    /// Starts a session for `token`; returns its id.
    pub fn start(&self, token: &str, now: Timestamp) -> String {
        let id = random_id();
        let session = Session {
            token: token.to_string(),
            csrf: random_id(),
            expires: now.add_millis(SESSION_TTL_MS),
        };
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                map.remove(&oldest);
            }
        }
        map.insert(id.clone(), session);
        metrics::gauge!("lwota_console_sessions").set(map.len() as f64);
        id
    }

    /// The token and CSRF token of a live session.
    fn get(&self, id: &str, now: Timestamp) -> Option<(String, String)> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(id) {
            Some(s) if s.expires > now => Some((s.token.clone(), s.csrf.clone())),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn end(&self, id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(id);
        metrics::gauge!("lwota_console_sessions").set(map.len() as f64);
    }
}

/// The session id in the request's cookies.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    // Hand-parsed: one cookie of ours, `name=value` pairs split by `;`
    // (RFC 6265 §4.2.1); a cookie crate would add nothing here.
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value that starts (or, with `None`, ends) a session.
pub fn cookie(id: Option<&str>, headers: &HeaderMap) -> String {
    // Secure only behind a TLS proxy: the listener itself speaks plain HTTP
    // on 127.0.0.1, where a Secure cookie would never be sent back.
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let secure = if secure { "; Secure" } else { "" };
    match id {
        Some(id) => format!(
            "{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            SESSION_TTL_MS / 1000
        ),
        None => format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

/// Whether the request comes from this site: its `Origin`, when present,
/// is this `Host`; without `Origin`, `Sec-Fetch-Site` (when present) is
/// `same-origin` or `none`. A client sending neither (curl) is let through:
/// it still needs the CSRF token, which only the session's pages carry.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    if let Some(origin) = headers.get(ORIGIN) {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let Some(host) = host else {
            return false;
        };
        let bare = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        return bare == Some(host);
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) => site == "same-origin" || site == "none",
        None => true,
    }
}

/// Whether a sent CSRF token is the session's, in time that does not
/// depend on where they differ; hand-written because it is four lines.
pub fn csrf_matches(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A logged-in operator, extracted from the session cookie. Pages take it
/// as an argument; without a live session the browser is sent to the
/// login form at `/`.
pub struct Operator {
    pub principal: Principal,
    pub session: String,
    pub csrf: String,
}

impl Operator {
    pub fn admin(&self) -> bool {
        self.principal.admin
    }

    /// Whether a state-changing request may proceed: an admin token, the
    /// session's CSRF token, and a same-site origin.
    pub fn may_write(&self, headers: &HeaderMap, csrf: &str) -> Result<(), &'static str> {
        if !same_origin(headers) {
            return Err("the request comes from another site");
        }
        if !csrf_matches(csrf, &self.csrf) {
            return Err("the form is stale or was not sent by this console (CSRF token mismatch): reload the page and try again");
        }
        if !self.admin() {
            return Err("a read token cannot change anything");
        }
        Ok(())
    }
}

/// What a page answers without a live session.
pub struct LoginRequired {
    fragment: bool,
}

impl IntoResponse for LoginRequired {
    fn into_response(self) -> Response {
        if self.fragment {
            // A polling script gets a status it can act on, not a page.
            (axum::http::StatusCode::UNAUTHORIZED, "session ended").into_response()
        } else {
            Redirect::to("/").into_response()
        }
    }
}

impl FromRequestParts<ConsoleState> for Operator {
    type Rejection = LoginRequired;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let fragment = parts.uri.path().ends_with("/live");
        let rejected = LoginRequired { fragment };
        let Some(id) = session_id(&parts.headers) else {
            return Err(rejected);
        };
        let Some((token, csrf)) = state.sessions.get(&id, state.app.now()) else {
            return Err(rejected);
        };
        let Some(principal) = auth::verify(&state.app, &token).await else {
            // The token was revoked since login.
            state.sessions.end(&id);
            return Err(rejected);
        };
        Ok(Operator {
            principal,
            session: id,
            csrf,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_stay_bounded() {
        let sessions = Sessions::default();
        let now = Timestamp::from_millis(1_000);
        let id = sessions.start("t", now);
        assert!(sessions.get(&id, now).is_some());
        assert!(sessions
            .get(&id, now.add_millis(SESSION_TTL_MS + 1))
            .is_none());
        for _ in 0..MAX_SESSIONS + 5 {
            sessions.start("t", now);
        }
        assert_eq!(sessions.map.lock().unwrap().len(), MAX_SESSIONS);
    }

    #[test]
    fn origin_checks() {
        let mut h = HeaderMap::new();
        h.insert(HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h));
        h.insert(ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h));
        h.insert(ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!same_origin(&h));
        h.remove(ORIGIN);
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(!same_origin(&h));
    }

    #[test]
    fn cookie_parsing() {
        let id = "a".repeat(64);
        let mut h = HeaderMap::new();
        h.insert(COOKIE, format!("x=1; {COOKIE_NAME}={id}").parse().unwrap());
        assert_eq!(session_id(&h).as_deref(), Some(id.as_str()));
        h.insert(COOKIE, format!("{COOKIE_NAME}=short").parse().unwrap());
        assert_eq!(session_id(&h), None);
        assert!(cookie(Some(&id), &h).contains("HttpOnly; SameSite=Strict"));
    }
}
