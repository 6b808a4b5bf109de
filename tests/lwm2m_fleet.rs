//! LwM2M fleets end to end over real UDP (issue 9, "Tests that must
//! exist"): one campaign updating 100 LwM2M devices by pull and 100 by
//! push, some in queue mode, with Update Result 5 and 6 failures, beside
//! polling devices, progress visible during pull; and a lossy link
//! (dropped ACKs, duplicated CONs both ways) that still ends in exactly
//! one update per device.

use crate::common;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TestServer;
use lwota::sim::lwm2m::{Delivery, Lwm2mConfig, Lwm2mReport};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(120);

fn fleet(server: SocketAddr, devices: usize, prefix: &str) -> Lwm2mConfig {
    Lwm2mConfig {
        start_spread: Duration::from_secs(1),
        ..common::lwm2m::fleet_config(server, devices, prefix, Duration::from_secs(150))
    }
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:05}")).collect()
}

fn tasks(server: &TestServer, campaign: u64) -> Vec<Value> {
    let (_, list) = server.get(&format!("/api/v1/campaigns/{campaign}/devices?limit=10000"));
    list.as_array()
        .cloned()
        .or_else(|| list["devices"].as_array().cloned())
        .unwrap_or_default()
}

fn start_campaign(server: &TestServer, devices: &[String], product: &str, image: &[u8]) -> u64 {
    for chunk in devices.chunks(1000) {
        let list: Vec<Value> = chunk
            .iter()
            .map(|n| json!({"name": n, "product": product, "version": "1.0"}))
            .collect();
        let (status, body) = server.post_json("/api/v1/devices", &json!(list));
        assert!(status == 201 || status == 200, "{status} {body}");
    }
    let fw = server.upload_ok(product, "2.0", image);
    let (status, body) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": fw, "target": {"devices": devices}}),
    );
    assert_eq!(status, 201, "{body}");
    body["id"].as_u64().expect("campaign id")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn check_fleet(report: &Lwm2mReport, failing: usize, code: u8) {
    let n = report.devices.len();
    assert_eq!(report.registered(), n, "{:?}", report.devices);
    assert_eq!(report.updated(), n - failing, "{:?}", report.devices);
    assert_eq!(report.failed(), failing, "{:?}", report.devices);
    assert_eq!(
        report.failures_by_result().get(&code).copied().unwrap_or(0),
        failing
    );
}

