//! `lwota bench`: measures lwota against its peers and the UDP ceiling in
//! one run, so the ratios hold even when the machine's speed drifts.
//!
//! Scenarios (see docs/BENCHMARKS.md): `block2`, `peers`, `udp-limit`,
//! `poll`, `footprint`, `campaign`, `scheduler`, `lwm2m`. The server runs as a child process on
//! 127.0.0.1 with a temp data dir; the load comes from this process.

mod campaign; // issue 10: campaign creation, both insertion orders
mod dtls; // issue 11: CoAPS handshakes, blocks, idle-session memory
mod load;
mod lwm2m;
mod order; // sequential and scattered device orders, shared by the scenarios
mod scheduler; // issue 10: scheduler CPU and memory with 100 campaigns
mod target;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use load::Throughput;
use target::{Echo, ServerProcess};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Seconds-long smoke run with tiny sizes (CI uses it; the numbers mean little).
    #[arg(long)]
    quick: bool,
    /// Also write every figure to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run only these scenarios (repeatable): block2, peers, udp-limit, poll, footprint, campaign, scheduler, lwm2m, dtls.
    #[arg(long)]
    only: Vec<String>,
    /// `[coap] amplification_factor` of the block2 server (default: the
    /// server's, 3; 0 turns the bound off, to compare its cost).
    #[arg(long, value_name = "N")]
    amplification_factor: Option<usize>,
    /// Concurrent clients in the poll scenario (default 64, quick 8).
    #[arg(long)]
    poll_clients: Option<usize>,
    /// Devices of the `campaign` scenario's by-version campaign (default
    /// 1,000,000, quick 5,000).
    #[arg(long)]
    campaign_devices: Option<usize>,
    /// CoAP shards of the server under test (`[coap] shards`; default:
    /// the server's own default, one per core).
    #[arg(long)]
    shards: Option<usize>,
}

struct Sizes {
    image: usize,
    concurrency: Vec<usize>,
    peer_concurrency: Vec<usize>,
    poll_devices: Vec<usize>,
    poll_workers: usize,
    poll_time: Duration,
    footprint: Vec<usize>,
    campaign_listed: usize,
    campaign_all: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                image: 64 * 1024,
                concurrency: vec![1, 4],
                peer_concurrency: vec![4],
                poll_devices: vec![1_000],
                poll_workers: 8,
                poll_time: Duration::from_secs(1),
                footprint: vec![0, 1_000, 5_000],
                campaign_listed: 100,
                campaign_all: 5_000,
            }
        } else {
            Sizes {
                image: 1 << 20,
                concurrency: vec![1, 16, 64, 256],
                peer_concurrency: vec![1, 64],
                poll_devices: vec![10_000, 100_000],
                poll_workers: 64,
                poll_time: Duration::from_secs(5),
                footprint: vec![0, 100_000, 1_000_000],
                campaign_listed: 10_000,
                campaign_all: 1_000_000,
            }
        }
    }
}

const SCENARIOS: [&str; 9] = [
    "block2",
    "peers",
    "udp-limit",
    "poll",
    "footprint",
    "campaign",
    "scheduler",
    "lwm2m",
    "dtls",
];
const BLOCK: usize = 1024;

