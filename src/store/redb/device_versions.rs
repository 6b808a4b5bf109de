//! The version index (`DEVICE_VERSIONS`): which devices of a product run
//! which firmware (and software) version, without decoding a record.
//!
//! A campaign "by source version" over a million devices used to decode
//! every device record to compare its product and version (about a
//! microsecond each, a fifth of the issue 10 budget); with the index it
//! reads only the names it will queue, in name order. The index is derived
//! data: [`put`] keeps it in step with every device write, [`build`] fills
//! it once for databases written before it, [`check`] compares it with the
//! records and [`rebuild`] (`lwota check --repair`) makes it again.

use ::redb::{ReadableTable, ReadableTableMetadata, Table, WriteTransaction};
use serde::Deserialize;

use super::codec::decode;
use super::integrity::IntegrityReport;
use super::schema;
use crate::model::DeviceRecord;
use crate::store::Result;

/// Slot of an index key: the firmware version or the software version.
pub const FIRMWARE_SLOT: u8 = 0;
pub const SOFTWARE_SLOT: u8 = 1;

type Index<'t> = Table<'t, (&'static str, u8, &'static str, &'static str), ()>;

/// What the index holds of a device record: decoded alone (unknown
/// fields skipped) when the old record of a write is read back.
#[derive(Debug, Deserialize)]
struct Versions {
    product: String,
    version: String,
    #[serde(default)]
    software_version: Option<String>,
}

impl Versions {
    fn of(record: &DeviceRecord) -> Versions {
        Versions {
            product: record.product.clone(),
            version: record.version.clone(),
            software_version: record.software_version.clone(),
        }
    }

    fn is_of(&self, record: &DeviceRecord) -> bool {
        self.product == record.product
            && self.version == record.version
            && self.software_version == record.software_version
    }

    /// The index keys (without the name) of a device with these versions.
    fn keys(&self) -> impl Iterator<Item = (u8, &str)> {
        std::iter::once((FIRMWARE_SLOT, self.version.as_str()))
            .chain(self.software_version.as_deref().map(|v| (SOFTWARE_SLOT, v)))
    }

    fn insert(&self, index: &mut Index<'_>, name: &str) -> Result<()> {
        for (slot, version) in self.keys() {
            index.insert((self.product.as_str(), slot, version, name), ())?;
        }
        Ok(())
    }

    fn remove(&self, index: &mut Index<'_>, name: &str) -> Result<()> {
        for (slot, version) in self.keys() {
            index.remove((self.product.as_str(), slot, version, name))?;
        }
        Ok(())
    }
}

/// Writes a device record and moves its index keys when its product or
/// versions changed (the old record comes back from the insert, so this
/// costs no extra lookup).
pub fn put(txn: &WriteTransaction, name: &str, record: &DeviceRecord, bytes: &[u8]) -> Result<()> {
    let old = {
        let mut devices = txn.open_table(schema::DEVICES)?;
        let old = devices.insert(name, bytes)?;
        // An old record that does not decode has no keys we could find
        // (`lwota check` reports the index then, and repair rebuilds it).
        old.and_then(|v| decode::<Versions>(v.value()).ok())
    };
    // Most writes (a poll's `last_seen`) change no version: compare
    // without copying the record's strings.
    if old.as_ref().is_some_and(|o| o.is_of(record)) {
        return Ok(());
    }
    let new = Versions::of(record);
    let mut index = txn.open_table(schema::DEVICE_VERSIONS)?;
    if let Some(old) = old {
        old.remove(&mut index, name)?;
    }
    new.insert(&mut index, name)
}

/// Names of `product`'s devices whose firmware (`software` false) or
/// software version is `version`, in name order, after `after`, at most
/// `limit`.
pub fn names(
    table: &impl ReadableTable<(&'static str, u8, &'static str, &'static str), ()>,
    product: &str,
    software: bool,
    version: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>> {
    let slot = if software {
        SOFTWARE_SLOT
    } else {
        FIRMWARE_SLOT
    };
    let mut out = Vec::with_capacity(limit.min(16_384));
    let start = (product, slot, version, after.unwrap_or(""));
    for entry in table.range(start..)? {
        if out.len() >= limit {
            break;
        }
        let (k, _) = entry?;
        let (p, s, v, name) = k.value();
        if p != product || s != slot || v != version {
            break;
        }
        // The range starts at `after` itself: step over it.
        if after == Some(name) {
            continue;
        }
        out.push(name.to_string());
    }
    Ok(out)
}

/// Fills the index from the device records, once: a counter marks the
/// database (new databases are marked when they are created, empty).
/// Returns how many devices were indexed.
pub fn build(txn: &WriteTransaction) -> Result<u64> {
    let mut counters = txn.open_table(schema::COUNTERS)?;
    if counters.get(schema::DEVICE_VERSIONS_BUILT)?.is_some() {
        return Ok(0);
    }
    let indexed = fill(txn)?;
    counters.insert(schema::DEVICE_VERSIONS_BUILT, 1)?;
    Ok(indexed)
}

/// Empties the index and makes it again from the records that decode.
/// Returns how many keys changed (added or removed).
pub fn rebuild(txn: &WriteTransaction) -> Result<u64> {
    let before: Vec<(String, u8, String, String)> = {
        let index = txn.open_table(schema::DEVICE_VERSIONS)?;
        let mut keys = Vec::new();
        for entry in index.iter()? {
            let (k, _) = entry?;
            let (p, s, v, n) = k.value();
            keys.push((p.to_string(), s, v.to_string(), n.to_string()));
        }
        keys
    };
    txn.delete_table(schema::DEVICE_VERSIONS)?;
    fill(txn)?;
    txn.open_table(schema::COUNTERS)?
        .insert(schema::DEVICE_VERSIONS_BUILT, 1)?;
    let index = txn.open_table(schema::DEVICE_VERSIONS)?;
    let mut kept = 0u64;
    for (p, s, v, n) in &before {
        if index
            .get((p.as_str(), *s, v.as_str(), n.as_str()))?
            .is_some()
        {
            kept += 1;
        }
    }
    let after = index.len()?;
    Ok((before.len() as u64 - kept) + (after - kept))
}

fn fill(txn: &WriteTransaction) -> Result<u64> {
    let devices = txn.open_table(schema::DEVICES)?;
    let mut index = txn.open_table(schema::DEVICE_VERSIONS)?;
    let mut indexed = 0;
    for entry in devices.iter()? {
        let (k, v) = entry?;
        // A record that does not decode is `lwota check`'s to report.
        if let Ok(versions) = decode::<Versions>(v.value()) {
            versions.insert(&mut index, k.value())?;
            indexed += 1;
        }
    }
    Ok(indexed)
}

/// Reports index keys that disagree with the device records: a record
/// whose keys are missing, and (by count) keys no record has.
/// A database the index was never built in (last opened by an older
/// version; the next start builds it) is not checked.
pub fn check(txn: &::redb::ReadTransaction, report: &mut IntegrityReport) -> Result<()> {
    let built = match txn.open_table(schema::COUNTERS) {
        Ok(counters) => counters.get(schema::DEVICE_VERSIONS_BUILT)?.is_some(),
        Err(::redb::TableError::TableDoesNotExist(_)) => false,
        Err(e) => return Err(e.into()),
    };
    if !built {
        return Ok(());
    }
    let devices = txn.open_table(schema::DEVICES)?;
    let index = txn.open_table(schema::DEVICE_VERSIONS)?;
    let mut expected = 0u64;
    for entry in devices.iter()? {
        let (k, v) = entry?;
        let Ok(versions) = decode::<Versions>(v.value()) else {
            continue;
        };
        let name = k.value();
        for (slot, version) in versions.keys() {
            expected += 1;
            if index
                .get((versions.product.as_str(), slot, version, name))?
                .is_none()
            {
                report.inconsistent(format!(
                    "device_versions: device {name:?} ({}, version {version:?}) is not indexed",
                    versions.product
                ));
            }
        }
    }
    let held = index.len()?;
    if held > expected {
        report.inconsistent(format!(
            "device_versions: {} keys name a version no device record has",
            held - expected
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{integrity, RedbStore, StoreOptions, FILE_NAME};
    use super::*;
    use crate::store::SyncStore;
    use crate::time::Timestamp;
    use ::redb::ReadableDatabase;

    fn device(product: &str, version: &str, software: Option<&str>) -> DeviceRecord {
        let mut d = DeviceRecord::new(product, version, Timestamp::from_millis(1));
        d.software_version = software.map(str::to_string);
        d
    }

    fn on(store: &RedbStore, product: &str, software: bool, version: &str) -> Vec<String> {
        store
            .read_sync(|tx| tx.device_names_on_version(product, software, version, None, 100))
            .unwrap()
    }

    #[test]
    fn device_writes_move_their_index_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join(FILE_NAME), StoreOptions::default()).unwrap();
        store
            .write_sync(|tx| {
                tx.put_device("b", &device("p", "1.0", None))?;
                tx.put_device("a", &device("p", "1.0", Some("s1")))?;
                tx.put_device("c", &device("q", "1.0", None))
            })
            .unwrap();
        assert_eq!(on(&store, "p", false, "1.0"), ["a", "b"]);
        assert_eq!(on(&store, "p", true, "s1"), ["a"]);
        assert_eq!(on(&store, "q", false, "1.0"), ["c"]);
        // A new version moves the key; a write without a change keeps it.
        store
            .write_sync(|tx| {
                tx.put_device("a", &device("p", "2.0", None))?;
                let mut b = device("p", "1.0", None);
                b.battery = Some(50);
                tx.put_device("b", &b)
            })
            .unwrap();
        assert_eq!(on(&store, "p", false, "1.0"), ["b"]);
        assert_eq!(on(&store, "p", false, "2.0"), ["a"]);
        assert!(on(&store, "p", true, "s1").is_empty());
        // Paging: strictly after the cursor, at most `limit`.
        store
            .write_sync(|tx| {
                for n in ["d", "e", "f"] {
                    tx.put_device(n, &device("p", "1.0", None))?;
                }
                Ok(())
            })
            .unwrap();
        let page = |after: Option<&str>| {
            store
                .read_sync(|tx| tx.device_names_on_version("p", false, "1.0", after, 2))
                .unwrap()
        };
        assert_eq!(page(None), ["b", "d"]);
        assert_eq!(page(Some("d")), ["e", "f"]);
        assert!(page(Some("f")).is_empty());
        let report = integrity::check(&store.db.get().unwrap().begin_read().unwrap()).unwrap();
        assert!(report.is_clean(), "{:?}", report.inconsistent);
    }

    /// A database written before the index opens with it built, once; a
    /// damaged index is reported by the check and made again by repair.
    #[test]
    fn the_index_is_built_at_open_checked_and_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        // A database of the version before the index: every other table,
        // no index and no mark.
        drop(RedbStore::open(&path, StoreOptions::default()).unwrap());
        {
            let db = ::redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            assert!(txn.delete_table(schema::DEVICE_VERSIONS).unwrap());
            txn.open_table(schema::COUNTERS)
                .unwrap()
                .remove(schema::DEVICE_VERSIONS_BUILT)
                .unwrap();
            {
                let mut devices = txn.open_table(schema::DEVICES).unwrap();
                for (name, version) in [("x", "1.0"), ("y", "1.1"), ("z", "1.0")] {
                    let bytes = super::super::codec::encode(&device("p", version, None));
                    devices.insert(name, bytes.as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        // `lwota check` of the old file (read-only) does not stumble on
        // the missing index.
        let checked = integrity::check_file(&path, false).unwrap();
        assert!(
            checked.report.is_clean(),
            "{:?}",
            checked.report.inconsistent
        );
        let store = RedbStore::open(&path, StoreOptions::default()).unwrap();
        assert_eq!(on(&store, "p", false, "1.0"), ["x", "z"]);
        assert_eq!(on(&store, "p", false, "1.1"), ["y"]);
        {
            let db = store.db.get().unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut index = txn.open_table(schema::DEVICE_VERSIONS).unwrap();
                index.remove(("p", FIRMWARE_SLOT, "1.0", "x")).unwrap();
                index
                    .insert(("p", FIRMWARE_SLOT, "9.9", "ghost"), ())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let report = integrity::check(&store.db.get().unwrap().begin_read().unwrap()).unwrap();
        assert_eq!(report.inconsistent_count, 1, "{:?}", report.inconsistent);
        assert!(
            report.inconsistent[0].contains("\"x\""),
            "{:?}",
            report.inconsistent
        );
        let db = store.db.get().unwrap();
        let repaired = integrity::repair(&db, dir.path()).unwrap();
        assert_eq!(repaired.version_keys_fixed, 2);
        drop(db);
        assert_eq!(on(&store, "p", false, "1.0"), ["x", "z"]);
        assert!(on(&store, "p", false, "9.9").is_empty());
        let report = integrity::check(&store.db.get().unwrap().begin_read().unwrap()).unwrap();
        assert!(report.is_clean(), "{:?}", report.inconsistent);
    }
}
