//! `lwota sim --lwm2m`: a fleet of simulated OMA LwM2M 1.1 (or 1.0, TLV
//! only) clients. Each registers with `/rd`, updates its registration at
//! the configured interval, serves Objects 1, 3 and 5 from the socket it
//! registered from, and takes firmware by pull (Package URI, Block2 from a
//! new source port) or push (Block1 write of `/5/0/0`). Queue mode and a
//! failure per Update Result code are configurable, so campaigns can be
//! exercised end to end; see docs/CLI.md.

pub mod content;
mod device;
pub mod objects;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::coap::TransmissionParams;
pub use objects::Delivery;

#[derive(Debug, Clone)]
pub struct Lwm2mConfig {
    pub server: SocketAddr,
    pub devices: usize,
    /// Endpoint names are `{prefix}{index:05}`.
    pub prefix: String,
    /// `/3/0/3` before the update.
    pub version: String,
    /// `/3/0/3` after a successful update (None: unchanged, like the
    /// demo clients).
    pub new_version: Option<String>,
    /// LwM2M 1.0 (`lwm2m=1.0`, `b=UQ`, TLV only) instead of 1.1.
    pub v10: bool,
    pub lifetime: u32,
    /// Between registration updates (lifetime/2 by default).
    pub update_interval: Duration,
    /// Share of the fleet in queue mode (the last devices by index).
    pub queue_share: f64,
    /// How long a queue-mode device listens after each Update.
    pub queue_window: Duration,
    pub delivery: Delivery,
    /// The Update Result the failing devices end with (2-9).
    pub fail_result: Option<u8>,
    /// Share of the fleet that fails (the first devices by index).
    pub fail_share: f64,
    /// From Execute to the final Update Result ("flash and reboot").
    pub install_time: Duration,
    pub params: TransmissionParams,
    pub duration: Duration,
    /// Stop a device `linger` after it reached a final Update Result.
    pub stop_when_done: bool,
    pub linger: Duration,
    /// De-register (DELETE /rd/ID) when a device stops.
    pub deregister: bool,
    /// Device i starts registering `i / devices * start_spread` after the
    /// run begins (a fleet does not power on in the same millisecond).
    pub start_spread: Duration,
    /// Counters readable while the fleet runs (for `lwota bench`).
    pub live: Option<Arc<LiveCounts>>,
}

/// What a running fleet has done so far.
#[derive(Debug, Default)]
pub struct LiveCounts {
    pub registered: std::sync::atomic::AtomicUsize,
    pub updates: std::sync::atomic::AtomicU64,
}

impl Default for Lwm2mConfig {
    fn default() -> Self {
        Lwm2mConfig {
            server: ([127, 0, 0, 1], 5683).into(),
            devices: 10,
            prefix: "lwm2m-".into(),
            version: "1.0.0".into(),
            new_version: None,
            v10: false,
            lifetime: 60,
            update_interval: Duration::from_secs(30),
            queue_share: 0.0,
            queue_window: Duration::from_secs(5),
            delivery: Delivery::Both,
            fail_result: None,
            fail_share: 0.0,
            install_time: Duration::from_millis(500),
            params: TransmissionParams::default(),
            duration: Duration::from_secs(60),
            stop_when_done: true,
            linger: Duration::from_secs(2),
            deregister: true,
            start_spread: Duration::ZERO,
            live: None,
        }
    }
}

/// `share` of `n` devices, rounded: counts in tests are exact.
fn count_of(n: usize, share: f64) -> usize {
    ((n as f64) * share.clamp(0.0, 1.0)).round() as usize
}

