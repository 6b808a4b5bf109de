//! `/api/v1/devices`, device history, `/api/v1/versions`, `/api/v1/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use super::actor::Actor;
use super::audit::{audited, Action};
use super::error::{ApiError, ApiResult, Query};
use super::{page, views};
use crate::model::{CampaignId, TaskRecord};
use crate::ota::assignment;
use crate::ota::devices::{self, NewDevice};
use crate::state::App;
use crate::store::{ReadTx, StoreError};

/// Largest device list one request registers.
const MAX_DEVICES_PER_REQUEST: usize = 100_000;
/// Devices registered per write job: a 100,000-device request becomes 100
/// short jobs, so device polls queued behind it wait for one chunk, not
/// for the whole list.
const REGISTER_CHUNK: usize = 1_000;
/// Default and largest page of `GET /api/v1/devices`.
const DEFAULT_PAGE: usize = 10_000;
const MAX_PAGE: usize = 100_000;

#[utoipa::path(post, operation_id = "devices_create", path = "/api/v1/devices", tag = "devices",
    request_body(content = super::schemas::NewDevices,
        description = "One device, or a list of up to 100,000"),
    responses(
        (status = 201, description = "A single device: the device; a list: the counts", body = super::schemas::DevicesCreateAnswer),
        (status = 400, description = "Invalid device or body", body = super::schemas::ErrorBody),
        (status = 409, description = "A single device that already exists", body = super::schemas::ErrorBody),
    ))]
pub async fn create(
    State(app): State<App>,
    actor: Actor,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    // Parsing and checking up to 100,000 devices is tens of milliseconds
    // of CPU: done on the blocking pool, not on a worker that serves CoAP.
    let (single, list) = tokio::task::spawn_blocking(move || parse_devices(&body))
        .await
        .map_err(|e| ApiError::from(std::io::Error::other(e.to_string())))??;
    // Each chunk commits on its own: a failure part-way leaves the earlier
    // chunks registered, and a retry reports them as `existing`. Each chunk
    // is one audit entry (`device.create` for one device, `device.import`
    // for a list), written with it.
    let mut registered = devices::Registered::default();
    for chunk in list.chunks(REGISTER_CHUNK) {
        let chunk = chunk.to_vec();
        let actor = actor.0.clone();
        let done = audited(&app, move |tx, now| {
            let done = devices::register(tx, now, &chunk)?;
            crate::ota::assignment::on_registered(tx, now, &done.created)?;
            let action = if single {
                Action::new(
                    "device.create",
                    format!("device/{}", chunk[0].name),
                    actor.clone(),
                    json!({"product": chunk[0].product, "version": chunk[0].version,
                           "created": !done.created.is_empty()}),
                )
            } else {
                Action::new(
                    "device.import",
                    "devices",
                    actor.clone(),
                    json!({"created": done.created.len(), "existing": done.existing.len(),
                           "first": chunk.first().map(|d| &d.name),
                           "last": chunk.last().map(|d| &d.name)}),
                )
            };
            Ok(Ok::<_, ()>((done, action)))
        })
        .await?
        .map_err(|()| ApiError::bad_request("not registered"))?;
        registered.created.extend(done.created);
        registered.existing.extend(done.existing);
    }
    if single {
        if !registered.existing.is_empty() {
            return Err(ApiError::conflict(
                "device_exists",
                format!("device {} already exists", list[0].name),
            ));
        }
        let name = &list[0].name;
        let tx = app.store.read()?;
        let device = tx
            .device(name)?
            .ok_or_else(|| ApiError::not_found("unknown_device", name.clone()))?;
        let (software_task, task) = current_task(tx.as_ref(), name)?;
        return Ok((
            StatusCode::CREATED,
            Json(views::device(name, &device, software_task, task.as_ref())),
        ));
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({"created": registered.created.len(), "existing": registered.existing})),
    ))
}

/// The request body as a list of checked devices, and whether it was a
/// single object.
fn parse_devices(body: &[u8]) -> ApiResult<(bool, Vec<NewDevice>)> {
    let value: Value = serde_json::from_slice(body)
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
    Ok((single, list))
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

/// Devices read per step while filtering.
const SCAN_STEP: usize = 1_000;

#[utoipa::path(get, operation_id = "devices_list", path = "/api/v1/devices", tag = "devices",
    params(
        ("product" = Option<String>, Query, description = "Only this product"),
        ("version" = Option<String>, Query, description = "Only devices on this version"),
        ("limit" = Option<usize>, Query, description = "Page size (default 10,000, at most 100,000)"),
        ("after" = Option<String>, Query, description = "Devices after this name (names sort)"),
    ),
    responses((status = 200, description = "Devices by name", body = [super::schemas::Device])))]
