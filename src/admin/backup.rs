//! `GET /api/v1/backup` (issue 12 item 7): a consistent backup of the
//! running server as a tar stream: `lwota.redb`, a snapshot of the
//! database taken in one read transaction (`store/redb/backup.rs`), and
//! `blobs/<sha256>` for every firmware image in that snapshot. Untar it
//! into an empty directory and start a server with `--data-dir` on it.
//!
//! Writes and device traffic go on during the backup. Only firmware
//! uploads and deletes wait, for the snapshot and the hard links to the
//! blobs (not for the streaming), so the blobs match the snapshot.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use tokio::sync::mpsc;

use super::error::{ApiError, ApiResult};
use crate::ota::firmware;
use crate::state::App;
use crate::store::FILE_NAME;

/// Chunks in flight between the tar writer and the HTTP body: the writer
/// waits when the client reads slowly (bounded memory: this × CHUNK).
const CHUNKS_IN_FLIGHT: usize = 8;
const CHUNK: usize = 256 * 1024;

#[utoipa::path(get, operation_id = "backup_download", path = "/api/v1/backup", tag = "backup",
    responses(
        (status = 200, description = "A tar archive: `lwota.redb` and `blobs/<sha256>`; \
            untar into an empty data directory to restore",
            content_type = "application/x-tar", body = String),
        (status = 500, description = "The snapshot could not be written", body = super::schemas::ErrorBody),
    ))]
pub async fn download(State(app): State<App>) -> ApiResult<impl IntoResponse> {
    let data_dir = app.config.server.data_dir.clone();
    // Removed when dropped: after streaming, or on any error below.
    let staging = tempfile::Builder::new()
        .prefix(".backup-")
        .tempdir_in(&data_dir)?;
    let db_copy = staging.path().join(FILE_NAME);
    let blobs = {
        // Firmware records and their blobs change only under this lock.
        let _blob_guard = app.blob_lock.lock().await;
        app.store.snapshot_to(db_copy.clone()).await?;
        let records = app.store.scan(|tx| firmware::list_all(tx)).await?;
        let dir = staging.path().join("blobs");
        std::fs::create_dir_all(&dir)?;
        let mut linked = Vec::with_capacity(records.len());
        for fw in &records {
            let name = hex::encode(&fw.sha256);
            let to = dir.join(&name);
            if !to.exists() {
                link_or_copy(&app.blobs.path_of(&fw.sha256), &to)?;
                linked.push((to, format!("blobs/{name}")));
            }
        }
        linked
    };
    tracing::info!(blobs = blobs.len(), "backup snapshot taken");

    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let out = io::BufWriter::with_capacity(CHUNK, ChannelWriter(tx.clone()));
        if let Err(e) = write_tar(out, &db_copy, &blobs) {
            tracing::warn!("backup stream ended early: {e}");
            // The client sees a broken transfer, not a short "good" tar.
            let _ = tx.blocking_send(Err(e));
        }
        drop(staging);
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"lwota-backup.tar\"",
            ),
        ],
        Body::from_stream(stream),
    ))
}

fn write_tar(out: impl Write, db: &Path, blobs: &[(PathBuf, String)]) -> io::Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.append_path_with_name(db, FILE_NAME)?;
    for (path, name) in blobs {
        tar.append_path_with_name(path, name)?;
    }
    tar.into_inner()?.flush()
}

/// A hard link keeps the blob even if its firmware is deleted while the
/// backup streams, and costs nothing; a copy where links are refused.
fn link_or_copy(from: &Path, to: &Path) -> Result<(), ApiError> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map(|_| ()).map_err(|e| {
        ApiError::from(io::Error::new(
            e.kind(),
            format!("cannot copy blob {}: {e}", from.display()),
        ))
    })
}

/// `Write` into the response body's channel (from a blocking thread).
struct ChannelWriter(mpsc::Sender<io::Result<Bytes>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
