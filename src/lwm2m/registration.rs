//! The LwM2M registration interface as domain operations (TS Core §6.2,
//! §8.2.3): Register, Update, De-register and lifetime expiry, each on a
//! `Tx` with `now`, no I/O. `resources/rd.rs` parses CoAP into these
//! and answers; `ota/scheduler.rs` calls [`expire`].

use super::content::RegisteredObjects;
use super::live::expiry_timer_at;
use crate::model::{DeviceRecord, EndedRegistration, HistoryEntry, RegistrationRecord, Timer};
use crate::store::{StoreError, Tx};
use crate::time::Timestamp;

/// Lifetime when `lt` is absent (TS Core §6.2.1: 86400 s).
pub const DEFAULT_LIFETIME: u64 = 86_400;
/// Longest lifetime accepted: a year, far from any overflow.
pub const MAX_LIFETIME: u64 = 365 * 86_400;

/// The query of a Register or Update, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pub endpoint: Option<String>,
    pub lifetime: Option<u64>,
    pub version: Option<String>,
    pub binding: Option<String>,
    pub queue: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RdError {
    #[error("{0}")]
    BadRequest(String),
    /// LwM2M version the server does not serve: 4.12 (Precondition
    /// Failed) is what makes clients fall back to an older version.
    #[error("lwm2m version {0} not supported (1.0, 1.1)")]
    Version(String),
    #[error("unknown endpoint {0} (auto_register is off)")]
    UnknownEndpoint(String),
    #[error("no registration at /rd/{0}")]
    NotFound(String),
}

/// Parses the Uri-Query options of a Register (`first`) or Update.
pub fn parse_query(queries: &[String], first: bool) -> Result<Params, RdError> {
    let bad = |m: String| Err(RdError::BadRequest(m));
    let mut p = Params::default();
    for q in queries {
        let (key, value) = match q.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (q.as_str(), None),
        };
        match (key, value) {
            ("ep", Some(v)) if first => p.endpoint = Some(v.to_string()),
            ("lt", Some(v)) => match v.parse::<u64>() {
                Ok(lt) if (1..=MAX_LIFETIME).contains(&lt) => p.lifetime = Some(lt),
                _ => return bad(format!("lt must be 1..{MAX_LIFETIME} seconds")),
            },
            ("lwm2m", Some(v)) if first => p.version = Some(v.to_string()),
            // lwm2m-node-lib 1.4.0 repeats `lwm2m=` on every Update
            // (fixtures/datagrams/lwm2m/node-lib-update.hex): ignored.
            ("lwm2m", Some(_)) => {}
            ("b", Some(v)) => {
                if v.is_empty() || v.len() > 8 || !v.bytes().all(|b| b.is_ascii_uppercase()) {
                    return bad("b must be a binding such as U, UQ, S".into());
                }
                // 1.0 marks queue mode inside the binding (`UQ`).
                p.queue |= v.contains('Q');
                p.binding = Some(v.replace('Q', ""));
            }
            ("Q", None) => p.queue = true,
            // SMS number, object versions, endpoint type, domain: not used.
            ("sms" | "et" | "d" | "apn", _) => {}
            (k, _) => return bad(format!("unexpected query parameter {k:?}")),
        }
    }
    if first {
        match &p.endpoint {
            None => return bad("ep (endpoint name) is required".into()),
            Some(ep) if !crate::ota::valid_device_name(ep) => {
                return bad("ep must be 1-64 of letters, digits, '.', '_', '-', ':'".into())
            }
            Some(_) => {}
        }
    }
    Ok(p)
}

/// Whether `version` is served: 1.0 and 1.1, and 1.2 when `accept_1_2`.
pub fn check_version(version: Option<&str>, accept_1_2: bool) -> Result<String, RdError> {
    let v = version.unwrap_or("1.0");
    match v {
        "1.0" | "1.1" => Ok(v.to_string()),
        "1.2" if accept_1_2 => Ok(v.to_string()),
        other => Err(RdError::Version(other.chars().take(16).collect())),
    }
}

/// What a Register needs besides the query.
pub struct Register<'a> {
    pub params: &'a Params,
    pub objects: &'a RegisteredObjects,
    /// The version already checked by [`check_version`].
    pub version: &'a str,
    pub location: &'a str,
    pub peer: String,
    pub local: String,
    /// It came over CoAPS (a DTLS session).
    pub secure: bool,
    pub auto_register: bool,
    pub default_product: &'a str,
}

