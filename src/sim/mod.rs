//! A fleet of simulated devices that follow `docs/PROTOCOL.md`: poll,
//! download with Block2, verify SHA-256, report, "reboot" on the new
//! version, poll again. Used by tests, the CLI (`lwota sim`) and
//! benchmarks. Each device keeps a log of the transitions the server
//! acknowledged, so tests can check none was lost.

pub mod client;
mod device;
pub mod dtls_client;
pub mod lwm2m; // issue 11: a CoAPS device for tests and bench

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

pub use client::{ClientConfig, CoapClient};
pub use device::{Acked, DeviceOutcome};

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub server: SocketAddr,
    pub devices: usize,
    pub product: String,
    pub version: String,
    /// Device names are `{prefix}{index:05}`.
    pub prefix: String,
    /// Block size to ask for (16..1024).
    pub block: usize,
    /// Pause between polls with nothing to do.
    pub poll_interval: Duration,
    /// Probability that a device fails its update (reports `failed`).
    pub failure_rate: f64,
    pub client: ClientConfig,
    /// Stop after this long, whatever the state.
    pub duration: Duration,
    /// Stop a device once it has reached a final state for a task
    /// (updated or failed) and polled once more.
    pub stop_when_done: bool,
    /// When idle, hold an Observe on `/ota/{device}/task` and poll when a
    /// task is pushed (or every 10 poll intervals), instead of polling
    /// every interval; falls back to polling when the observation fails.
    pub observe: bool,
    /// Issue 11 item 5: the product's Ed25519 public key. When set, a
    /// task whose signed manifest is missing or does not verify is
    /// reported `failed` (and counted in `manifest_rejected`).
    pub verify_key: Option<[u8; 32]>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            server: ([127, 0, 0, 1], 5683).into(),
            devices: 10,
            product: "sim-product".into(),
            version: "1.0.0".into(),
            prefix: "sim-".into(),
            block: 1024,
            poll_interval: Duration::from_secs(1),
            failure_rate: 0.0,
            client: ClientConfig::default(),
            duration: Duration::from_secs(60),
            stop_when_done: true,
            observe: false,
            verify_key: None,
        }
    }
}

#[derive(Debug, Default)]
pub struct SimReport {
    pub devices: Vec<DeviceOutcome>,
    pub elapsed: Duration,
}

impl SimReport {
    pub fn updated(&self) -> usize {
        self.devices.iter().filter(|d| d.updated > 0).count()
    }
    pub fn failed(&self) -> usize {
        self.devices.iter().filter(|d| d.failed > 0).count()
    }
    pub fn polls(&self) -> u64 {
        self.devices.iter().map(|d| d.polls).sum()
    }
    pub fn blocks(&self) -> u64 {
        self.devices.iter().map(|d| d.blocks).sum()
    }
    /// Devices that refused a manifest (`--verify-key`).
    pub fn manifest_rejected(&self) -> usize {
        self.devices
            .iter()
            .filter(|d| d.manifest_rejected > 0)
            .count()
    }
}

/// Runs the fleet until every device is done or `duration` passes.
pub async fn run(config: SimConfig) -> SimReport {
    let started = Instant::now();
    let config = Arc::new(config);
    let outcomes = Arc::new(Mutex::new(Vec::with_capacity(config.devices)));
    let mut handles = Vec::with_capacity(config.devices);
    for i in 0..config.devices {
        let config = config.clone();
        let outcomes = outcomes.clone();
        handles.push(tokio::spawn(async move {
            let name = format!("{}{i:05}", config.prefix);
            let outcome = device::run(&config, name, started + config.duration).await;
            outcomes.lock().await.push(outcome);
        }));
    }
    for handle in handles {
        let _ = handle.await;
    }
    let mut devices = std::mem::take(&mut *outcomes.lock().await);
    devices.sort_by(|a, b| a.name.cmp(&b.name));
    SimReport {
        devices,
        elapsed: started.elapsed(),
    }
}

