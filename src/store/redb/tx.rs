//! [`ReadTx`] and [`Tx`] over redb transactions.

use std::ops::Bound;

use ::redb::{ReadTransaction, ReadableTable, WriteTransaction};

use super::codec::{decode, decode_timer, encode, encode_timer};
use super::integrity::decode_or_skip;
use super::schema;
use super::task_rows;
use crate::model::{
    AssignmentScope, Assignments, AuditEntry, AuditId, CampaignId, CampaignRecord, DeviceRecord,
    DeviceTasks, EndedRegistration, FirmwareId, FirmwareRecord, HistoryEntry, HistorySeq,
    PskRecord, RegistrationRecord, StateCounts, TaskRecord, Timer,
};
use crate::store::history::{self, HistoryRows};
use crate::store::{ReadTx, Result, StoreError, Tx};
use crate::time::Timestamp;

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                // I/O errors are told apart: they take the writer's reopen
                // path (issue 8 item 7a, `recovery.rs`).
                match ::redb::Error::from(e) {
                    e @ (::redb::Error::Io(_)
                    | ::redb::Error::PreviousIo
                    | ::redb::Error::Backend(_)
                    | ::redb::Error::DatabaseClosed) => StoreError::Io(e.to_string()),
                    e => StoreError::Db(e.to_string()),
                }
            }
        }
    )*};
}
from_redb!(
    ::redb::Error,
    ::redb::DatabaseError,
    ::redb::TransactionError,
    ::redb::TableError,
    ::redb::StorageError,
    ::redb::CommitError
);

/// A read snapshot (MVCC: never blocked by the writer).
pub struct RedbRead(pub ReadTransaction);

/// The writer's transaction, shared by every job of a batch.
pub struct RedbTx {
    pub txn: WriteTransaction,
    pub history_cap: usize,
    /// The earliest timer set in this transaction, to wake the scheduler
    /// after commit.
    pub earliest_set: Option<Timestamp>,
}

fn str_bound(after: Option<&str>) -> Bound<&str> {
    match after {
        Some(a) => Bound::Excluded(a),
        None => Bound::Unbounded,
    }
}

