//! End to end, over real UDP and HTTP sockets with redb in a temp dir: the
//! campaign engine's options (issue 10). A staged rollout of 1,000 devices
//! that pauses on wave failures and resumes; a dynamic campaign taking a
//! device registered after it; restarts in the middle of a scheduled, a
//! rate-limited and a waved campaign; every invalid option is a 400 that
//! names the field and creates nothing.

use crate::common;

use std::time::Duration;

use ciborium::Value as Cbor;
use coap_lite::{CoapOption, RequestType};
use common::device::{cbor, task_of, text, Device};
use common::*;
use lwota::sim::{ClientConfig, CoapClient};
use lwota::time::{Clock, ManualClock};
use serde_json::{json, Value};

fn register(server: &TestServer, names: &[String], version: &str) {
    let list: Vec<Value> = names
        .iter()
        .map(|n| json!({"name": n, "product": "p", "version": version}))
        .collect();
    let (status, body) = server.post_json("/api/v1/devices", &json!(list));
    assert_eq!(status, 201, "{body}");
}

fn create(server: &TestServer, body: Value) -> Value {
    let (status, c) = server.post_json("/api/v1/campaigns", &body);
    assert_eq!(status, 201, "{c}");
    c
}

fn campaign(server: &TestServer, id: u64) -> Value {
    server.get(&format!("/api/v1/campaigns/{id}")).1
}

/// One device of the fleet: polls, and reports `failed` or `updated` as
/// soon as it holds a task.
async fn step(client: &mut CoapClient, name: &str, fail: bool) -> bool {
    let body = cbor(&[("product", text("p")), ("version", text("1.0"))]);
    let poll = format!("/ota/{name}/poll");
    let cf = [(CoapOption::ContentFormat, vec![60])];
    let Ok(resp) = client.request(RequestType::Post, &poll, &cf, body).await else {
        return false;
    };
    let Ok(Cbor::Map(map)) = ciborium::from_reader::<Cbor, _>(resp.payload.as_slice()) else {
        return false;
    };
    let Some(task) = map
        .iter()
        .find(|(k, _)| k.as_text() == Some("task"))
        .and_then(|(_, v)| v.as_text().map(str::to_string))
    else {
        return false;
    };
    let report = if fail {
        cbor(&[
            ("task", text(&task)),
            ("state", text("failed")),
            ("error", text("flash write error")),
        ])
    } else {
        cbor(&[
            ("task", text(&task)),
            ("state", text("updated")),
            ("version", text("2.0")),
        ])
    };
    let path = format!("/ota/{name}/report");
    client
        .request(RequestType::Post, &path, &cf, report)
        .await
        .is_ok()
}

/// One round: every device not done yet polls once (20 clients at once).
fn round(
    rt: &tokio::runtime::Runtime,
    clients: &mut Vec<CoapClient>,
    fleet: &[(String, bool)],
    done: &mut [bool],
) {
    let workers = clients.len();
    let mut jobs = Vec::new();
    for (w, mut client) in clients.drain(..).enumerate() {
        let mine: Vec<(usize, String, bool)> = fleet
            .iter()
            .enumerate()
            .filter(|(i, _)| i % workers == w && !done[*i])
            .map(|(i, (n, f))| (i, n.clone(), *f))
            .collect();
        jobs.push(rt.spawn(async move {
            let mut finished = Vec::new();
            for (i, name, fail) in mine {
                if step(&mut client, &name, fail).await {
                    finished.push(i);
                }
            }
            (client, finished)
        }));
    }
    for job in jobs {
        let (client, finished) = rt.block_on(job).unwrap();
        clients.push(client);
        for i in finished {
            done[i] = true;
        }
    }
}