pub fn run_cli(args: BenchArgs) -> anyhow::Result<()> {
    for s in &args.only {
        if !SCENARIOS.contains(&s.as_str()) {
            bail!("unknown scenario {s:?}: one of {}", SCENARIOS.join(", "));
        }
    }
    let wanted = |s: &str| args.only.is_empty() || args.only.iter().any(|o| o == s);
    let mut sizes = Sizes::new(args.quick);
    if let Some(n) = args.campaign_devices {
        sizes.campaign_all = n.max(sizes.campaign_listed);
    }
    if let Some(n) = args.poll_clients {
        sizes.poll_workers = n.clamp(1, 4096);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let work = tempfile::tempdir().context("temp dir")?;
    let image_path = work.path().join("image.bin");
    std::fs::write(&image_path, pseudo_random(sizes.image))?;
    let mut report = serde_json::Map::new();
    report.insert("machine".into(), machine());
    report.insert("quick".into(), json!(args.quick));
    if let Some(n) = args.shards {
        report.insert("shards".into(), json!(n));
    }

    let mut lwota_block2: Vec<(usize, Throughput)> = Vec::new();
    if wanted("block2") || wanted("peers") || wanted("udp-limit") {
        let coap_lines = args
            .amplification_factor
            .map(|n| format!("amplification_factor = {n}\n"))
            .unwrap_or_default();
        let server =
            ServerProcess::start_with(&work.path().join("block2"), args.shards, &coap_lines)?;
        let id = upload(&server, "bench", "2.0", &image_path)?;
        let path = format!("/ota/fw/{id}");
        println!(
            "\n## block2: concurrent devices downloading {} KiB at {BLOCK}-byte blocks",
            sizes.image / 1024
        );
        print_header();
        for &n in &sizes.concurrency {
            let t = runtime.block_on(load::block2(
                server.coap,
                &path,
                sizes.image as u64,
                BLOCK,
                n,
            ));
            print_row(&format!("lwota x{n}"), &t, None);
            lwota_block2.push((n, t));
        }
        report.insert(
            "block2".into(),
            json!(lwota_block2
                .iter()
                .map(|(n, t)| json!({"devices": n, "result": t}))
                .collect::<Vec<_>>()),
        );
        server.stop();
    }
    let lwota_at = |n: usize| {
        lwota_block2
            .iter()
            .find(|(c, _)| *c == n)
            .map(|(_, t)| t.per_second)
    };

    if wanted("udp-limit") {
        println!("\n## udp-limit: plain UDP echo, same packet sizes and concurrency");
        print_header();
        let echo = Echo::start(BLOCK)?;
        let mut rows = Vec::new();
        for &n in &sizes.concurrency {
            let t = runtime.block_on(load::block2(
                echo.addr,
                "/echo",
                sizes.image as u64,
                BLOCK,
                n,
            ));
            let ratio = lwota_at(n).map(|l| l / t.per_second);
            print_row(
                &format!("echo x{n}"),
                &t,
                ratio.map(|r| format!("lwota = {:.0}% of it", r * 100.0)),
            );
            rows.push(json!({"devices": n, "result": t, "lwota_fraction": ratio}));
        }
        report.insert("udp_limit".into(), json!(rows));
    }

    if wanted("peers") {
        println!("\n## peers: the same download from other CoAP servers");
        print_header();
        let mut rows = Vec::new();
        type StartPeer<'a> = Box<dyn Fn() -> anyhow::Result<target::Peer> + 'a>;
        let peers: [(&str, StartPeer); 2] = [
            (
                "aiocoap-fileserver",
                Box::new(|| target::start_aiocoap(&image_path, &work.path().join("aiocoap"))),
            ),
            (
                "libcoap coap-server",
                Box::new(|| target::start_libcoap(&image_path)),
            ),
        ];
        std::fs::create_dir_all(work.path().join("aiocoap"))?;
        for (name, start) in peers.iter() {
            let peer = match start() {
                Ok(p) => p,
                Err(e) => {
                    println!("{name}: not run: {e}");
                    rows.push(json!({"peer": name, "error": e.to_string()}));
                    continue;
                }
            };
            for &n in &sizes.peer_concurrency {
                let t = runtime.block_on(load::block2(
                    peer.addr,
                    &peer.path,
                    sizes.image as u64,
                    BLOCK,
                    n,
                ));
                let ratio = lwota_at(n).map(|l| l / t.per_second);
                print_row(
                    &format!("{name} x{n}"),
                    &t,
                    ratio.map(|r| format!("lwota = {r:.1}x")),
                );
                rows.push(json!({"peer": name, "devices": n, "result": t, "lwota_ratio": ratio}));
            }
        }
        report.insert("peers".into(), json!(rows));
    }

    if wanted("dtls") {
        let server = ServerProcess::start(&work.path().join("dtls"), args.shards)?;
        let id = upload(&server, "bench", "2.0", &image_path)?;
        let dtls_sizes = dtls::DtlsSizes {
            sessions: if args.quick { 8 } else { 64 },
            time: Duration::from_secs(if args.quick { 1 } else { 5 }),
            idle_sessions: if args.quick { 32 } else { 1000 },
        };
        let result = dtls::run(&server, id, &image_path, sizes.image, &dtls_sizes)?;
        report.insert("dtls".into(), result);
        server.stop();
    }

    if wanted("poll") {
        println!(
            "\n## poll: durable polls/s ({} clients in a closed loop)",
            sizes.poll_workers
        );
        let server = ServerProcess::start(&work.path().join("poll"), args.shards)?;
        let mut registered = 0;
        let mut rows = Vec::new();
        println!(
            "{:<24} {:>10} {:>10} {:>9} {:>9} {:>10} {:>8}",
            "registered devices", "order", "polls/s", "p50 us", "p99 us", "fsyncs/s", "errors"
        );
        for &n in &sizes.poll_devices {
            register(&server, registered, n, "bench")?;
            registered = n;
            // Sequential names flatter a B-tree (neighbouring keys share
            // pages); the scattered order visits the same devices in a
            // permuted order, as a real fleet's wake-ups would.
            for order in [order::Order::Sequential, order::Order::Scattered] {
                let before = metrics(&server)?;
                let t = runtime.block_on(load::polls(
                    server.coap,
                    n,
                    sizes.poll_workers,
                    sizes.poll_time,
                    "bench",
                    order,
                ));
                let after = metrics(&server)?;
                let fsyncs = (after.0 - before.0) as f64 / t.seconds;
                println!(
                    "{:<24} {:>10} {:>10.0} {:>9} {:>9} {:>10.0} {:>8}",
                    n,
                    order.name(),
                    t.per_second,
                    t.p50_us,
                    t.p99_us,
                    fsyncs,
                    t.errors
                );
                rows.push(json!({"devices": n, "order": order.name(), "result": t, "fsyncs_per_second": fsyncs, "polls_per_fsync": t.per_second / fsyncs.max(1e-9)}));
            }
        }
        report.insert("poll".into(), json!(rows));
        server.stop();
    }

    if wanted("footprint") {
        let dir = work.path().join("fleet");
        let mut server = ServerProcess::start(&dir, args.shards)?;
        let mut rows = Vec::new();
        println!("\n## footprint: server RSS with idle registered devices");
        println!(
            "{:<12} {:>16} {:>18} {:>16}",
            "devices", "RSS after import", "RSS after restart", "bytes/device"
        );
        let mut registered = 0;
        let mut base = 0u64;
        for &n in &sizes.footprint {
            let t = Instant::now();
            register(&server, registered, n, "bench")?;
            let import_s = t.elapsed().as_secs_f64();
            registered = n;
            std::thread::sleep(Duration::from_millis(300));
            let loaded = server.rss_bytes();
            server.stop();
            server = ServerProcess::start(&dir, args.shards)?;
            std::thread::sleep(Duration::from_millis(300));
            let idle = server.rss_bytes();
            if n == 0 {
                base = idle;
            }
            let per_device = (n > 0).then(|| idle.saturating_sub(base) as f64 / n as f64);
            println!(
                "{:<12} {:>13.1} MB {:>15.1} MB {:>16}",
                n,
                loaded as f64 / 1e6,
                idle as f64 / 1e6,
                per_device
                    .map(|b| format!("{b:.1}"))
                    .unwrap_or_else(|| "-".into())
            );
            rows.push(json!({"devices": n, "rss_after_import": loaded, "rss_after_restart": idle, "bytes_per_device": per_device, "import_seconds": import_s}));
        }
        report.insert("footprint".into(), json!(rows));

        server.stop();
    }

    if wanted("campaign") {
        println!("\n## campaign: time to create (devices inserted in each order)");
        campaign::print_header();
        let mut rows = Vec::new();
        for order in [order::Order::Sequential, order::Order::Scattered] {
            rows.push(campaign::run(
                &work.path().join(format!("campaign-{}", order.name())),
                args.shards,
                &image_path,
                sizes.campaign_listed,
                sizes.campaign_all,
                order,
            )?);
        }
        report.insert("campaign".into(), json!(rows));
    }

    if wanted("scheduler") {
        println!("\n## scheduler: CPU and memory with concurrent rate-limited, waved campaigns");
        let result = scheduler::run(
            &work.path().join("scheduler"),
            &scheduler::Sizes::new(args.quick),
        )?;
        report.insert("scheduler".into(), result);
    }

    if wanted("lwm2m") {
        let sizes = lwm2m::Sizes::new(args.quick);
        let result =
            lwm2m::run_scenario(&runtime, &work.path().join("lwm2m"), args.shards, &sizes)?;
        report.insert("lwm2m".into(), result);
    }

    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&Value::Object(report))?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}