macro_rules! impl_read {
    ($t:ty, $txn:tt) => {
        impl ReadTx for $t {
            fn device(&self, name: &str) -> Result<Option<DeviceRecord>> {
                let table = self.$txn.open_table(schema::DEVICES)?;
                let value = table.get(name)?;
                value.map(|v| decode(v.value())).transpose()
            }

            fn device_count(&self) -> Result<u64> {
                use redb::ReadableTableMetadata;
                // The B-tree header keeps the length: no scan.
                Ok(self.$txn.open_table(schema::DEVICES)?.len()?)
            }

            fn devices(
                &self,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<(String, DeviceRecord)>> {
                let table = self.$txn.open_table(schema::DEVICES)?;
                let mut out = Vec::new();
                for entry in table.range::<&str>((str_bound(after), Bound::Unbounded))? {
                    if out.len() >= limit {
                        break;
                    }
                    let (k, v) = entry?;
                    // Issue 8 item 7c: listings step over a corrupt record
                    // (logged with its key) instead of failing as a whole.
                    if let Some(d) = decode_or_skip("devices", k.value(), v.value()) {
                        out.push((k.value().to_string(), d));
                    }
                }
                Ok(out)
            }

            fn device_names_on_version(
                &self,
                product: &str,
                software: bool,
                version: &str,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<String>> {
                let table = self.$txn.open_table(schema::DEVICE_VERSIONS)?;
                super::device_versions::names(&table, product, software, version, after, limit)
            }

            fn firmware(&self, id: FirmwareId) -> Result<Option<FirmwareRecord>> {
                let table = self.$txn.open_table(schema::FIRMWARE)?;
                let value = table.get(id)?;
                value.map(|v| decode(v.value())).transpose()
            }

            fn firmware_all(&self) -> Result<Vec<FirmwareRecord>> {
                let table = self.$txn.open_table(schema::FIRMWARE)?;
                let mut out = Vec::new();
                for entry in table.iter()? {
                    let (k, v) = entry?;
                    if let Some(f) = decode_or_skip("firmware", k.value(), v.value()) {
                        out.push(f);
                    }
                }
                Ok(out)
            }

            fn campaign(&self, id: CampaignId) -> Result<Option<CampaignRecord>> {
                let table = self.$txn.open_table(schema::CAMPAIGNS)?;
                let value = table.get(id)?;
                value.map(|v| decode(v.value())).transpose()
            }

            fn campaigns(
                &self,
                after: Option<CampaignId>,
                limit: usize,
            ) -> Result<Vec<CampaignRecord>> {
                let table = self.$txn.open_table(schema::CAMPAIGNS)?;
                let start = after.map_or(Bound::Unbounded, Bound::Excluded);
                let mut out = Vec::new();
                for entry in table.range::<u64>((start, Bound::Unbounded))? {
                    if out.len() >= limit {
                        break;
                    }
                    let (k, v) = entry?;
                    if let Some(c) = decode_or_skip("campaigns", k.value(), v.value()) {
                        out.push(c);
                    }
                }
                Ok(out)
            }

            fn task(&self, campaign: CampaignId, device: &str) -> Result<Option<TaskRecord>> {
                let table = self.$txn.open_table(schema::TASKS)?;
                let Some(row) = table.get((campaign, device))? else {
                    return Ok(None);
                };
                let row = row.value();
                if task_rows::referred_wave(row).is_none() {
                    return decode(row).map(Some);
                }
                let templates = self.$txn.open_table(schema::TASK_TEMPLATES)?;
                task_rows::TaskDecoder::default()
                    .decode(&templates, campaign, row)
                    .map(Some)
            }

            fn tasks(
                &self,
                campaign: CampaignId,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<(String, TaskRecord)>> {
                let table = self.$txn.open_table(schema::TASKS)?;
                let start = match after {
                    Some(a) => Bound::Excluded((campaign, a)),
                    None => Bound::Included((campaign, "")),
                };
                let end = Bound::Excluded((campaign.saturating_add(1), ""));
                let templates = self.$txn.open_table(schema::TASK_TEMPLATES)?;
                let mut decoder = task_rows::TaskDecoder::default();
                let mut out = Vec::new();
                for entry in table.range::<(u64, &str)>((start, end))? {
                    if out.len() >= limit {
                        break;
                    }
                    let (k, v) = entry?;
                    // A corrupt record is stepped over (logged), as in
                    // `decode_or_skip`.
                    match decoder.decode(&templates, campaign, v.value()) {
                        Ok(t) => out.push((k.value().1.to_string(), t)),
                        Err(e) => tracing::warn!(
                            "skipping corrupt record tasks[{:?}]: {e} (see `lwota check`)",
                            k.value()
                        ),
                    }
                }
                Ok(out)
            }

            fn campaign_counts(&self, campaign: CampaignId) -> Result<StateCounts> {
                let table = self.$txn.open_table(schema::CAMPAIGN_COUNTS)?;
                let mut counts = StateCounts::default();
                for entry in table.range((campaign, 0u8)..=(campaign, u8::MAX))? {
                    let (key, value) = entry?;
                    if let Some(slot) = counts.get_mut(usize::from(key.value().1)) {
                        *slot = value.value();
                    }
                }
                Ok(counts)
            }

            fn history(
                &self,
                device: &str,
                after: Option<HistorySeq>,
                limit: usize,
            ) -> Result<Vec<(HistorySeq, HistoryEntry)>> {
                let table = self.$txn.open_table(schema::HISTORY)?;
                let first = after.map_or(0, |a| a.saturating_add(1));
                let mut out = Vec::new();
                for entry in table.range((device, first)..=(device, u64::MAX))? {
                    if out.len() >= limit {
                        break;
                    }
                    let (k, v) = entry?;
                    if let Some(h) = decode_or_skip("history", k.value(), v.value()) {
                        out.push((k.value().1, h));
                    }
                }
                Ok(out)
            }

            fn last_history_seq(&self, device: &str) -> Result<Option<HistorySeq>> {
                let table = self.$txn.open_table(schema::HISTORY)?;
                let mut range = table.range((device, 0u64)..=(device, u64::MAX))?;
                let last = match range.next_back() {
                    Some(entry) => Some(entry?.0.value().1),
                    None => None,
                };
                Ok(last)
            }

            fn earliest_timer(&self) -> Result<Option<Timestamp>> {
                let table = self.$txn.open_table(schema::TIMERS)?;
                let first = table.first()?;
                Ok(first.map(|(k, _)| Timestamp::from_millis(k.value().0)))
            }

            fn timers(&self, limit: usize) -> Result<Vec<(Timestamp, Timer)>> {
                let table = self.$txn.open_table(schema::TIMERS)?;
                let mut out = Vec::new();
                for entry in table.iter()? {
                    if out.len() >= limit {
                        break;
                    }
                    let (k, _) = entry?;
                    let (at, timer) = k.value();
                    out.push((Timestamp::from_millis(at), decode_timer(timer)?));
                }
                Ok(out)
            }

            fn dynamic_campaigns(&self, product: &str) -> Result<Vec<CampaignId>> {
                let table = self.$txn.open_table(schema::DYNAMIC_CAMPAIGNS)?;
                let mut out = Vec::new();
                for entry in table.range((product, 0u64)..=(product, u64::MAX))? {
                    out.push(entry?.0.value().1);
                }
                Ok(out)
            }

            fn clock_floor(&self) -> Result<Option<Timestamp>> {
                let table = self.$txn.open_table(schema::COUNTERS)?;
                let value = table.get(schema::CLOCK_FLOOR)?;
                Ok(value.map(|v| Timestamp::from_millis(v.value())))
            }

            fn registration(&self, name: &str) -> Result<Option<RegistrationRecord>> {
                super::lwm2m::registration(&self.$txn.open_table(schema::REGISTRATIONS)?, name)
            }

            fn ended_registration(&self, name: &str) -> Result<Option<EndedRegistration>> {
                let table = self.$txn.open_table(schema::ENDED_REGISTRATIONS)?;
                let value = table.get(name)?;
                value.map(|v| decode(v.value())).transpose()
            }

            fn registration_name(&self, location: &str) -> Result<Option<String>> {
                let table = self.$txn.open_table(schema::REGISTRATION_LOCATIONS)?;
                let value = table.get(location)?;
                Ok(value.map(|v| v.value().to_string()))
            }

            fn registrations(
                &self,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<(String, RegistrationRecord)>> {
                let table = self.$txn.open_table(schema::REGISTRATIONS)?;
                super::lwm2m::registrations(&table, str_bound(after), limit)
            }

            fn psk(&self, device: &str) -> Result<Option<PskRecord>> {
                let table = self.$txn.open_table(schema::PSKS)?;
                let value = table.get(device)?;
                value.map(|v| decode(v.value())).transpose()
            }

            fn psk_owner(&self, identity: &str) -> Result<Option<String>> {
                let table = self.$txn.open_table(schema::PSK_IDENTITIES)?;
                let value = table.get(identity)?;
                Ok(value.map(|v| v.value().to_string()))
            }

            fn psks(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, PskRecord)>> {
                let table = self.$txn.open_table(schema::PSKS)?;
                let mut out = Vec::new();
                for entry in table.range::<&str>((str_bound(after), Bound::Unbounded))? {
                    if out.len() >= limit {
                        break;
                    }
                    let (k, v) = entry?;
                    if let Some(p) = decode_or_skip("psks", k.value(), v.value()) {
                        out.push((k.value().to_string(), p));
                    }
                }
                Ok(out)
            }

            fn device_tasks(&self, name: &str) -> Result<DeviceTasks> {
                let table = self.$txn.open_table(schema::DEVICE_TASKS)?;
                super::device_tasks::get(&table, name)
            }

            fn device_tasks_of(&self, names: &[&str]) -> Result<Vec<DeviceTasks>> {
                let table = self.$txn.open_table(schema::DEVICE_TASKS)?;
                super::device_tasks::get_many(&table, names)
            }

            fn audit(&self, after: Option<AuditId>, limit: usize) -> Result<Vec<AuditEntry>> {
                let table = self.$txn.open_table(schema::AUDIT)?;
                super::fleet::audit_page(&table, after, limit)
            }

            fn assignments(&self, scope: &AssignmentScope) -> Result<Assignments> {
                let table = self.$txn.open_table(schema::ASSIGNMENTS)?;
                super::fleet::assignments(&table, scope)
            }
            fn secret(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>> {
                let table = self.$txn.open_table(schema::SECRETS)?;
                let value = table.get((kind, key))?;
                Ok(value.map(|v| v.value().to_vec()))
            }

            fn secrets(
                &self,
                kind: &str,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<(String, Vec<u8>)>> {
                let table = self.$txn.open_table(schema::SECRETS)?;
                let start = match after {
                    Some(a) => Bound::Excluded((kind, a)),
                    None => Bound::Included((kind, "")),
                };
                let mut out = Vec::new();
                for entry in table.range::<(&str, &str)>((start, Bound::Unbounded))? {
                    let (k, v) = entry?;
                    let (k_kind, k_key) = k.value();
                    if k_kind != kind || out.len() >= limit {
                        break;
                    }
                    out.push((k_key.to_string(), v.value().to_vec()));
                }
                Ok(out)
            }
        }
    };
}

impl_read!(RedbRead, 0);
impl_read!(RedbTx, txn);

impl RedbTx {
    fn next_counter(&mut self, name: &str) -> Result<u64> {
        let mut table = self.txn.open_table(schema::COUNTERS)?;
        let current = table.get(name)?.map(|v| v.value()).unwrap_or(1);
        table.insert(name, current + 1)?;
        Ok(current)
    }
}

impl HistoryRows for RedbTx {
    fn stored_len(&self, device: &str) -> Result<Option<u64>> {
        let table = self.txn.open_table(schema::HISTORY_LEN)?;
        let value = table.get(device)?;
        Ok(value.map(|v| v.value()))
    }

    fn set_len(&mut self, device: &str, len: u64) -> Result<()> {
        self.txn
            .open_table(schema::HISTORY_LEN)?
            .insert(device, len)?;
        Ok(())
    }

    fn count(&self, device: &str) -> Result<u64> {
        let table = self.txn.open_table(schema::HISTORY)?;
        let mut n = 0;
        for entry in table.range((device, 0u64)..=(device, u64::MAX))? {
            entry?;
            n += 1;
        }
        Ok(n)
    }

    fn last(&self, device: &str) -> Result<Option<(HistorySeq, HistoryEntry)>> {
        let table = self.txn.open_table(schema::HISTORY)?;
        let mut range = table.range((device, 0u64)..=(device, u64::MAX))?;
        let last = match range.next_back() {
            Some(entry) => {
                let (k, v) = entry?;
                Some((k.value().1, decode(v.value())?))
            }
            None => None,
        };
        Ok(last)
    }

    fn oldest(&self, device: &str, n: usize) -> Result<Vec<(HistorySeq, HistoryEntry)>> {
        self.history(device, None, n)
    }

    fn put(&mut self, device: &str, seq: HistorySeq, entry: &HistoryEntry) -> Result<()> {
        self.txn
            .open_table(schema::HISTORY)?
            .insert((device, seq), encode(entry).as_slice())?;
        Ok(())
    }

    fn remove(&mut self, device: &str, seq: HistorySeq) -> Result<()> {
        self.txn
            .open_table(schema::HISTORY)?
            .remove((device, seq))?;
        Ok(())
    }
}

impl Tx for RedbTx {
    fn next_firmware_id(&mut self) -> Result<FirmwareId> {
        self.next_counter(schema::NEXT_FIRMWARE_ID)
    }

    fn next_campaign_id(&mut self) -> Result<CampaignId> {
        self.next_counter(schema::NEXT_CAMPAIGN_ID)
    }

    fn put_device(&mut self, name: &str, record: &DeviceRecord) -> Result<()> {
        super::device_versions::put(&self.txn, name, record, &encode(record))
    }

    fn put_device_tasks(&mut self, name: &str, value: &DeviceTasks) -> Result<()> {
        let mut table = self.txn.open_table(schema::DEVICE_TASKS)?;
        super::device_tasks::put(&mut table, name, value)
    }

    fn put_firmware(&mut self, record: &FirmwareRecord) -> Result<()> {
        self.txn
            .open_table(schema::FIRMWARE)?
            .insert(record.id, encode(record).as_slice())?;
        self.txn.open_table(schema::FIRMWARE_KEYS)?.insert(
            (record.product.as_str(), record.version.as_str()),
            record.id,
        )?;
        Ok(())
    }

    fn delete_firmware(&mut self, record: &FirmwareRecord) -> Result<()> {
        self.txn.open_table(schema::FIRMWARE)?.remove(record.id)?;
        self.txn
            .open_table(schema::FIRMWARE_KEYS)?
            .remove((record.product.as_str(), record.version.as_str()))?;
        Ok(())
    }

    fn put_campaign(&mut self, record: &CampaignRecord) -> Result<()> {
        self.txn
            .open_table(schema::CAMPAIGNS)?
            .insert(record.id, encode(record).as_slice())?;
        Ok(())
    }

    fn put_task(
        &mut self,
        device: &str,
        previous: Option<&TaskRecord>,
        record: &TaskRecord,
    ) -> Result<()> {
        let campaign = record.campaign;
        let old_state = previous.map(|p| p.state);
        if old_state != Some(record.state) {
            let mut counts = self.txn.open_table(schema::CAMPAIGN_COUNTS)?;
            if let Some(old) = old_state {
                let key = (campaign, old.index());
                let n = counts.get(key)?.map(|v| v.value()).unwrap_or(0);
                counts.insert(key, n.saturating_sub(1))?;
            }
            let key = (campaign, record.state.index());
            let n = counts.get(key)?.map(|v| v.value()).unwrap_or(0);
            counts.insert(key, n + 1)?;
        }
        self.txn
            .open_table(schema::TASKS)?
            .insert((campaign, device), encode(record).as_slice())?;
        Ok(())
    }

    /// The bulk path for a campaign of a million devices: each table is
    /// opened once per call, each distinct history entry and the task are
    /// encoded once, and the campaign's counter is written once.
    fn queue_tasks(&mut self, task: &TaskRecord, devices: &[(String, DeviceTasks)]) -> Result<()> {
        if devices.is_empty() {
            return Ok(());
        }
        // Every row refers to the campaign's record for the wave.
        self.txn
            .open_table(schema::TASK_TEMPLATES)?
            .insert((task.campaign, task.wave), encode(task).as_slice())?;
        let row = task_rows::template_ref(task.wave);
        {
            let mut tasks = self.txn.open_table(schema::TASKS)?;
            let mut pointers = self.txn.open_table(schema::DEVICE_TASKS)?;
            for (name, device_tasks) in devices {
                tasks.insert((task.campaign, name.as_str()), row.as_slice())?;
                super::device_tasks::put(&mut pointers, name, device_tasks)?;
            }
        }
        let mut counts = self.txn.open_table(schema::CAMPAIGN_COUNTS)?;
        let key = (task.campaign, task.state.index());
        let n = counts.get(key)?.map(|v| v.value()).unwrap_or(0);
        counts.insert(key, n + devices.len() as u64)?;
        Ok(())
    }

    fn append_history(&mut self, device: &str, entry: &HistoryEntry) -> Result<()> {
        let cap = self.history_cap;
        history::append(self, device, entry, cap)
    }

    fn record_poll(&mut self, device: &str, now: Timestamp, detail: &str) -> Result<()> {
        let cap = self.history_cap;
        history::record_poll(self, device, now, detail, cap)
    }

    fn set_timer(&mut self, at: Timestamp, timer: &Timer) -> Result<()> {
        self.txn
            .open_table(schema::TIMERS)?
            .insert((at.as_millis(), encode_timer(timer).as_slice()), ())?;
        self.earliest_set = Some(self.earliest_set.map_or(at, |e| e.min(at)));
        Ok(())
    }

    fn remove_timer(&mut self, at: Timestamp, timer: &Timer) -> Result<()> {
        self.txn
            .open_table(schema::TIMERS)?
            .remove((at.as_millis(), encode_timer(timer).as_slice()))?;
        Ok(())
    }

    fn take_due_timers(&mut self, now: Timestamp, limit: usize) -> Result<Vec<(Timestamp, Timer)>> {
        let mut table = self.txn.open_table(schema::TIMERS)?;
        let mut keys: Vec<(u64, Vec<u8>)> = Vec::new();
        for entry in table.range::<(u64, &[u8])>(..)? {
            let (k, _) = entry?;
            let (at, timer) = k.value();
            if at > now.as_millis() || keys.len() >= limit {
                break;
            }
            keys.push((at, timer.to_vec()));
        }
        let mut due = Vec::with_capacity(keys.len());
        for (at, bytes) in keys {
            table.remove((at, bytes.as_slice()))?;
            match decode_timer(&bytes) {
                Ok(timer) => due.push((Timestamp::from_millis(at), timer)),
                // Garbage in the table is dropped, not retried forever.
                Err(e) => tracing::warn!("dropping undecodable timer: {e}"),
            }
        }
        Ok(due)
    }

    fn set_dynamic_campaign(&mut self, product: &str, id: CampaignId, on: bool) -> Result<()> {
        let mut table = self.txn.open_table(schema::DYNAMIC_CAMPAIGNS)?;
        if on {
            table.insert((product, id), ())?;
        } else {
            table.remove((product, id))?;
        }
        Ok(())
    }

    fn raise_clock_floor(&mut self, now: Timestamp) -> Result<()> {
        let mut table = self.txn.open_table(schema::COUNTERS)?;
        let current = table.get(schema::CLOCK_FLOOR)?.map(|v| v.value());
        if current.is_none_or(|c| c < now.as_millis()) {
            table.insert(schema::CLOCK_FLOOR, now.as_millis())?;
        }
        Ok(())
    }

    fn put_registration(
        &mut self,
        name: &str,
        previous: Option<&RegistrationRecord>,
        record: &RegistrationRecord,
    ) -> Result<()> {
        super::lwm2m::put(&self.txn, name, previous, record)
    }

    fn delete_registration(&mut self, name: &str, record: &RegistrationRecord) -> Result<()> {
        super::lwm2m::delete(&self.txn, name, record)
    }

    fn put_ended_registration(
        &mut self,
        name: &str,
        ended: Option<&EndedRegistration>,
    ) -> Result<()> {
        let mut table = self.txn.open_table(schema::ENDED_REGISTRATIONS)?;
        match ended {
            Some(e) => table.insert(name, encode(e).as_slice())?,
            None => table.remove(name)?,
        };
        Ok(())
    }

    fn put_psk(&mut self, device: &str, record: &PskRecord) -> Result<()> {
        let old: Option<PskRecord> = {
            let table = self.txn.open_table(schema::PSKS)?;
            let value = table.get(device)?;
            value.map(|v| decode(v.value())).transpose()?
        };
        let mut identities = self.txn.open_table(schema::PSK_IDENTITIES)?;
        if let Some(old) = old {
            identities.remove(old.identity.as_str())?;
        }
        identities.insert(record.identity.as_str(), device)?;
        drop(identities);
        self.txn
            .open_table(schema::PSKS)?
            .insert(device, encode(record).as_slice())?;
        Ok(())
    }

    fn append_audit(&mut self, entry: &AuditEntry, cap: usize) -> Result<(AuditId, u64)> {
        super::fleet::append_audit(&self.txn, entry, cap)
    }

    fn put_assignments(&mut self, scope: &AssignmentScope, value: &Assignments) -> Result<()> {
        super::fleet::put_assignments(&self.txn, scope, value)
    }

    fn put_secret(&mut self, kind: &str, key: &str, value: &[u8]) -> Result<()> {
        let mut table = self.txn.open_table(schema::SECRETS)?;
        table.insert((kind, key), value)?;
        Ok(())
    }

    fn delete_tasks(&mut self, campaign: CampaignId, limit: usize) -> Result<usize> {
        let mut table = self.txn.open_table(schema::TASKS)?;
        let start = Bound::Included((campaign, ""));
        let end = Bound::Excluded((campaign.saturating_add(1), ""));
        let mut keys = Vec::new();
        for entry in table.range::<(u64, &str)>((start, end))? {
            if keys.len() >= limit {
                break;
            }
            let (k, _) = entry?;
            keys.push(k.value().1.to_string());
        }
        for name in &keys {
            table.remove((campaign, name.as_str()))?;
        }
        Ok(keys.len())
    }

    fn delete_campaign(&mut self, id: CampaignId) -> Result<()> {
        self.txn.open_table(schema::CAMPAIGNS)?.remove(id)?;
        let mut templates = self.txn.open_table(schema::TASK_TEMPLATES)?;
        for wave in 0..=u8::MAX {
            templates.remove((id, wave))?;
        }
        let mut counts = self.txn.open_table(schema::CAMPAIGN_COUNTS)?;
        for state in 0..=u8::MAX {
            counts.remove((id, state))?;
        }
        Ok(())
    }

    fn delete_secret(&mut self, kind: &str, key: &str) -> Result<bool> {
        let mut table = self.txn.open_table(schema::SECRETS)?;
        let removed = table.remove((kind, key))?.is_some();
        Ok(removed)
    }
}
