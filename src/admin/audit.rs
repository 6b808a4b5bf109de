//! `GET /api/v1/audit`, and [`audited`]: how every operator action lands
//! in the audit log in the same transaction as the action.
//!
//! Handlers that change something call [`audited`] instead of
//! `app.store.write`: their job returns the result together with the
//! [`Action`] to log, and the entry is appended only when the job
//! succeeds, so a refused request leaves no trace and an accepted one
//! always does.

use std::future::Future;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

use super::error::{ApiResult, Query};
use super::page;
use crate::model::AuditEntry;
use crate::state::App;
use crate::store::{Tx, WriteOutcome};

pub use crate::ota::audit::Action;

/// Runs `job` as one durable write; when it returns `Ok(Ok((value,
/// action)))`, `action` is appended to the audit log in the same
/// transaction. `now` is the action's time (the job gets the same).
pub fn audited<T, E, F>(
    app: &App,
    mut job: F,
) -> impl Future<Output = WriteOutcome<T, E>> + Send + 'static
where
    T: Send + 'static,
    E: Send + 'static,
    F: FnMut(&mut dyn Tx, crate::time::Timestamp) -> WriteOutcome<(T, Action), E> + Send + 'static,
{
    let now = app.now();
    let cap = app.config.audit.limit;
    app.store.write(move |tx| match job(tx, now)? {
        Ok((value, action)) => {
            crate::ota::audit::record(tx, now, cap, &action)?;
            Ok(Ok(value))
        }
        Err(e) => Ok(Err(e)),
    })
}

/// Logs an action that has no write of its own to share a transaction with
/// (the write that carried it already committed elsewhere, e.g. a blob).
pub async fn record(app: &App, action: Action) -> WriteOutcome<(), ()> {
    audited(app, move |_tx, _now| Ok(Ok(((), action.clone())))).await
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Page size: default 1,000, at most 10,000.
    limit: Option<usize>,
    /// Only entries with a larger `id` (the cursor of the `next` link).
    after: Option<u64>,
}

pub fn view(e: &AuditEntry) -> Value {
    json!({
        "id": e.id,
        "at": e.at.rfc3339(),
        "action": e.action,
        "target": e.target,
        "actor": e.actor,
        "details": e.details,
    })
}

/// Oldest first; a full page carries `Link: <...&after=ID>; rel="next"`.
#[utoipa::path(get, operation_id = "audit_list", path = "/api/v1/audit", tag = "audit",
    params(("limit" = Option<u64>, Query, description = "Page size"), ("after" = Option<u64>, Query, description = "Entries after this id")),
    responses(
        (status = 200, description = "Audit entries, oldest first; a full page has `Link: rel=next`", body = Vec<super::schemas::AuditEntry>),
        (status = 400, description = "Bad query", body = super::schemas::ErrorBody),
    ))]
pub async fn list(
    State(app): State<App>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<(HeaderMap, Json<Value>)> {
    let limit = page::limit(q.limit);
    let after = q.after;
    let entries = app.store.scan(move |tx| tx.audit(after, limit)).await?;
    let next = (entries.len() >= limit)
        .then(|| entries.last().map(|e| e.id.to_string()))
        .flatten();
    let out = entries.iter().map(view).collect();
    Ok((
        page::next_link("/api/v1/audit", &[], limit, next),
        Json(Value::Array(out)),
    ))
}
