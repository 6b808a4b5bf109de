//! Device DTLS credentials (issue 11): `PUT /api/v1/devices/{name}/psk`
//! and the bulk `PUT /api/v1/psks`. Keys are stored, never returned and
//! never logged; a new key applies to new DTLS sessions (established ones
//! keep theirs until they end).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::actor::Actor;
use super::audit::{audited, Action};
use super::error::{ApiError, ApiResult};
use crate::dtls::keys::{parse_key, valid_identity};
use crate::model::PskRecord;
use crate::state::App;
use crate::store::Tx;

/// Credentials one bulk request sets (one write transaction).
const MAX_BULK: usize = 10_000;

/// A device's DTLS credential.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PskBody {
    /// PSK identity: 1-128 printable ASCII characters, unique per device.
    identity: String,
    /// The key as hexadecimal, 4-64 bytes. Never returned.
    key: String,
}

/// One device's credential in a bulk request.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkEntry {
    device: String,
    identity: String,
    key: String,
}

/// Up to 10,000 credentials, set all or nothing.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    credentials: Vec<BulkEntry>,
}

/// How many credentials a bulk request set.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // description only
pub struct BulkAnswer {
    updated: usize,
}

/// A checked credential for one device.
struct Credential {
    device: String,
    record: PskRecord,
}

fn check(app: &App, device: &str, identity: String, key: &str) -> Result<Credential, String> {
    if !crate::ota::valid_device_name(device) {
        return Err(format!("{device:?} is not a valid device name"));
    }
    if !valid_identity(&identity) {
        return Err("\"identity\" must be 1-128 printable ASCII characters".into());
    }
    let key = parse_key(key)?;
    Ok(Credential {
        device: device.to_string(),
        record: PskRecord {
            identity,
            key,
            updated_at: app.now(),
        },
    })
}

/// Why a credential was not stored (nothing of the request was).
enum Refused {
    UnknownDevice(String),
    IdentityTaken { identity: String, owner: String },
    DuplicateIdentity(String),
}

fn store_all(tx: &mut dyn Tx, creds: &[Credential]) -> crate::store::Result<Result<(), Refused>> {
    let mut seen = std::collections::HashMap::new();
    for c in creds {
        if let Some(other) = seen.insert(c.record.identity.as_str(), c.device.as_str()) {
            if other != c.device {
                return Ok(Err(Refused::DuplicateIdentity(c.record.identity.clone())));
            }
        }
        if tx.device(&c.device)?.is_none() {
            return Ok(Err(Refused::UnknownDevice(c.device.clone())));
        }
        if let Some(owner) = tx.psk_owner(&c.record.identity)? {
            // The identity may move only between devices of this request.
            if owner != c.device && !creds.iter().any(|o| o.device == owner) {
                return Ok(Err(Refused::IdentityTaken {
                    identity: c.record.identity.clone(),
                    owner,
                }));
            }
        }
    }
    for c in creds {
        tx.put_psk(&c.device, &c.record)?;
    }
    Ok(Ok(()))
}

async fn apply(app: &App, actor: Actor, creds: Vec<Credential>) -> ApiResult<()> {
    let job_creds: Vec<Credential> = creds
        .iter()
        .map(|c| Credential {
            device: c.device.clone(),
            record: c.record.clone(),
        })
        .collect();
    // The audit entry names devices and identities, never a key.
    let (target, details) = match creds.as_slice() {
        [one] => (
            format!("device/{}", one.device),
            json!({"identity": one.record.identity}),
        ),
        many => (
            "psks".to_string(),
            json!({"count": many.len(), "first": many.first().map(|c| c.device.clone())}),
        ),
    };
    let action = Action::new("psk.set", target, actor.0, details);
    let outcome = audited(app, move |tx, _now| {
        Ok(store_all(tx, &job_creds)?.map(|()| ((), action.clone())))
    })
    .await?;
    match outcome {
        Ok(()) => {
            for c in &creds {
                app.psks.set(&c.device, &c.record);
                // The key is never logged.
                tracing::info!(device = %c.device, identity = %c.record.identity, "device PSK set");
            }
            Ok(())
        }
        Err(Refused::UnknownDevice(d)) => Err(ApiError::not_found(
            "unknown_device",
            format!("no device {d:?}"),
        )),
        Err(Refused::IdentityTaken { identity, owner }) => Err(ApiError::conflict(
            "psk_identity_taken",
            format!("PSK identity {identity:?} belongs to device {owner:?}"),
        )),
        Err(Refused::DuplicateIdentity(identity)) => Err(ApiError::bad_request(format!(
            "PSK identity {identity:?} is given to two devices"
        ))),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))
}

/// `PUT /api/v1/devices/{name}/psk` `{"identity", "key": HEX}` → 204.
#[utoipa::path(put, operation_id = "devices_set_psk", path = "/api/v1/devices/{name}/psk", tag = "devices",
    params(("name" = String, Path, description = "Device name")),
    request_body(content = super::schemas::PskBody, content_type = "application/json"),
    responses(
        (status = 204, description = "Credential stored"),
        (status = 400, description = "Bad identity or key", body = super::schemas::ErrorBody),
        (status = 404, description = "No such device", body = super::schemas::ErrorBody),
        (status = 409, description = "Identity used by another device", body = super::schemas::ErrorBody),
    ))]
pub async fn put(
    State(app): State<App>,
    actor: Actor,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    let body: PskBody = parse(&body)?;
    let cred = check(&app, &name, body.identity, &body.key).map_err(ApiError::bad_request)?;
    apply(&app, actor, vec![cred]).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /api/v1/psks` `{"credentials": [{"device", "identity", "key"}]}`:
/// all or nothing → 200 `{"updated": N}`.
#[utoipa::path(put, operation_id = "psks_set", path = "/api/v1/psks", tag = "devices",
    request_body(content = super::schemas::PskBulk, content_type = "application/json"),
    responses(
        (status = 200, description = "All stored (all or nothing)", body = super::schemas::PskUpdated),
        (status = 400, description = "A bad entry; nothing stored", body = super::schemas::ErrorBody),
        (status = 404, description = "A device is unknown; nothing stored", body = super::schemas::ErrorBody),
        (status = 409, description = "Identity used by another device", body = super::schemas::ErrorBody),
    ))]
pub async fn put_bulk(
    State(app): State<App>,
    actor: Actor,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let body: BulkBody = parse(&body)?;
    if body.credentials.len() > MAX_BULK {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_BULK} credentials per request"
        )));
    }
    let mut creds = Vec::with_capacity(body.credentials.len());
    for (i, e) in body.credentials.into_iter().enumerate() {
        let cred = check(&app, &e.device, e.identity, &e.key)
            .map_err(|m| ApiError::bad_request(format!("credentials[{i}]: {m}")))?;
        creds.push(cred);
    }
    let n = creds.len();
    apply(&app, actor, creds).await?;
    Ok(Json(json!({ "updated": n })))
}
