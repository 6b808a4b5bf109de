//! `lwota check` for the LwM2M tables (issue 9): every registration and
//! ended registration decodes, and the tables agree with each other:
//!
//! - registration ↔ device: a registration belongs to a device of
//!   `DEVICES`;
//! - registration ↔ location: `REGISTRATION_LOCATIONS[record.location]`
//!   names the device, and every location names a registration that is
//!   at that location (Updates and De-registers find it by location);
//! - registration ↔ expiry timer: its `RegistrationExpiry` timer is due
//!   at `lwm2m::live::expiry_timer_at` (without it, it never expires);
//! - queued requests ↔ registration: requests queued for a sleeping
//!   device have a deadline and a `QueuedRequest` timer at it (without
//!   it, they never time out); no deadline without requests.
//!
//! [`rebuild`] (under `lwota check --repair`) fixes each: registrations
//! of missing devices are removed, the location index is rebuilt from
//! the registrations, missing timers are set, queued requests without a
//! deadline are dropped (the session shell queues them again when the
//! device still has work) and a deadline without requests is cleared.

use std::collections::{HashMap, HashSet};

use ::redb::{ReadTransaction, ReadableTable, TableHandle, WriteTransaction};

use super::codec::{decode, encode, encode_timer};
use super::integrity::{IntegrityReport, RecordKey, RepairReport};
use super::schema;
use crate::lwm2m::live::expiry_timer_at;
use crate::model::{EndedRegistration, RegistrationRecord, Timer};
use crate::store::StoreError;

/// Decodes the LwM2M records and checks the invariants above.
pub fn check(txn: &ReadTransaction, report: &mut IntegrityReport) -> Result<(), StoreError> {
    // A file written before these tables existed has none to check.
    let tables = [
        schema::REGISTRATIONS.name(),
        schema::ENDED_REGISTRATIONS.name(),
    ];
    let present: HashSet<String> = txn.list_tables()?.map(|t| t.name().to_string()).collect();
    if tables.iter().any(|t| !present.contains(*t))
        || !present.contains(schema::REGISTRATION_LOCATIONS.name())
    {
        return Ok(());
    }
    let mut registrations: Vec<(String, RegistrationRecord)> = Vec::new();
    for entry in txn.open_table(schema::REGISTRATIONS)?.iter()? {
        let (k, v) = entry?;
        let name = k.value().to_string();
        report.note::<RegistrationRecord>(|| RecordKey::Registrations(name.clone()), v.value());
        if let Ok(record) = decode::<RegistrationRecord>(v.value()) {
            registrations.push((name, record));
        }
    }
    for entry in txn.open_table(schema::ENDED_REGISTRATIONS)?.iter()? {
        let (k, v) = entry?;
        report.note::<EndedRegistration>(
            || RecordKey::EndedRegistrations(k.value().to_string()),
            v.value(),
        );
    }
    let devices = txn.open_table(schema::DEVICES)?;
    let locations = txn.open_table(schema::REGISTRATION_LOCATIONS)?;
    let timers = txn.open_table(schema::TIMERS)?;
    let has_timer = |at: u64, timer: &Timer| -> Result<bool, StoreError> {
        Ok(timers.get((at, encode_timer(timer).as_slice()))?.is_some())
    };
    let mut at_location: HashMap<String, String> = HashMap::new();
    for (name, r) in &registrations {
        at_location.insert(r.location.clone(), name.clone());
        if devices.get(name.as_str())?.is_none() {
            report.inconsistent(format!("lwm2m registration of {name:?}: no such device"));
        }
        let indexed = locations
            .get(r.location.as_str())?
            .map(|v| v.value().to_string());
        if indexed.as_deref() != Some(name.as_str()) {
            report.inconsistent(format!(
                "lwm2m registration of {name:?}: location /rd/{} is not indexed to it",
                r.location
            ));
        }
        let expiry = Timer::RegistrationExpiry(name.clone());
        if !has_timer(expiry_timer_at(r).as_millis(), &expiry)? {
            report.inconsistent(format!("lwm2m registration of {name:?}: no expiry timer"));
        }
        match (r.queued.is_empty(), r.queued_deadline) {
            (false, None) => report.inconsistent(format!(
                "lwm2m registration of {name:?}: {} queued requests without a deadline",
                r.queued.len()
            )),
            (true, Some(_)) => report.inconsistent(format!(
                "lwm2m registration of {name:?}: a queue deadline without queued requests"
            )),
            (false, Some(due)) => {
                if !has_timer(due.as_millis(), &Timer::QueuedRequest(name.clone()))? {
                    report.inconsistent(format!(
                        "lwm2m registration of {name:?}: queued requests without their timer"
                    ));
                }
            }
            (true, None) => {}
        }
    }
    for entry in locations.iter()? {
        let (k, v) = entry?;
        if at_location.get(k.value()).map(String::as_str) != Some(v.value()) {
            report.inconsistent(format!(
                "lwm2m location /rd/{} names {:?}, which is not registered there",
                k.value(),
                v.value()
            ));
        }
    }
    Ok(())
}