#[test]
fn one_campaign_updates_100_by_pull_100_by_push_and_polling_devices() {
    let server = TestServer::start();
    let pull = names("mx-pull-", 100);
    let push = names("mx-push-", 100);
    let poll = names("mx-poll-", 20);
    let all: Vec<String> = pull.iter().chain(&push).chain(&poll).cloned().collect();
    // Large enough that a pull download spans many blocks.
    let image = common::image(120_000, 7);
    let campaign = start_campaign(&server, &all, "mixprod", &image);

    // Progress of pulling devices, sampled while the fleet runs.
    let done = Arc::new(AtomicBool::new(false));
    let progress_seen = Arc::new(Mutex::new(Vec::<Value>::new()));
    let watcher = {
        let (done, seen) = (done.clone(), progress_seen.clone());
        let url = server.url(&format!("/api/v1/campaigns/{campaign}/devices?limit=10000"));
        let token = server.token.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let list = common::with_token(ureq::get(&url), &token)
                    .call()
                    .ok()
                    .and_then(|r| r.into_json::<Value>().ok());
                if let Some(Value::Array(list)) = list {
                    for t in list {
                        let name = t["device"].as_str().unwrap_or_default();
                        let p = t["progress"].as_f64().unwrap_or(0.0);
                        if name.starts_with("mx-pull-") && p > 0.0 && p < 100.0 {
                            seen.lock().unwrap().push(t);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let mut pull_cfg = fleet(server.coap, 100, "mx-pull-");
    pull_cfg.delivery = Delivery::Pull;
    pull_cfg.queue_share = 0.2;
    pull_cfg.fail_result = Some(5);
    pull_cfg.fail_share = 0.05;
    let mut push_cfg = fleet(server.coap, 100, "mx-push-");
    push_cfg.delivery = Delivery::Push;
    push_cfg.queue_share = 0.2;
    push_cfg.fail_result = Some(6);
    push_cfg.fail_share = 0.05;
    let mut poll_cfg = common::sim_config(&server, 20, "mx-poll-", "mixprod", "1.0");
    poll_cfg.duration = Duration::from_secs(150);
    let pollers = std::thread::spawn(move || common::run_sim(poll_cfg));
    let (pulled, pushed) = runtime().block_on(async {
        tokio::join!(
            lwota::sim::lwm2m::run(pull_cfg),
            lwota::sim::lwm2m::run(push_cfg)
        )
    });
    let polled = pollers.join().expect("poll sim");
    done.store(true, Ordering::Relaxed);
    watcher.join().expect("watcher");

    check_fleet(&pulled, 5, 5);
    check_fleet(&pushed, 5, 6);
    assert_eq!(polled.updated(), 20, "{:?}", polled.devices);
    assert!(
        pulled.devices.iter().filter(|d| d.queue).count() >= 20
            && pushed.devices.iter().filter(|d| d.queue).count() >= 20,
        "some devices in queue mode"
    );
    let body = server.wait_for(&format!("/api/v1/campaigns/{campaign}"), WAIT, |c| {
        c["counts"]["updated"].as_u64() == Some(210) && c["counts"]["failed"].as_u64() == Some(10)
    });
    let seen = progress_seen.lock().unwrap();
    assert!(
        !seen.is_empty(),
        "a pulling device's progress between 0 and 100 was visible: {body}"
    );
    let list = tasks(&server, campaign);
    let by_name: HashMap<&str, &Value> = list
        .iter()
        .map(|t| (t["device"].as_str().unwrap_or_default(), t))
        .collect();
    for (report, code, meaning) in [
        (&pulled, 5, "integrity check failure"),
        (&pushed, 6, "unsupported package type"),
    ] {
        for d in report.devices.iter().filter(|d| d.updated == 0) {
            let error = by_name[d.name.as_str()]["error"]
                .as_str()
                .unwrap_or_default();
            assert!(
                error.contains(&format!("update result {code}")) && error.contains(meaning),
                "{}: {error}",
                d.name
            );
        }
    }
    for d in pulled.devices.iter().chain(&pushed.devices) {
        if d.updated > 0 {
            assert_eq!(by_name[d.name.as_str()]["state"], "updated", "{d:?}");
        }
    }
}

/// A UDP relay between simulated clients and the server that drops every
/// third ACK and sends every fourth CON twice, in both directions.
struct LossyRelay {
    addr: SocketAddr,
    dropped: Arc<AtomicU64>,
    duplicated: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl LossyRelay {
    fn start(server: SocketAddr) -> LossyRelay {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        front
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let addr = front.local_addr().unwrap();
        let (dropped, duplicated, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (d, u, s) = (dropped.clone(), duplicated.clone(), stop.clone());
        std::thread::spawn(move || {
            // Client address → its own socket towards the server.
            let mut upstream: HashMap<SocketAddr, UdpSocket> = HashMap::new();
            let (mut acks, mut cons) = (0u64, 0u64);
            let mut buf = vec![0u8; 65_535];
            // `LWOTA_RELAY_TRACE=1`: one line per datagram on stderr.
            let trace = std::env::var_os("LWOTA_RELAY_TRACE").is_some();
            let started = std::time::Instant::now();
            let mut forward = |sock: &UdpSocket, bytes: &[u8], to: SocketAddr| {
                let mut fate = "";
                // CoAP type: bits 4-5 of the first byte (0 CON, 2 ACK).
                match bytes.first().map(|b| (b >> 4) & 0x3) {
                    Some(2) => {
                        acks += 1;
                        if acks % 3 == 0 {
                            d.fetch_add(1, Ordering::Relaxed);
                            fate = "DROPPED";
                        }
                    }
                    Some(0) => {
                        cons += 1;
                        if cons % 4 == 0 {
                            u.fetch_add(1, Ordering::Relaxed);
                            let _ = sock.send_to(bytes, to);
                            fate = "twice";
                        }
                    }
                    _ => {}
                }
                if trace {
                    eprintln!(
                        "relay {:>8.3} {} -> {to} {}",
                        started.elapsed().as_secs_f64(),
                        sock.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                        describe(bytes, fate)
                    );
                }
                if fate != "DROPPED" {
                    let _ = sock.send_to(bytes, to);
                }
            };
            while !s.load(Ordering::Relaxed) {
                while let Ok((n, client)) = front.recv_from(&mut buf) {
                    let up = upstream.entry(client).or_insert_with(|| {
                        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                        sock.set_nonblocking(true).unwrap();
                        sock
                    });
                    let bytes = buf[..n].to_vec();
                    forward(up, &bytes, server);
                }
                let clients: Vec<SocketAddr> = upstream.keys().copied().collect();
                for client in clients {
                    while let Ok((n, _)) = upstream[&client].recv_from(&mut buf) {
                        let bytes = buf[..n].to_vec();
                        forward(&front, &bytes, client);
                    }
                }
            }
        });
        LossyRelay {
            addr,
            dropped,
            duplicated,
            stop,
        }
    }
}

/// A datagram in one line, for the relay trace.
fn describe(bytes: &[u8], fate: &str) -> String {
    use coap_lite::{CoapOption, Packet};
    let Ok(p) = Packet::from_bytes(bytes) else {
        return format!("undecodable {} bytes {fate}", bytes.len());
    };
    let opt = |o: CoapOption| {
        p.get_option(o)
            .and_then(|v| v.front().cloned())
            .map(hex::encode)
            .unwrap_or_default()
    };
    let path: Vec<String> = p
        .get_option(CoapOption::UriPath)
        .map(|v| {
            v.iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let body = if p.payload.len() <= 8 {
        String::from_utf8_lossy(&p.payload).into_owned()
    } else {
        String::new()
    };
    format!(
        "{:?} {} /{} mid={} tok={} b1={} b2={} obs={} len={} {body:?} {fate}",
        p.header.get_type(),
        p.header.code,
        path.join("/"),
        p.header.message_id,
        hex::encode(p.get_token()),
        opt(CoapOption::Block1),
        opt(CoapOption::Block2),
        opt(CoapOption::Observe),
        p.payload.len()
    )
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `LWOTA_RELAY_TRACE=1` prints every datagram the relay passes, drops
/// or doubles; `LWOTA_TEST_LOG=lwota::server::lwm2m_shell=debug` the
/// server's side of each update.
#[test]
fn a_lossy_link_still_ends_in_exactly_one_update_per_device() {
    let server = TestServer::start();
    let relay = LossyRelay::start(server.coap);
    let devices = names("lossy-", 10);
    let campaign = start_campaign(&server, &devices, "lossyprod", &common::image(8_000, 3));
    // Push: the image goes through the relay too (a pull download would
    // go straight to the server's address).
    let mut config = fleet(relay.addr, 10, "lossy-");
    config.delivery = Delivery::Push;
    config.queue_share = 0.3;
    // Retransmissions after drops take time on a loaded machine.
    config.duration = Duration::from_secs(300);
    let report = runtime().block_on(lwota::sim::lwm2m::run(config));
    assert!(
        relay.dropped.load(Ordering::Relaxed) > 0,
        "ACKs were dropped"
    );
    assert!(
        relay.duplicated.load(Ordering::Relaxed) > 0,
        "CONs were duplicated"
    );
    assert_eq!(report.registered(), 10, "{:?}", report.devices);
    for d in &report.devices {
        assert_eq!(d.updated, 1, "installed exactly once: {d:?}");
    }
    server.wait_for(&format!("/api/v1/campaigns/{campaign}"), WAIT, |c| {
        c["counts"]["updated"].as_u64() == Some(10)
    });
    drop(relay);
}
