//! An in-memory backend for unit tests: the same [`ReadTx`]/[`Tx`]
//! semantics as redb over `BTreeMap`s, with a write that rolls back on
//! error (it works on a copy).
//!
//! Bounded only by what a test puts in; never used by the server.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Mutex;

use super::history::{self, HistoryRows};
use super::{ReadTx, Result, StoreOptions, SyncStore, Tx};
use crate::model::{
    AssignmentScope, Assignments, AuditEntry, AuditId, CampaignId, CampaignRecord, DeviceRecord,
    DeviceTasks, EndedRegistration, FirmwareId, FirmwareRecord, HistoryEntry, HistorySeq,
    PskRecord, RegistrationRecord, StateCounts, TaskRecord, Timer,
};
use crate::time::Timestamp;

#[derive(Debug, Clone, Default)]
pub struct MemoryTx {
    devices: BTreeMap<String, DeviceRecord>,
    device_tasks: HashMap<String, DeviceTasks>,
    firmware: BTreeMap<FirmwareId, FirmwareRecord>,
    campaigns: BTreeMap<CampaignId, CampaignRecord>,
    tasks: BTreeMap<(CampaignId, String), TaskRecord>,
    counts: HashMap<CampaignId, StateCounts>,
    history: BTreeMap<(String, HistorySeq), HistoryEntry>,
    history_len: HashMap<String, u64>,
    timers: BTreeSet<(Timestamp, Timer)>,
    next_firmware: u64,
    next_campaign: u64,
    clock_floor: Option<Timestamp>,
    history_cap: usize,
    registrations: BTreeMap<String, RegistrationRecord>,
    ended_registrations: BTreeMap<String, EndedRegistration>,
    locations: HashMap<String, String>,
    dynamic: BTreeSet<(String, CampaignId)>,
    psks: BTreeMap<String, PskRecord>,
    psk_identities: BTreeMap<String, String>,
    audit: BTreeMap<AuditId, AuditEntry>,
    next_audit: AuditId,
    assignments: HashMap<AssignmentScope, Assignments>,
    secrets: BTreeMap<(String, String), Vec<u8>>,
}

/// The in-memory store: one [`MemoryTx`] behind a lock.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<MemoryTx>,
}

