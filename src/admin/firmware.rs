//! `/api/v1/firmware`: upload (streamed to disk), list, show, delete.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use futures_util::StreamExt;
use serde_json::Value;

use super::error::{ApiError, ApiResult, Query};
use super::views;
use crate::model::StateCounts;
use crate::ota::firmware::{self, FirmwareError, UploadParams};
use crate::state::App;
use crate::store::{ReadTx, StoreError};

fn api_error(e: FirmwareError) -> ApiError {
    match e {
        FirmwareError::Invalid(m) => ApiError::bad_request(m),
        e @ FirmwareError::DuplicateVersion { .. } => {
            ApiError::conflict("duplicate_version", e.to_string())
        }
        e @ FirmwareError::ProductFull { .. } => ApiError::conflict("product_full", e.to_string()),
        e @ FirmwareError::Unknown(_) => ApiError::not_found("unknown_firmware", e.to_string()),
        e @ FirmwareError::InUse { .. } => ApiError::conflict("firmware_in_use", e.to_string()),
    }
}

/// Everything that can be checked before the body is read.
fn precheck(
    app: &App,
    params: &UploadParams,
    declared: Option<u64>,
    limit: u64,
    per_product: u32,
) -> ApiResult<firmware::NewFirmware> {
    let meta = firmware::validate(params).map_err(api_error)?;
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    firmware::check_slot(app.store.read()?.as_ref(), &meta, per_product)?.map_err(api_error)?;
    Ok(meta)
}

/// How much of a rejected body is read and discarded before answering.
/// A client that is still sending when the server answers and closes
/// often sees a reset instead of the answer; reading a bounded rest first
/// lets it see the 400. Larger bodies are cut off (clients that send
/// `Expect: 100-continue`, as curl does, never start sending them).
const MAX_DRAIN: u64 = 64 << 20;

async fn drain(body: Body) {
    drain_stream(body.into_data_stream()).await
}

async fn drain_stream(mut stream: axum::body::BodyDataStream) {
    let mut read = 0u64;
    while let Some(Ok(chunk)) = stream.next().await {
        read += chunk.len() as u64;
        if read > MAX_DRAIN {
            break;
        }
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "image_too_large",
        format!("image is larger than the limit of {limit} bytes (firmware.max_size)"),
    )
}

#[utoipa::path(post, operation_id = "firmware_upload", path = "/api/v1/firmware", tag = "firmware",
    params(
        ("product" = String, Query, description = "Product the image is for"),
        ("version" = String, Query, description = "Version the image installs; unique per product"),
        ("name" = Option<String>, Query, description = "Display name"),
        ("kind" = Option<String>, Query, description = "Image kind (e.g. full, delta)"),
        ("signature" = Option<String>, Query, description = "Signature to hand to devices"),
        ("description" = Option<String>, Query, description = "Free text"),
        ("filename" = Option<String>, Query, description = "Original file name"),
    ),
    request_body(content = String, content_type = "application/octet-stream",
        description = "The raw image (at most `firmware.max_size` bytes)"),
    responses(
        (status = 201, description = "Stored", body = super::schemas::Firmware),
        (status = 400, description = "Invalid parameters, empty or too large image", body = super::schemas::ErrorBody),
        (status = 409, description = "Duplicate version, or the product has too many images", body = super::schemas::ErrorBody),
    ))]
pub async fn upload(
    State(app): State<App>,
    Query(params): Query<UploadParams>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let limit = app.config.firmware.max_size;
    let per_product = app.config.firmware.max_per_product;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Refuse before storing a byte where we can.
    let meta = match precheck(&app, &params, declared, limit, per_product) {
        Ok(meta) => meta,
        Err(e) => {
            if declared.is_none_or(|n| n <= MAX_DRAIN) {
                drain(body).await;
            }
            return Err(e);
        }
    };

    let mut temp = app.blobs.create_temp()?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("upload interrupted: {e}")))?;
        if temp.size() + chunk.len() as u64 > limit {
            // Dropping `temp` deletes the partial file.
            drop(temp);
            drain_stream(stream).await;
            return Err(too_large(limit));
        }
        temp.write(&chunk)?;
    }
    if temp.size() == 0 {
        return Err(ApiError::bad_request(
            "empty image: the request body is the firmware image",
        ));
    }
    // Held from the rename until the record is committed (or the blob
    // removed), so a concurrent delete of an identical image cannot remove
    // the file this upload is about to reference.
    let _blob_guard = app.blob_lock.lock().await;
    let blobs = app.blobs.clone();
    let stored = tokio::task::spawn_blocking(move || temp.persist(&blobs))
        .await
        .map_err(|e| ApiError::from(std::io::Error::other(e.to_string())))??;

    let now = app.now();
    let insert_meta = meta.clone();
    let insert_blob = stored.clone();
    let outcome = app
        .store
        .write(move |tx| firmware::insert(tx, now, &insert_meta, &insert_blob, per_product))
        .await;
    let failure = match outcome {
        Ok(Ok(record)) => {
            // Committed: the operator gets 201 whatever happens next.
            if let Err(e) = app.catalogue.insert(&app.blobs, record.clone()) {
                tracing::error!(
                    id = record.id,
                    "uploaded image cannot be opened for serving: {e}"
                );
            }
            tracing::info!(id = record.id, product = %record.product, version = %record.version, size = record.size, "firmware uploaded");
            return Ok((StatusCode::CREATED, Json(views::firmware(&record, &[0; 8]))));
        }
        Ok(Err(e)) => api_error(e),
        Err(e) => e.into(),
    };
    // Lost a race with an equal upload, or storage failed: the blob must
    // not outlive the failure unless another record uses the same bytes.
    let shared = firmware::list_all(app.store.read()?.as_ref())?
        .iter()
        .any(|fw| fw.sha256 == stored.sha256);
    if !shared {
        app.blobs.remove(&stored.sha256)?;
    }
    Err(failure)
}
#[derive(Debug, serde::Deserialize)]
pub struct ListQuery {
    product: Option<String>,
}

