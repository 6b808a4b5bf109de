//! `/api/v1/tokens` (issue 11 item 3): create (the token is shown once),
//! list (names, roles, creation times; never a secret), revoke.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::actor::Actor;
use super::audit::{audited, Action};
use super::auth::{self, Role, TokenRecord, KIND_TOKEN, MAX_TOKENS};
use super::error::{ApiError, ApiResult};
use crate::state::App;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    role: Role,
}

fn view(record: &TokenRecord) -> Value {
    json!({
        "name": record.name,
        "role": record.role.as_str(),
        "created_at": record.created_at.rfc3339(),
    })
}

#[utoipa::path(post, operation_id = "tokens_create", path = "/api/v1/tokens", tag = "tokens",
    request_body(content = super::schemas::NewToken, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; `token` is shown only here", body = super::schemas::Token),
        (status = 400, description = "Bad name or role", body = super::schemas::ErrorBody),
        (status = 409, description = "Name taken, or too many tokens", body = super::schemas::ErrorBody),
    ))]
pub async fn create(
    State(app): State<App>,
    actor: Actor,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let new: NewToken = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("bad token request: {e}")))?;
    if !auth::valid_name(&new.name) {
        return Err(ApiError::bad_request(
            "token name must be 1-64 letters, digits, '.', '_' or '-'",
        ));
    }
    let token = auth::generate();
    let record = TokenRecord {
        name: new.name,
        role: new.role,
        sha256: auth::hash(&token),
        created_at: app.now(),
    };
    let stored = record.clone();
    let action = Action::new(
        "token.create",
        format!("token/{}", record.name),
        actor.0,
        json!({"role": record.role.as_str()}),
    );
    audited(&app, move |tx, _now| {
        Ok(auth::insert(tx, &stored)?.map(|()| ((), action.clone())))
    })
    .await??;
    tracing::info!(name = %record.name, role = record.role.as_str(), "admin token created");
    let mut body = view(&record);
    body["token"] = Value::String(token);
    Ok((StatusCode::CREATED, Json(body)))
}

#[utoipa::path(get, operation_id = "tokens_list", path = "/api/v1/tokens", tag = "tokens",
    responses(
        (status = 200, description = "Tokens (never their secrets)", body = Vec<super::schemas::Token>),
    ))]
pub async fn list(State(app): State<App>) -> ApiResult<Json<Value>> {
    let rows = app
        .store
        .scan(|tx| tx.secrets(KIND_TOKEN, None, MAX_TOKENS))
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (_, bytes) in rows {
        out.push(view(&auth::decode(&bytes)?));
    }
    Ok(Json(Value::Array(out)))
}

#[utoipa::path(delete, operation_id = "tokens_revoke", path = "/api/v1/tokens/{name}", tag = "tokens",
    params(("name" = String, Path, description = "Token name")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such token", body = super::schemas::ErrorBody),
    ))]
pub async fn revoke(
    State(app): State<App>,
    actor: Actor,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let key = name.clone();
    let action = Action::new("token.revoke", format!("token/{name}"), actor.0, json!({}));
    // Logged only when a token was revoked (a 404 changes nothing).
    let existed = audited(&app, move |tx, _now| {
        Ok(if auth::revoke(tx, &key)? {
            Ok((true, action.clone()))
        } else {
            Err(())
        })
    })
    .await?
    .unwrap_or(false);
    if !existed {
        return Err(ApiError::not_found(
            "unknown_token",
            format!("no token {name}"),
        ));
    }
    tracing::info!(name = %name, "admin token revoked");
    Ok(StatusCode::NO_CONTENT)
}