fn print_header() {
    println!(
        "{:<28} {:>10} {:>8} {:>8} {:>8} {:>7}  vs lwota",
        "target", "blocks/s", "MB/s", "p50 us", "p99 us", "errors"
    );
}

fn print_row(name: &str, t: &Throughput, note: Option<String>) {
    println!(
        "{:<28} {:>10.0} {:>8.2} {:>8} {:>8} {:>7}  {}",
        name,
        t.per_second,
        t.mb_per_second,
        t.p50_us,
        t.p99_us,
        t.errors,
        note.unwrap_or_default()
    );
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    json!({"cpu": cpu, "cores": cores})
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(600))
        .build()
}

fn check(result: Result<ureq::Response, ureq::Error>) -> anyhow::Result<Value> {
    match result {
        Ok(r) => Ok(r.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(code, r)) => bail!(
            "admin API said {code}: {}",
            r.into_string().unwrap_or_default()
        ),
        Err(e) => bail!("admin API: {e}"),
    }
}

fn post_json(server: &ServerProcess, path: &str, body: &Value) -> anyhow::Result<Value> {
    check(
        server
            .request(&agent(), "POST", path)
            .send_json(body.clone()),
    )
}

fn upload(
    server: &ServerProcess,
    product: &str,
    version: &str,
    image: &std::path::Path,
) -> anyhow::Result<u64> {
    let bytes = std::fs::read(image)?;
    let v = check(
        server
            .request(
                &agent(),
                "POST",
                &format!("/api/v1/firmware?product={product}&version={version}"),
            )
            .send_bytes(&bytes),
    )?;
    v["id"].as_u64().context("no firmware id")
}

/// Registers devices `from..to` (names from `load::device_name`) on version 1.0.
fn register(server: &ServerProcess, from: usize, to: usize, product: &str) -> anyhow::Result<()> {
    const CHUNK: usize = 50_000;
    let mut start = from;
    while start < to {
        let end = (start + CHUNK).min(to);
        let list: Vec<Value> = (start..end)
            .map(|i| json!({"name": load::device_name(i), "product": product, "version": "1.0"}))
            .collect();
        post_json(server, "/api/v1/devices", &json!(list))?;
        start = end;
    }
    Ok(())
}

/// (commits, write jobs) so far.
fn metrics(server: &ServerProcess) -> anyhow::Result<(u64, u64)> {
    let v = check(server.request(&agent(), "GET", "/api/v1/metrics").call())?;
    Ok((
        v["commits"].as_u64().unwrap_or(0),
        v["write_jobs"].as_u64().unwrap_or(0),
    ))
}