impl MemoryStore {
    pub fn new(options: StoreOptions) -> MemoryStore {
        MemoryStore {
            state: Mutex::new(MemoryTx {
                history_cap: options.history_cap,
                ..MemoryTx::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryTx> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SyncStore for MemoryStore {
    fn write_sync<R>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R>) -> Result<R> {
        let mut state = self.lock();
        let mut tx = state.clone();
        let out = f(&mut tx)?;
        *state = tx;
        Ok(out)
    }

    fn read_sync<R>(&self, f: impl FnOnce(&dyn ReadTx) -> Result<R>) -> Result<R> {
        let state = self.lock();
        f(&*state)
    }
}

fn after_str(after: Option<&str>) -> Bound<String> {
    match after {
        Some(a) => Bound::Excluded(a.to_string()),
        None => Bound::Unbounded,
    }
}

impl ReadTx for MemoryTx {
    fn device(&self, name: &str) -> Result<Option<DeviceRecord>> {
        Ok(self.devices.get(name).cloned())
    }

    fn device_count(&self) -> Result<u64> {
        Ok(self.devices.len() as u64)
    }

    fn devices(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, DeviceRecord)>> {
        Ok(self
            .devices
            .range((after_str(after), Bound::Unbounded))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn device_names_on_version(
        &self,
        product: &str,
        software: bool,
        version: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        // The reference backend scans; redb keeps an index.
        Ok(self
            .devices
            .range((after_str(after), Bound::Unbounded))
            .filter(|(_, d)| {
                let current = if software {
                    d.software_version.as_deref()
                } else {
                    Some(d.version.as_str())
                };
                d.product == product && current == Some(version)
            })
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn device_tasks(&self, name: &str) -> Result<DeviceTasks> {
        Ok(self.device_tasks.get(name).copied().unwrap_or_default())
    }

    fn firmware(&self, id: FirmwareId) -> Result<Option<FirmwareRecord>> {
        Ok(self.firmware.get(&id).cloned())
    }

    fn firmware_all(&self) -> Result<Vec<FirmwareRecord>> {
        Ok(self.firmware.values().cloned().collect())
    }

    fn campaign(&self, id: CampaignId) -> Result<Option<CampaignRecord>> {
        Ok(self.campaigns.get(&id).cloned())
    }

    fn campaigns(&self, after: Option<CampaignId>, limit: usize) -> Result<Vec<CampaignRecord>> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .campaigns
            .range((start, Bound::Unbounded))
            .take(limit)
            .map(|(_, v)| v.clone())
            .collect())
    }

    fn task(&self, campaign: CampaignId, device: &str) -> Result<Option<TaskRecord>> {
        Ok(self.tasks.get(&(campaign, device.to_string())).cloned())
    }

    fn tasks(
        &self,
        campaign: CampaignId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, TaskRecord)>> {
        let start = match after {
            Some(a) => Bound::Excluded((campaign, a.to_string())),
            None => Bound::Included((campaign, String::new())),
        };
        Ok(self
            .tasks
            .range((start, Bound::Unbounded))
            .take_while(|((c, _), _)| *c == campaign)
            .take(limit)
            .map(|((_, d), t)| (d.clone(), t.clone()))
            .collect())
    }

    fn campaign_counts(&self, campaign: CampaignId) -> Result<StateCounts> {
        Ok(self.counts.get(&campaign).copied().unwrap_or_default())
    }

    fn history(
        &self,
        device: &str,
        after: Option<HistorySeq>,
        limit: usize,
    ) -> Result<Vec<(HistorySeq, HistoryEntry)>> {
        let first = after.map_or(0, |a| a.saturating_add(1));
        Ok(self
            .history
            .range((device.to_string(), first)..=(device.to_string(), u64::MAX))
            .take(limit)
            .map(|((_, s), e)| (*s, e.clone()))
            .collect())
    }

    fn last_history_seq(&self, device: &str) -> Result<Option<HistorySeq>> {
        Ok(self
            .history
            .range((device.to_string(), 0)..=(device.to_string(), u64::MAX))
            .next_back()
            .map(|((_, s), _)| *s))
    }

    fn earliest_timer(&self) -> Result<Option<Timestamp>> {
        Ok(self.timers.first().map(|(at, _)| *at))
    }

    fn timers(&self, limit: usize) -> Result<Vec<(Timestamp, Timer)>> {
        Ok(self.timers.iter().take(limit).cloned().collect())
    }

    fn clock_floor(&self) -> Result<Option<Timestamp>> {
        Ok(self.clock_floor)
    }

    fn registration(&self, name: &str) -> Result<Option<RegistrationRecord>> {
        Ok(self.registrations.get(name).cloned())
    }

    fn ended_registration(&self, name: &str) -> Result<Option<EndedRegistration>> {
        Ok(self.ended_registrations.get(name).cloned())
    }

    fn registration_name(&self, location: &str) -> Result<Option<String>> {
        Ok(self.locations.get(location).cloned())
    }

    fn registrations(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, RegistrationRecord)>> {
        Ok(self
            .registrations
            .range((after_str(after), Bound::Unbounded))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn dynamic_campaigns(&self, product: &str) -> Result<Vec<CampaignId>> {
        Ok(self
            .dynamic
            .iter()
            .filter(|(p, _)| p == product)
            .map(|(_, id)| *id)
            .collect())
    }

    fn psk(&self, device: &str) -> Result<Option<PskRecord>> {
        Ok(self.psks.get(device).cloned())
    }

    fn psk_owner(&self, identity: &str) -> Result<Option<String>> {
        Ok(self.psk_identities.get(identity).cloned())
    }

    fn psks(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, PskRecord)>> {
        let start = match after {
            Some(a) => std::ops::Bound::Excluded(a.to_string()),
            None => std::ops::Bound::Unbounded,
        };
        Ok(self
            .psks
            .range((start, std::ops::Bound::Unbounded))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn audit(&self, after: Option<AuditId>, limit: usize) -> Result<Vec<AuditEntry>> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .audit
            .range((start, Bound::Unbounded))
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    fn assignments(&self, scope: &AssignmentScope) -> Result<Assignments> {
        Ok(self.assignments.get(scope).cloned().unwrap_or_default())
    }
    fn secret(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .secrets
            .get(&(kind.to_string(), key.to_string()))
            .cloned())
    }

    fn secrets(
        &self,
        kind: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(self
            .secrets
            .range((kind.to_string(), String::new())..)
            .take_while(|((k, _), _)| k == kind)
            .filter(|((_, key), _)| after.is_none_or(|a| key.as_str() > a))
            .take(limit)
            .map(|((_, key), v)| (key.clone(), v.clone()))
            .collect())
    }
}

impl HistoryRows for MemoryTx {
    fn stored_len(&self, device: &str) -> Result<Option<u64>> {
        Ok(self.history_len.get(device).copied())
    }

    fn set_len(&mut self, device: &str, len: u64) -> Result<()> {
        self.history_len.insert(device.to_string(), len);
        Ok(())
    }

    fn count(&self, device: &str) -> Result<u64> {
        Ok(self.history(device, None, usize::MAX)?.len() as u64)
    }

    fn last(&self, device: &str) -> Result<Option<(HistorySeq, HistoryEntry)>> {
        Ok(self
            .history
            .range((device.to_string(), 0)..=(device.to_string(), u64::MAX))
            .next_back()
            .map(|((_, s), e)| (*s, e.clone())))
    }

    fn oldest(&self, device: &str, n: usize) -> Result<Vec<(HistorySeq, HistoryEntry)>> {
        self.history(device, None, n)
    }

    fn put(&mut self, device: &str, seq: HistorySeq, entry: &HistoryEntry) -> Result<()> {
        self.history
            .insert((device.to_string(), seq), entry.clone());
        Ok(())
    }

    fn remove(&mut self, device: &str, seq: HistorySeq) -> Result<()> {
        self.history.remove(&(device.to_string(), seq));
        Ok(())
    }
}

impl Tx for MemoryTx {
    fn next_firmware_id(&mut self) -> Result<FirmwareId> {
        self.next_firmware = self.next_firmware.max(1);
        let id = self.next_firmware;
        self.next_firmware += 1;
        Ok(id)
    }

    fn next_campaign_id(&mut self) -> Result<CampaignId> {
        self.next_campaign = self.next_campaign.max(1);
        let id = self.next_campaign;
        self.next_campaign += 1;
        Ok(id)
    }

    fn put_device(&mut self, name: &str, record: &DeviceRecord) -> Result<()> {
        self.devices.insert(name.to_string(), record.clone());
        Ok(())
    }

    fn put_device_tasks(&mut self, name: &str, value: &DeviceTasks) -> Result<()> {
        if value.is_empty() {
            self.device_tasks.remove(name);
        } else {
            self.device_tasks.insert(name.to_string(), *value);
        }
        Ok(())
    }

    fn put_firmware(&mut self, record: &FirmwareRecord) -> Result<()> {
        self.firmware.insert(record.id, record.clone());
        Ok(())
    }

    fn delete_firmware(&mut self, record: &FirmwareRecord) -> Result<()> {
        self.firmware.remove(&record.id);
        Ok(())
    }

    fn put_campaign(&mut self, record: &CampaignRecord) -> Result<()> {
        self.campaigns.insert(record.id, record.clone());
        Ok(())
    }

    fn put_task(
        &mut self,
        device: &str,
        previous: Option<&TaskRecord>,
        record: &TaskRecord,
    ) -> Result<()> {
        let old = previous.map(|p| p.state);
        if old != Some(record.state) {
            let counts = self.counts.entry(record.campaign).or_default();
            if let Some(old) = old {
                let slot = &mut counts[usize::from(old.index())];
                *slot = slot.saturating_sub(1);
            }
            counts[usize::from(record.state.index())] += 1;
        }
        self.tasks
            .insert((record.campaign, device.to_string()), record.clone());
        Ok(())
    }

    fn queue_tasks(&mut self, task: &TaskRecord, devices: &[(String, DeviceTasks)]) -> Result<()> {
        for (name, pointers) in devices {
            self.put_task(name, None, task)?;
            self.put_device_tasks(name, pointers)?;
        }
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
        self.timers.insert((at, timer.clone()));
        Ok(())
    }

    fn remove_timer(&mut self, at: Timestamp, timer: &Timer) -> Result<()> {
        self.timers.remove(&(at, timer.clone()));
        Ok(())
    }

    fn take_due_timers(&mut self, now: Timestamp, limit: usize) -> Result<Vec<(Timestamp, Timer)>> {
        let due: Vec<_> = self
            .timers
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .cloned()
            .collect();
        for t in &due {
            self.timers.remove(t);
        }
        Ok(due)
    }

    fn set_dynamic_campaign(&mut self, product: &str, id: CampaignId, on: bool) -> Result<()> {
        if on {
            self.dynamic.insert((product.to_string(), id));
        } else {
            self.dynamic.remove(&(product.to_string(), id));
        }
        Ok(())
    }

    fn raise_clock_floor(&mut self, now: Timestamp) -> Result<()> {
        self.clock_floor = Some(self.clock_floor.map_or(now, |f| f.max(now)));
        Ok(())
    }

    fn put_registration(
        &mut self,
        name: &str,
        previous: Option<&RegistrationRecord>,
        record: &RegistrationRecord,
    ) -> Result<()> {
        if let Some(previous) = previous {
            self.locations.remove(&previous.location);
        }
        self.locations
            .insert(record.location.clone(), name.to_string());
        self.registrations.insert(name.to_string(), record.clone());
        Ok(())
    }

    fn delete_registration(&mut self, name: &str, record: &RegistrationRecord) -> Result<()> {
        self.locations.remove(&record.location);
        self.registrations.remove(name);
        Ok(())
    }

    fn put_ended_registration(
        &mut self,
        name: &str,
        ended: Option<&EndedRegistration>,
    ) -> Result<()> {
        match ended {
            Some(e) => self.ended_registrations.insert(name.to_string(), e.clone()),
            None => self.ended_registrations.remove(name),
        };
        Ok(())
    }

    fn put_psk(&mut self, device: &str, record: &PskRecord) -> Result<()> {
        if let Some(old) = self.psks.insert(device.to_string(), record.clone()) {
            self.psk_identities.remove(&old.identity);
        }
        self.psk_identities
            .insert(record.identity.clone(), device.to_string());
        Ok(())
    }

    fn append_audit(&mut self, entry: &AuditEntry, cap: usize) -> Result<(AuditId, u64)> {
        self.next_audit = self.next_audit.max(1);
        let id = self.next_audit;
        self.next_audit += 1;
        self.audit.insert(
            id,
            AuditEntry {
                id,
                ..entry.clone()
            },
        );
        let mut dropped = 0;
        while self.audit.len() > cap.max(1) {
            self.audit.pop_first();
            dropped += 1;
        }
        Ok((id, dropped))
    }

    fn put_assignments(&mut self, scope: &AssignmentScope, value: &Assignments) -> Result<()> {
        if value.is_empty() {
            self.assignments.remove(scope);
        } else {
            self.assignments.insert(scope.clone(), value.clone());
        }
        Ok(())
    }

    fn put_secret(&mut self, kind: &str, key: &str, value: &[u8]) -> Result<()> {
        self.secrets
            .insert((kind.to_string(), key.to_string()), value.to_vec());
        Ok(())
    }

    fn delete_tasks(&mut self, campaign: CampaignId, limit: usize) -> Result<usize> {
        let keys: Vec<(CampaignId, String)> = self
            .tasks
            .range((campaign, String::new())..)
            .take_while(|((c, _), _)| *c == campaign)
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &keys {
            self.tasks.remove(key);
        }
        Ok(keys.len())
    }

    fn delete_campaign(&mut self, id: CampaignId) -> Result<()> {
        self.campaigns.remove(&id);
        self.counts.remove(&id);
        Ok(())
    }

    fn delete_secret(&mut self, kind: &str, key: &str) -> Result<bool> {
        Ok(self
            .secrets
            .remove(&(kind.to_string(), key.to_string()))
            .is_some())
    }
}