/// A Register: creates or replaces the device's registration. A Register
/// for an endpoint that is registered already is routine (clients in
/// queue mode register again on every wake-up): the old location is
/// dropped.
pub fn register(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    r: &Register<'_>,
) -> Result<Result<RegistrationRecord, RdError>, StoreError> {
    let name = r.params.endpoint.as_deref().unwrap_or_default();
    let device = tx.device(name)?;
    if device.is_none() && !r.auto_register {
        return Ok(Err(RdError::UnknownEndpoint(name.to_string())));
    }
    if device.is_none() {
        tx.put_device(name, &DeviceRecord::new(r.default_product, "", now))?;
        tx.append_history(
            name,
            &HistoryEntry::note(
                now,
                "registered",
                format!(
                    "auto-registered by its LwM2M Register (product {})",
                    r.default_product
                ),
            ),
        )?;
    }
    let previous = tx.registration(name)?;
    if let Some(old) = &previous {
        tx.remove_timer(
            expiry_timer_at(old),
            &Timer::RegistrationExpiry(name.to_string()),
        )?;
    }
    let lifetime = r.params.lifetime.unwrap_or(DEFAULT_LIFETIME);
    let record = RegistrationRecord {
        location: r.location.to_string(),
        lwm2m_version: r.version.to_string(),
        binding: r.params.binding.clone().unwrap_or_else(|| "U".into()),
        queue_mode: r.params.queue,
        lifetime,
        registered_at: now,
        last_update: now,
        expires_at: now.add_millis(lifetime * 1000),
        objects: r.objects.path_strings(),
        root: r.objects.root.clone(),
        peer: r.peer.clone(),
        local: r.local.clone(),
        secure: r.secure,
        // Requests queued for the sleeping device go out now.
        queued: previous
            .as_ref()
            .map(|p| p.queued.clone())
            .unwrap_or_default(),
        queued_deadline: previous.as_ref().and_then(|p| p.queued_deadline),
    };
    tx.set_timer(
        expiry_timer_at(&record),
        &Timer::RegistrationExpiry(name.to_string()),
    )?;
    tx.put_registration(name, previous.as_ref(), &record)?;
    if previous.is_none() {
        tx.put_ended_registration(name, None)?;
    }
    touch_device(tx, name, now, &record.peer)?;
    let detail = format!(
        "LwM2M {} register at /rd/{}: lifetime {lifetime} s, binding {}{}{}",
        record.lwm2m_version,
        record.location,
        record.binding,
        if record.queue_mode {
            ", queue mode"
        } else {
            ""
        },
        if previous.is_some() {
            " (replaces the previous registration)"
        } else {
            ""
        },
    );
    tx.append_history(name, &HistoryEntry::note(now, "lwm2m-register", detail))?;
    Ok(Ok(record))
}

fn touch_device(
    tx: &mut (impl Tx + ?Sized),
    name: &str,
    now: Timestamp,
    peer: &str,
) -> Result<(), StoreError> {
    if let Some(mut device) = tx.device(name)? {
        device.last_seen = Some(now);
        device.last_addr = Some(peer.to_string());
        tx.put_device(name, &device)?;
    }
    Ok(())
}

