//! What a newcomer ran into (issue 12, item 5), each pinned by a test:
//! `sim` without a server, URLs without a scheme, directories given as
//! files, CSV headers, skipped device names, `device history` repeat
//! counts and `--limit`, a missing config file's cause said once.

use crate::common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::device::Device;
use common::*;

fn lwota_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lwota"));
    cmd.args(args)
        .env_remove("LWOTA_SERVER")
        .env_remove("LWOTA_TOKEN");
    cmd
}

fn lwota(server: &TestServer, args: &[&str]) -> Output {
    lwota_cmd(args)
        .args(["--server", &format!("http://{}", server.http)])
        .env("LWOTA_TOKEN", &server.token)
        .output()
        .expect("run lwota")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `lwota sim` and returns its output and how long it took.
fn sim(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let o = lwota_cmd(&["sim"]).args(args).output().unwrap();
    (o, started.elapsed())
}

#[test]
fn sim_without_a_server_fails_fast_with_the_reason() {
    // Nothing listens: the port is refused at once.
    let free = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().to_string();
    drop(free);
    let (o, took) = sim(&["--coap", &port, "--devices", "3"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let err = stderr(&o);
    assert!(
        err.contains("no CoAP server") && err.contains(&port),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Something holds the port but never answers: still a few seconds.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().to_string();
    let (o, took) = sim(&["--coap", &port, "--devices", "3"]);
    assert!(!o.status.success());
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        stderr(&o).contains("no CoAP server answers"),
        "{}",
        stderr(&o)
    );

    // --duration bounds the wait even when it is shorter than the check.
    let (o, took) = sim(&["--coap", &port, "--duration", "1"]);
    assert!(!o.status.success());
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

#[test]
fn sim_honours_duration_against_a_live_server() {
    let server = TestServer::start();
    let coap = server.coap.to_string();
    // --forever keeps devices polling; --duration must still end the run.
    let (o, took) = sim(&[
        "--coap",
        &coap,
        "--devices",
        "2",
        "--duration",
        "1.5",
        "--poll-interval",
        "0.2",
        "--forever",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(took < Duration::from_secs(6), "took {took:?}");
    assert!(stdout(&o).contains("2 devices"), "{}", stdout(&o));

    let (o, _) = sim(&[
        "--output",
        "json",
        "--coap",
        &coap,
        "--devices",
        "1",
        "--duration",
        "0.5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["devices"], 1);
    assert!(report["polls"].as_u64().unwrap() >= 1, "{report}");
}

#[test]
fn url_without_scheme_is_called_invalid_not_unreachable() {
    let o = lwota_cmd(&["firmware", "ls", "--server", "127.0.0.1:8080"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(!err.contains("cannot reach"), "{err}");
    assert!(
        err.contains("invalid") && err.contains("add http://"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // LWOTA_SERVER gets the same check.
    let o = Command::new(env!("CARGO_BIN_EXE_lwota"))
        .args(["device", "ls"])
        .env("LWOTA_SERVER", "localhost:8080")
        .output()
        .unwrap();
    assert!(stderr(&o).contains("add http://"), "{}", stderr(&o));
}

#[test]
fn directory_given_as_file_is_called_a_directory() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    for args in [
        &["firmware", "add", path, "--product", "p", "--version", "1"][..],
        &["device", "import", path],
        &[
            "campaign",
            "create",
            "--firmware",
            "1",
            "--devices-csv",
            path,
        ],
    ] {
        let o = lwota(&server, args);
        assert!(!o.status.success(), "{args:?}");
        let err = stderr(&o);
        assert!(!err.contains("cannot reach"), "{args:?}: {err}");
        assert!(err.contains("is a directory"), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    let (_, list) = server.get("/api/v1/firmware");
    assert_eq!(list.as_array().unwrap().len(), 0);
}

#[test]
fn campaign_csv_header_is_not_a_device_and_skipped_names_are_printed() {
    let server = TestServer::start();
    server.upload_ok("p", "2.0", &image(1_000, 1));
    server.upload_ok("q", "9.0", &image(1_000, 2));
    let devices = serde_json::json!([
        {"name": "d1", "product": "p", "version": "1.0"},
        {"name": "d2", "product": "p", "version": "1.0"},
        {"name": "current", "product": "p", "version": "2.0"},
        {"name": "other", "product": "q", "version": "1.0"},
    ]);
    assert_eq!(server.post_json("/api/v1/devices", &devices).0, 201);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("targets.csv");
    std::fs::write(
        &csv,
        "DeviceName,Note\nd1,a\nd2,b\ncurrent,c\nother,d\nghost-1,e\n",
    )
    .unwrap();
    let o = lwota(
        &server,
        &[
            "campaign",
            "create",
            "--firmware",
            "1",
            "--devices-csv",
            csv.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("2 tasks"), "{out}");
    assert!(
        !out.contains("DeviceName"),
        "the header is not a device: {out}"
    );
    assert!(
        out.contains("skipped unknown (1): ghost-1"),
        "unknown names listed: {out}"
    );
    assert!(out.contains("skipped up to date (1): current"), "{out}");
    assert!(out.contains("skipped wrong product (1): other"), "{out}");
    let (_, c) = server.get("/api/v1/campaigns/1");
    assert_eq!(c["total"], 2);

    // Other header spellings, and --device combined with a CSV.
    for header in ["name", "Device Name", "device", "device_name"] {
        std::fs::write(&csv, format!("{header}\nd1\n")).unwrap();
        let o = lwota(
            &server,
            &[
                "--output",
                "json",
                "campaign",
                "create",
                "--firmware",
                "2",
                "--devices-csv",
                csv.to_str().unwrap(),
                "--device",
                "other",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            c["skipped"]["unknown"],
            serde_json::json!([]),
            "{header:?} was taken for a device: {c}"
        );
        assert_eq!(c["skipped"]["wrong_product"], serde_json::json!(["d1"]));
        let id = c["id"].to_string();
        assert!(lwota(&server, &["campaign", "cancel", &id])
            .status
            .success());
    }
}

#[test]
fn device_history_shows_repeat_and_takes_a_limit() {
    let server = TestServer::start();
    let mut device = Device::new(server.coap, "d1", "p");
    for _ in 0..4 {
        assert!(device.poll("1.0").is_empty());
    }
    let o = lwota(&server, &["device", "history", "d1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let header = out.lines().next().unwrap();
    assert!(
        header.contains("REPEAT") && header.contains("SINCE"),
        "{out}"
    );
    let polls: Vec<&str> = out.lines().filter(|l| l.contains(" poll ")).collect();
    assert!(
        polls.iter().any(|l| l.contains("x3") || l.contains("x4")),
        "collapsed idle polls show their count: {out}"
    );

    let o = lwota(&server, &["device", "history", "d1", "--limit", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 2, "{}", stdout(&o));
    assert!(stderr(&o).contains("--after"), "{}", stderr(&o));
    let seq = stdout(&o)
        .lines()
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let o = lwota(&server, &["device", "history", "d1", "--after", &seq]);
    assert!(o.status.success());
    assert!(!stdout(&o)
        .lines()
        .skip(1)
        .any(|l| l.starts_with(&format!("{seq} "))));
    assert!(stdout(&o).lines().count() >= 2, "{}", stdout(&o));
}

#[test]
fn missing_config_file_says_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let o = lwota_cmd(&["serve", "--config", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("nope.toml"), "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}

#[test]
fn watch_without_a_terminal_prints_plain_lines() {
    let server = TestServer::start();
    server.upload_ok("p", "2.0", &image(1_000, 1));
    let body = serde_json::json!({"name": "d1", "product": "p", "version": "1.0"});
    assert_eq!(server.post_json("/api/v1/devices", &body).0, 201);
    assert!(
        lwota(&server, &["campaign", "create", "--firmware", "1", "--all"])
            .status
            .success()
    );
    let url = format!("http://{}", server.http);
    let token = server.token.clone();
    let watcher = std::thread::spawn(move || {
        lwota_cmd(&["campaign", "show", "1", "--watch", "--interval", "0.1"])
            .args(["--server", &url])
            .env("LWOTA_TOKEN", token)
            .output()
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(lwota(&server, &["campaign", "cancel", "1"])
        .status
        .success());
    let o = watcher.join().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!o.stdout.contains(&0x1b), "no escape codes: {}", stdout(&o));
    assert!(stdout(&o).contains("status cancelled"), "{}", stdout(&o));
}
