//! Unit tests of every `ota` operation, written once as generic bodies over
//! [`SyncStore`] and run against both backends: the in-memory store and
//! redb in a temp dir (see [`backends!`]).

mod campaigns;
mod devices;
mod fleet;
mod lwm2m; // issue 9
mod rules;
mod timers;

use crate::model::{FirmwareRecord, HistoryEntry, TaskRecord};
use crate::ota::firmware::{self, NewFirmware};
use crate::ota::poll::{self, PollAnswer, PollRequest};
use crate::ota::report::{self, Applied, Report, ReportError};
use crate::ota::task::TaskState;
use crate::ota::{devices as ota_devices, OtaSettings};
use crate::store::blobs::StoredBlob;
use crate::store::{StoreError, SyncStore};
use crate::time::Timestamp;

/// Runs each named generic test body against both backends.
macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        mod memory_backend {
            $(
                #[test]
                fn $name() {
                    let store = $crate::store::memory::MemoryStore::new(super::options());
                    super::$name(&store);
                }
            )*
        }
        mod redb_backend {
            $(
                #[test]
                fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = $crate::store::RedbStore::open(
                        &dir.path().join("t.redb"),
                        super::options(),
                    )
                    .unwrap();
                    super::$name(&store);
                }
            )*
        }
    };
}
pub(crate) use backends;

pub const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);
pub const TIMEOUT_MS: u64 = 15 * 60 * 1000;

pub fn options() -> crate::store::StoreOptions {
    crate::store::StoreOptions { history_cap: 50 }
}

pub fn settings() -> OtaSettings {
    OtaSettings {
        auto_register: true,
        timeout_ms: TIMEOUT_MS,
    }
}

pub fn at(minutes: u64) -> Timestamp {
    T0.add_millis(minutes * 60_000)
}

pub fn add_firmware(s: &impl SyncStore, product: &str, version: &str, seed: u8) -> FirmwareRecord {
    let meta = NewFirmware {
        product: product.into(),
        name: product.into(),
        version: version.into(),
        kind: "firmware".into(),
        signature: "sha256".into(),
        description: String::new(),
        filename: format!("{product}-{version}.bin"),
    };
    let blob = StoredBlob {
        sha256: [seed; 32],
        md5: [seed; 16],
        size: 1000,
    };
    s.write_sync(|tx| firmware::insert(tx, T0, &meta, &blob, 10))
        .unwrap()
        .unwrap()
}

pub fn register(s: &impl SyncStore, names: &[&str], product: &str, version: &str) {
    let list: Vec<ota_devices::NewDevice> = names
        .iter()
        .map(|n| ota_devices::NewDevice {
            name: n.to_string(),
            product: product.into(),
            version: Some(version.into()),
        })
        .collect();
    s.write_sync(|tx| ota_devices::register(tx, T0, &list))
        .unwrap();
}

pub fn poll_at(
    s: &impl SyncStore,
    now: Timestamp,
    name: &str,
    product: &str,
    version: &str,
) -> Result<PollAnswer, poll::PollError> {
    let request = PollRequest {
        product: product.into(),
        version: version.into(),
        battery: None,
        block: None,
        software_version: None,
    };
    s.write_sync(|tx| poll::poll(tx, now, settings(), name, None, &request))
        .unwrap()
}

pub fn report_at(
    s: &impl SyncStore,
    now: Timestamp,
    name: &str,
    task: &str,
    state: TaskState,
    version: Option<&str>,
) -> Result<Applied, ReportError> {
    let report = Report {
        task: task.into(),
        state,
        progress: None,
        error: None,
        version: version.map(str::to_string),
    };
    s.write_sync(|tx| report::report(tx, now, settings(), name, &report))
        .unwrap()
}

pub fn task(s: &impl SyncStore, campaign: u64, name: &str) -> TaskRecord {
    s.read_sync(|tx| tx.task(campaign, name))
        .unwrap()
        .expect("task exists")
}

pub fn history(s: &impl SyncStore, name: &str) -> Vec<HistoryEntry> {
    s.read_sync(|tx| crate::ota::history::page(tx, name, None, usize::MAX))
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

pub fn events(s: &impl SyncStore, name: &str) -> Vec<String> {
    history(s, name).into_iter().map(|e| e.event).collect()
}

/// A store error, for bodies that need one.
pub fn fail() -> StoreError {
    StoreError::Db("test".into())
}