impl Lwm2mConfig {
    fn is_queue(&self, index: usize) -> bool {
        index >= self.devices - count_of(self.devices, self.queue_share)
    }
    fn fail_of(&self, index: usize) -> Option<u8> {
        self.fail_result
            .filter(|_| index < count_of(self.devices, self.fail_share))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Lwm2mOutcome {
    pub name: String,
    /// `/3/0/3` at the end.
    pub version: String,
    pub queue: bool,
    pub registered: bool,
    pub deregistered: bool,
    pub registrations: u32,
    /// Registration updates the server answered 2.04.
    pub updates: u32,
    pub downloaded_bytes: u64,
    /// Final Update Result 1 reached.
    pub updated: u32,
    /// Final failure results reached, and which.
    pub failed: u32,
    pub fail_results: Vec<u8>,
    /// The last Update Result.
    pub result: u8,
    pub errors: u32,
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
pub struct Lwm2mReport {
    pub devices: Vec<Lwm2mOutcome>,
    pub elapsed: Duration,
}

impl Lwm2mReport {
    pub fn registered(&self) -> usize {
        self.devices.iter().filter(|d| d.registered).count()
    }
    pub fn updated(&self) -> usize {
        self.devices.iter().filter(|d| d.updated > 0).count()
    }
    pub fn failed(&self) -> usize {
        self.devices
            .iter()
            .filter(|d| d.failed > 0 && d.updated == 0)
            .count()
    }
    pub fn updates(&self) -> u64 {
        self.devices.iter().map(|d| u64::from(d.updates)).sum()
    }
    /// Devices per final failing Update Result.
    pub fn failures_by_result(&self) -> std::collections::BTreeMap<u8, usize> {
        let mut map = std::collections::BTreeMap::new();
        for d in self.devices.iter().filter(|d| d.updated == 0) {
            if let Some(code) = d.fail_results.last() {
                *map.entry(*code).or_insert(0) += 1;
            }
        }
        map
    }
}

/// Runs the fleet until every device stopped or `duration` passed.
pub async fn run(config: Lwm2mConfig) -> Lwm2mReport {
    let started = Instant::now();
    let until = started + config.duration;
    let config = Arc::new(config);
    let mut handles = Vec::with_capacity(config.devices);
    for i in 0..config.devices {
        let config = config.clone();
        handles.push(tokio::spawn(
            async move { device::run(&config, i, until).await },
        ));
    }
    let mut devices = Vec::with_capacity(handles.len());
    for handle in handles {
        if let Ok(outcome) = handle.await {
            devices.push(outcome);
        }
    }
    devices.sort_by(|a, b| a.name.cmp(&b.name));
    Lwm2mReport {
        devices,
        elapsed: started.elapsed(),
    }
}

/// The `--lwm2m` flags of `lwota sim` (the shared ones, `--coap`,
/// `--devices`, `--prefix`, `--version`, `--duration`, `--forever`, come
/// from the poll simulator's arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct Lwm2mArgs {
    /// Simulate OMA LwM2M clients (registration, Objects 3 and 5) instead
    /// of devices of lwota's poll protocol.
    #[arg(long)]
    pub lwm2m: bool,
    /// LwM2M version the clients register with: 1.1, or 1.0 (TLV only).
    #[arg(long, default_value = "1.1", value_name = "VERSION",
          value_parser = ["1.0", "1.1"], requires = "lwm2m")]
    pub lwm2m_version: String,
    /// Registration lifetime in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS", requires = "lwm2m")]
    pub lifetime: u32,
    /// Seconds between registration updates (default: lifetime/2).
    #[arg(long, value_name = "SECONDS", requires = "lwm2m")]
    pub update_interval: Option<f64>,
    /// Every client in queue mode (b=UQ / Q): listens only for
    /// --queue-window seconds after each registration update.
    #[arg(long, requires = "lwm2m")]
    pub queue_mode: bool,
    /// Share of the clients in queue mode (0..1) instead of all.
    #[arg(
        long,
        value_name = "FRACTION",
        requires = "lwm2m",
        conflicts_with = "queue_mode"
    )]
    pub queue_share: Option<f64>,
    /// Seconds a queue-mode client listens after each update.
    #[arg(
        long,
        default_value_t = 5.0,
        value_name = "SECONDS",
        requires = "lwm2m"
    )]
    pub queue_window: f64,
    /// Firmware delivery the clients support (/5/0/9).
    #[arg(long, value_enum, default_value = "both", requires = "lwm2m")]
    pub delivery: Delivery,
    /// Update Result (2-9) the failing clients end with.
    #[arg(long, value_name = "CODE", requires = "lwm2m",
          value_parser = clap::value_parser!(u8).range(2..=9))]
    pub fail_result: Option<u8>,
    /// Share of the clients that fail with --fail-result (0..1).
    #[arg(
        long,
        default_value_t = 1.0,
        value_name = "FRACTION",
        requires = "fail_result"
    )]
    pub fail_share: f64,
    /// /3/0/3 after a successful update (default: unchanged).
    #[arg(long, value_name = "VERSION", requires = "lwm2m")]
    pub new_version: Option<String>,
    /// Seconds from Execute to the final Update Result.
    #[arg(
        long,
        default_value_t = 0.5,
        value_name = "SECONDS",
        requires = "lwm2m"
    )]
    pub install_time: f64,
}

