//! Opening the data directory safely (issue 8, items 7b-7d).
//!
//! - A damaged database file must end start-up with one clear line, not a
//!   redb panic and a backtrace: opening and the first full read run under
//!   [`integrity::catch_quietly`].
//! - Every record is decoded once ([`integrity::check`]); bad ones are
//!   logged with their keys and listings skip them.
//! - Firmware blobs are deleted as "unreferenced" only when the catalogue
//!   can be trusted: never when the database was just created (a missing
//!   or 0-byte `lwota.redb` would otherwise wipe every image), never when
//!   the catalogue is empty, never when a firmware record is unreadable.

use std::collections::HashSet;
use std::path::Path;

use anyhow::anyhow;

use crate::model::FirmwareRecord;
use crate::ota::firmware;
use crate::store::blobs::BlobStore;
use crate::store::integrity;
use crate::store::recovery::Opener;
use crate::store::{Store, StoreOptions};
use crate::time::Timestamp;

/// What start-up found in the data directory.
pub struct Opened {
    /// The store, its writer running.
    pub store: Store,
    /// The firmware catalogue (corrupt records skipped).
    pub records: Vec<FirmwareRecord>,
    /// The latest "now" the server persisted.
    pub clock_floor: Option<Timestamp>,
}

/// Opens the store, checks it and tidies the blob directory. `opener`
/// replaces the plain file (tests inject faults through it).
pub fn open_data(
    data_dir: &Path,
    blobs: &BlobStore,
    options: StoreOptions,
    opener: Option<Opener>,
) -> anyhow::Result<Opened> {
    let db_path = Store::file_in(data_dir);
    // A missing or empty file means redb is about to create a new, empty
    // database: the catalogue then says nothing about which blobs are used.
    let fresh = std::fs::metadata(&db_path).map_or(true, |m| m.len() == 0);
    let opener = opener.unwrap_or_else(|| crate::store::recovery::file_opener(db_path.clone()));
    let opened = integrity::catch_quietly(|| -> anyhow::Result<_> {
        let store = Store::open_with(opener, options)
            .map_err(|e| anyhow!("cannot open database {}: {e}", db_path.display()))?;
        let report = store.check_integrity()?;
        let read = store.read()?;
        let (records, floor) = (firmware::list_all(read.as_ref())?, read.clock_floor()?);
        drop(read);
        Ok((store, report, records, floor))
    });
    let (store, report, records, clock_floor) = match opened {
        // Release builds of the database report a damaged page as `Corrupted`
        // instead of panicking: the same advice applies.
        Ok(Err(e)) if e.to_string().to_lowercase().contains("corrupt") => {
            return Err(anyhow!(
                "database {} is damaged ({e}); run `lwota check --repair --data-dir {}` or restore it from a backup",
                db_path.display(),
                data_dir.display()
            ));
        }
        Ok(result) => result?,
        Err(panic) => {
            tracing::debug!(
                "the database panicked opening {}: {panic}",
                db_path.display()
            );
            return Err(anyhow!(
                "database {} is damaged (its pages cannot be read); run `lwota check --repair --data-dir {}` or restore it from a backup",
                db_path.display(),
                data_dir.display()
            ));
        }
    };
    integrity::log_report(&report);
    tidy_blobs(blobs, fresh, &records, &report);
    Ok(Opened {
        store,
        records,
        clock_floor,
    })
}

/// Deletes leftover uploads and, when the catalogue can be trusted,
/// unreferenced blobs. Failures are logged (naming the path) and never
/// stop start-up: a stray file costs disk space, not service.
fn tidy_blobs(
    blobs: &BlobStore,
    fresh: bool,
    records: &[FirmwareRecord],
    report: &integrity::IntegrityReport,
) {
    match blobs.remove_temp_files() {
        Ok(0) => {}
        Ok(n) => tracing::info!("removed {n} leftover upload files"),
        Err(e) => tracing::warn!("cannot clean the upload temp dir: {e}"),
    }
    let keep_all = if fresh {
        Some("the database was just created (missing or empty file)")
    } else if records.is_empty() {
        Some("the firmware catalogue is empty")
    } else if report.firmware_damaged() {
        Some("a firmware record is unreadable")
    } else {
        None
    };
    if let Some(why) = keep_all {
        let present = blobs.blob_names().map(|n| n.len()).unwrap_or(0);
        if present > 0 {
            tracing::warn!(
                "keeping all {present} firmware files: {why}; if the database was lost, restore it from a backup"
            );
        }
        return;
    }
    let referenced: HashSet<String> = records.iter().map(|r| hex::encode(&r.sha256)).collect();
    match blobs.remove_unreferenced(&referenced) {
        Ok(0) => {}
        Ok(n) => tracing::info!("removed {n} leftover blob files"),
        Err(e) => tracing::warn!("cannot clean the blob dir: {e}"),
    }
}
