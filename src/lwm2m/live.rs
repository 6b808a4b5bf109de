//! The cheap Registration Update: an Update that changes nothing but the
//! expiry is answered from memory, and the new expiry is persisted only
//! when it has to be.
//!
//! Why this is crash-safe. A registration record stores `expires_at` as
//! of its last durable write (`E`); its expiry timer is due at
//! [`expiry_timer_at`] = `E + lifetime/2` for registrations that may be
//! refreshed lazily ([`lazy_eligible`]: not in queue mode, lifetime of
//! at least [`LAZY_MIN_LIFETIME`] s). An empty Update at `now` is
//! answered from memory only while `E - now >= lifetime/2`; it moves the
//! in-memory expiry to `now + lifetime <= E + lifetime/2`. So no expiry
//! granted in memory ever lies beyond the persisted timer. After a crash
//! the in-memory expiries are lost, and every registration gets the
//! grace of its timer (`E + lifetime/2`) as its expiry: a device that
//! updated in time is not expired, and one that stopped updating is
//! expired at most lifetime/2 late, once per restart. An Update that
//! comes when `E - now < lifetime/2` (in steady state every other Update
//! of a client that updates at lifetime/2) is written before the reply,
//! as are Registers, De-registers and Updates that change the lifetime,
//! binding, queue mode, object list or the device's address. While the
//! server runs, the session shell expires a registration at its exact
//! in-memory expiry (`lwm2m_shell.rs`); the timer is the backstop.

use std::collections::HashMap;

use crate::model::RegistrationRecord;
use crate::time::Timestamp;

/// Shortest lifetime (s) whose routine Updates may be answered from
/// memory: half of it is the grace after a restart, and the session
/// shell's expiry sweep (every `check_interval_ms`) must be far shorter.
pub const LAZY_MIN_LIFETIME: u64 = 60;

/// Whether empty Updates of this registration may skip the write. Queue
/// mode devices never do: their Update is a wake-up that must take the
/// requests queued for them, durably.
pub fn lazy_eligible(record: &RegistrationRecord) -> bool {
    !record.queue_mode && record.lifetime >= LAZY_MIN_LIFETIME
}

/// When the registration's `RegistrationExpiry` timer is due.
pub fn expiry_timer_at(record: &RegistrationRecord) -> Timestamp {
    if lazy_eligible(record) {
        record.expires_at.add_millis(record.lifetime * 500)
    } else {
        record.expires_at
    }
}

/// What memory knows of one registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub name: String,
    pub location: String,
    pub lifetime_ms: u64,
    pub peer: String,
    pub eligible: bool,
    /// `expires_at` of the stored record.
    pub persisted_expiry: Timestamp,
    pub last_update: Timestamp,
    /// The registration's real expiry (later than the stored one after
    /// Updates answered from memory).
    pub expires_at: Timestamp,
}

impl Live {
    /// From a record just committed (`restarted`: loaded at start-up,
    /// when in-memory refreshes may have been lost: its expiry is the
    /// timer's, the grace argued above).
    pub fn of(name: &str, record: &RegistrationRecord, restarted: bool) -> Live {
        Live {
            name: name.to_string(),
            location: record.location.clone(),
            lifetime_ms: record.lifetime.saturating_mul(1000),
            peer: record.peer.clone(),
            eligible: lazy_eligible(record),
            persisted_expiry: record.expires_at,
            last_update: record.last_update,
            expires_at: if restarted {
                expiry_timer_at(record)
            } else {
                record.expires_at
            },
        }
    }

    /// An empty Update from `peer` at `now`: answered from memory when
    /// the rule above allows it (returns true), else it must be written.
    pub fn refresh(&mut self, now: Timestamp, peer: &str) -> bool {
        let half = self.lifetime_ms / 2;
        let lazy = self.eligible
            && peer == self.peer
            && now < self.expires_at
            && self.persisted_expiry.as_millis() >= now.as_millis().saturating_add(half);
        if lazy {
            self.last_update = now;
            self.expires_at = now.add_millis(self.lifetime_ms);
        }
        lazy
    }
}

/// The live registrations by location, with the name index that makes a
/// new Register drop the old location.
#[derive(Debug, Default)]
pub struct LiveTable {
    by_location: HashMap<String, Live>,
    location_of: HashMap<String, String>,
}

