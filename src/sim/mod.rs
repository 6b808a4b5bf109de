//! A fleet of simulated devices that follow `docs/PROTOCOL.md`: poll,
//! download with Block2, verify SHA-256, report, "reboot" on the new
//! version, poll again. Used by tests, the CLI (`lwota sim`) and
//! benchmarks. Each device keeps a log of the transitions the server
//! acknowledged, so tests can check none was lost.

pub mod client;
mod device;

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
    /// CoAP address of the server.
    #[arg(long, default_value = "127.0.0.1:5683")]
    coap: SocketAddr,
    #[arg(long, default_value_t = 10)]
    devices: usize,
    #[arg(long, default_value = "sim-product")]
    product: String,
    #[arg(long, default_value = "1.0.0")]
    version: String,
    #[arg(long, default_value = "sim-")]
    prefix: String,
    #[arg(long, default_value_t = 1024)]
    block: usize,
    /// Seconds between polls when idle.
    #[arg(long, default_value_t = 1.0)]
    poll_interval: f64,
    /// Fraction of updates that fail (0..1).
    #[arg(long, default_value_t = 0.0)]
    failure_rate: f64,
    /// Fraction of datagrams lost each way (0..1).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300.0)]
    duration: f64,
    /// Keep polling after the update instead of stopping.
    #[arg(long)]
    forever: bool,
}

pub fn run_cli(args: SimArgs) -> anyhow::Result<()> {
    if !(16..=1024).contains(&args.block) || !args.block.is_power_of_two() {
        anyhow::bail!("--block must be a power of two from 16 to 1024");
    }
    if !args.poll_interval.is_finite() || !args.duration.is_finite() {
        anyhow::bail!("--poll-interval and --duration must be numbers of seconds");
    }
    if !(0.0..=1.0).contains(&args.failure_rate) || !(0.0..=1.0).contains(&args.loss) {
        anyhow::bail!("--failure-rate and --loss must be between 0 and 1");
    }
    let config = SimConfig {
        server: args.coap,
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
        duration: Duration::from_secs_f64(args.duration.clamp(0.1, 86_400.0 * 30.0)),
        stop_when_done: !args.forever,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(run(config));
    println!(
        "{} devices: {} updated, {} failed, {} polls, {} blocks in {:.1}s",
        report.devices.len(),
        report.updated(),
        report.failed(),
        report.polls(),
        report.blocks(),
        report.elapsed.as_secs_f64()
    );
    Ok(())
}
