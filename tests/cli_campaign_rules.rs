//! `lwota campaign create` with the v2 option flags, and `campaign
//! retry|resume|cancel --device` against a running server (issue 10).

use crate::common;

use std::process::Command;

use common::cli::{lwota, ok};
use common::*;
use serde_json::{json, Value};

#[test]
fn create_flags_and_operator_commands() {
    let server = TestServer::start();
    let list = json!([
        {"name": "a", "product": "p", "version": "1.0"},
        {"name": "b", "product": "p", "version": "1.0"}
    ]);
    assert_eq!(server.post_json("/api/v1/devices", &list).0, 201);
    let fw = server.upload_ok("p", "2.0", &image(300, 1)).to_string();
    let out = ok(&lwota(
        &server,
        &[
            "campaign",
            "create",
            "--firmware",
            &fw,
            "--all",
            "--retry",
            "600:2",
            "--timeout",
            "120",
            "--rate",
            "10/60",
            "--wave",
            "50:20",
            "--wave",
            "100",
            "--min-battery",
            "15",
            "--output",
            "json",
        ],
    ));
    let c: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(c["retry"], json!({"interval_s": 600, "max": 2}));
    assert_eq!(c["rate"], json!({"pack_size": 10, "pack_interval_s": 60}));
    assert_eq!(c["timeout_s"], 120);
    assert_eq!(c["min_battery"], 15);
    assert_eq!(c["waves"][0]["abort_failure_percent"], 20);
    let id = c["id"].to_string();

    let show = ok(&lwota(&server, &["campaign", "show", &id]));
    assert!(show.contains("wave 1"), "{show}");
    let cancel = ok(&lwota(
        &server,
        &["campaign", "cancel", &id, "--device", "a"],
    ));
    assert!(cancel.contains("cancelled"), "{cancel}");
    let retry = ok(&lwota(
        &server,
        &["campaign", "retry", &id, "--device", "a"],
    ));
    assert!(retry.contains("queued again"), "{retry}");
    let all = ok(&lwota(&server, &["campaign", "retry", &id]));
    assert!(all.contains("0 failed tasks queued again"), "{all}");
    // Not paused: a one-line error and a non-zero exit.
    let o = lwota(&server, &["campaign", "resume", &id]);
    assert!(!o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stderr).lines().count(), 1);
    // A bad option value is the server's 400, naming the field.
    let o = lwota(
        &server,
        &[
            "campaign",
            "create",
            "--firmware",
            &fw,
            "--all",
            "--retry",
            "60:1",
        ],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("retry.interval_s"));
    let help = ok(&Command::new(env!("CARGO_BIN_EXE_lwota"))
        .args(["campaign", "create", "--help"])
        .output()
        .unwrap());
    for value in [
        "86400",
        "1, 2, 5",
        "PACK_SIZE/INTERVAL_S",
        "--start-at",
        "--dynamic",
        "--verify",
    ] {
        assert!(help.contains(value), "help lists {value}");
    }
}
