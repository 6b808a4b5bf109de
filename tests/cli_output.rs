//! The CLI for scripts and operators (issue 12, item 4): `--output json`
//! on every command, shell completions, tables for `show`, escaping of
//! device-supplied text, `LWOTA_SERVER` / tokens, paging, `versions`,
//! `--log-format json`. Real servers through tests/common.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::cli::{json_of, lwota, lwota_at, ok};
use common::device::{task_of, text, Device};
use common::*;
use serde_json::Value;

#[test]
fn completions_generate_for_bash_zsh_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let o = Command::new(env!("CARGO_BIN_EXE_lwota"))
            .args(["completions", shell])
            .output()
            .unwrap();
        let script = ok(&o);
        assert!(script.contains("lwota"), "{shell}: {script}");
        assert!(
            script.contains("campaign") && script.contains("output") && script.contains("json"),
            "{shell} completes subcommands and options"
        );
        if shell == "bash" {
            // The generated script is valid bash.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("lwota.bash");
            std::fs::write(&path, &script).unwrap();
            let status = Command::new("bash").arg("-n").arg(&path).status().unwrap();
            assert!(status.success(), "bash -n rejects the script");
        }
    }
    let o = Command::new(env!("CARGO_BIN_EXE_lwota"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!o.status.success());
}

#[test]
fn output_json_parses_for_ls_show_and_create() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let fw = dir.path().join("fw.bin");
    std::fs::write(&fw, image(5_000, 3)).unwrap();
    let fw = fw.to_str().unwrap();

    let added = json_of(
        &server,
        &["firmware", "add", fw, "--product", "p", "--version", "2.0"],
    );
    assert_eq!(added["id"], 1);
    assert_eq!(added["size"], 5_000);
    assert_eq!(json_of(&server, &["firmware", "ls"])[0]["version"], "2.0");
    assert_eq!(json_of(&server, &["firmware", "show", "1"])["product"], "p");

    let d1 = json_of(
        &server,
        &["device", "add", "d1", "--product", "p", "--version", "1.0"],
    );
    assert_eq!(d1["name"], "d1");
    let imported = json_of(
        &server,
        &["device", "import", fixture("devices.csv").to_str().unwrap()],
    );
    assert_eq!(imported["existing"], serde_json::json!(["d1"]));
    assert_eq!(
        json_of(&server, &["device", "ls"])
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        json_of(&server, &["device", "show", "d2"])["version"],
        "1.0"
    );
    let history = json_of(&server, &["device", "history", "d1"]);
    assert_eq!(history[0]["event"], "registered");
    let versions = json_of(&server, &["versions", "--product", "p"]);
    assert_eq!(versions["1.0"], 2);
    assert_eq!(versions["1.5"], 1);

    let created = json_of(
        &server,
        &[
            "campaign",
            "create",
            "--firmware",
            "1",
            "--device",
            "d1",
            "--device",
            "ghost",
        ],
    );
    assert_eq!(created["id"], 1);
    assert_eq!(created["total"], 1);
    assert_eq!(created["skipped"]["unknown"], serde_json::json!(["ghost"]));
    assert_eq!(json_of(&server, &["campaign", "ls"])[0]["id"], 1);
    assert_eq!(json_of(&server, &["campaign", "show", "1"])["total"], 1);
    let tasks = json_of(&server, &["campaign", "devices", "1"]);
    assert_eq!(tasks[0]["device"], "d1");

    // --watch --output json: one JSON document per line, per refresh.
    let url = format!("http://{}", server.http);
    let token = server.token.clone();
    let watcher = std::thread::spawn(move || {
        lwota_at(
            &url,
            &[
                "--token",
                &token,
                "--output",
                "json",
                "campaign",
                "show",
                "1",
                "--watch",
                "--interval",
                "0.1",
            ],
        )
    });
    std::thread::sleep(Duration::from_millis(400));
    let cancelled = json_of(&server, &["campaign", "cancel", "1"]);
    assert_eq!(cancelled["cancelled"], 1);
    let watched = ok(&watcher.join().unwrap());
    let lines: Vec<Value> = watched
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.last().unwrap()["status"], "cancelled", "{watched}");
    if lines.len() > 1 {
        assert_eq!(lines[0]["status"], "running");
    }

    let rm = json_of(&server, &["firmware", "rm", "1"]);
    assert_eq!(rm["deleted"], "1");
}

