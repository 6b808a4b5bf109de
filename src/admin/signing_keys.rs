//! `/api/v1/products/{product}/signing-key` (issue 11 item 5): a
//! product's Ed25519 manifest signing key. Create (or rotate), show the
//! public key, delete. The private key is made here from the OS generator,
//! stored (`ota::signing`), and never returned nor logged; create, rotate
//! and delete are audited with the token that did them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};

use super::actor::Actor;
use super::audit::{audited, Action};
use super::error::{ApiError, ApiResult, Query};
use crate::ota::signing::{self, KeyError, ProductKey, PublicKeyInfo};
use crate::state::App;

/// The answer of every route here (OpenAPI description only).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // description only
pub struct SigningKey {
    product: String,
    /// Always `Ed25519`.
    algorithm: String,
    /// The raw 32-byte Ed25519 public key (RFC 8032), hex.
    public_key: String,
    /// The same key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo, RFC 8410).
    public_key_pem: String,
    /// The manifests' `kid`: the first 8 bytes of SHA-256 of `public_key`, hex.
    kid: String,
    created_at: String,
    /// Only in the answer to a rotation: the key id it replaced.
    replaced_kid: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateQuery {
    /// Replace an existing key (else 409).
    #[serde(default)]
    rotate: bool,
}

fn view(info: &PublicKeyInfo) -> ApiResult<Value> {
    let pem = info.pem().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("signing key of product {:?}: {e}", info.product),
        )
    })?;
    Ok(json!({
        "product": info.product,
        "algorithm": signing::ALGORITHM,
        "public_key": hex::encode(info.public_key),
        "public_key_pem": pem,
        "kid": hex::encode(info.kid),
        "created_at": info.created_at.rfc3339(),
    }))
}

fn check_product(product: &str) -> ApiResult<()> {
    if crate::ota::firmware::valid_product(product) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "product must be 1-64 characters of letters, digits, '.', '_', '-', ':'",
        ))
    }
}

fn no_key(product: &str) -> ApiError {
    ApiError::not_found(
        "no_signing_key",
        format!("product {product:?} has no signing key"),
    )
}

/// `POST /api/v1/products/{product}/signing-key[?rotate=true]` → 201 with
/// the public key.
#[utoipa::path(post, operation_id = "signing_key_create", path = "/api/v1/products/{product}/signing-key", tag = "signing",
    params(("product" = String, Path, description = "Product"), ("rotate" = Option<bool>, Query, description = "Replace an existing key")),
    responses(
        (status = 201, description = "Key made; from now on task answers of the product carry a signed manifest", body = SigningKey),
        (status = 400, description = "Bad product or query", body = super::schemas::ErrorBody),
        (status = 409, description = "The product has a key and `rotate` is not true", body = super::schemas::ErrorBody),
    ))]
pub async fn create(
    State(app): State<App>,
    actor: Actor,
    Path(product): Path<String>,
    Query(q): Query<CreateQuery>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    check_product(&product)?;
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let key = ProductKey::from_random(&product, secret, app.now());
    let public = key.public();
    let kid = hex::encode(public.kid);
    let rotate = q.rotate;
    let replaced = audited(&app, move |tx, _now| {
        Ok(signing::put(tx, &key, rotate)?.map(|previous| {
            let old_kid = previous.as_ref().map(|p| hex::encode(p.kid));
            let name = if old_kid.is_some() {
                "signing_key.rotate"
            } else {
                "signing_key.create"
            };
            let details =
                json!({ "algorithm": signing::ALGORITHM, "kid": kid, "replaced_kid": old_kid });
            let action = Action::new(
                name,
                format!("product/{}", key.product()),
                actor.0.clone(),
                details,
            );
            (old_kid, action)
        }))
    })
    .await?
    .map_err(|KeyError::Exists(p)| {
        ApiError::conflict(
            "signing_key_exists",
            format!(
                "product {p:?} already has a signing key; POST with ?rotate=true to replace it"
            ),
        )
    })?;
    // Never the key itself: its id only.
    tracing::info!(product = %public.product, kid = %hex::encode(public.kid), rotated = replaced.is_some(), "signing key made");
    let mut body = view(&public)?;
    if let Some(old) = replaced {
        body["replaced_kid"] = Value::String(old);
    }
    Ok((StatusCode::CREATED, Json(body)))
}

/// `GET /api/v1/products/{product}/signing-key`: the public key (a read
/// token may fetch it).
#[utoipa::path(get, operation_id = "signing_key_show", path = "/api/v1/products/{product}/signing-key", tag = "signing",
    params(("product" = String, Path, description = "Product")),
    responses(
        (status = 200, description = "The public key", body = SigningKey),
        (status = 400, description = "Bad product", body = super::schemas::ErrorBody),
        (status = 404, description = "The product has no signing key", body = super::schemas::ErrorBody),
    ))]
pub async fn show(State(app): State<App>, Path(product): Path<String>) -> ApiResult<Json<Value>> {
    check_product(&product)?;
    let wanted = product.clone();
    let key = app
        .store
        .scan(move |tx| Ok(signing::load(tx, &wanted)?.map(|k| k.public())))
        .await?;
    match key {
        Some(info) => Ok(Json(view(&info)?)),
        None => Err(no_key(&product)),
    }
}

/// `DELETE /api/v1/products/{product}/signing-key` → 204: answers are
/// unsigned from the next poll on.
#[utoipa::path(delete, operation_id = "signing_key_delete", path = "/api/v1/products/{product}/signing-key", tag = "signing",
    params(("product" = String, Path, description = "Product")),
    responses(
        (status = 204, description = "Key deleted; task answers of the product carry no manifest any more"),
        (status = 400, description = "Bad product", body = super::schemas::ErrorBody),
        (status = 404, description = "The product has no signing key", body = super::schemas::ErrorBody),
    ))]
pub async fn delete(
    State(app): State<App>,
    actor: Actor,
    Path(product): Path<String>,
) -> ApiResult<StatusCode> {
    check_product(&product)?;
    let target = product.clone();
    audited(&app, move |tx, _now| {
        let old = signing::load(tx, &target)
            .ok()
            .flatten()
            .map(|k| k.public());
        if !signing::remove(tx, &target)? {
            return Ok(Err(()));
        }
        let details = json!({ "kid": old.map(|o| hex::encode(o.kid)) });
        let action = Action::new(
            "signing_key.delete",
            format!("product/{target}"),
            actor.0.clone(),
            details,
        );
        Ok(Ok(((), action)))
    })
    .await?
    .map_err(|()| no_key(&product))?;
    tracing::info!(product = %product, "signing key deleted");
    Ok(StatusCode::NO_CONTENT)
}