#[test]
fn staged_rollout_of_1000_pauses_on_wave_failures_and_resumes() {
    let server = TestServer::start();
    // Waves: 100 | 200 | 700 devices. 30% of wave 2 fail (threshold 20%).
    let fleet: Vec<(String, bool)> = (0..1000)
        .map(|i| (format!("w-{i:04}"), (100..300).contains(&i) && i % 10 < 3))
        .collect();
    let names: Vec<String> = fleet.iter().map(|(n, _)| n.clone()).collect();
    register(&server, &names, "1.0");
    let fw = server.upload_ok("p", "2.0", &image(2000, 1));
    let c = create(
        &server,
        json!({"firmware": fw, "target": {"all": true}, "waves": [
            {"percent": 10, "abort_failure_percent": 50},
            {"percent": 30, "abort_failure_percent": 20},
            {"percent": 100, "abort_failure_percent": 50}
        ]}),
    );
    let id = c["id"].as_u64().unwrap();
    assert_eq!(c["waves"][1]["devices"], 200);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut clients: Vec<CoapClient> = (0..20)
        .map(|_| {
            rt.block_on(CoapClient::connect(server.coap, ClientConfig::default()))
                .unwrap()
        })
        .collect();
    let mut done = vec![false; fleet.len()];
    let mut paused = None;
    for _ in 0..60 {
        round(&rt, &mut clients, &fleet, &mut done);
        let c = campaign(&server, id);
        if c["status"] == "paused" {
            paused = Some(c);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let paused = paused.expect("campaign paused on wave 2 failures");
    assert!(
        paused["waves"][1]["failed"].as_u64().unwrap() > 40,
        "{paused}"
    );
    // A few more rounds: wave 3 never starts while paused.
    for _ in 0..3 {
        round(&rt, &mut clients, &fleet, &mut done);
    }
    let (_, tasks) = server.get(&format!("/api/v1/campaigns/{id}/devices?limit=10000"));
    let tasks = tasks.as_array().unwrap();
    let wave3_started = tasks
        .iter()
        .filter(|t| t["wave"] == 2 && t["state"] != "queued")
        .count();
    assert_eq!(wave3_started, 0);
    assert!(tasks
        .iter()
        .filter(|t| t["wave"] == 2)
        .all(|t| t["pending"] == "wave"));
    assert!(campaign(&server, id)["pending"]["wave"].as_u64().unwrap() >= 700);

    let (status, body) = server.post_json(&format!("/api/v1/campaigns/{id}/resume"), &json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "running");
    for _ in 0..100 {
        if done.iter().all(|d| *d) {
            break;
        }
        round(&rt, &mut clients, &fleet, &mut done);
        std::thread::sleep(Duration::from_millis(20));
    }
    let c = server.wait_for(
        &format!("/api/v1/campaigns/{id}"),
        Duration::from_secs(20),
        |c| c["status"] == "finished",
    );
    assert_eq!(c["counts"]["failed"], 60);
    assert_eq!(c["counts"]["updated"], 940);
}

#[test]
fn dynamic_campaign_picks_up_a_device_registered_after_it_started() {
    let server = TestServer::start();
    register(&server, &["early".to_string()], "1.0");
    let fw = server.upload_ok("p", "2.0", &image(500, 2));
    let c = create(
        &server,
        json!({"firmware": fw, "target": {"source_versions": ["1.0"]}, "dynamic": true}),
    );
    let id = c["id"].as_u64().unwrap();
    assert_eq!(c["total"], 1);
    register(&server, &["late".to_string()], "1.0");
    let mut late = Device::new(server.coap, "late", "p");
    let answer = late.poll("1.0");
    let (task, _) = task_of(&answer);
    assert_eq!(task, format!("c{id}"));
    // A device that only appears by polling (auto-registered) too.
    let mut new = Device::new(server.coap, "polled-in", "p");
    assert!(new.poll("1.0").contains_key("task"));
    assert_eq!(campaign(&server, id)["total"], 3);
}

fn restartable(clock_ms: u64) -> (TestServer, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let clock = std::sync::Arc::new(ManualClock::new(clock_ms));
    let server = TestServer::start_with(test_config(tmp.path()), Some(clock));
    (server, tmp)
}

fn restart(server: &mut TestServer, dir: &tempfile::TempDir, advance_ms: u64) -> TestServer {
    let now = server.clock.as_ref().unwrap().now_ms() + advance_ms;
    server.stop();
    let clock = std::sync::Arc::new(ManualClock::new(now));
    TestServer::start_with(test_config(dir.path()), Some(clock))
}

#[test]
fn restart_resumes_scheduled_rate_limited_and_waved_campaigns() {
    const T: u64 = 1_800_000_000_000;
    let (mut server, dir) = restartable(T);
    let names = |p: &str, n: usize| -> Vec<String> { (0..n).map(|i| format!("{p}{i}")).collect() };
    // Three products, one campaign each.
    for (product, n) in [("s", 1), ("r", 3), ("w", 2)] {
        let list: Vec<Value> = names(product, n)
            .iter()
            .map(|d| json!({"name": d, "product": product, "version": "1.0"}))
            .collect();
        assert_eq!(server.post_json("/api/v1/devices", &json!(list)).0, 201);
    }
    let fw = |server: &TestServer, product: &str| server.upload_ok(product, "2.0", &image(300, 3));
    let start_at = lwota::time::Timestamp::from_millis(T + 10 * 60_000).rfc3339();
    let scheduled = create(
        &server,
        json!({"firmware": fw(&server, "s"), "target": {"all": true}, "start_at": start_at}),
    );
    assert_eq!(scheduled["status"], "scheduled");
    assert_eq!(scheduled["pending"]["scheduled"], 1);
    let rated = create(
        &server,
        json!({"firmware": fw(&server, "r"), "target": {"all": true},
               "rate": {"pack_size": 1, "pack_interval_s": 60}}),
    );
    let waved = create(
        &server,
        json!({"firmware": fw(&server, "w"), "target": {"all": true},
               "waves": [{"percent": 50, "abort_failure_percent": 0}, {"percent": 100}]}),
    );
    let id = |c: &Value| c["id"].as_u64().unwrap();
    let poll = |server: &TestServer, name: &str, product: &str| {
        Device::new(server.coap, name, product).poll("1.0")
    };
    assert!(poll(&server, "s0", "s").is_empty());
    assert!(poll(&server, "r0", "r").contains_key("task"));
    assert!(poll(&server, "r1", "r").is_empty());
    assert!(poll(&server, "w0", "w").contains_key("task"));
    assert!(poll(&server, "w1", "w").is_empty());

    // Restart 30 s later: the rate window and the closed wave hold.
    server = restart(&mut server, &dir, 30_000);
    assert!(poll(&server, "r1", "r").is_empty(), "same rate window");
    assert!(poll(&server, "w1", "w").is_empty(), "wave 2 still closed");
    assert!(poll(&server, "s0", "s").is_empty(), "not started yet");
    let tasks = server
        .get(&format!("/api/v1/campaigns/{}/devices", id(&rated)))
        .1;
    assert!(tasks
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["pending"] == "rate_limited"));
    let mut w0 = Device::new(server.coap, "w0", "w");
    assert_eq!(
        w0.report(&format!("c{}", id(&waved)), "updated", &[]),
        coap_lite::ResponseType::Changed
    );
    server.wait_for(
        &format!("/api/v1/campaigns/{}", id(&waved)),
        Duration::from_secs(10),
        |c| c["waves"][1]["open"] == true,
    );
    assert!(poll(&server, "w1", "w").contains_key("task"));

    // Restart past the window and the start time: both go on.
    server = restart(&mut server, &dir, 10 * 60_000);
    server.wait_for(
        &format!("/api/v1/campaigns/{}", id(&scheduled)),
        Duration::from_secs(10),
        |c| c["status"] == "running",
    );
    assert!(poll(&server, "s0", "s").contains_key("task"));
    assert!(poll(&server, "r1", "r").contains_key("task"));
    assert!(poll(&server, "r2", "r").is_empty(), "one per window");
}

#[test]
fn every_invalid_option_is_a_400_naming_the_field_and_creates_nothing() {
    let server = TestServer::start();
    register(&server, &["d".to_string()], "1.0");
    let fw = server.upload_ok("p", "2.0", &image(300, 4));
    let soon = lwota::time::Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            + 60_000,
    )
    .rfc3339();
    let late = lwota::time::Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            + 8 * 24 * 3600 * 1000,
    )
    .rfc3339();
    let ok_start = lwota::time::Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            + 3600 * 1000,
    )
    .rfc3339();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"start_at": soon}), "start_at"),
        (json!({"start_at": late}), "start_at"),
        (json!({"start_at": "tomorrow"}), "start_at"),
        (json!({"start_at": ok_start, "dynamic": true}), "start_at"),
        (
            json!({"retry": {"interval_s": 60, "max": 1}}),
            "retry.interval_s",
        ),
        (json!({"retry": {"interval_s": 600, "max": 3}}), "retry.max"),
        (
            json!({"retry": {"interval_s": "600", "max": 1}}),
            "retry.interval_s",
        ),
        (
            json!({"waves": [{"percent": 50}, {"percent": 40}]}),
            "waves",
        ),
        (
            json!({"waves": [{"percent": 50}, {"percent": 150}]}),
            "waves",
        ),
        (
            json!({"rate": {"pack_size": 0, "pack_interval_s": 60}}),
            "rate.pack_size",
        ),
        (json!({"retry_interval": 600}), "retry_interval"),
        (json!({"policy": "fast"}), "policy"),
        (
            json!({"rate": {"pack_size": 1, "pack_interval_s": 60, "burst": 2}}),
            "burst",
        ),
        (json!({"timeout_s": 0}), "timeout_s"),
        (json!({"min_battery": 101}), "min_battery"),
        (json!({"kind": "verify"}), "kind"),
        (json!({"end_at": ok_start}), "end_at"),
    ];
    for (extra, field) in cases {
        let mut body = json!({"firmware": fw, "target": {"all": true}});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, err) = server.post_json("/api/v1/campaigns", &body);
        assert_eq!(status, 400, "{body} -> {err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{body}: {message:?} names {field}");
    }
    let (_, list) = server.get("/api/v1/campaigns");
    assert_eq!(list, json!([]));
    // And the valid form of each is accepted.
    let c = create(
        &server,
        json!({"firmware": fw, "target": {"all": true}, "start_at": ok_start,
               "retry": {"interval_s": 600, "max": 5}, "timeout_s": 120,
               "rate": {"pack_size": 10, "pack_interval_s": 60}, "min_battery": 20,
               "waves": [{"percent": 50, "abort_failure_percent": 10}, {"percent": 100}]}),
    );
    assert_eq!(c["status"], "scheduled");
    assert_eq!(c["retry"]["max"], 5);
}