#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// CoAP address (IP:PORT) of the server the devices poll.
    #[arg(long, default_value = "127.0.0.1:5683", value_name = "ADDR")]
    coap: SocketAddr,
    /// Number of simulated devices.
    #[arg(long, default_value_t = 10, value_name = "N")]
    devices: usize,
    /// Product the devices report.
    #[arg(long, default_value = "sim-product", value_name = "PRODUCT")]
    product: String,
    /// Version the devices start on.
    #[arg(long, default_value = "1.0.0", value_name = "VERSION")]
    version: String,
    /// Device names are PREFIX00000, PREFIX00001, ...
    #[arg(long, default_value = "sim-", value_name = "PREFIX")]
    prefix: String,
    /// Block size to ask for: 16, 32, 64, 128, 256, 512 or 1024.
    #[arg(long, default_value_t = 1024, value_name = "BYTES")]
    block: usize,
    /// Seconds between polls when idle.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    poll_interval: f64,
    /// Fraction of updates that fail (0..1).
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    failure_rate: f64,
    /// Fraction of datagrams lost each way (0..1).
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    loss: f64,
    /// Stop after this many seconds, whatever the devices are doing.
    #[arg(long, default_value_t = 300.0, value_name = "SECONDS")]
    duration: f64,
    /// Keep polling after the update instead of stopping.
    #[arg(long)]
    forever: bool,
    #[command(flatten)]
    lwm2m: lwm2m::Lwm2mArgs,
    /// Hold an Observe on /ota/{device}/task when idle: tasks are pushed,
    /// polls happen only then (or every 10 poll intervals).
    #[arg(long)]
    observe: bool,
    /// Verify the signed manifest of every task with this Ed25519 public
    /// key (64 hex digits, `lwota key show --product P`); a missing or bad
    /// manifest makes the update fail with the reason.
    #[arg(long, value_name = "HEX")]
    verify_key: Option<String>,
}

/// A raw Ed25519 public key given as 64 hex digits.
pub fn parse_public_key(hex_key: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = hex::decode(hex_key.trim())
        .map_err(|e| anyhow::anyhow!("--verify-key must be hexadecimal: {e}"))?;
    let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        anyhow::anyhow!(
            "--verify-key must be a 32-byte Ed25519 public key (64 hex digits), not {} bytes",
            bytes.len()
        )
    })?;
    ed25519_dalek::VerifyingKey::from_bytes(&key)
        .map_err(|_| anyhow::anyhow!("--verify-key is not a valid Ed25519 public key"))?;
    Ok(key)
}

/// The arguments the poll and the LwM2M simulators share.
pub struct CommonArgs {
    pub server: SocketAddr,
    pub devices: usize,
    pub prefix: String,
    pub version: String,
    pub duration: Duration,
    pub stop_when_done: bool,
}

/// How long the start-up check waits for the server's answer to a CoAP
/// ping, per try, and how many tries it makes (so a server that is not
/// there is reported within about 3 s, not after the fleet's first
/// minute of retransmissions).
const PROBE_WAIT: Duration = Duration::from_secs(1);
const PROBE_TRIES: u32 = 3;

/// Checks that something answers CoAP at `server` with a CoAP ping (an
/// empty CON, RFC 7252 §4.3; any answer with its message id counts). A
/// connected socket also learns of ICMP "port unreachable" at once.
pub async fn probe(server: SocketAddr, within: Duration) -> anyhow::Result<()> {
    use coap_lite::{MessageClass, MessageType, Packet};
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(bind).await?;
    socket
        .connect(server)
        .await
        .map_err(|e| anyhow::anyhow!("cannot send to {server}: {e}"))?;
    let mut ping = Packet::new();
    ping.header.set_type(MessageType::Confirmable);
    ping.header.code = MessageClass::Empty;
    ping.header.message_id = rand::random();
    let bytes = ping
        .to_bytes()
        .map_err(|e| anyhow::anyhow!("cannot encode a CoAP ping: {e:?}"))?;
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 1500];
    for _ in 0..PROBE_TRIES {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let wait = PROBE_WAIT.min(deadline - now);
        let refused = |e: &std::io::Error| {
            anyhow::anyhow!(
                "no CoAP server at {server}: {e}; is `lwota serve` running there (see --coap)?"
            )
        };
        socket.send(&bytes).await.map_err(|e| refused(&e))?;
        let answer = tokio::time::timeout(wait, async {
            loop {
                let n = socket.recv(&mut buf).await?;
                if let Ok(p) = Packet::from_bytes(&buf[..n]) {
                    if p.header.message_id == ping.header.message_id {
                        return Ok::<(), std::io::Error>(());
                    }
                }
            }
        })
        .await;
        match answer {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => return Err(refused(&e)),
            Err(_) => continue,
        }
    }
    anyhow::bail!(
        "no CoAP server answers at {server} (no reply to a CoAP ping within {:.1}s); is `lwota serve` running there (see --coap)?",
        within.min(PROBE_WAIT * PROBE_TRIES).as_secs_f64()
    )
}

