//! Admin authentication (issue 11 item 3): bearer tokens with a role.
//!
//! A token is `lwota_` + 64 hex digits (32 bytes from the OS generator).
//! Only its SHA-256 is stored: with 256 random bits there is nothing to
//! brute-force, so a slow password hash (argon2, bcrypt) would add cost
//! without adding safety, and an unsalted digest lets a request's token be
//! found with one point lookup (`token_hash/{sha256}` → name). Revocation
//! deletes both rows in one transaction and every request looks the token
//! up again, so it takes effect at once.
//!
//! Records live in the store's `secret` rows (kinds [`KIND_TOKEN`] and
//! [`KIND_HASH`]), CBOR-encoded here.

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::actor::Actor;
use super::error::ApiError;
use crate::state::{App, AppState};
use crate::store::{ReadTx, StoreError, Tx};
use crate::time::Timestamp;

/// Store kind of a token record, keyed by token name.
pub const KIND_TOKEN: &str = "token";
/// Store kind of the hash index, keyed by the token's SHA-256 (hex).
pub const KIND_HASH: &str = "token_hash";
/// Tokens kept at most (operator-made; a listing reads them all).
pub const MAX_TOKENS: usize = 1_000;
/// The file the first start writes the initial admin token to.
pub const TOKEN_FILE: &str = "admin.token";
/// Name of the token made on first start.
pub const INITIAL_NAME: &str = "admin";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// `GET`/`HEAD` only.
    Read,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Read => "read",
        }
    }
}

/// Who a verified token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// A stored token: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub name: String,
    pub role: Role,
    /// SHA-256 of the token, hex.
    pub sha256: String,
    pub created_at: Timestamp,
}

/// A fresh random token.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("lwota_{}", hex::encode(bytes))
}

pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Token names: 1-64 of letters, digits, `. _ -`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub fn encode(record: &TokenRecord) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    ciborium::into_writer(record, &mut out).map_err(|e| StoreError::Db(e.to_string()))?;
    Ok(out)
}

pub fn decode(bytes: &[u8]) -> Result<TokenRecord, StoreError> {
    ciborium::from_reader(bytes).map_err(|e| StoreError::Corrupt(format!("token record: {e}")))
}

/// The principal behind `token`, if it is a live token.
pub fn lookup(tx: &(impl ReadTx + ?Sized), token: &str) -> Result<Option<Principal>, StoreError> {
    let Some(name) = tx.secret(KIND_HASH, &hash(token))? else {
        return Ok(None);
    };
    let name = String::from_utf8_lossy(&name).into_owned();
    let Some(bytes) = tx.secret(KIND_TOKEN, &name)? else {
        return Ok(None);
    };
    let record = decode(&bytes)?;
    Ok(Some(Principal {
        name: record.name,
        role: record.role,
    }))
}

/// Pinned interface (BRIEF): the principal of a token, `None` for an
/// unknown or revoked one (or when the store cannot answer).
pub async fn verify_token(state: &AppState, token: &str) -> Option<Principal> {
    match check_token(state, token).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!("token lookup failed: {e}");
            None
        }
    }
}

/// Like [`verify_token`], telling "no such token" from "the store cannot
/// answer" (a 503, not a 401, while the database is reopened).
pub async fn check_token(state: &AppState, token: &str) -> Result<Option<Principal>, StoreError> {
    // A token longer than any we issue is not looked up at all.
    if token.is_empty() || token.len() > 256 {
        return Ok(None);
    }
    let token = token.to_string();
    state.store.scan(move |tx| lookup(tx, &token)).await
}

/// Stores a new token record and its hash index; `Ok(Err(..))` (nothing
/// written) when the name is taken or the table is full.
pub fn insert(tx: &mut dyn Tx, record: &TokenRecord) -> Result<Result<(), ApiError>, StoreError> {
    if tx.secret(KIND_TOKEN, &record.name)?.is_some() {
        return Ok(Err(ApiError::conflict(
            "token_exists",
            format!("a token named {} exists", record.name),
        )));
    }
    if tx.secrets(KIND_TOKEN, None, MAX_TOKENS)?.len() >= MAX_TOKENS {
        return Ok(Err(ApiError::conflict(
            "too_many_tokens",
            format!("at most {MAX_TOKENS} tokens; revoke one first"),
        )));
    }
    tx.put_secret(KIND_TOKEN, &record.name, &encode(record)?)?;
    tx.put_secret(KIND_HASH, &record.sha256, record.name.as_bytes())?;
    Ok(Ok(()))
}

/// Deletes a token and its hash index; whether it existed.
pub fn revoke(tx: &mut dyn Tx, name: &str) -> Result<bool, StoreError> {
    let Some(bytes) = tx.secret(KIND_TOKEN, name)? else {
        return Ok(false);
    };
    let record = decode(&bytes)?;
    tx.delete_secret(KIND_HASH, &record.sha256)?;
    tx.delete_secret(KIND_TOKEN, name)?;
    Ok(true)
}

/// First start: when no token exists, makes the `admin` token and writes it
/// to `DATA_DIR/admin.token` (mode 0600). Logs the path, never the token.
/// Also the way back in after every token was revoked: restart.
pub async fn bootstrap(app: &App, data_dir: &Path) -> anyhow::Result<()> {
    let existing = app.store.scan(|tx| tx.secrets(KIND_TOKEN, None, 1)).await?;
    if !existing.is_empty() {
        return Ok(());
    }
    let path = data_dir.join(TOKEN_FILE);
    let token = generate();
    write_private(&path, &format!("{token}\n"))?;
    let record = TokenRecord {
        name: INITIAL_NAME.to_string(),
        role: Role::Admin,
        sha256: hash(&token),
        created_at: app.now(),
    };
    app.store
        .write(move |tx| {
            // A stale `admin` record without its file: replace it.
            revoke(tx, &record.name)?;
            insert(tx, &record)
        })
        .await?
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    tracing::info!("admin token written to {}", path.display());
    Ok(())
}

/// Writes `text` to `path`, readable by the owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode on open: set it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Routes reachable without a token.
fn is_public(app: &AppState, method: &Method, path: &str) -> bool {
    let read = method == Method::GET || method == Method::HEAD;
    read && (path == "/healthz" || (path == "/metrics" && app.config.admin.metrics_public))
}

/// Methods a `read` token may use.
pub fn is_read_only(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The bearer token of a request, if it sent one.
fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn unauthorized(code: &'static str, message: &str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, code, message.to_string()).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"lwota\""),
    );
    response
}

/// The middleware every admin route sits behind: 401 without or with a bad
/// token, 403 for a `read` token on a write; else the request goes on with
/// [`Actor`] and [`Principal`] extensions.
pub async fn require_token(State(app): State<App>, mut request: Request, next: Next) -> Response {
    if is_public(&app, request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    let Some(token) = bearer(&request) else {
        return unauthorized(
            "unauthorized",
            "this route needs Authorization: Bearer TOKEN (see DATA_DIR/admin.token)",
        );
    };
    let found = match check_token(&app, token).await {
        Ok(found) => found,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let Some(principal) = found else {
        metrics::counter!("lwota_admin_auth_failures_total").increment(1);
        return unauthorized("invalid_token", "unknown or revoked token");
    };
    if principal.role == Role::Read && !is_read_only(request.method()) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("token {} is read-only", principal.name),
        )
        .into_response();
    }
    request
        .extensions_mut()
        .insert(Actor(Some(principal.name.clone())));
    request.extensions_mut().insert(principal);
    next.run(request).await
}