#[test]
fn conflicts_verification_and_per_device_operations() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.campaigns.require_verified = true;
    let server = TestServer::start_with(config, None);
    register(&server, &["a".to_string(), "b".to_string()], "1.0");
    let fw2 = server.upload_ok("p", "2.0", &image(300, 5));
    let fw3 = server.upload_ok("p", "3.0", &image(300, 6));
    let (status, err) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": fw2, "target": {"all": true}}),
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("firmware_unverified"))
    );
    let verify = create(
        &server,
        json!({"firmware": fw2, "target": {"devices": ["a"]}, "kind": "verify"}),
    );
    let mut a = Device::new(server.coap, "a", "p");
    let (task, _) = task_of(&a.poll("1.0"));
    a.report(&task, "updated", &[("version", text("2.0"))]);
    let (_, fw) = server.get(&format!("/api/v1/firmware/{fw2}"));
    assert_eq!(fw["verified"], true, "{fw}");
    assert_eq!(
        campaign(&server, verify["id"].as_u64().unwrap())["status"],
        "finished"
    );

    let batch = create(&server, json!({"firmware": fw2, "target": {"all": true}}));
    let bid = batch["id"].as_u64().unwrap();
    let (status, err) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": fw3, "target": {"source_versions": ["1.0"]}, "force": true}),
    );
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "campaign_conflict");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&bid.to_string()));

    let (status, t) = server.post_json(
        &format!("/api/v1/campaigns/{bid}/devices/b/cancel"),
        &json!({}),
    );
    assert_eq!(
        (status, t["error"].as_str()),
        (200, Some("cancelled")),
        "{t}"
    );
    let (status, t) = server.post_json(
        &format!("/api/v1/campaigns/{bid}/devices/b/retry"),
        &json!({}),
    );
    assert_eq!((status, t["state"].as_str()), (200, Some("queued")), "{t}");
    let (status, c) = server.post_json(&format!("/api/v1/campaigns/{bid}/retry"), &json!({}));
    assert_eq!((status, c["requeued"].as_u64()), (200, Some(0)), "{c}");
    let (status, _) = server.post_json(&format!("/api/v1/campaigns/{bid}/resume"), &json!({}));
    assert_eq!(status, 409);
}
