//! The LwM2M server end to end over real UDP: registration interface
//! (Register, Block1 registration, Update, De-register, version
//! negotiation, bad input), the operator view, and firmware updates
//! through Object 5 by pull and by push, with a scripted client
//! (`common/lwm2m.rs`) that speaks coap-lite packets.

use crate::common;

use std::time::Duration;

use coap_lite::ResponseType;
use common::lwm2m::{Lwm2mDevice, PAYLOAD};
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

fn fast_config(dir: &std::path::Path) -> lwota::config::Config {
    let mut config = test_config(dir);
    config.lwm2m.check_interval_ms = 50;
    config
}

fn start() -> TestServer {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(fast_config(tmp.path()), None);
    // The temp dir lives as long as the server (kept in a leak-free way:
    // the test process ends right after).
    std::mem::forget(tmp);
    server
}

fn device_view(server: &TestServer, name: &str) -> Value {
    let (status, body) = server.get(&format!("/api/v1/devices/{name}"));
    assert_eq!(status, 200, "{body}");
    body
}

fn history_events(server: &TestServer, name: &str) -> Vec<String> {
    let (_, h) = server.get(&format!("/api/v1/devices/{name}/history"));
    h.as_array()
        .or_else(|| h["entries"].as_array())
        .map(|a| {
            a.iter()
                .map(|e| e["event"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn campaign(server: &TestServer, firmware: u64, devices: &[&str]) -> u64 {
    let (status, c) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": firmware, "target": {"devices": devices}}),
    );
    assert_eq!(status, 201, "{c}");
    c["id"].as_u64().unwrap()
}

fn task(server: &TestServer, campaign: u64, device: &str) -> Value {
    let (_, list) = server.get(&format!("/api/v1/campaigns/{campaign}/devices"));
    list.as_array()
        .unwrap()
        .iter()
        .find(|t| t["device"] == device)
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn register_update_deregister_and_the_operator_view() {
    let server = start();
    let mut dev = Lwm2mDevice::new(server.coap, "lw-1", "1.0");
    assert_eq!(dev.register("1.1", "U", PAYLOAD), ResponseType::Created);
    // The server reads /3/0/3 (with Accept) and records the version.
    assert!(dev.serve_until(WAIT, |d| d.log.iter().any(|l| l == "Get /3/0/3")));
    let view = server.wait_for("/api/v1/devices/lw-1", WAIT, |v| v["version"] == "1.0");
    let lw = &view["lwm2m"];
    assert_eq!(lw["registered"], true);
    assert_eq!(lw["lwm2m_version"], "1.1");
    assert_eq!(lw["binding"], "U");
    assert_eq!(lw["lifetime"], 300);
    assert_eq!(lw["queue_mode"], false);
    assert_eq!(lw["objects"], json!(["/1/0", "/3/0", "/5/0"]));
    assert_eq!(
        view["product"], "lwm2m",
        "auto-registered with the default product"
    );

    assert_eq!(dev.update(), ResponseType::Changed);
    // A Register again (queue-mode clients do it on every wake-up)
    // replaces the registration: the old location is gone.
    let old = dev.location.clone().unwrap();
    assert_eq!(dev.register("1.1", "U", PAYLOAD), ResponseType::Created);
    assert_ne!(dev.location.clone().unwrap(), old);
    let mut stale = Lwm2mDevice::new(server.coap, "lw-1", "1.0");
    stale.location = Some(old);
    assert_eq!(stale.update(), ResponseType::NotFound);

    assert_eq!(dev.deregister(), ResponseType::Deleted);
    assert_eq!(dev.update(), ResponseType::NotFound);
    // The last known registration stays visible, not registered.
    let lw = device_view(&server, "lw-1")["lwm2m"].clone();
    assert_eq!(lw["registered"], false, "{lw}");
    assert_eq!(lw["ended_by"], "deregistered", "{lw}");
    assert_eq!(lw["lwm2m_version"], "1.1", "{lw}");
    assert_eq!(lw["binding"], "U", "{lw}");
    assert_eq!(lw["objects"], json!(["/1/0", "/3/0", "/5/0"]), "{lw}");
    assert!(
        lw["ended_at"].is_string() && lw["last_update"].is_string(),
        "{lw}"
    );
    // `lwota device show` prints it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lwota"))
        .args(["device", "show", "lw-1", "--server"])
        .arg(format!("http://{}", server.http))
        .env("LWOTA_TOKEN", &server.token)
        .output()
        .expect("run lwota");
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.contains("registered: false"), "{out}");
    assert!(out.contains("ended_by: deregistered"), "{out}");
    // A Register again makes it registered, the ended record gone.
    assert_eq!(dev.register("1.0", "U", PAYLOAD), ResponseType::Created);
    let lw = device_view(&server, "lw-1")["lwm2m"].clone();
    assert_eq!(
        (lw["registered"].clone(), lw["lwm2m_version"].clone()),
        (json!(true), json!("1.0"))
    );
    assert!(lw.get("ended_by").is_none(), "{lw}");
    assert_eq!(dev.deregister(), ResponseType::Deleted);
    let events = history_events(&server, "lw-1");
    for e in ["lwm2m-register", "version", "lwm2m-deregister"] {
        assert!(events.iter().any(|x| x == e), "{e} in {events:?}");
    }
}

#[test]
fn registration_in_16_byte_block1_pieces() {
    let server = start();
    let mut dev = Lwm2mDevice::new(server.coap, "lw-blocks", "1.0");
    // 221 bytes of links, like the issue's example.
    let mut payload = String::from("</>;rt=\"oma.lwm2m\";ct=110");
    let mut i = 0;
    while payload.len() < 221 {
        payload.push_str(&format!(",</{}/0>", 3300 + i));
        i += 1;
    }
    payload.truncate(payload.rfind(',').unwrap());
    while payload.len() < 221 {
        payload.push_str(",</5>");
    }
    payload.truncate(221);
    let payload = payload.trim_end_matches([',', '<', '/']).to_string();
    assert_eq!(dev.register_in_blocks(&payload), ResponseType::Created);
    let view = device_view(&server, "lw-blocks");
    assert!(
        view["lwm2m"]["objects"].as_array().unwrap().len() > 10,
        "{view}"
    );
}

#[test]
fn version_negotiation_and_bad_registrations_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = fast_config(tmp.path());
    config.lwm2m.max_payload = 512;
    let server = TestServer::start_with(config, None);
    let mut dev = Lwm2mDevice::new(server.coap, "lw-v", "1.0");
    // 1.2 is refused with 4.12 so clients fall back; 1.0 then works.
    assert_eq!(
        dev.register("1.2", "U", PAYLOAD),
        ResponseType::PreconditionFailed
    );
    assert_eq!(
        dev.register("9.9", "U", PAYLOAD),
        ResponseType::PreconditionFailed
    );
    assert_eq!(dev.register("1.0", "UQ", PAYLOAD), ResponseType::Created);
    let view = device_view(&server, "lw-v");
    assert_eq!(view["lwm2m"]["queue_mode"], true);
    assert_eq!(view["lwm2m"]["binding"], "U");

    let mut bad = Lwm2mDevice::new(server.coap, "lw-bad", "1.0");
    assert_eq!(bad.register("1.1", "U", "</1/0"), ResponseType::BadRequest);
    assert_eq!(
        bad.register("1.1", "U", &"</3/0>,".repeat(100)),
        ResponseType::RequestEntityTooLarge
    );
    bad.name = "bad name!".into();
    assert_eq!(bad.register("1.1", "U", PAYLOAD), ResponseType::BadRequest);
    // Missing `ep`; a payload in another Content-Format than link (40).
    let rd = |queries: &[&str], cf: Option<u8>| {
        let mut p = coap_lite::Packet::new();
        p.header.code = coap_lite::MessageClass::Request(coap_lite::RequestType::Post);
        p.add_option(coap_lite::CoapOption::UriPath, b"rd".to_vec());
        for q in queries {
            p.add_option(coap_lite::CoapOption::UriQuery, q.as_bytes().to_vec());
        }
        if let Some(cf) = cf {
            p.add_option(coap_lite::CoapOption::ContentFormat, vec![cf]);
        }
        p.payload = PAYLOAD.as_bytes().to_vec();
        p
    };
    let answer = bad.request(rd(&["lt=60", "lwm2m=1.1"], None));
    assert_eq!(common::lwm2m::code(&answer), ResponseType::BadRequest);
    let answer = bad.request(rd(&["ep=lw-bad", "lt=60", "lwm2m=1.1"], Some(0)));
    assert_eq!(
        common::lwm2m::code(&answer),
        ResponseType::UnsupportedContentFormat
    );
    // Unknown registration ids: Update and De-register are 4.04.
    bad.location = Some("nosuchid00".into());
    assert_eq!(bad.update(), ResponseType::NotFound);
    assert_eq!(bad.deregister(), ResponseType::NotFound);
    let (status, _) = server.get("/api/v1/devices/lw-bad");
    assert_eq!(status, 404, "nothing was stored");
    assert_eq!(
        device_view(&server, "lw-v")["lwm2m"]["registered"],
        true,
        "the other registration is untouched"
    );

    // With accept_1_2 a 1.2 client is served.
    let tmp = tempfile::tempdir().unwrap();
    let mut config = fast_config(tmp.path());
    config.lwm2m.accept_1_2 = true;
    let server = TestServer::start_with(config, None);
    let mut dev = Lwm2mDevice::new(server.coap, "lw-12", "1.0");
    assert_eq!(dev.register("1.2", "U", PAYLOAD), ResponseType::Created);
    assert_eq!(
        device_view(&server, "lw-12")["lwm2m"]["lwm2m_version"],
        "1.2"
    );
}

fn update_one(delivery: Option<i64>, outcome: i64) -> (TestServer, Lwm2mDevice, Value, Vec<u8>) {
    let server = start();
    let image = image(3000, 9);
    let fw = server.upload_ok("lwm2m", "2.0", &image);
    let mut dev = Lwm2mDevice::new(server.coap, "lw-up", "1.0");
    dev.delivery = delivery;
    dev.outcome = outcome;
    assert_eq!(dev.register("1.1", "U", PAYLOAD), ResponseType::Created);
    assert!(dev.serve_until(WAIT, |d| d.log.iter().any(|l| l == "Get /3/0/3")));
    server.wait_for("/api/v1/devices/lw-up", WAIT, |v| v["version"] == "1.0");
    let c = campaign(&server, fw, &["lw-up"]);
    let done = |d: &Lwm2mDevice| d.result != 0;
    assert!(dev.serve_until(WAIT, done), "log: {:?}", dev.log);
    // Let the server see the last notification and the /3/0/3 re-read.
    dev.serve_until(Duration::from_millis(500), |_| false);
    let t = server.wait_for(&format!("/api/v1/campaigns/{c}/devices"), WAIT, |list| {
        list.as_array().is_some_and(|l| {
            l.iter()
                .any(|t| t["state"] == "updated" || t["state"] == "failed")
        })
    });
    let _ = t;
    let t = task(&server, c, "lw-up");
    (server, dev, t, image)
}

#[test]
fn pull_update_through_object_5() {
    let (server, dev, t, image) = update_one(Some(0), 1);
    assert_eq!(t["state"], "updated", "{t}");
    assert_eq!(dev.package, image, "the device pulled the whole image");
    assert!(dev
        .package_uri
        .starts_with(&format!("coap://{}/ota/fw/", server.coap)));
    assert_eq!(device_view(&server, "lw-up")["version"], "2.0");
    // Requests in order: capabilities, state, observes, URI, execute.
    let pos = |s: &str| dev.log.iter().position(|l| l == s).unwrap_or(usize::MAX);
    assert!(pos("Put /5/0/1") < pos("Post /5/0/2"), "{:?}", dev.log);
    assert!(pos("Get /5/0/3") < pos("Put /5/0/1"));
    let events = history_events(&server, "lw-up");
    assert!(
        events.iter().any(|e| e == "download" || e == "lwm2m"),
        "{events:?}"
    );
}

#[test]
fn push_update_through_object_5() {
    let (server, dev, t, image) = update_one(Some(1), 1);
    assert_eq!(t["state"], "updated", "{t}");
    assert_eq!(dev.package, image, "the image arrived by Block1");
    assert!(dev.log.iter().any(|l| l == "Put /5/0/0"));
    assert!(!dev.log.iter().any(|l| l == "Put /5/0/1"));
    assert_eq!(device_view(&server, "lw-up")["version"], "2.0");
}

#[test]
fn update_result_5_fails_the_task_with_its_meaning() {
    let (_server, _dev, t, _) = update_one(Some(0), 5);
    assert_eq!(t["state"], "failed", "{t}");
    assert_eq!(t["error"], "update result 5: integrity check failure");
}

#[test]
fn queue_mode_requests_wait_for_the_next_update() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = fast_config(tmp.path());
    config.lwm2m.queue_awake_ms = 200;
    let server = TestServer::start_with(config, None);
    let fw = server.upload_ok("lwm2m", "2.0", &image(500, 3));
    let mut dev = Lwm2mDevice::new(server.coap, "lw-q", "1.0");
    assert_eq!(dev.register("1.1", "UQ", PAYLOAD), ResponseType::Created);
    assert!(dev.serve_until(WAIT, |d| d.log.iter().any(|l| l == "Get /3/0/3")));
    // Asleep: do not read the socket for longer than the awake window.
    std::thread::sleep(Duration::from_millis(400));
    let before = dev.log.len();
    let c = campaign(&server, fw, &["lw-q"]);
    server.wait_for("/api/v1/devices/lw-q", WAIT, |v| {
        v["lwm2m"]["queued_requests"] == 1
    });
    // Nothing was sent to the sleeping device...
    while dev.serve_until(Duration::from_millis(10), |_| false) {}
    assert_eq!(dev.log.len(), before, "{:?}", &dev.log[before..]);
    // ...until it wakes up with an Update.
    assert_eq!(dev.update(), ResponseType::Changed);
    assert!(dev.serve_until(WAIT, |d| d.result == 1), "{:?}", dev.log);
    dev.serve_until(Duration::from_millis(300), |_| false);
    server.wait_for(&format!("/api/v1/campaigns/{c}/devices"), WAIT, |l| {
        l[0]["state"] == "updated"
    });
    assert_eq!(device_view(&server, "lw-q")["lwm2m"]["queued_requests"], 0);
}

#[test]
fn restart_keeps_registrations() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_with(fast_config(tmp.path()), None);
    let mut dev = Lwm2mDevice::new(server.coap, "lw-r", "1.0");
    assert_eq!(dev.register("1.1", "U", PAYLOAD), ResponseType::Created);
    server.stop();
    let server = TestServer::start_with(fast_config(tmp.path()), None);
    dev.server = server.coap;
    assert_eq!(dev.update(), ResponseType::Changed, "the location survived");
    assert_eq!(device_view(&server, "lw-r")["lwm2m"]["registered"], true);
}

fn manual(config: impl FnOnce(&mut lwota::config::Config)) -> (TestServer, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = fast_config(tmp.path());
    config(&mut c);
    let clock = std::sync::Arc::new(lwota::time::ManualClock::new(1_800_000_000_000));
    (TestServer::start_with(c, Some(clock)), tmp)
}

#[test]
fn a_registration_expires_after_its_lifetime() {
    let (server, _tmp) = manual(|_| {});
    let mut dev = Lwm2mDevice::new(server.coap, "lw-exp", "1.0");
    dev.lifetime = 60;
    assert_eq!(dev.register("1.1", "U", PAYLOAD), ResponseType::Created);
    server.advance(Duration::from_secs(59));
    assert_eq!(
        dev.update(),
        ResponseType::Changed,
        "an Update in time renews it"
    );
    server.advance(Duration::from_secs(59));
    assert_eq!(device_view(&server, "lw-exp")["lwm2m"]["registered"], true);
    server.advance(Duration::from_secs(2));
    server.wait_for("/api/v1/devices/lw-exp", WAIT, |v| {
        v["lwm2m"]["ended_by"] == "expired"
    });
    assert!(history_events(&server, "lw-exp").contains(&"lwm2m-expired".to_string()));
    assert_eq!(
        dev.update(),
        ResponseType::NotFound,
        "it must Register again"
    );
}

#[test]
fn a_queue_mode_device_asleep_past_the_task_timeout_fails_its_task() {
    let (server, _tmp) = manual(|c| c.lwm2m.queue_awake_ms = 1000);
    let fw = server.upload_ok("lwm2m", "2.0", &image(100, 1));
    let mut dev = Lwm2mDevice::new(server.coap, "lw-sleepy", "1.0");
    dev.lifetime = 86_400;
    assert_eq!(dev.register("1.1", "UQ", PAYLOAD), ResponseType::Created);
    assert!(dev.serve_until(WAIT, |d| d.log.iter().any(|l| l == "Get /3/0/3")));
    server.advance(Duration::from_secs(2)); // asleep now
    let c = campaign(&server, fw, &["lw-sleepy"]);
    server.wait_for("/api/v1/devices/lw-sleepy", WAIT, |v| {
        v["lwm2m"]["queued_requests"] == 1
    });
    server.advance(Duration::from_secs(901)); // tasks.timeout is 900 s
    let t = server.wait_for(&format!("/api/v1/campaigns/{c}/devices"), WAIT, |l| {
        l[0]["state"] == "failed"
    });
    assert_eq!(t[0]["error"], "timeout");
}

/// Restarts a manual-clock server on `tmp` at `at_ms` (the clock of a
/// killed server is gone; its data dir is not).
fn restart(server: &mut TestServer, tmp: &std::path::Path, at_ms: u64) -> TestServer {
    server.stop();
    let clock = std::sync::Arc::new(lwota::time::ManualClock::new(at_ms));
    TestServer::start_with(fast_config(tmp), Some(clock))
}

/// Routine Updates are answered from memory while half the stored
/// lifetime is left (`lwm2m::live`); a restart loses them but grants the
/// grace that keeps the device registered; Updates past that point, and
/// Updates that change something, are written before the reply.
#[test]
fn routine_updates_answered_from_memory_survive_a_restart() {
    const T0: u64 = 1_800_000_000_000;
    let (mut server, tmp) = manual(|_| {});
    let mut dev = Lwm2mDevice::new(server.coap, "lw-lazy", "1.0");
    dev.lifetime = 120;
    assert_eq!(dev.register("1.1", "U", PAYLOAD), ResponseType::Created);
    let registered_view = device_view(&server, "lw-lazy")["lwm2m"].clone();
    server.advance(Duration::from_secs(50));
    assert_eq!(dev.update(), ResponseType::Changed);
    let lazy_view = device_view(&server, "lw-lazy")["lwm2m"].clone();
    assert_ne!(
        lazy_view["last_update"], registered_view["last_update"],
        "{lazy_view}"
    );
    assert_ne!(lazy_view["expires_at"], registered_view["expires_at"]);

    // Crash-equivalent for memory: the refresh was never written...
    let mut server = restart(&mut server, tmp.path(), T0 + 50_000);
    dev.server = server.coap;
    let view = device_view(&server, "lw-lazy")["lwm2m"].clone();
    assert_eq!(
        view["last_update"], registered_view["last_update"],
        "{view}"
    );
    // ...yet past the stored expiry (120 s) the device is kept: it
    // updated in time, its real expiry (170 s) is within the grace.
    server.advance(Duration::from_secs(80));
    std::thread::sleep(Duration::from_millis(300)); // a few expiry sweeps
    assert_eq!(device_view(&server, "lw-lazy")["lwm2m"]["registered"], true);
    // Less than half the stored lifetime left: this Update is written.
    assert_eq!(dev.update(), ResponseType::Changed);
    let written = device_view(&server, "lw-lazy")["lwm2m"]["last_update"].clone();
    // An Update with a new lifetime is written too, whatever is left.
    assert_eq!(dev.update_with(&["lt=300"]), ResponseType::Changed);
    let mut server = restart(&mut server, tmp.path(), T0 + 130_000);
    dev.server = server.coap;
    let view = device_view(&server, "lw-lazy")["lwm2m"].clone();
    assert_eq!(view["last_update"], written, "{view}");
    assert_eq!(view["lifetime"], 300, "{view}");
    assert_eq!(view["registered"], true, "{view}");

    // A device that stops updating expires (at the latest at its grace
    // after this restart: 130 + 300 * 1.5 s).
    server.advance(Duration::from_secs(451));
    let view = server.wait_for("/api/v1/devices/lw-lazy", WAIT, |v| {
        v["lwm2m"]["ended_by"] == "expired"
    });
    assert_eq!(view["lwm2m"]["registered"], false, "{view}");
    assert_eq!(view["lwm2m"]["ended_by"], "expired", "{view}");
    assert_eq!(dev.update(), ResponseType::NotFound);
    server.stop();
}

/// `lwota check` finds LwM2M registrations out of step with their
/// device, their location index or their timers, and `--repair` puts
/// them back so the device's Update works again.
#[test]
fn check_finds_and_repairs_broken_registration_tables() {
    use redb::ReadableTable as _;
    const REGISTRATIONS: redb::TableDefinition<&str, &[u8]> =
        redb::TableDefinition::new("lwm2m_registrations");
    const LOCATIONS: redb::TableDefinition<&str, &str> =
        redb::TableDefinition::new("lwm2m_locations");
    let tmp = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_with(fast_config(tmp.path()), None);
    let mut dev = Lwm2mDevice::new(server.coap, "lw-chk", "1.0");
    assert_eq!(dev.register("1.1", "U", PAYLOAD), ResponseType::Created);
    let location = dev.location.clone().unwrap();
    server.stop();

    let check = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lwota"))
            .arg("check")
            .arg("--data-dir")
            .arg(tmp.path())
            .args(args)
            .output()
            .expect("run lwota check");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, out) = check(&[]);
    assert!(ok, "clean before: {out}");

    // Break it: the device's location index entry goes, and a
    // registration appears for a device that does not exist.
    {
        let db = redb::Database::open(lwota::store::Store::file_in(tmp.path())).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut locations = txn.open_table(LOCATIONS).unwrap();
            locations.remove(location.as_str()).unwrap();
            let mut registrations = txn.open_table(REGISTRATIONS).unwrap();
            let bytes = registrations
                .get("lw-chk")
                .unwrap()
                .unwrap()
                .value()
                .to_vec();
            registrations.insert("ghost", bytes.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let (ok, out) = check(&[]);
    assert!(!ok, "{out}");
    assert!(out.contains("\"ghost\": no such device"), "{out}");
    assert!(
        out.contains(&format!(
            "\"lw-chk\": location /rd/{location} is not indexed"
        )),
        "{out}"
    );
    let (ok, out) = check(&["--repair"]);
    assert!(ok, "{out}");
    assert!(out.contains("lwm2m registration fixes"), "{out}");
    let (ok, out) = check(&[]);
    assert!(ok && out.contains("0 inconsistent"), "{out}");

    let server = TestServer::start_with(fast_config(tmp.path()), None);
    dev.server = server.coap;
    assert_eq!(
        dev.update(),
        ResponseType::Changed,
        "found by location again"
    );
    let (status, _) = server.get("/api/v1/devices/ghost");
    assert_eq!(status, 404);
}

/// kill -9 while a request is queued for a sleeping queue-mode device:
/// after the restart the device's next Update gets it, once, and the
/// update completes.
#[test]
fn kill_9_with_queued_requests_sends_them_once_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("server.toml");
    std::fs::write(
        &config,
        "[lwm2m]\nqueue_awake_ms = 300\ncheck_interval_ms = 50\n",
    )
    .unwrap();
    let extra = [std::ffi::OsStr::new("--config"), config.as_os_str()];
    let data = tmp.path().join("data");
    let mut child = ChildServer::spawn_with(&data, "127.0.0.1:0", "127.0.0.1:0", &extra);
    let (status, fw) = http(
        child
            .request("POST", "/api/v1/firmware?product=lwm2m&version=2.0")
            .send_bytes(&image(700, 4)),
    );
    assert_eq!(status, 201, "{fw}");
    let mut dev = Lwm2mDevice::new(child.coap, "lw-k9", "1.0");
    dev.lifetime = 86_400;
    // Push: the restarted server has a new ephemeral port, and a Package
    // URI would name the one the device registered to.
    dev.delivery = Some(1);
    assert_eq!(dev.register("1.1", "UQ", PAYLOAD), ResponseType::Created);
    assert!(dev.serve_until(WAIT, |d| d.log.iter().any(|l| l == "Get /3/0/3")));
    std::thread::sleep(Duration::from_millis(600)); // asleep
    let (status, c) = http(
        child
            .request("POST", "/api/v1/campaigns")
            .send_json(json!({"firmware": fw["id"], "target": {"devices": ["lw-k9"]}})),
    );
    assert_eq!(status, 201, "{c}");
    let view = |child: &ChildServer| http(child.request("GET", "/api/v1/devices/lw-k9").call()).1;
    let deadline = std::time::Instant::now() + WAIT;
    while view(&child)["lwm2m"]["queued_requests"] != 1 {
        assert!(std::time::Instant::now() < deadline, "{}", view(&child));
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = dev.log.len();
    child.kill9();

    let child = ChildServer::spawn_with(&data, "127.0.0.1:0", "127.0.0.1:0", &extra);
    assert_eq!(
        view(&child)["lwm2m"]["queued_requests"],
        1,
        "the queue survived"
    );
    dev.server = child.coap;
    // Nothing before it wakes up.
    while dev.serve_until(Duration::from_millis(10), |_| false) {}
    assert_eq!(dev.log.len(), before, "{:?}", &dev.log[before..]);
    assert_eq!(dev.update(), ResponseType::Changed);
    assert!(dev.serve_until(WAIT, |d| d.result == 1), "{:?}", dev.log);
    dev.serve_until(Duration::from_millis(500), |_| false);
    let after = &dev.log[before..];
    let writes = after
        .iter()
        .filter(|l| *l == "Put /5/0/1" || *l == "Put /5/0/0")
        .count();
    let executes = after.iter().filter(|l| *l == "Post /5/0/2").count();
    assert_eq!((writes, executes), (1, 1), "sent once: {after:?}");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let v = view(&child);
        if v["version"] == "2.0" && v["lwm2m"]["queued_requests"] == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut child = child;
    child.kill9();
}
