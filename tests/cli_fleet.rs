//! `lwota assign`, `lwota firmware edit`, `lwota audit` and the statistics
//! of `campaign show` / `firmware show`, against a real server.

use crate::common;

use common::cli::{json_of, lwota, ok};
use common::{image, TestServer};
use serde_json::json;

#[test]
fn assign_edit_audit_and_stats_from_the_cli() {
    let server = TestServer::start();
    let fw = server.upload_ok("p", "2.0", &image(100, 1)).to_string();
    server.post_json(
        "/api/v1/devices",
        &json!([{"name": "k1", "product": "p", "version": "1.0"},
                {"name": "k2", "product": "p", "version": "1.0"}]),
    );
    let out = ok(&lwota(
        &server,
        &["assign", "product", "p", "--firmware", &fw],
    ));
    assert!(out.contains("2 tasks queued"), "{out}");
    let shown = json_of(&server, &["assign", "show", "--product", "p"]);
    assert_eq!(shown["firmware"]["version"], "2.0");
    let out = ok(&lwota(&server, &["assign", "show", "--device", "k1"]));
    assert!(
        out.contains("IN EFFECT") && out.contains("product/p"),
        "{out}"
    );
    let campaign = shown["firmware"]["campaign"].to_string();

    let edited = json_of(
        &server,
        &["firmware", "edit", &fw, "--description", "hotfix"],
    );
    assert_eq!(edited["description"], "hotfix");
    let bad = lwota(&server, &["firmware", "edit", &fw, "--name=_x"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("name"));

    let out = ok(&lwota(&server, &["campaign", "show", &campaign]));
    assert!(out.contains("PENDING") && out.contains("waiting"), "{out}");
    let out = ok(&lwota(&server, &["firmware", "show", &fw]));
    assert!(out.contains("IN PROGRESS"), "{out}");

    ok(&lwota(&server, &["assign", "clear", "--product", "p"]));
    let log = json_of(&server, &["audit"]);
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "firmware.upload",
            "device.import",
            "assignment.set",
            "firmware.edit",
            "assignment.clear"
        ]
    );
    let limited = json_of(&server, &["audit", "--limit", "2"]);
    assert_eq!(limited.as_array().unwrap().len(), 2);
    let out = ok(&lwota(&server, &["audit"]));
    assert!(
        out.contains("ACTION") && out.contains("assignment.clear"),
        "{out}"
    );
}
