//! `/api/v1/devices`, device history, `/api/v1/versions`, `/api/v1/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use redb::ReadableTable;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult, Query};
use super::views;
use crate::ota::devices::{self, NewDevice};
use crate::state::App;
use crate::store::access;
use crate::store::records::{DeviceRecord, HistoryEntry};
use crate::store::schema;

/// Largest device list one request registers.
const MAX_DEVICES_PER_REQUEST: usize = 100_000;
/// Default and largest page of `GET /api/v1/devices`.
const DEFAULT_PAGE: usize = 10_000;
const MAX_PAGE: usize = 100_000;

pub async fn create(
    State(app): State<App>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("body is not JSON: {e}")))?;
    let single = value.is_object();
    let list: Vec<NewDevice> = match value {
        Value::Object(_) => vec![serde_json::from_value(value)
            .map_err(|e| ApiError::bad_request(format!("bad device: {e}")))?],
        Value::Array(items) => {
            if items.len() > MAX_DEVICES_PER_REQUEST {
                return Err(ApiError::bad_request(format!(
                    "at most {MAX_DEVICES_PER_REQUEST} devices per request"
                )));
            }
            let mut list = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                list.push(serde_json::from_value(item).map_err(|e| {
                    ApiError::bad_request(format!("device #{} of the list: {e}", i + 1))
                })?);
            }
            list
        }
        _ => {
            return Err(ApiError::bad_request(
                "body must be a device object or a list of them",
            ))
        }
    };
    for (i, device) in list.iter().enumerate() {
        devices::validate(device).map_err(|m| {
            if single {
                ApiError::bad_request(m)
            } else {
                ApiError::bad_request(format!("device #{} of the list: {m}", i + 1))
            }
        })?;
    }
    let now = app.now_ms();
    let to_register = list.clone();
    let registered = app
        .store
        .write(move |txn| devices::register(txn, now, &to_register).map(Ok::<_, ()>))
        .await?
        .map_err(|()| ApiError::bad_request("not registered"))?;
    if single {
        if !registered.existing.is_empty() {
            return Err(ApiError::conflict(
                "device_exists",
                format!("device {} already exists", list[0].name),
            ));
        }
        let txn = app.store.read()?;
        let name = &list[0].name;
        let device = access::device(&txn, name)?
            .ok_or_else(|| ApiError::not_found("unknown_device", name.clone()))?;
        return Ok((
            StatusCode::CREATED,
            Json(views::device(name, &device, None)),
        ));
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({"created": registered.created.len(), "existing": registered.existing})),
    ))
}

#[derive(Debug, serde::Deserialize)]
pub struct ListQuery {
    product: Option<String>,
    version: Option<String>,
    /// Page size (default 10,000).
    limit: Option<usize>,
    /// Names sort; return devices after this one.
    after: Option<String>,
}

pub async fn list(State(app): State<App>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let txn = app.store.read()?;
    let table = txn.open_table(schema::DEVICES)?;
    let range = match &q.after {
        Some(after) => table.range::<&str>((
            std::ops::Bound::Excluded(after.as_str()),
            std::ops::Bound::Unbounded,
        ))?,
        None => table.range::<&str>(..)?,
    };
    let mut out = Vec::new();
    for entry in range {
        let (name, value) = entry.map_err(crate::store::StoreError::from)?;
        let Some(device) = crate::store::integrity::decode_or_skip::<DeviceRecord>(
            "devices",
            name.value(),
            value.value(),
        ) else {
            continue; // issue 8 item 7c: a corrupt record is skipped, not a 500
        };
        if q.product.as_ref().is_some_and(|p| *p != device.product)
            || q.version.as_ref().is_some_and(|v| *v != device.version)
        {
            continue;
        }
        let task = current_task(&txn, name.value(), &device)?;
        out.push(views::device(name.value(), &device, task.as_ref()));
        if out.len() >= limit {
            break;
        }
    }
    Ok(Json(Value::Array(out)))
}

fn current_task(
    txn: &redb::ReadTransaction,
    name: &str,
    device: &DeviceRecord,
) -> Result<Option<crate::store::records::TaskRecord>, crate::store::StoreError> {
    match device.active_task.or(device.last_task) {
        Some(campaign) => access::task(txn, campaign, name),
        None => Ok(None),
    }
}

pub async fn show(State(app): State<App>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let txn = app.store.read()?;
    let device = access::device(&txn, &name)?
        .ok_or_else(|| ApiError::not_found("unknown_device", format!("unknown device {name}")))?;
    let task = current_task(&txn, &name, &device)?;
    Ok(Json(views::device(&name, &device, task.as_ref())))
}

#[derive(Debug, serde::Deserialize)]
pub struct HistoryQuery {
    /// At most this many entries (default: all).
    limit: Option<usize>,
    /// Only entries after this `seq` (for paging).
    after: Option<u64>,
}

pub async fn history(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<Value>> {
    let txn = app.store.read()?;
    if access::device(&txn, &name)?.is_none() {
        return Err(ApiError::not_found(
            "unknown_device",
            format!("unknown device {name}"),
        ));
    }
    let table = txn.open_table(schema::HISTORY)?;
    let limit = q.limit.unwrap_or(usize::MAX).max(1);
    let first = q.after.map_or(0, |a| a.saturating_add(1));
    let mut out = Vec::new();
    for entry in table.range((name.as_str(), first)..=(name.as_str(), u64::MAX))? {
        let (key, value) = entry.map_err(crate::store::StoreError::from)?;
        let Some(h) = crate::store::integrity::decode_or_skip::<HistoryEntry>(
            "history",
            key.value(),
            value.value(),
        ) else {
            continue; // issue 8 item 7c: a corrupt record is skipped, not a 500
        };
        let mut item = views::history(&h);
        item["seq"] = json!(key.value().1);
        out.push(item);
        if out.len() >= limit {
            break;
        }
    }
    Ok(Json(Value::Array(out)))
}

#[derive(Debug, serde::Deserialize)]
pub struct VersionsQuery {
    product: Option<String>,
}

/// Version distribution: `{"version": device count, ...}`.
pub async fn versions(
    State(app): State<App>,
    Query(q): Query<VersionsQuery>,
) -> ApiResult<Json<Value>> {
    let txn = app.store.read()?;
    let table = txn.open_table(schema::DEVICES)?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for entry in table.iter()? {
        let (name, value) = entry.map_err(crate::store::StoreError::from)?;
        let Some(device) = crate::store::integrity::decode_or_skip::<DeviceRecord>(
            "devices",
            name.value(),
            value.value(),
        ) else {
            continue; // issue 8 item 7c: a corrupt record is skipped, not a 500
        };
        if q.product.as_ref().is_some_and(|p| *p != device.product) {
            continue;
        }
        *counts.entry(device.version).or_default() += 1;
    }
    Ok(Json(json!(counts)))
}

/// Server counters: commits (fsyncs) and write jobs so far.
pub async fn metrics(State(app): State<App>) -> Json<Value> {
    let stats = app.store.stats();
    Json(json!({
        "commits": stats.commits.load(Ordering::Relaxed),
        "write_jobs": stats.jobs.load(Ordering::Relaxed),
    }))
}
