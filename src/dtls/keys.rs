//! Device pre-shared keys in memory, for the PSK callback of a handshake
//! (which runs synchronously inside the engine, so it cannot wait for the
//! store). Loaded from the store at start-up and updated after every
//! committed `PUT /api/v1/devices/{name}/psk`; a rotated key applies to new
//! handshakes only, established sessions keep theirs.
//!
//! Bound: one entry per device that has a key (identity ≤ 128 bytes, key ≤
//! 64 bytes), i.e. at most the device table.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::model::PskRecord;

/// The key and device of an identity.
#[derive(Clone)]
pub struct KeyEntry {
    pub device: Arc<str>,
    pub key: Arc<[u8]>,
}

// Never print a key, not even in debug output.
impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("device", &self.device)
            .field("key", &"<hidden>")
            .finish()
    }
}

#[derive(Default)]
struct Maps {
    by_identity: HashMap<String, KeyEntry>,
    identity_of: HashMap<String, String>,
}

/// identity → (device, key), shared by the admin API and every shard.
#[derive(Default, Clone)]
pub struct PskDirectory {
    inner: Arc<RwLock<Maps>>,
}

impl PskDirectory {
    pub fn lookup(&self, identity: &str) -> Option<KeyEntry> {
        let maps = self.inner.read().unwrap_or_else(|e| e.into_inner());
        maps.by_identity.get(identity).cloned()
    }

    /// The identity a device has, if any.
    pub fn identity_of(&self, device: &str) -> Option<String> {
        let maps = self.inner.read().unwrap_or_else(|e| e.into_inner());
        maps.identity_of.get(device).cloned()
    }

    /// Sets (or replaces) `device`'s credential.
    pub fn set(&self, device: &str, record: &PskRecord) {
        let mut maps = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = maps.identity_of.remove(device) {
            maps.by_identity.remove(&old);
        }
        // The identity may move here from another device (bulk requests):
        // that device no longer has one.
        if let Some(previous) = maps.by_identity.get(&record.identity) {
            let previous = previous.device.to_string();
            maps.identity_of.remove(&previous);
        }
        maps.identity_of
            .insert(device.to_string(), record.identity.clone());
        maps.by_identity.insert(
            record.identity.clone(),
            KeyEntry {
                device: device.into(),
                key: record.key.as_slice().into(),
            },
        );
    }

    pub fn len(&self) -> usize {
        let maps = self.inner.read().unwrap_or_else(|e| e.into_inner());
        maps.by_identity.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An identity: 1-128 printable ASCII characters (RFC 4279 §5.1 leaves
/// the encoding open; printable keeps logs and CSV files safe).
pub fn valid_identity(identity: &str) -> bool {
    (1..=128).contains(&identity.len()) && identity.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// A key: 4-64 bytes as hex (RFC 4279 allows up to 64 bytes).
pub fn parse_key(hex_key: &str) -> Result<Vec<u8>, String> {
    let key = hex::decode(hex_key.trim())
        .map_err(|_| "\"key\" must be hexadecimal (2 digits per byte)".to_string())?;
    if !(4..=64).contains(&key.len()) {
        return Err(format!("\"key\" must be 4 to 64 bytes, got {}", key.len()));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn record(identity: &str) -> PskRecord {
        PskRecord {
            identity: identity.into(),
            key: vec![1, 2, 3, 4],
            updated_at: Timestamp::from_millis(0),
        }
    }

    #[test]
    fn an_identity_moving_between_devices_leaves_no_stale_owner() {
        let keys = PskDirectory::default();
        keys.set("a", &record("x"));
        keys.set("b", &record("x"));
        assert_eq!(keys.lookup("x").unwrap().device.as_ref(), "b");
        assert_eq!(keys.identity_of("a"), None);
        keys.set("a", &record("y"));
        assert_eq!(keys.lookup("x").unwrap().device.as_ref(), "b");
        assert_eq!(keys.len(), 2);
    }
}
