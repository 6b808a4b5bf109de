//! Server configuration: `server.toml` plus command-line overrides.
//!
//! Every key has an embedded default so `lwota serve` works with no file at
//! all; unknown keys are rejected so a typo never silently falls back to a
//! default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub firmware: FirmwareConfig,
    pub devices: DevicesConfig,
    pub tasks: TasksConfig,
    pub coap: CoapConfig,
    pub admin: AdminConfig,
    pub abuse: AbuseConfig,
}

/// Issue 11: the admin listener's protection.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `GET /metrics` without a token.
    pub metrics_public: bool,
    /// Host names (besides `localhost` and IP literals) the admin API
    /// answers to; any other `Host` is refused (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Origins (`scheme://host[:port]`) besides the server's own that
    /// browsers may call the API from.
    pub allowed_origins: Vec<String>,
    /// Seconds a client has to send a request's headers.
    pub header_timeout_s: u64,
    /// Seconds a request body may stall between two pieces.
    pub body_timeout_s: u64,
    /// Open admin connections at most; more are closed at once.
    pub max_connections: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            metrics_public: false,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            header_timeout_s: 10,
            body_timeout_s: 30,
            max_connections: 512,
        }
    }
}

/// Issue 11 item 4: limits on what unauthenticated CoAP peers can cost.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AbuseConfig {
    /// Datagrams per second one source (IP and port) may make us handle
    /// (token bucket; 0 = no limit). Per port, not per IP: a fleet behind
    /// one NAT shares an IP.
    pub requests_per_s: u32,
    /// Burst of the per-address bucket.
    pub burst: u32,
    /// Self-registrations (unknown devices polling with
    /// `devices.auto_register`) per minute, per source IP and in total;
    /// past them the poll is answered 4.29 with Max-Age.
    pub auto_register_per_min_per_source: u32,
    pub auto_register_per_min: u32,
}

