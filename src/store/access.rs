//! Typed accessors for the tables, used inside transactions.
//!
//! Generic over read and write transactions where it costs nothing, so the
//! admin API (read transactions) and the OTA operations (the writer's
//! transaction) share one decoding path.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use super::records::{
    decode, encode, CampaignRecord, DeviceRecord, FirmwareRecord, HistoryEntry, TaskRecord,
};
use super::{next_id, schema, StoreError};
use crate::ota::task::TaskState;

/// Either kind of transaction, for read-only helpers.
pub trait Reader {
    fn get_bytes_str(
        &self,
        def: redb::TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError>;
    fn get_bytes_u64(
        &self,
        def: redb::TableDefinition<u64, &[u8]>,
        key: u64,
    ) -> Result<Option<Vec<u8>>, StoreError>;
    fn get_task_bytes(&self, campaign: u64, device: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn campaign_counts(&self, campaign: u64) -> Result<[u64; 8], StoreError>;
    /// Every firmware record (the table is small: a few per product).
    fn firmware_records(&self) -> Result<Vec<FirmwareRecord>, StoreError>;
}

macro_rules! impl_reader {
    ($t:ty) => {
        impl Reader for $t {
            fn get_bytes_str(
                &self,
                def: redb::TableDefinition<&str, &[u8]>,
                key: &str,
            ) -> Result<Option<Vec<u8>>, StoreError> {
                let table = self.open_table(def)?;
                let value = table.get(key)?.map(|v| v.value().to_vec());
                Ok(value)
            }
            fn get_bytes_u64(
                &self,
                def: redb::TableDefinition<u64, &[u8]>,
                key: u64,
            ) -> Result<Option<Vec<u8>>, StoreError> {
                let table = self.open_table(def)?;
                let value = table.get(key)?.map(|v| v.value().to_vec());
                Ok(value)
            }
            fn get_task_bytes(
                &self,
                campaign: u64,
                device: &str,
            ) -> Result<Option<Vec<u8>>, StoreError> {
                let table = self.open_table(schema::TASKS)?;
                let value = table.get((campaign, device))?.map(|v| v.value().to_vec());
                Ok(value)
            }
            fn campaign_counts(&self, campaign: u64) -> Result<[u64; 8], StoreError> {
                let table = self.open_table(schema::CAMPAIGN_COUNTS)?;
                let mut counts = [0u64; 8];
                for entry in table.range((campaign, 0u8)..=(campaign, u8::MAX))? {
                    let (key, value) = entry?;
                    if let Some(slot) = counts.get_mut(usize::from(key.value().1)) {
                        *slot = value.value();
                    }
                }
                Ok(counts)
            }
            fn firmware_records(&self) -> Result<Vec<FirmwareRecord>, StoreError> {
                let table = self.open_table(schema::FIRMWARE)?;
                let mut out = Vec::new();
                for entry in table.iter()? {
                    let (key, value) = entry?;
                    // Issue 8 item 7c: skip (and log) a corrupt record.
                    if let Some(record) =
                        super::integrity::decode_or_skip("firmware", key.value(), value.value())
                    {
                        out.push(record);
                    }
                }
                Ok(out)
            }
        }
    };
}
impl_reader!(ReadTransaction);
impl_reader!(WriteTransaction);

pub fn device(txn: &impl Reader, name: &str) -> Result<Option<DeviceRecord>, StoreError> {
    txn.get_bytes_str(schema::DEVICES, name)?
        .map(|b| decode(&b))
        .transpose()
}

pub fn firmware(txn: &impl Reader, id: u64) -> Result<Option<FirmwareRecord>, StoreError> {
    txn.get_bytes_u64(schema::FIRMWARE, id)?
        .map(|b| decode(&b))
        .transpose()
}

pub fn campaign(txn: &impl Reader, id: u64) -> Result<Option<CampaignRecord>, StoreError> {
    txn.get_bytes_u64(schema::CAMPAIGNS, id)?
        .map(|b| decode(&b))
        .transpose()
}

pub fn task(
    txn: &impl Reader,
    campaign: u64,
    device: &str,
) -> Result<Option<TaskRecord>, StoreError> {
    txn.get_task_bytes(campaign, device)?
        .map(|b| decode(&b))
        .transpose()
}

pub fn put_device(
    txn: &WriteTransaction,
    name: &str,
    record: &DeviceRecord,
) -> Result<(), StoreError> {
    txn.open_table(schema::DEVICES)?
        .insert(name, encode(record).as_slice())?;
    Ok(())
}

pub fn put_campaign(txn: &WriteTransaction, record: &CampaignRecord) -> Result<(), StoreError> {
    txn.open_table(schema::CAMPAIGNS)?
        .insert(record.id, encode(record).as_slice())?;
    Ok(())
}

/// Writes a task and keeps `DEADLINES` and `CAMPAIGN_COUNTS` in step.
/// `previous` is the record as it was before (None for a new task).
pub fn put_task(
    txn: &WriteTransaction,
    device: &str,
    previous: Option<&TaskRecord>,
    record: &TaskRecord,
) -> Result<(), StoreError> {
    let campaign = record.campaign;
    {
        let mut deadlines = txn.open_table(schema::DEADLINES)?;
        if let Some(old) = previous.and_then(|p| p.deadline) {
            if Some(old) != record.deadline {
                deadlines.remove((old, campaign, device))?;
            }
        }
        if let Some(new) = record.deadline {
            deadlines.insert((new, campaign, device), ())?;
        }
    }
    let old_state = previous.map(|p| p.state);
    if old_state != Some(record.state) {
        let mut counts = txn.open_table(schema::CAMPAIGN_COUNTS)?;
        if let Some(old) = old_state {
            let key = (campaign, old.index());
            let n = counts.get(key)?.map(|v| v.value()).unwrap_or(0);
            counts.insert(key, n.saturating_sub(1))?;
        }
        let key = (campaign, record.state.index());
        let n = counts.get(key)?.map(|v| v.value()).unwrap_or(0);
        counts.insert(key, n + 1)?;
    }
    txn.open_table(schema::TASKS)?
        .insert((campaign, device), encode(record).as_slice())?;
    Ok(())
}

pub fn append_history(
    txn: &WriteTransaction,
    device: &str,
    entry: &HistoryEntry,
) -> Result<(), StoreError> {
    let seq = next_id(txn, schema::NEXT_HISTORY_SEQ)?;
    txn.open_table(schema::HISTORY)?
        .insert((device, seq), encode(entry).as_slice())?;
    Ok(())
}

/// Number of a campaign's tasks not yet `updated` or `failed`.
pub fn unfinished(counts: &[u64; 8]) -> u64 {
    TaskState::ALL
        .iter()
        .filter(|s| !s.is_final())
        .map(|s| counts[usize::from(s.index())])
        .sum()
}

/// Records a poll's outcome (`detail`). A run of polls with the same
/// outcome is one history entry with a count (`repeat`) and the time of
/// the first (`since`), rewritten in place, so a device that polls every
/// hour for a year — or every few seconds during a download — does not add
/// an entry per poll; anything else in between starts a new entry.
pub fn record_poll(
    txn: &WriteTransaction,
    device: &str,
    now: u64,
    detail: &str,
) -> Result<(), StoreError> {
    let last = {
        let table = txn.open_table(schema::HISTORY)?;
        let mut range = table.range((device, 0u64)..=(device, u64::MAX))?;
        let last = match range.next_back() {
            Some(entry) => {
                let (key, value) = entry?;
                Some((key.value().1, decode::<HistoryEntry>(value.value())?))
            }
            None => None,
        };
        last
    };
    match last {
        Some((seq, mut entry))
            if entry.event == "poll" && entry.detail.as_deref() == Some(detail) =>
        {
            entry.since = Some(entry.since.unwrap_or(entry.at));
            entry.repeat = Some(entry.repeat.unwrap_or(1).saturating_add(1));
            entry.at = now;
            txn.open_table(schema::HISTORY)?
                .insert((device, seq), encode(&entry).as_slice())?;
            Ok(())
        }
        _ => append_history(
            txn,
            device,
            &HistoryEntry::note(now, "poll", detail.to_string()),
        ),
    }
}