impl LiveTable {
    /// Records a committed Register/Update (or one loaded at start-up).
    pub fn track(&mut self, name: &str, record: &RegistrationRecord, restarted: bool) {
        if let Some(old) = self
            .location_of
            .insert(name.to_string(), record.location.clone())
        {
            if old != record.location {
                self.by_location.remove(&old);
            }
        }
        self.by_location
            .insert(record.location.clone(), Live::of(name, record, restarted));
    }

    pub fn forget(&mut self, name: &str) {
        if let Some(location) = self.location_of.remove(name) {
            self.by_location.remove(&location);
        }
    }

    /// An empty Update of `/rd/{location}`: the device name when it was
    /// answered from memory.
    pub fn refresh(&mut self, location: &str, now: Timestamp, peer: &str) -> Option<String> {
        let live = self.by_location.get_mut(location)?;
        live.refresh(now, peer).then(|| live.name.clone())
    }

    pub fn get(&self, location: &str) -> Option<&Live> {
        self.by_location.get(location)
    }

    /// The registration of `name` at `location` in memory.
    pub fn of_name(&self, name: &str) -> Option<&Live> {
        let location = self.location_of.get(name)?;
        self.by_location.get(location)
    }

    pub fn len(&self) -> usize {
        self.by_location.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_location.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000;

    fn record(lifetime: u64, queue_mode: bool) -> RegistrationRecord {
        let at = Timestamp::from_millis(T0);
        RegistrationRecord {
            location: "loc".into(),
            lwm2m_version: "1.1".into(),
            binding: "U".into(),
            queue_mode,
            lifetime,
            registered_at: at,
            last_update: at,
            expires_at: at.add_millis(lifetime * 1000),
            objects: vec!["/5/0".into()],
            root: "/".into(),
            peer: "127.0.0.1:1".into(),
            local: "127.0.0.1:5683".into(),
            secure: false,
            queued: Vec::new(),
            queued_deadline: None,
        }
    }

    fn at(s: u64) -> Timestamp {
        Timestamp::from_millis(T0 + s * 1000)
    }

    #[test]
    fn only_updates_early_in_the_stored_lifetime_skip_the_write() {
        let r = record(120, false);
        assert_eq!(expiry_timer_at(&r), at(180));
        let mut t = LiveTable::default();
        t.track("d", &r, false);
        // Stored expiry 120: an Update at 60 leaves 60 >= 120/2.
        assert_eq!(t.refresh("loc", at(60), "127.0.0.1:1"), Some("d".into()));
        assert_eq!(t.get("loc").unwrap().expires_at, at(180));
        // At 61 only 59 s of the stored lifetime are left: write it.
        assert_eq!(t.refresh("loc", at(61), "127.0.0.1:1"), None);
        // A moved device, an unknown location: written (or refused).
        assert_eq!(t.refresh("loc", at(10), "127.0.0.1:2"), None);
        assert_eq!(t.refresh("other", at(10), "127.0.0.1:1"), None);
    }

    #[test]
    fn no_expiry_granted_in_memory_passes_the_stored_timer() {
        for lifetime in [60, 61, 120, 86_400] {
            let r = record(lifetime, false);
            let timer = expiry_timer_at(&r);
            let mut t = LiveTable::default();
            t.track("d", &r, false);
            let mut now = 0;
            while now <= lifetime * 2 {
                t.refresh("loc", at(now), "127.0.0.1:1");
                assert!(
                    t.get("loc").unwrap().expires_at <= timer,
                    "{lifetime} {now}"
                );
                now += 1 + lifetime / 50;
            }
        }
    }

    #[test]
    fn queue_mode_and_short_lifetimes_are_always_written() {
        for r in [record(300, true), record(59, false)] {
            assert_eq!(expiry_timer_at(&r), r.expires_at);
            let mut t = LiveTable::default();
            t.track("d", &r, false);
            assert_eq!(t.refresh("loc", at(1), "127.0.0.1:1"), None);
        }
    }

    #[test]
    fn a_restart_grants_the_timer_as_grace_and_a_new_register_drops_the_old_location() {
        let r = record(120, false);
        let mut t = LiveTable::default();
        t.track("d", &r, true);
        assert_eq!(t.get("loc").unwrap().expires_at, at(180));
        let mut moved = r.clone();
        moved.location = "loc2".into();
        t.track("d", &moved, false);
        assert!(t.get("loc").is_none());
        assert_eq!(t.of_name("d").unwrap().expires_at, at(120));
        t.forget("d");
        assert!(t.is_empty());
    }
}
