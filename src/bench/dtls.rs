//! `lwota bench --only dtls`: CoAPS (DTLS 1.2 PSK) handshakes per second
//! and Block2 blocks per second at N concurrent sessions, beside libcoap's
//! `coap-server-openssl` in the same run, and the server's memory per idle
//! DTLS session. Clients are `sim::dtls_client` devices on threads.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use serde_json::{json, Value};

use super::target::ServerProcess;
use crate::coap::block::Block;
use crate::sim::dtls_client::DtlsClient;

const KEY: &[u8] = b"bench-psk-key-01";
const CIPHER: &str = "PSK-AES128-CCM8";

/// Settings of one run.
pub struct DtlsSizes {
    pub sessions: usize,
    pub time: Duration,
    pub idle_sessions: usize,
}

/// A CoAPS server to measure: its address, the identity of session `i`
/// and the Block2 path.
struct Target {
    addr: SocketAddr,
    identity: Box<dyn Fn(usize) -> String + Sync>,
    path: String,
}

fn connect(t: &Target, i: usize) -> Option<DtlsClient> {
    DtlsClient::connect(
        t.addr,
        "127.0.0.1:0",
        &(t.identity)(i),
        KEY,
        CIPHER,
        Duration::from_secs(10),
    )
    .ok()
}

