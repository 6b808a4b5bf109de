//! A device's DTLS pre-shared key credential.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// The PSK identity and key a device authenticates with over CoAPS. The
/// key never leaves the server (no admin view shows it, no log prints it).
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct PskRecord {
    pub identity: String,
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for PskRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PskRecord")
            .field("identity", &self.identity)
            .field("key", &"<hidden>")
            .field("updated_at", &self.updated_at)
            .finish()
    }
}
