//! `lwota bench --only lwm2m`: simulated LwM2M clients (`sim::lwm2m`)
//! against one `lwota serve` child process on 127.0.0.1 (a child so that
//! its RSS is its own, not the simulator's): registration updates per
//! second with the whole fleet registered, server memory per registered
//! client, and a campaign updating many clients at once through Object 5.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::target::ServerProcess;
use super::{metrics, post_json, upload};
use crate::sim::lwm2m::{run, Delivery, LiveCounts, Lwm2mConfig};

pub struct Sizes {
    /// Registered clients while registration updates are measured.
    pub devices: usize,
    /// How long the fleet sends updates (after registering).
    pub window: Duration,
    /// Clients updated by one campaign, all at once.
    pub campaign: usize,
}

impl Sizes {
    pub fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                devices: 200,
                window: Duration::from_secs(2),
                campaign: 50,
            }
        } else {
            Sizes {
                devices: 10_000,
                window: Duration::from_secs(10),
                campaign: 1_000,
            }
        }
    }
}

fn register(server: &ServerProcess, prefix: &str, n: usize) -> anyhow::Result<()> {
    for start in (0..n).step_by(5_000) {
        let list: Vec<Value> = (start..(start + 5_000).min(n))
            .map(|i| json!({"name": format!("{prefix}{i:05}"), "product": "lwbench", "version": "1.0"}))
            .collect();
        post_json(server, "/api/v1/devices", &json!(list))?;
    }
    Ok(())
}

fn fleet(server: &ServerProcess, prefix: &str, devices: usize) -> Lwm2mConfig {
    Lwm2mConfig {
        server: server.coap,
        devices,
        prefix: prefix.into(),
        version: "1.0".into(),
        new_version: Some("2.0".into()),
        update_interval: Duration::from_secs(1),
        deregister: false,
        ..Lwm2mConfig::default()
    }
}

pub fn run_scenario(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    shards: Option<usize>,
    sizes: &Sizes,
) -> anyhow::Result<Value> {
    // A small image: the point is many clients at once, not bytes.
    let image = &dir.with_extension("img");
    std::fs::write(image, super::pseudo_random(16 * 1024))?;
    let server = ServerProcess::start(dir, shards)?;
    let n = sizes.devices;
    println!(
        "\n## lwm2m: {n} simulated LwM2M clients (one UDP socket each, updates every 1 s) against one server"
    );
    register(&server, "lwb-", n)?;
    std::thread::sleep(Duration::from_millis(300));
    let base_rss = server.rss_bytes();

    // The clients register (spread over `spread`), then each updates its
    // registration every second: the offered load is `n` updates/s. The
    // rate is measured over `window` once all are registered (or the
    // registration deadline passed).
    let live = Arc::new(LiveCounts::default());
    // Offered: n Registers over 2 s (5,000/s at full size), then one
    // Update per client per second.
    let spread = Duration::from_secs(if n > 1_000 { 2 } else { 1 });
    let register_deadline = spread + Duration::from_secs(60);
    let mut config = fleet(&server, "lwb-", n);
    config.stop_when_done = false;
    config.start_spread = spread;
    config.live = Some(live.clone());
    config.duration = register_deadline + sizes.window + Duration::from_secs(5);
    let started = Instant::now();
    let handle = runtime.spawn(run(config));
    // The registration rate between 10% and 90% registered: start-up
    // and the last stragglers' retransmissions are left out.
    let (mut t10, mut t90) = (None, None);
    loop {
        let registered = live.registered.load(Ordering::Relaxed);
        if t10.is_none() && registered * 10 >= n {
            t10 = Some(started.elapsed());
        }
        if t90.is_none() && registered * 10 >= n * 9 {
            t90 = Some(started.elapsed());
        }
        if registered >= n || started.elapsed() >= register_deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let registrations_per_second = match (t10, t90) {
        (Some(a), Some(b)) if b > a => Some((n * 8 / 10) as f64 / (b - a).as_secs_f64()),
        _ => None,
    };
    let register_seconds = started.elapsed().as_secs_f64();
    let registered = live.registered.load(Ordering::Relaxed);
    let before = live.updates.load(Ordering::Relaxed);
    let (commits_before, jobs_before) = metrics(&server)?;
    let t = Instant::now();
    std::thread::sleep(sizes.window);
    let updates = live.updates.load(Ordering::Relaxed) - before;
    let (commits_after, jobs_after) = metrics(&server)?;
    // Updates answered from memory write nothing (`lwm2m/live.rs`).
    let write_jobs = jobs_after.saturating_sub(jobs_before);
    let commits = commits_after.saturating_sub(commits_before);
    let update_seconds = t.elapsed().as_secs_f64();
    let per_second = updates as f64 / update_seconds;
    let rss = server.rss_bytes();
    handle.abort();
    let _ = runtime.block_on(handle);
    let per_device = rss.saturating_sub(base_rss) as f64 / registered.max(1) as f64;
    println!("registered clients            {registered} of {n} in {register_seconds:.1} s (offered over {:.0} s)", spread.as_secs_f64());
    match registrations_per_second {
        Some(r) => println!("registrations/s               {r:.0} (from 10% to 90% registered)"),
        None => println!("registrations/s               not measured (90% not reached)"),
    }
    println!("registration updates/s        {per_second:.0} ({updates} in {update_seconds:.1} s, offered {n}/s)");
    println!("store writes in that window    {write_jobs} write jobs in {commits} commits ({:.3} per update)", write_jobs as f64 / updates.max(1) as f64);
    println!(
        "server RSS                    {:.1} MB -> {:.1} MB ({per_device:.0} bytes per registered client)",
        base_rss as f64 / 1e6,
        rss as f64 / 1e6
    );

    // One campaign updating `campaign` clients at once by pull.
    let m = sizes.campaign;
    register(&server, "lwc-", m)?;
    let fw = upload(&server, "lwbench", "2.0", image)?;
    let names: Vec<String> = (0..m).map(|i| format!("lwc-{i:05}")).collect();
    post_json(
        &server,
        "/api/v1/campaigns",
        &json!({"firmware": fw, "target": {"devices": names}}),
    )?;
    let mut config = fleet(&server, "lwc-", m);
    config.delivery = Delivery::Pull;
    config.linger = Duration::from_millis(500);
    config.install_time = Duration::from_millis(100);
    config.duration = Duration::from_secs(300);
    config.start_spread = Duration::from_secs(2);
    let started = Instant::now();
    let campaign = runtime.block_on(run(config));
    let seconds = started.elapsed().as_secs_f64();
    let updated = campaign.updated();
    println!(
        "campaign through Object 5     {updated} of {m} clients updated at once in {seconds:.1} s ({:.0} clients/s, {} KiB image)",
        updated as f64 / seconds,
        std::fs::metadata(image).map(|m| m.len() / 1024).unwrap_or(0)
    );
    server.stop();
    Ok(json!({
        "devices": n, "registered": registered, "register_seconds": register_seconds,
        "register_spread_seconds": spread.as_secs_f64(),
        "registrations_per_second": registrations_per_second,
        "registration_updates": updates, "update_seconds": update_seconds,
        "registration_updates_per_second": per_second,
        "write_jobs_during_updates": write_jobs, "commits_during_updates": commits,
        "rss_before": base_rss, "rss_registered": rss, "bytes_per_registered_client": per_device,
        "campaign_devices": m, "campaign_updated": updated, "campaign_seconds": seconds,
    }))
}
