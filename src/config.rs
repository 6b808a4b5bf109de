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
    pub lwm2m: crate::lwm2m::config::Lwm2mConfig,
    pub campaigns: CampaignsConfig,
    pub dtls: DtlsConfig,
    pub audit: AuditConfig,
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
    /// An unknown device is self-registered only while the store holds
    /// fewer device records than this (all devices count, so the bound
    /// holds across restarts); past it its poll or LwM2M Register gets
    /// 5.03 with Max-Age 3600. 0 = no cap.
    pub auto_register_max_devices: u64,
}

impl Default for AbuseConfig {
    fn default() -> Self {
        AbuseConfig {
            requests_per_s: 10_000,
            burst: 20_000,
            auto_register_per_min_per_source: 1_000,
            auto_register_per_min: 10_000,
            auto_register_max_devices: 100_000,
        }
    }
}

/// `[campaigns]`: server-wide rules of the campaign engine (issue 10).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CampaignsConfig {
    /// A batch campaign needs a verified firmware unless it says `force`.
    pub require_verified: bool,
    /// Default rate limit of campaigns that set none: at most `pack_size`
    /// hand-outs per `pack_interval_s` seconds; 0 = no limit.
    pub pack_size: u64,
    pub pack_interval_s: u64,
    /// Max-Age (seconds) of the empty answer to a device turned away for
    /// low battery: when to come back.
    pub low_battery_retry_s: u32,
}

impl Default for CampaignsConfig {
    fn default() -> Self {
        CampaignsConfig {
            require_verified: false,
            pack_size: 0,
            pack_interval_s: 60,
            low_battery_retry_s: 3600,
        }
    }
}

/// `[audit]`: the operator action log (`GET /api/v1/audit`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Most entries kept; the oldest are dropped beyond it
    /// (`lwota_audit_dropped_total`).
    pub limit: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { limit: 100_000 }
    }
}

/// `[dtls]`: CoAPS (DTLS 1.2 PSK) limits and policy. Every bound here is
/// per CoAPS shard (docs/ARCHITECTURE.md "Bounds").
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DtlsConfig {
    /// Established plus half-open sessions.
    pub max_sessions: usize,
    /// Handshakes past the cookie exchange and not yet finished.
    pub max_half_open: usize,
    /// Half-open handshakes from one source IP address.
    pub max_half_open_per_ip: usize,
    /// Seconds a handshake may take before it is dropped.
    pub handshake_timeout: u64,
    /// Seconds without a datagram before a session is closed.
    pub idle_timeout: u64,
    /// Path MTU for handshake flights, bytes.
    pub mtu: u32,
    /// Products whose devices must use CoAPS: on plain CoAP they get 4.01.
    pub require_dtls: Vec<String>,
}

impl Default for DtlsConfig {
    fn default() -> Self {
        DtlsConfig {
            max_sessions: 10_000,
            max_half_open: 1_000,
            max_half_open_per_ip: 8,
            handshake_timeout: 30,
            idle_timeout: 600,
            mtu: 1280,
            require_dtls: Vec::new(),
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
    /// `coap://HOST:PORT` devices reach this server at (LwM2M Package
    /// URIs); unset: the local address a device registered to.
    pub public_uri: Option<String>,
    /// Issue 11: a response to an address that has not proven it receives
    /// our datagrams takes at most this many times the request's bytes on
    /// the wire (RFC 7252 §11.3, RFC 9175 Echo; docs/PROTOCOL.md);
    /// 0 = off.
    pub amplification_factor: usize,
    /// Seconds an address stays verified after its last proof.
    pub verified_for_s: u64,
    /// Verified addresses remembered per shard; the one closest to expiry
    /// makes room (`lwota_coap_verified_evicted_total`).
    pub max_verified: usize,
}

impl Default for CoapConfig {
    fn default() -> Self {
        CoapConfig {
            shards: 0,
            ack_timeout_ms: 2000,
            ack_random_factor: 1.5,
            max_retransmit: 4,
            nstart: 1,
            public_uri: None,
            amplification_factor: 3,
            verified_for_s: 3600,
            max_verified: 100_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub coap_bind: SocketAddr,
    pub http_bind: SocketAddr,
    pub data_dir: PathBuf,
    /// CoAPS (DTLS-PSK) UDP address.
    pub coaps_bind: SocketAddr,
    /// Plain CoAP on `coap_bind`; false leaves only CoAPS.
    pub coap_enabled: bool,
    /// CoAPS on `coaps_bind`.
    pub coaps_enabled: bool,
    /// Issue 11: PEM certificate chain and private key for TLS on the
    /// admin listener (`https://`); both or neither. Unset: plain HTTP.
    pub http_tls_cert: Option<PathBuf>,
    pub http_tls_key: Option<PathBuf>,
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
            coaps_bind: SocketAddr::from(([0, 0, 0, 0], 5684)),
            coap_enabled: true,
            coaps_enabled: true,
            http_tls_cert: None,
            http_tls_key: None,
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
        self.lwm2m.validate(self.coap.public_uri.as_deref())?;
        if !self.server.coap_enabled && !self.server.coaps_enabled {
            return Err(ConfigError::Invalid(
                "server.coap_enabled and server.coaps_enabled cannot both be false".into(),
            ));
        }
        let dtls = &self.dtls;
        if dtls.max_sessions == 0 || dtls.max_half_open == 0 || dtls.max_half_open_per_ip == 0 {
            return Err(ConfigError::Invalid(
                "dtls.max_sessions, max_half_open and max_half_open_per_ip must be at least 1"
                    .into(),
            ));
        }
        if !(1..=3600).contains(&dtls.handshake_timeout)
            || !(1..=86_400).contains(&dtls.idle_timeout)
        {
            return Err(ConfigError::Invalid(
                "dtls.handshake_timeout must be 1-3600 s and dtls.idle_timeout 1-86400 s".into(),
            ));
        }
        if !(256..=65_000).contains(&dtls.mtu) {
            return Err(ConfigError::Invalid(
                "dtls.mtu must be from 256 to 65000".into(),
            ));
        }
        if !(1..=10_000_000).contains(&self.audit.limit) {
            return Err(ConfigError::Invalid(
                "audit.limit must be from 1 to 10000000".into(),
            ));
        }
        if !(1..=MAX_TASK_TIMEOUT).contains(&self.tasks.timeout) {
            return Err(ConfigError::Invalid(format!(
                "tasks.timeout must be from 1 to {MAX_TASK_TIMEOUT} seconds (30 days)"
            )));
        }
        let c = &self.campaigns;
        if c.pack_size > 0 && !(1..=86_400).contains(&c.pack_interval_s) {
            return Err(ConfigError::Invalid(
                "campaigns.pack_interval_s must be from 1 to 86400".into(),
            ));
        }
        if !(1..=86_400).contains(&c.low_battery_retry_s) {
            return Err(ConfigError::Invalid(
                "campaigns.low_battery_retry_s must be from 1 to 86400".into(),
            ));
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