/// Repairs what [`check`] reports (after undecodable records were
/// quarantined).
pub fn rebuild(txn: &WriteTransaction, out: &mut RepairReport) -> Result<(), StoreError> {
    let registrations: Vec<(String, RegistrationRecord)> = {
        let table = txn.open_table(schema::REGISTRATIONS)?;
        let mut all = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            all.push((k.value().to_string(), decode(v.value())?));
        }
        all
    };
    let devices: HashSet<String> = {
        let table = txn.open_table(schema::DEVICES)?;
        let mut names = HashSet::new();
        for entry in table.iter()? {
            names.insert(entry?.0.value().to_string());
        }
        names
    };
    let mut kept: HashMap<String, String> = HashMap::new();
    {
        let mut table = txn.open_table(schema::REGISTRATIONS)?;
        let mut timers = txn.open_table(schema::TIMERS)?;
        for (name, mut r) in registrations {
            if !devices.contains(&name) {
                table.remove(name.as_str())?;
                out.lwm2m_fixed += 1;
                continue;
            }
            let expiry = (
                expiry_timer_at(&r).as_millis(),
                encode_timer(&Timer::RegistrationExpiry(name.clone())),
            );
            if timers.get((expiry.0, expiry.1.as_slice()))?.is_none() {
                timers.insert((expiry.0, expiry.1.as_slice()), ())?;
                out.lwm2m_fixed += 1;
            }
            let changed = match (r.queued.is_empty(), r.queued_deadline) {
                (false, None) => {
                    r.queued.clear();
                    true
                }
                (true, Some(_)) => {
                    r.queued_deadline = None;
                    true
                }
                (false, Some(due)) => {
                    let timer = encode_timer(&Timer::QueuedRequest(name.clone()));
                    if timers.get((due.as_millis(), timer.as_slice()))?.is_none() {
                        timers.insert((due.as_millis(), timer.as_slice()), ())?;
                        out.lwm2m_fixed += 1;
                    }
                    false
                }
                (true, None) => false,
            };
            if changed {
                table.insert(name.as_str(), encode(&r).as_slice())?;
                out.lwm2m_fixed += 1;
            }
            kept.insert(r.location.clone(), name);
        }
    }
    let mut locations = txn.open_table(schema::REGISTRATION_LOCATIONS)?;
    let mut stale = Vec::new();
    for entry in locations.iter()? {
        let (k, v) = entry?;
        if kept.get(k.value()).map(String::as_str) != Some(v.value()) {
            stale.push(k.value().to_string());
        }
    }
    for location in stale {
        locations.remove(location.as_str())?;
        out.lwm2m_fixed += 1;
    }
    for (location, name) in &kept {
        if locations
            .get(location.as_str())?
            .map(|v| v.value().to_string())
            .as_ref()
            != Some(name)
        {
            locations.insert(location.as_str(), name.as_str())?;
            out.lwm2m_fixed += 1;
        }
    }
    Ok(())
}