/// An Update (`POST /rd/{location}`), with or without a new payload,
/// lifetime or binding. Returns the device name and its record.
pub fn update(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    location: &str,
    params: &Params,
    objects: Option<&RegisteredObjects>,
    peer: String,
) -> Result<Result<(String, RegistrationRecord), RdError>, StoreError> {
    let Some(name) = tx.registration_name(location)? else {
        return Ok(Err(RdError::NotFound(location.to_string())));
    };
    let Some(previous) = tx.registration(&name)? else {
        return Ok(Err(RdError::NotFound(location.to_string())));
    };
    let mut record = previous.clone();
    let timer = Timer::RegistrationExpiry(name.clone());
    tx.remove_timer(expiry_timer_at(&previous), &timer)?;
    if let Some(lt) = params.lifetime {
        record.lifetime = lt;
    }
    if let Some(b) = &params.binding {
        record.binding = b.clone();
        record.queue_mode = params.queue;
    } else if params.queue {
        record.queue_mode = true;
    }
    if let Some(objects) = objects {
        record.objects = objects.path_strings();
        record.root = objects.root.clone();
    }
    record.last_update = now;
    record.expires_at = now.add_millis(record.lifetime * 1000);
    // A NAT may have moved the device: requests go where it spoke from.
    record.peer = peer;
    tx.set_timer(expiry_timer_at(&record), &timer)?;
    tx.put_registration(&name, Some(&previous), &record)?;
    touch_device(tx, &name, now, &record.peer)?;
    let changed = params.lifetime.is_some() || params.binding.is_some() || objects.is_some();
    if changed {
        // Routine empty Updates (every lifetime/2) are not history.
        tx.append_history(
            &name,
            &HistoryEntry::note(
                now,
                "lwm2m-update",
                format!(
                    "lifetime {} s, binding {}{}, {} objects",
                    record.lifetime,
                    record.binding,
                    if record.queue_mode {
                        " (queue mode)"
                    } else {
                        ""
                    },
                    record.objects.len()
                ),
            ),
        )?;
    }
    Ok(Ok((name, record)))
}

/// A De-register (`DELETE /rd/{location}`). Returns the device name.
pub fn deregister(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    location: &str,
) -> Result<Result<String, RdError>, StoreError> {
    let Some(name) = tx.registration_name(location)? else {
        return Ok(Err(RdError::NotFound(location.to_string())));
    };
    let Some(record) = tx.registration(&name)? else {
        return Ok(Err(RdError::NotFound(location.to_string())));
    };
    remove(tx, &name, &record, now, "deregistered")?;
    tx.append_history(
        &name,
        &HistoryEntry::note(
            now,
            "lwm2m-deregister",
            format!("de-registered /rd/{location}"),
        ),
    )?;
    Ok(Ok(name))
}

/// Ends a registration: its timers and location go, the record is kept
/// as the device's last known registration (without its queue: queued
/// requests die with the registration).
fn remove(
    tx: &mut (impl Tx + ?Sized),
    name: &str,
    record: &RegistrationRecord,
    now: Timestamp,
    reason: &str,
) -> Result<(), StoreError> {
    tx.remove_timer(
        expiry_timer_at(record),
        &Timer::RegistrationExpiry(name.to_string()),
    )?;
    if let Some(due) = record.queued_deadline {
        tx.remove_timer(due, &Timer::QueuedRequest(name.to_string()))?;
    }
    tx.delete_registration(name, record)?;
    let mut last = record.clone();
    last.queued.clear();
    last.queued_deadline = None;
    tx.put_ended_registration(
        name,
        Some(&EndedRegistration {
            record: last,
            ended_at: now,
            reason: reason.to_string(),
        }),
    )
}

/// The `RegistrationExpiry` timer of `name` due at `at`: removes the
/// registration if it is still the one that expires then. Returns
/// whether it expired.
pub fn expire(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    name: &str,
    at: Timestamp,
) -> Result<bool, StoreError> {
    let Some(record) = tx.registration(name)? else {
        return Ok(false);
    };
    if expiry_timer_at(&record) != at {
        return Ok(false);
    }
    end_expired(tx, now, name, &record)?;
    Ok(true)
}

/// The session shell saw the registration of `name` at `location` run
/// out in memory (its exact expiry, possibly later than the stored one
/// after Updates answered from memory; `lwm2m::live`): removes it unless
/// it was replaced or renewed by a write since. Returns whether it
/// expired.
pub fn lapse(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    name: &str,
    location: &str,
) -> Result<bool, StoreError> {
    let Some(record) = tx.registration(name)? else {
        return Ok(false);
    };
    if record.location != location || record.expires_at > now {
        return Ok(false);
    }
    end_expired(tx, now, name, &record)?;
    Ok(true)
}

/// Removes an expired registration and says so in the device history (the
/// stored timer and the in-memory lapse end a registration the same way).
fn end_expired(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    name: &str,
    record: &RegistrationRecord,
) -> Result<(), StoreError> {
    remove(tx, name, record, now, "expired")?;
    tx.append_history(
        name,
        &HistoryEntry::note(
            now,
            "lwm2m-expired",
            format!(
                "registration /rd/{} expired: no Update for {} s",
                record.location, record.lifetime
            ),
        ),
    )
}