#[utoipa::path(get, operation_id = "firmware_list", path = "/api/v1/firmware", tag = "firmware",
    params(("product" = Option<String>, Query, description = "Only this product's images")),
    responses((status = 200, description = "Every image, by id", body = [super::schemas::Firmware])))]
pub async fn list(State(app): State<App>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let (counts, mut records) = app
        .store
        .scan(|tx| Ok((counts_by_firmware(tx)?, firmware::list_all(tx)?)))
        .await?;
    if let Some(product) = &q.product {
        records.retain(|fw| &fw.product == product);
    }
    records.sort_by_key(|fw| fw.id);
    let items = records
        .iter()
        .map(|fw| views::firmware(fw, counts.get(&fw.id).unwrap_or(&[0; 8])))
        .collect();
    Ok(Json(Value::Array(items)))
}

#[utoipa::path(get, operation_id = "firmware_show", path = "/api/v1/firmware/{id}", tag = "firmware",
    params(("id" = u64, Path, description = "Firmware id")),
    responses(
        (status = 200, description = "The image", body = super::schemas::Firmware),
        (status = 404, description = "No such firmware", body = super::schemas::ErrorBody),
    ))]
pub async fn show(State(app): State<App>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let (record, counts) = app
        .store
        .scan(move |tx| Ok((tx.firmware(id)?, counts_by_firmware(tx)?)))
        .await?;
    let record = record.ok_or_else(|| api_error(FirmwareError::Unknown(id)))?;
    Ok(Json(views::firmware(
        &record,
        counts.get(&id).unwrap_or(&[0; 8]),
    )))
}

#[utoipa::path(delete, operation_id = "firmware_delete", path = "/api/v1/firmware/{id}", tag = "firmware",
    params(("id" = u64, Path, description = "Firmware id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such firmware", body = super::schemas::ErrorBody),
        (status = 409, description = "An unfinished campaign uses it", body = super::schemas::ErrorBody),
    ))]
pub async fn delete(State(app): State<App>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let id = parse_id(&id)?;
    let _blob_guard = app.blob_lock.lock().await;
    // The scan for campaigns using the image runs on a snapshot, off the
    // writer; the write re-checks only campaigns created since.
    let (in_use, checked_up_to) = app
        .store
        .scan(move |tx| firmware::unfinished_campaign_using(tx, id, None))
        .await?;
    if let Some(campaign) = in_use {
        return Err(api_error(FirmwareError::InUse { id, campaign }));
    }
    let (record, unreferenced) = app
        .store
        .write(move |tx| firmware::delete(tx, id, checked_up_to))
        .await?
        .map_err(api_error)?;
    app.catalogue.remove(id);
    if unreferenced {
        // Committed: a failure here only leaves an orphan blob, which
        // start-up removes; the operator still gets 204.
        if let Err(e) = app.blobs.remove(&record.sha256) {
            tracing::warn!(id, "blob of deleted firmware not removed: {e}");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

pub fn parse_id(id: &str) -> ApiResult<u64> {
    super::http_errors::parse_path_id(id)
        .ok_or_else(|| ApiError::not_found("unknown_firmware", format!("unknown firmware {id}")))
}

/// Devices per task state for each firmware, summed over its campaigns.
fn counts_by_firmware(tx: &dyn ReadTx) -> Result<HashMap<u64, StateCounts>, StoreError> {
    const STEP: usize = 1_000;
    let mut out: HashMap<u64, StateCounts> = HashMap::new();
    let mut after = None;
    loop {
        let step = tx.campaigns(after, STEP)?;
        let Some(last) = step.last() else {
            return Ok(out);
        };
        after = Some(last.id);
        for campaign in &step {
            let counts = tx.campaign_counts(campaign.id)?;
            let slot = out.entry(campaign.firmware).or_insert([0; 8]);
            for (total, n) in slot.iter_mut().zip(counts) {
                *total += n;
            }
        }
    }
}