pub fn run_cli(args: SimArgs, json: bool) -> anyhow::Result<()> {
    if !(16..=1024).contains(&args.block) || !args.block.is_power_of_two() {
        anyhow::bail!("--block must be a power of two from 16 to 1024");
    }
    if !args.poll_interval.is_finite() || !args.duration.is_finite() {
        anyhow::bail!("--poll-interval and --duration must be numbers of seconds");
    }
    if !(0.0..=1.0).contains(&args.failure_rate) || !(0.0..=1.0).contains(&args.loss) {
        anyhow::bail!("--failure-rate and --loss must be between 0 and 1");
    }
    let verify_key = args
        .verify_key
        .as_deref()
        .map(parse_public_key)
        .transpose()?;
    let duration = Duration::from_secs_f64(args.duration.clamp(0.1, 86_400.0 * 30.0));
    let server = args.coap;
    if args.lwm2m.lwm2m {
        let common = CommonArgs {
            server,
            devices: args.devices,
            prefix: if args.prefix == "sim-" {
                "lwm2m-".into()
            } else {
                args.prefix
            },
            version: args.version,
            duration,
            stop_when_done: !args.forever,
        };
        return lwm2m::run_cli(args.lwm2m, common, json);
    }
    let config = SimConfig {
        server,
        devices: args.devices,
        product: args.product,
        version: args.version,
        prefix: args.prefix,
        block: args.block,
        poll_interval: Duration::from_secs_f64(args.poll_interval.clamp(0.01, 86_400.0)),
        failure_rate: args.failure_rate,
        client: ClientConfig {
            loss: args.loss,
            ..ClientConfig::default()
        },
        duration,
        stop_when_done: !args.forever,
        observe: args.observe,
        verify_key,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async move {
        // With simulated loss the ping may be lost too; the fleet's own
        // retransmissions cope with that, so only a loss-free run probes.
        if config.client.loss == 0.0 {
            probe(server, duration).await?;
        }
        Ok::<_, anyhow::Error>(run(config).await)
    })?;
    let answered = report
        .devices
        .iter()
        .any(|d| d.polls > 0 || d.blocks > 0 || !d.acked.is_empty());
    if json {
        let devices: Vec<serde_json::Value> = report
            .devices
            .iter()
            .map(|d| {
                serde_json::json!({
                    "name": d.name, "version": d.version, "polls": d.polls,
                    "blocks": d.blocks, "updated": d.updated, "failed": d.failed,
                    "errors": d.errors, "last_error": d.last_error,
                    "manifest_rejected": d.manifest_rejected,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "devices": report.devices.len(), "updated": report.updated(),
                "failed": report.failed(), "polls": report.polls(),
                "blocks": report.blocks(), "elapsed_s": report.elapsed.as_secs_f64(),
                "manifest_rejected": report.manifest_rejected(),
                "per_device": devices,
            })
        );
    } else {
        println!(
            "{} devices: {} updated, {} failed, {} polls, {} blocks in {:.1}s",
            report.devices.len(),
            report.updated(),
            report.failed(),
            report.polls(),
            report.blocks(),
            report.elapsed.as_secs_f64()
        );
        if let Some(why) = report
            .devices
            .iter()
            .find(|d| d.manifest_rejected > 0)
            .and_then(|d| d.last_error.as_deref())
        {
            println!(
                "{} devices refused the manifest: {}",
                report.manifest_rejected(),
                crate::cli::escape_line(why)
            );
        }
    }
    if !answered && !report.devices.is_empty() {
        let reason = report
            .devices
            .iter()
            .find_map(|d| d.last_error.clone())
            .unwrap_or_else(|| "no answer before --duration ran out".into());
        anyhow::bail!("no device got an answer from {server}: {reason}");
    }
    Ok(())
}
