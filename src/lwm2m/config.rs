//! `[lwm2m]` settings.

use serde::Deserialize;

use crate::config::ConfigError;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Lwm2mConfig {
    /// Serve `lwm2m=1.2` registrations (as 1.1: lwota uses nothing 1.2
    /// changed). Off: answer 4.12, which makes Anjay fall back to 1.1.
    pub accept_1_2: bool,
    /// Object 5 delivery when the device does not state one in `/5/0/9`.
    pub delivery: Delivery,
    /// Product of a device auto-registered by its first Register (the
    /// registration says nothing about products).
    pub default_product: String,
    /// Registered devices at most (each is a record and a session).
    pub max_registrations: usize,
    /// Largest registration payload (CoRE links), bytes.
    pub max_payload: usize,
    /// How long a queue-mode device listens after its Register/Update
    /// (LwM2M's MAX_TRANSMIT_WAIT, 93 s by default).
    pub queue_awake_ms: u64,
    /// How often registered devices are checked for a new task.
    pub check_interval_ms: u64,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    Pull,
    Push,
}

impl Default for Lwm2mConfig {
    fn default() -> Self {
        Lwm2mConfig {
            accept_1_2: false,
            delivery: Delivery::Pull,
            default_product: "lwm2m".into(),
            max_registrations: 100_000,
            max_payload: 4096,
            queue_awake_ms: 93_000,
            check_interval_ms: 1000,
        }
    }
}

impl Lwm2mConfig {
    pub fn validate(&self, public_uri: Option<&str>) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if !(1..=10_000_000).contains(&self.max_registrations) {
            return bad("lwm2m.max_registrations must be from 1 to 10000000");
        }
        // Block1 bodies are reassembled up to 64 KiB.
        if !(64..=65_536).contains(&self.max_payload) {
            return bad("lwm2m.max_payload must be from 64 to 65536");
        }
        if !(10..=86_400_000).contains(&self.check_interval_ms) {
            return bad("lwm2m.check_interval_ms must be from 10 to 86400000");
        }
        if self.queue_awake_ms > 86_400_000 {
            return bad("lwm2m.queue_awake_ms must be at most 86400000");
        }
        if !crate::ota::firmware::valid_product(&self.default_product) {
            return bad("lwm2m.default_product must be 1-64 letters, digits, '.', '_', '-'");
        }
        if let Some(uri) = public_uri {
            let rest = uri.strip_prefix("coap://").unwrap_or("");
            if rest.is_empty() || rest.contains('/') || rest.contains(char::is_whitespace) {
                return bad("coap.public_uri must be coap://HOST[:PORT] with no path");
            }
        }
        Ok(())
    }
}