fn seconds(name: &str, value: f64) -> anyhow::Result<Duration> {
    if !value.is_finite() || !(0.0..=86_400.0 * 30.0).contains(&value) {
        anyhow::bail!("{name} must be a number of seconds from 0 to 30 days");
    }
    Ok(Duration::from_secs_f64(value))
}

/// `lwota sim --lwm2m`.
pub fn run_cli(args: Lwm2mArgs, common: super::CommonArgs, json: bool) -> anyhow::Result<()> {
    if args.lifetime == 0 {
        anyhow::bail!("--lifetime must be at least 1 second");
    }
    let queue_share = match (args.queue_mode, args.queue_share) {
        (true, _) => 1.0,
        (false, Some(s)) if (0.0..=1.0).contains(&s) => s,
        (false, Some(_)) => anyhow::bail!("--queue-share must be between 0 and 1"),
        (false, None) => 0.0,
    };
    if !(0.0..=1.0).contains(&args.fail_share) {
        anyhow::bail!("--fail-share must be between 0 and 1");
    }
    let update_interval = match args.update_interval {
        Some(s) => seconds("--update-interval", s)?.max(Duration::from_millis(10)),
        None => Duration::from_secs(u64::from(args.lifetime)) / 2,
    };
    let config = Lwm2mConfig {
        server: common.server,
        devices: common.devices,
        prefix: common.prefix,
        version: common.version,
        new_version: args.new_version,
        v10: args.lwm2m_version == "1.0",
        lifetime: args.lifetime,
        update_interval,
        queue_share,
        queue_window: seconds("--queue-window", args.queue_window)?,
        delivery: args.delivery,
        fail_result: args.fail_result,
        fail_share: args.fail_share,
        install_time: seconds("--install-time", args.install_time)?,
        params: TransmissionParams::default(),
        duration: common.duration,
        stop_when_done: common.stop_when_done,
        linger: Duration::from_secs(2),
        deregister: true,
        start_spread: Duration::ZERO,
        live: None,
    };
    let server = config.server;
    let duration = config.duration;
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async move {
        super::probe(server, duration).await?;
        Ok::<_, anyhow::Error>(run(config).await)
    })?;
    let failures: Vec<String> = report
        .failures_by_result()
        .iter()
        .map(|(code, n)| format!("{n} with result {code}"))
        .collect();
    if json {
        let devices: Vec<serde_json::Value> = report
            .devices
            .iter()
            .map(|d| {
                serde_json::json!({
                    "name": d.name, "version": d.version, "queue": d.queue,
                    "registered": d.registered, "registrations": d.registrations,
                    "updates": d.updates, "downloaded_bytes": d.downloaded_bytes,
                    "updated": d.updated, "failed": d.failed, "result": d.result,
                    "errors": d.errors, "last_error": d.last_error,
                })
            })
            .collect();
        let by_result: serde_json::Map<String, serde_json::Value> = report
            .failures_by_result()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into()))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "devices": report.devices.len(), "registered": report.registered(),
                "updated": report.updated(), "failed": report.failed(),
                "failed_by_result": by_result, "registration_updates": report.updates(),
                "elapsed_s": report.elapsed.as_secs_f64(), "per_device": devices,
            })
        );
    } else {
        println!(
            "{} lwm2m devices: {} registered, {} updated, {} failed{}, {} registration updates in {:.1}s",
            report.devices.len(),
            report.registered(),
            report.updated(),
            report.failed(),
            if failures.is_empty() {
                String::new()
            } else {
                format!(" ({})", failures.join(", "))
            },
            report.updates(),
            report.elapsed.as_secs_f64()
        );
    }
    if report.registered() == 0 && !report.devices.is_empty() {
        let reason = report
            .devices
            .iter()
            .find_map(|d| d.last_error.clone())
            .unwrap_or_else(|| "no answer before --duration ran out".into());
        anyhow::bail!("no LwM2M device could register with {server}: {reason}");
    }
    Ok(())
}