impl Default for AbuseConfig {
    fn default() -> Self {
        AbuseConfig {
            requests_per_s: 10_000,
            burst: 20_000,
            auto_register_per_min_per_source: 1_000,
            auto_register_per_min: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CoapConfig {
    /// Endpoints (UDP sockets with SO_REUSEPORT, one loop each); 0 = one
    /// per core.
    pub shards: usize,
    /// RFC 7252 ACK_TIMEOUT for requests this server sends, milliseconds.
    pub ack_timeout_ms: u64,
    /// RFC 7252 ACK_RANDOM_FACTOR: the first timeout is random in
    /// [ACK_TIMEOUT, ACK_TIMEOUT × this].
    pub ack_random_factor: f64,
    /// RFC 7252 MAX_RETRANSMIT.
    pub max_retransmit: u32,
    /// RFC 7252 NSTART: requests in flight per device.
    pub nstart: usize,
}

impl Default for CoapConfig {
    fn default() -> Self {
        CoapConfig {
            shards: 0,
            ack_timeout_ms: 2000,
            ack_random_factor: 1.5,
            max_retransmit: 4,
            nstart: 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub coap_bind: SocketAddr,
    pub http_bind: SocketAddr,
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FirmwareConfig {
    pub max_size: u64,
    pub max_per_product: u32,
    pub max_block_size: u32,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DevicesConfig {
    pub auto_register: bool,
    /// Seconds; the `Max-Age` of an empty poll answer.
    pub poll_interval: u32,
    /// Most history entries kept per device; older ones are dropped and
    /// counted in one `truncated` entry.
    pub history_limit: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TasksConfig {
    /// Seconds without a sign of life before a task fails with `timeout`.
    pub timeout: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            coap_bind: SocketAddr::from(([0, 0, 0, 0], 5683)),
            http_bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
        }
    }
}

impl Default for FirmwareConfig {
    fn default() -> Self {
        FirmwareConfig {
            max_size: 1 << 30,
            max_per_product: 100,
            max_block_size: 1024,
        }
    }
}

impl Default for DevicesConfig {
    fn default() -> Self {
        DevicesConfig {
            auto_register: true,
            poll_interval: 3600,
            history_limit: 1000,
        }
    }
}

impl Default for TasksConfig {
    fn default() -> Self {
        TasksConfig { timeout: 900 }
    }
}

/// Longest task timeout accepted (30 days), far from any overflow.
pub const MAX_TASK_TIMEOUT: u64 = 30 * 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("bad config: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads `path`. A missing file is an error only when the operator named
    /// it explicitly (`required`); the shipped `./server.toml` is optional so
    /// the binary also runs from any directory on embedded defaults.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Config::default())
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let block = self.firmware.max_block_size;
        if !(16..=1024).contains(&block) || !block.is_power_of_two() {
            return Err(ConfigError::Invalid(format!(
                "firmware.max_block_size must be a power of two from 16 to 1024, got {block}"
            )));
        }
        if self.firmware.max_size == 0 {
            return Err(ConfigError::Invalid(
                "firmware.max_size must be at least 1".into(),
            ));
        }
        if self.firmware.max_per_product == 0 {
            return Err(ConfigError::Invalid(
                "firmware.max_per_product must be at least 1".into(),
            ));
        }
        // Block2 numbers have 20 bits: larger images could not be served whole.
        let servable = (1u64 << 20) * u64::from(block);
        if self.firmware.max_size > servable {
            return Err(ConfigError::Invalid(format!(
                "firmware.max_size {} is more than Block2 can address at max_block_size {block} ({servable} bytes)",
                self.firmware.max_size
            )));
        }
        if !(2..=1_000_000).contains(&self.devices.history_limit) {
            return Err(ConfigError::Invalid(
                "devices.history_limit must be from 2 to 1000000".into(),
            ));
        }
        let coap = &self.coap;
        if coap.shards > 1024 {
            return Err(ConfigError::Invalid(
                "coap.shards must be at most 1024".into(),
            ));
        }
        if !(100..=60_000).contains(&coap.ack_timeout_ms) {
            return Err(ConfigError::Invalid(
                "coap.ack_timeout_ms must be from 100 to 60000".into(),
            ));
        }
        // RFC 7252 §4.8 requires at least 1.0; above 4 the back-off
        // becomes so uneven that MAX_TRANSMIT_WAIT loses its meaning.
        if !(1.0..=4.0).contains(&coap.ack_random_factor) {
            return Err(ConfigError::Invalid(
                "coap.ack_random_factor must be from 1.0 to 4.0".into(),
            ));
        }
        if coap.max_retransmit > 10 {
            return Err(ConfigError::Invalid(
                "coap.max_retransmit must be at most 10".into(),
            ));
        }
        if !(1..=64).contains(&coap.nstart) {
            return Err(ConfigError::Invalid(
                "coap.nstart must be from 1 to 64".into(),
            ));
        }
        if !(1..=MAX_TASK_TIMEOUT).contains(&self.tasks.timeout) {
            return Err(ConfigError::Invalid(format!(
                "tasks.timeout must be from 1 to {MAX_TASK_TIMEOUT} seconds (30 days)"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_file_equals_embedded_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("server.toml");
        let config = Config::load(&path, true).expect("shipped server.toml loads");
        assert_eq!(config, Config::default());
    }

    #[test]
    fn unknown_key_and_bad_values_are_rejected() {
        let err = toml::from_str::<Config>("[server]\ncoap_bnd = \"1.2.3.4:5\"\n");
        assert!(err.is_err());
        let mut config = Config::default();
        config.firmware.max_block_size = 100;
        assert!(config.validate().is_err());
        let mut config = Config::default();
        config.firmware.max_block_size = 16;
        assert!(
            config.validate().is_err(),
            "1 GiB needs more than 2^20 16-byte blocks"
        );
        config.firmware.max_size = 16 << 20;
        assert!(config.validate().is_ok());
        let mut config = Config::default();
        config.tasks.timeout = u64::MAX;
        assert!(config.validate().is_err());
        let mut config = Config::default();
        config.coap.nstart = 0;
        assert!(config.validate().is_err());
        let mut config = Config::default();
        config.coap.ack_timeout_ms = 10;
        assert!(config.validate().is_err());
        let mut config = Config::default();
        config.coap.ack_random_factor = 0.5;
        assert!(config.validate().is_err());
        let config: Config = toml::from_str("[coap]\nack_random_factor = 2.0\n").unwrap();
        assert_eq!(config.coap.ack_random_factor, 2.0);
        assert!(config.validate().is_ok());
        let config: Config = toml::from_str("[coap]\nshards = 3\n").unwrap();
        assert_eq!(config.coap.shards, 3);
        assert!(config.validate().is_ok());
    }
}