/// Full handshakes (new socket, cookie exchange, close_notify) per second.
fn handshakes(t: &Target, workers: usize, time: Duration) -> (f64, u64) {
    let done = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for w in 0..workers {
            let (done, failed) = (&done, &failed);
            s.spawn(move || {
                while started.elapsed() < time {
                    match connect(t, w) {
                        Some(c) => {
                            c.close();
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    (
        done.load(Ordering::Relaxed) as f64 / secs,
        failed.load(Ordering::Relaxed),
    )
}

fn block_get(path: &str, num: u32) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::Request(RequestType::Get);
    for seg in path.trim_start_matches('/').split('/') {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    let block = Block {
        num,
        more: false,
        szx: 6,
    };
    p.add_option(CoapOption::Block2, block.encode());
    p
}

/// Block2 responses per second over `workers` established sessions, each
/// walking the image block by block in a closed loop.
fn blocks(t: &Target, workers: usize, image: usize, time: Duration) -> (f64, u64) {
    let done = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let nblocks = image.div_ceil(1024) as u32;
    let clients: Vec<Option<DtlsClient>> = (0..workers).map(|i| connect(t, i)).collect();
    let started = Instant::now();
    std::thread::scope(|s| {
        for client in clients {
            let (done, failed) = (&done, &failed);
            s.spawn(move || {
                let Some(mut c) = client else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let mut num = 0;
                while started.elapsed() < time {
                    match c.request(block_get(&t.path, num)) {
                        Some(r)
                            if r.header.code == MessageClass::Response(ResponseType::Content) =>
                        {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    num = (num + 1) % nblocks;
                }
                c.close();
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    (
        done.load(Ordering::Relaxed) as f64 / secs,
        failed.load(Ordering::Relaxed),
    )
}

/// Registers `n` devices with PSKs `bench-dtls-{i}-id` on `server`.
fn provision(server: &ServerProcess, n: usize) -> anyhow::Result<()> {
    let agent = ureq::Agent::new();
    let devices: Vec<Value> = (0..n)
        .map(|i| json!({"name": format!("bench-dtls-{i}"), "product": "bench"}))
        .collect();
    server
        .request(&agent, "POST", "/api/v1/devices")
        .send_json(json!(devices))
        .context("registering devices")?;
    let creds: Vec<Value> = (0..n)
        .map(|i| {
            json!({"device": format!("bench-dtls-{i}"), "identity": format!("bench-dtls-{i}-id"), "key": hex::encode(KEY)})
        })
        .collect();
    server
        .request(&agent, "PUT", "/api/v1/psks")
        .send_json(json!({ "credentials": creds }))
        .context("setting PSKs")?;
    Ok(())
}

fn start_libcoap_openssl(
    image: &std::path::Path,
) -> anyhow::Result<(std::process::Child, SocketAddr)> {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new("coap-server-openssl")
        .args([
            "-A",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-d",
            "10",
            "-v",
            "0",
        ])
        .args(["-k", std::str::from_utf8(KEY)?])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("coap-server-openssl not found (apt install libcoap3-bin)")?;
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new("coap-client-openssl")
        .args(["-m", "put", "-b", "1024", "-f"])
        .arg(image)
        .arg(format!("coap://127.0.0.1:{port}/fw"))
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        return Err(anyhow!("uploading the image to coap-server-openssl failed"));
    }
    // libcoap serves DTLS on port + 1.
    Ok((child, SocketAddr::from(([127, 0, 0, 1], port + 1))))
}

fn row(name: &str, what: &str, per_second: f64, failed: u64) {
    println!("{name:<32} {what:<14} {per_second:>10.0}/s {failed:>8} failed");
}

pub fn run(
    server: &ServerProcess,
    firmware: u64,
    image_path: &std::path::Path,
    image: usize,
    sizes: &DtlsSizes,
) -> anyhow::Result<Value> {
    let addr = server
        .coaps
        .ok_or_else(|| anyhow!("the server printed no CoAPS address"))?;
    provision(server, sizes.sessions.max(sizes.idle_sessions))?;
    let lwota = Target {
        addr,
        identity: Box::new(|i| format!("bench-dtls-{i}-id")),
        path: format!("/ota/fw/{firmware}"),
    };
    println!(
        "\n## dtls: CoAPS ({CIPHER}), {} concurrent sessions, {} s each",
        sizes.sessions,
        sizes.time.as_secs()
    );
    let (hs, hs_failed) = handshakes(&lwota, sizes.sessions, sizes.time);
    row("lwota", "handshakes", hs, hs_failed);
    let (bl, bl_failed) = blocks(&lwota, sizes.sessions, image, sizes.time);
    row("lwota", "blocks", bl, bl_failed);
    let mut out = json!({
        "sessions": sizes.sessions,
        "cipher": CIPHER,
        "lwota": {"handshakes_per_s": hs, "handshakes_failed": hs_failed,
                  "blocks_per_s": bl, "blocks_failed": bl_failed},
    });
    match start_libcoap_openssl(image_path) {
        Ok((mut child, peer)) => {
            let libcoap = Target {
                addr: peer,
                identity: Box::new(|i| format!("bench-{i}")),
                path: "/fw".into(),
            };
            let (phs, phs_failed) = handshakes(&libcoap, sizes.sessions, sizes.time);
            row("libcoap coap-server-openssl", "handshakes", phs, phs_failed);
            let (pbl, pbl_failed) = blocks(&libcoap, sizes.sessions, image, sizes.time);
            row("libcoap coap-server-openssl", "blocks", pbl, pbl_failed);
            out["libcoap"] = json!({"handshakes_per_s": phs, "handshakes_failed": phs_failed,
                                   "blocks_per_s": pbl, "blocks_failed": pbl_failed});
            let _ = child.kill();
            let _ = child.wait();
        }
        Err(e) => {
            println!("libcoap coap-server-openssl: not run: {e}");
            out["libcoap"] = json!({"error": e.to_string()});
        }
    }
    // Memory per idle session: RSS before and after N sessions that stay.
    let before = server.rss_bytes();
    let idle: Vec<DtlsClient> = (0..sizes.idle_sessions)
        .filter_map(|i| connect(&lwota, i))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let after = server.rss_bytes();
    let per = after.saturating_sub(before) as f64 / idle.len().max(1) as f64;
    println!(
        "{:<32} {} idle sessions: {:.1} KiB each (RSS {} -> {} KiB)",
        "lwota",
        idle.len(),
        per / 1024.0,
        before / 1024,
        after / 1024
    );
    out["idle"] = json!({"sessions": idle.len(), "bytes_per_session": per,
                         "rss_before": before, "rss_after": after});
    for c in idle {
        c.close();
    }
    Ok(out)
}