#[test]
fn show_commands_print_tables_not_json() {
    let server = TestServer::start();
    let id = server.upload_ok("p", "2.0", &image(3_000, 1));
    let (status, _) = server.post_json(
        "/api/v1/devices",
        &serde_json::json!({"name": "d1", "product": "p", "version": "1.0"}),
    );
    assert_eq!(status, 201);
    let out = ok(&lwota(&server, &["firmware", "show", &id.to_string()]));
    assert!(!out.trim_start().starts_with('{'), "{out}");
    assert!(out.contains("SHA256") && out.contains("STATE") && out.contains("updated"));
    let out = ok(&lwota(&server, &["device", "show", "d1"]));
    assert!(!out.trim_start().starts_with('{'), "{out}");
    assert!(
        out.contains("NAME") && out.contains("d1") && out.contains("1.0"),
        "{out}"
    );
    let out = ok(&lwota(
        &server,
        &["campaign", "create", "--firmware", "1", "--all"],
    ));
    assert!(out.contains("1 tasks"), "{out}");
    let out = ok(&lwota(&server, &["campaign", "show", "1"]));
    assert!(!out.trim_start().starts_with('{'), "{out}");
    assert!(
        out.contains("status running") && out.contains("queued"),
        "{out}"
    );
    let out = ok(&lwota(&server, &["versions", "--product", "p"]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains("VERSION") && lines[0].contains("DEVICES"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("1.0") && lines[1].contains("100.0%"),
        "{out}"
    );
}

/// A device reports `failed` with an error full of terminal escapes
/// (set the window title, clear the screen, 8-bit CSI, bidi override);
/// no command may pass one through raw.
#[test]
fn hostile_device_error_is_escaped_everywhere() {
    let server = TestServer::start();
    server.upload_ok("p", "2.0", &image(2_000, 2));
    let (status, _) = server.post_json(
        "/api/v1/devices",
        &serde_json::json!({"name": "d1", "product": "p", "version": "1.0"}),
    );
    assert_eq!(status, 201);
    ok(&lwota(
        &server,
        &["campaign", "create", "--firmware", "1", "--device", "d1"],
    ));
    let hostile = "\x1b]0;pwned\x07\x1b[2J\x1b[31mboom\u{9b}1m\u{202e}txt";
    let mut device = Device::new(server.coap, "d1", "p");
    let (task, _) = task_of(&device.poll("1.0"));
    // Issue 11: the server refuses such text on input and stores nothing.
    let code = device.report(&task, "failed", &[("error", text(hostile))]);
    assert_eq!(code, coap_lite::ResponseType::BadRequest);
    let code = device.report(&task, "failed", &[("error", text("boom"))]);
    assert_eq!(code, coap_lite::ResponseType::Changed);

    let raw = |o: &Output| {
        o.stdout
            .iter()
            .chain(&o.stderr)
            .any(|b| *b == 0x1b || *b == 0x07)
            || String::from_utf8_lossy(&o.stdout).contains('\u{9b}')
            || String::from_utf8_lossy(&o.stdout).contains('\u{202e}')
    };
    for args in [
        &["device", "history", "d1"][..],
        &["campaign", "devices", "1"],
        &["device", "show", "d1"],
        &["device", "ls"],
    ] {
        let out = ok(&lwota(&server, args));
        assert!(out.contains("boom"), "{args:?} shows the error: {out}");
    }
    // The CLI still escapes what a server (an older one, or another
    // implementation) sends it.
    let entry = serde_json::json!([{"at": "2026-01-01T00:00:00Z", "event": "report",
        "campaign": 1, "from": "downloading", "to": "failed", "error": hostile}]);
    for json_out in [false, true] {
        let (url, _requests) = fake_api(vec![("200 OK", String::new(), entry.to_string())]);
        let mut args = vec!["device", "history", "d1"];
        if json_out {
            args.splice(0..0, ["--output", "json"]);
        }
        let o = lwota_at(&url, &args);
        let out = ok(&o);
        assert!(
            !raw(&o),
            "{args:?} printed a raw control character: {out:?}"
        );
        assert!(out.contains("boom"), "{args:?}: {out}");
        if json_out {
            let decoded: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(decoded[0]["error"], hostile, "JSON keeps the exact text");
        } else {
            assert!(out.contains("\\u{1b}]0;pwned"), "{out}");
        }
    }

    // An error message from the server that quotes hostile input.
    let o = lwota(&server, &["device", "show", "\x1b[2Jx"]);
    assert!(!o.status.success());
    assert!(!raw(&o), "{:?}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("server said 4"), "{err}");
}

/// `device ls` pages through more than one page (it used to stop at the
/// API's default page of 10,000 without a word); `--limit` says when it
/// cut the list short.
#[test]
fn device_ls_pages_through_everything() {
    let server = TestServer::start();
    let devices: Vec<Value> = (0..2_500)
        .map(|i| serde_json::json!({"name": format!("m{i:05}"), "product": "p", "version": "1"}))
        .collect();
    let (status, _) = server.post_json("/api/v1/devices", &Value::Array(devices));
    assert_eq!(status, 201);
    let out = ok(&lwota(&server, &["device", "ls"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2_501, "header + every device");
    assert!(lines[1].starts_with("m00000") && lines[2_500].starts_with("m02499"));
    let mut names: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    names.dedup();
    assert_eq!(names.len(), 2_500, "no device twice");

    let o = lwota(&server, &["device", "ls", "--limit", "5"]);
    assert_eq!(ok(&o).lines().count(), 6);
    assert!(String::from_utf8_lossy(&o.stderr).contains("first 5 devices"));
    let all = json_of(&server, &["device", "ls", "--product", "p"]);
    assert_eq!(all.as_array().unwrap().len(), 2_500);

    // `lwota device ls | head -1`: the closed pipe ends it quietly.
    let mut child = Command::new(env!("CARGO_BIN_EXE_lwota"))
        .args([
            "device",
            "ls",
            "--server",
            &format!("http://{}", server.http),
        ])
        .env("LWOTA_TOKEN", &server.token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("NAME"), "{first}");
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

/// A minimal HTTP server that answers each request from `pages` in turn
/// (status line, extra headers, body) and records the requests it saw.
fn fake_api(
    pages: Vec<(&'static str, String, String)>,
) -> (String, std::sync::mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (status, headers, body) in pages {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                request.push_str(&line);
            }
            let _ = tx.send(request);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
                body.len()
            );
        }
    });
    (url, rx)
}

#[test]
fn token_comes_from_flag_env_or_data_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/admin.token"), "from-file\n").unwrap();
    let run = |env: Option<(&str, &str)>, args: &[&str], cwd: &Path| {
        let (url, requests) = fake_api(vec![("200 OK", String::new(), "[]".into())]);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lwota"));
        cmd.current_dir(cwd)
            .args(["firmware", "ls"])
            .args(args)
            .env_remove("LWOTA_TOKEN")
            .env("LWOTA_SERVER", &url);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let o = cmd.output().unwrap();
        ok(&o);
        requests.recv_timeout(Duration::from_secs(5)).unwrap()
    };
    let elsewhere = tempfile::tempdir().unwrap();
    let req = run(None, &["--token", "from-flag"], dir.path());
    assert!(req.contains("Authorization: Bearer from-flag"), "{req}");
    let req = run(Some(("LWOTA_TOKEN", "from-env")), &[], dir.path());
    assert!(req.contains("Authorization: Bearer from-env"), "{req}");
    let req = run(None, &[], dir.path());
    assert!(req.contains("Authorization: Bearer from-file"), "{req}");
    let req = run(None, &[], elsewhere.path());
    assert!(!req.to_ascii_lowercase().contains("authorization"), "{req}");
    assert!(
        req.starts_with("GET /api/v1/firmware "),
        "LWOTA_SERVER used: {req}"
    );
}

/// A paginated server (RFC 8288 `Link: rel="next"`, the shape the API is
/// moving to) is followed page by page; a 401 says how to give a token.
#[test]
fn next_links_are_followed_and_401_hints_at_tokens() {
    let entry = |seq: u64, event: &str| {
        serde_json::json!([{"seq": seq, "at": "2026-01-01T00:00:00.000Z", "event": event,
            "task": null, "from": null, "to": null, "progress": null, "error": null,
            "detail": null, "repeat": 4, "since": "2025-12-31T23:00:00.000Z"}])
        .to_string()
    };
    let (url, requests) = fake_api(vec![
        (
            "200 OK",
            "Link: </api/v1/devices/d1/history?limit=1&after=1>; rel=\"next\"\r\n".into(),
            entry(1, "first-page"),
        ),
        ("200 OK", String::new(), entry(2, "second-page")),
    ]);
    let out = ok(&lwota_at(&url, &["device", "history", "d1"]));
    assert!(
        out.contains("first-page") && out.contains("second-page"),
        "{out}"
    );
    assert!(out.contains("REPEAT") && out.contains("x4"), "{out}");
    assert!(
        out.contains("SINCE") && out.contains("2025-12-31T23:00:00.000Z"),
        "{out}"
    );
    let first = requests.recv().unwrap();
    let second = requests.recv().unwrap();
    assert!(
        first.starts_with("GET /api/v1/devices/d1/history "),
        "{first}"
    );
    assert!(
        second.starts_with("GET /api/v1/devices/d1/history?limit=1&after=1 "),
        "{second}"
    );

    let (url, _requests) = fake_api(vec![(
        "401 Unauthorized",
        String::new(),
        r#"{"error":{"code":"unauthorized","message":"a token is required"}}"#.into(),
    )]);
    let o = lwota_at(&url, &["firmware", "ls"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("401") && err.contains("LWOTA_TOKEN"), "{err}");
}

#[test]
fn server_comes_from_lwota_server_env() {
    let server = TestServer::start();
    server.upload_ok("p", "7.0", &image(100, 1));
    let o = Command::new(env!("CARGO_BIN_EXE_lwota"))
        .args(["firmware", "ls"])
        .env("LWOTA_SERVER", format!("http://{}", server.http))
        .env("LWOTA_TOKEN", &server.token)
        .output()
        .unwrap();
    assert!(ok(&o).contains("7.0"));
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lwota"))
        .args(["serve", "--log-format", "json", "--data-dir"])
        .arg(dir.path())
        .args(["--coap-bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0"])
        .args(["--coaps-bind", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < Duration::from_secs(20) {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let value: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            value["level"].is_string() && value["timestamp"].is_string(),
            "{line}"
        );
        let message = value["fields"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let done = message.starts_with("http listening on");
        seen.push(message);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let mut rest = String::new();
    let _ = stderr.read_to_string(&mut rest);
    let _ = child.wait();
    assert!(
        seen.iter().any(|m| m.starts_with("coap listening on"))
            && seen.iter().any(|m| m.starts_with("http listening on")),
        "{seen:?}"
    );
}