pub async fn list(State(app): State<App>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let out = app
        .store
        .scan(move |tx| {
            let mut out = Vec::new();
            let mut after = q.after.clone();
            while out.len() < limit {
                let step = tx.devices(after.as_deref(), SCAN_STEP)?;
                let Some((last, _)) = step.last() else {
                    break;
                };
                after = Some(last.clone());
                for (name, device) in step {
                    if q.product.as_ref().is_some_and(|p| *p != device.product)
                        || q.version.as_ref().is_some_and(|v| *v != device.version)
                    {
                        continue;
                    }
                    let (software_task, task) = current_task(tx, &name)?;
                    out.push(views::device(&name, &device, software_task, task.as_ref()));
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await?;
    Ok(Json(Value::Array(out)))
}

/// The device's unfinished software task, and the task its page shows
/// (the unfinished firmware task, else the latest).
fn current_task(
    tx: &dyn ReadTx,
    name: &str,
) -> Result<(Option<CampaignId>, Option<TaskRecord>), StoreError> {
    let pointers = assignment::pointers(tx, name)?;
    let task = match pointers.shown() {
        Some(campaign) => tx.task(campaign, name)?,
        None => None,
    };
    Ok((pointers.software, task))
}

#[utoipa::path(get, operation_id = "devices_show", path = "/api/v1/devices/{name}", tag = "devices",
    params(("name" = String, Path, description = "Device name")),
    responses(
        (status = 200, description = "The device", body = super::schemas::Device),
        (status = 404, description = "No such device", body = super::schemas::ErrorBody),
    ))]
pub async fn show(State(app): State<App>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let tx = app.store.read()?;
    let device = tx
        .device(&name)?
        .ok_or_else(|| ApiError::not_found("unknown_device", format!("unknown device {name}")))?;
    let (software_task, task) = current_task(tx.as_ref(), &name)?;
    let mut view = views::device(&name, &device, software_task, task.as_ref());
    // Issue 9: an LwM2M device's registration, or its last one after a
    // De-register or expiry (`"registered": false`).
    if let Some(mut registration) = tx.registration(&name)? {
        // Updates answered from memory (`lwm2m::live`) are newer than
        // the stored record.
        if let Some(live) = app.lwm2m.live().of_name(&name) {
            if live.location == registration.location {
                registration.last_update = live.last_update;
                registration.expires_at = live.expires_at;
            }
        }
        view["lwm2m"] = views::lwm2m(&registration, app.now());
    } else if let Some(ended) = tx.ended_registration(&name)? {
        view["lwm2m"] = views::lwm2m_ended(&ended);
    }
    Ok(Json(view))
}

#[derive(Debug, serde::Deserialize)]
pub struct HistoryQuery {
    /// Page size: default 1,000, at most 10,000.
    limit: Option<usize>,
    /// Only entries after this `seq` (for paging).
    after: Option<u64>,
}

#[utoipa::path(get, operation_id = "devices_history", path = "/api/v1/devices/{name}/history", tag = "devices",
    params(
        ("name" = String, Path, description = "Device name"),
        ("limit" = Option<usize>, Query, description = "Page size (default 1,000, at most 10,000)"),
        ("after" = Option<u64>, Query, description = "Entries after this seq"),
    ),
    responses(
        (status = 200, description = "Oldest first; a `Link: <...>; rel=\"next\"` header when more may follow", body = [super::schemas::HistoryEntry]),
        (status = 404, description = "No such device", body = super::schemas::ErrorBody),
    ))]
pub async fn history(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<(HeaderMap, Json<Value>)> {
    let limit = page::limit(q.limit);
    let lookup = name.clone();
    let entries = app
        .store
        .scan(move |tx| {
            if tx.device(&lookup)?.is_none() {
                return Ok(None);
            }
            crate::ota::history::page(tx, &lookup, q.after, limit).map(Some)
        })
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_device", format!("unknown device {name}")))?;
    let next = (entries.len() >= limit)
        .then(|| entries.last().map(|(seq, _)| seq.to_string()))
        .flatten();
    let out = entries
        .iter()
        .map(|(seq, h)| {
            let mut item = views::history(h);
            item["seq"] = json!(seq);
            item
        })
        .collect();
    let path = format!("/api/v1/devices/{name}/history");
    Ok((
        page::next_link(&path, &[], limit, next),
        Json(Value::Array(out)),
    ))
}

#[derive(Debug, serde::Deserialize)]
pub struct VersionsQuery {
    product: Option<String>,
    /// `true`: top-5-plus-others distributions of firmware and software
    /// versions (`admin/stats.rs`); absent or false: the v1 map.
    #[serde(default)]
    detail: bool,
}

#[utoipa::path(get, operation_id = "devices_versions", path = "/api/v1/versions", tag = "devices",
    params(("product" = Option<String>, Query, description = "Only this product")),
    responses((status = 200, description = "Devices per version: `{\"1.0\": 12, ...}`", body = std::collections::BTreeMap<String, u64>)))]
/// Version distribution: `{"version": device count, ...}`.
pub async fn versions(
    State(app): State<App>,
    Query(q): Query<VersionsQuery>,
) -> ApiResult<Json<Value>> {
    if q.detail {
        return super::stats::versions_detail(app, q.product).await;
    }
    let counts = app
        .store
        .scan(move |tx| {
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            let mut after: Option<String> = None;
            loop {
                let step = tx.devices(after.as_deref(), SCAN_STEP)?;
                let Some((last, _)) = step.last() else {
                    break;
                };
                after = Some(last.clone());
                for (_, device) in step {
                    if q.product.as_ref().is_some_and(|p| *p != device.product) {
                        continue;
                    }
                    *counts.entry(device.version).or_default() += 1;
                }
            }
            Ok(counts)
        })
        .await?;
    Ok(Json(json!(counts)))
}

#[utoipa::path(get, operation_id = "devices_metrics", path = "/api/v1/metrics", tag = "metrics",
    responses((status = 200, description = "Writer counters (see also `/metrics`)", body = super::schemas::StoreCounters)))]
/// Server counters: commits (fsyncs) and write jobs so far.
pub async fn metrics(State(app): State<App>) -> Json<Value> {
    let stats = app.store.stats();
    Json(json!({
        "commits": stats.commits.load(Ordering::Relaxed),
        "write_jobs": stats.jobs.load(Ordering::Relaxed),
        "isolated_write_failures": stats.isolated_failures.load(Ordering::Relaxed),
    }))
}
