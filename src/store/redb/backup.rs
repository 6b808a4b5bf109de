//! A consistent copy of the database while the server runs (issue 12
//! item 7): every table is copied from ONE read transaction (a snapshot of
//! the last commit) into a fresh redb file. Writers go on meanwhile; redb's
//! author recommends exactly this for hot backups, and warns against
//! copying the file itself while writes may be in flight.
//!
//! **Adding a table:** add a `copy(...)` line below. `tests/backup.rs`
//! compares every table (name and length) of a restored copy with the
//! original, so a table left out fails it.

use std::path::Path;

use ::redb::{
    Database, Key, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, TableError,
    Value, WriteTransaction,
};

use super::schema;
use crate::store::StoreError;

/// Writes a snapshot of `db` to a new database file at `out` (which must
/// not exist). Returns the number of records copied.
pub fn snapshot(db: &Database, out: &Path) -> Result<u64, StoreError> {
    let src = db.begin_read()?;
    let dst_db = Database::builder()
        .create(out)
        .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", out.display())))?;
    let dst = dst_db.begin_write()?;
    let copied = copy_all(&src, &dst)?;
    dst.commit()?;
    Ok(copied)
}

fn copy_all(src: &ReadTransaction, dst: &WriteTransaction) -> Result<u64, StoreError> {
    Ok(copy(src, dst, schema::FIRMWARE)?
        + copy(src, dst, schema::FIRMWARE_KEYS)?
        + copy(src, dst, schema::DEVICES)?
        + copy(src, dst, schema::DEVICE_TASKS)?
        + copy(src, dst, schema::DEVICE_VERSIONS)?
        + copy(src, dst, schema::CAMPAIGNS)?
        + copy(src, dst, schema::TASKS)?
        + copy(src, dst, schema::TASK_TEMPLATES)?
        + copy(src, dst, schema::CAMPAIGN_COUNTS)?
        + copy(src, dst, schema::HISTORY)?
        + copy(src, dst, schema::HISTORY_LEN)?
        + copy(src, dst, schema::TIMERS)?
        + copy(src, dst, schema::LEGACY_DEADLINES)?
        + copy(src, dst, schema::DYNAMIC_CAMPAIGNS)?
        + copy(src, dst, schema::PSKS)?
        + copy(src, dst, schema::PSK_IDENTITIES)?
        + copy(src, dst, schema::AUDIT)?
        + copy(src, dst, schema::ASSIGNMENTS)?
        + copy(src, dst, schema::SECRETS)?
        + copy(src, dst, schema::REGISTRATIONS)?
        + copy(src, dst, schema::REGISTRATION_LOCATIONS)?
        + copy(src, dst, schema::ENDED_REGISTRATIONS)?
        + copy(src, dst, schema::COUNTERS)?)
}

/// Copies one table; a table the source does not have is skipped.
fn copy<K: Key + 'static, V: Value + 'static>(
    src: &ReadTransaction,
    dst: &WriteTransaction,
    table: TableDefinition<K, V>,
) -> Result<u64, StoreError> {
    let from = match src.open_table(table) {
        Ok(from) => from,
        Err(TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut to = dst.open_table(table)?;
    let mut n = 0;
    for entry in from.iter()? {
        let (k, v) = entry?;
        to.insert(k.value(), v.value())?;
        n += 1;
    }
    Ok(n)
}
