//! Issue 10 items 9, 12, 13 through the admin HTTP API of a real server:
//! the audit log of every operator action (paged), assignments, firmware
//! PATCH validation, statistics and the version distribution.

use crate::common;

use common::device::{task_of, Device};
use common::{image, TestServer};
use serde_json::{json, Value};

fn actions(entries: &Value) -> Vec<String> {
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn every_operator_action_is_in_the_audit_log_oldest_first_and_paged() {
    let server = TestServer::start();
    let fw = server.upload_ok("p", "2.0", &image(300, 1));
    let fw3 = server.upload_ok("p", "3.0", &image(300, 2));
    let (s, _) = server.post_json(
        "/api/v1/devices",
        &json!({"name": "d1", "product": "p", "version": "1.0"}),
    );
    assert_eq!(s, 201);
    let (s, _) = server.post_json(
        "/api/v1/devices",
        &json!([{"name": "d2", "product": "p", "version": "1.0"}, {"name": "d3", "product": "p"}]),
    );
    assert_eq!(s, 201);
    let (s, c) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": fw, "target": {"devices": ["d1", "d2"]}, "force": true}),
    );
    assert_eq!(s, 201, "{c}");
    let campaign = c["id"].as_u64().unwrap();
    let (s, _) = server.post_json(&format!("/api/v1/campaigns/{campaign}/cancel"), &json!({}));
    assert_eq!(s, 200);
    let (s, _) = server.patch_json(
        &format!("/api/v1/firmware/{fw}"),
        &json!({"name": "renamed"}),
    );
    assert_eq!(s, 200);
    let (s, _) = server.put_json("/api/v1/products/p/firmware", &json!({"firmware": fw3}));
    assert_eq!(s, 200);
    let (s, _) = server.put_json("/api/v1/devices/d1/firmware", &json!({"firmware": fw}));
    assert_eq!(s, 200);
    let (s, _) = server.delete("/api/v1/devices/d1/firmware");
    assert_eq!(s, 204);
    let (s, _) = server.delete("/api/v1/products/p/firmware");
    assert_eq!(s, 204);
    let (s, _) = server.delete(&format!("/api/v1/firmware/{fw}"));
    assert_eq!(s, 204);
    // Refused actions leave no entry.
    let (s, _) = server.delete("/api/v1/firmware/999");
    assert_eq!(s, 404);
    let (s, _) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": 999, "target": {"all": true}}),
    );
    assert_eq!(s, 400);

    // Three per page, following the Link header.
    let mut seen = Vec::new();
    let mut path = "/api/v1/audit?limit=3".to_string();
    let mut pages = 0;
    loop {
        let (status, body, next) = server.get_page(&path);
        assert_eq!(status, 200, "{body}");
        seen.extend(body.as_array().unwrap().iter().cloned());
        pages += 1;
        match next {
            Some(n) => path = n,
            None => break,
        }
    }
    assert!(pages >= 4);
    let all = Value::Array(seen);
    assert_eq!(
        actions(&all),
        [
            format!("firmware.upload firmware/{fw}"),
            format!("firmware.upload firmware/{fw3}"),
            "device.create device/d1".to_string(),
            "device.import devices".to_string(),
            format!("campaign.create campaign/{campaign}"),
            format!("campaign.cancel campaign/{campaign}"),
            format!("firmware.edit firmware/{fw}"),
            "assignment.set product/p".to_string(),
            "assignment.set device/d1".to_string(),
            "assignment.clear device/d1".to_string(),
            "assignment.clear product/p".to_string(),
            format!("firmware.delete firmware/{fw}"),
        ]
    );
    let ids: Vec<u64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {ids:?}");
    let create = &all[4];
    assert_eq!(create["details"]["force"], true, "force is recorded");
    assert_eq!(create["details"]["target"]["devices"]["count"], 2);
    assert_eq!(create["actor"], "admin", "the token behind the request");
    assert!(create["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(all[6]["details"]["name"]["to"], "renamed");
    // Strict query.
    let (s, body) = server.get("/api/v1/audit?bogus=1");
    assert_eq!(s, 400, "{body}");
}

#[test]
fn assignment_over_http_hands_tasks_to_existing_and_new_devices() {
    let server = TestServer::start();
    let fw = server.upload_ok("p", "2.0", &image(200, 1));
    let (s, _) = server.post_json(
        "/api/v1/devices",
        &json!({"name": "e1", "product": "p", "version": "1.0"}),
    );
    assert_eq!(s, 201);
    // Strict body: unknown field and wrong type name the field.
    let (s, body) = server.put_json(
        "/api/v1/products/p/firmware",
        &json!({"firmware": fw, "x": 1}),
    );
    assert_eq!(s, 400);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("`x`"),
        "{body}"
    );
    let (s, body) = server.put_json("/api/v1/products/p/firmware", &json!({"firmware": "two"}));
    assert_eq!(s, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("firmware"),
        "{body}"
    );
    let (s, body) = server.put_json("/api/v1/products/q/firmware", &json!({"firmware": fw}));
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (400, Some("wrong_product"))
    );
    let (s, body) = server.put_json("/api/v1/devices/nobody/firmware", &json!({"firmware": fw}));
    assert_eq!(s, 404, "{body}");
    let (_, audit) = server.get("/api/v1/audit");
    assert_eq!(
        audit.as_array().unwrap().len(),
        2,
        "refusals are not audited: {audit}"
    );

    let (s, body) = server.put_json("/api/v1/products/p/firmware", &json!({"firmware": fw}));
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["queued"], 1);
    assert_eq!(body["kind"], "firmware");
    let campaign = body["campaign"].as_u64().unwrap();
    let (_, got) = server.get("/api/v1/products/p/firmware");
    assert_eq!(got["firmware"]["firmware"], fw);
    assert!(got["software"].is_null());

    // A device that registers itself by polling gets the task.
    let mut dev = Device::new(server.coap, "e2", "p");
    let answer = dev.poll("1.0");
    let (task, uri) = task_of(&answer);
    assert_eq!(task, format!("c{campaign}"));
    assert_eq!(uri, format!("/ota/fw/{fw}/e2/c{campaign}"));
    let (_, shown) = server.get("/api/v1/devices/e2/firmware");
    assert_eq!(shown["effective"]["firmware"]["from"], "product/p");
    let (_, c) = server.get(&format!("/api/v1/campaigns/{campaign}"));
    assert_eq!(c["total"], 2);
    assert_eq!(c["target"]["assignment"]["product"], "p");
    let (s, _) = server.delete("/api/v1/products/p/firmware?kind=bogus");
    assert_eq!(s, 400);
}

#[test]
fn firmware_patch_is_validated_like_upload() {
    let server = TestServer::start();
    let fw = server.upload_ok("p", "2.0", &image(100, 1));
    let path = format!("/api/v1/firmware/{fw}");
    for (body, needle) in [
        (json!({"name": "ok", "size": 5}), "`size`"),
        (json!({"name": 5}), "name"),
        (json!({"name": "_bad"}), "name"),
        (json!({"description": "x".repeat(101)}), "description"),
        (json!({}), "nothing to change"),
    ] {
        let (s, reply) = server.patch_json(&path, &body);
        assert_eq!(s, 400, "{body} -> {reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message} should name {needle}");
    }
    let (_, unchanged) = server.get(&path);
    assert_eq!(unchanged["name"], "p");
    let (s, edited) = server.patch_json(&path, &json!({"name": "Gw-1", "description": "fixes"}));
    assert_eq!(s, 200, "{edited}");
    assert_eq!(
        (edited["name"].as_str(), edited["description"].as_str()),
        (Some("Gw-1"), Some("fixes"))
    );
    assert_eq!(edited["version"], "2.0");
    let (s, _) = server.patch_json("/api/v1/firmware/77", &json!({"name": "x"}));
    assert_eq!(s, 404);
}

#[test]
fn stats_and_version_distribution_after_a_small_rollout() {
    let server = TestServer::start();
    let fw = server.upload_ok("p", "2.0", &image(100, 1));
    let devices: Vec<Value> = (1..=4)
        .map(|i| json!({"name": format!("s{i}"), "product": "p", "version": "1.0"}))
        .collect();
    server.post_json("/api/v1/devices", &Value::Array(devices));
    let (_, c) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": fw, "target": {"all": true}}),
    );
    let id = c["id"].as_u64().unwrap();
    let task = format!("c{id}");
    let mut s1 = Device::new(server.coap, "s1", "p");
    s1.poll("1.0");
    s1.report(
        &task,
        "updated",
        &[("version", common::device::text("2.0"))],
    );
    let mut s2 = Device::new(server.coap, "s2", "p");
    s2.poll("1.0");
    s2.report(
        &task,
        "failed",
        &[("error", common::device::text("no space"))],
    );
    let mut s3 = Device::new(server.coap, "s3", "p");
    s3.poll("1.0");
    s3.report(
        &task,
        "downloading",
        &[("progress", ciborium::Value::Integer(55.into()))],
    );

    let (s, st) = server.get(&format!("/api/v1/campaigns/{id}/stats"));
    assert_eq!(s, 200, "{st}");
    assert_eq!(st["counts"]["updated"], 1);
    assert_eq!(st["counts"]["failed"], 1);
    assert_eq!(st["pending"]["total"], 1);
    assert_eq!(st["in_progress"]["devices"][0]["device"], "s3");
    assert_eq!(st["in_progress"]["devices"][0]["progress"], 55);
    assert_eq!(st["failures"]["no space"], 1);
    assert_eq!(st["complete"], true);
    let (s, by_fw) = server.get(&format!("/api/v1/firmware/{fw}/stats"));
    assert_eq!(s, 200);
    assert_eq!(by_fw["failures"], st["failures"]);
    assert_eq!(server.get("/api/v1/campaigns/99/stats").0, 404);

    // v1 shape unchanged; detail adds the distributions.
    let (_, v1) = server.get("/api/v1/versions?product=p");
    assert_eq!(v1, json!({"1.0": 3, "2.0": 1}));
    let (s, detail) = server.get("/api/v1/versions?product=p&detail=true");
    assert_eq!(s, 200, "{detail}");
    assert_eq!(detail["firmware"]["versions"], v1);
    assert_eq!(
        detail["firmware"]["top"][0],
        json!({"version": "1.0", "devices": 3, "percent": 75.0})
    );
    assert_eq!(detail["firmware"]["others"]["devices"], 0);
    assert_eq!(detail["software"]["versions"]["unknown"], 4);
}

#[test]
fn assignments_and_the_audit_log_survive_a_restart() {
    let mut server = TestServer::start();
    let fw = server.upload_ok("p", "2.0", &image(200, 1));
    let (s, body) = server.put_json("/api/v1/products/p/firmware", &json!({"firmware": fw}));
    assert_eq!(s, 200, "{body}");
    let campaign = body["campaign"].as_u64().unwrap();
    let dir = server.keep_dir();
    server.stop();
    drop(server);

    let server = TestServer::start_with(common::test_config(dir.path()), None);
    let (_, got) = server.get("/api/v1/products/p/firmware");
    assert_eq!(got["firmware"]["campaign"], campaign);
    let mut dev = Device::new(server.coap, "late", "p");
    let (task, _) = task_of(&dev.poll("1.0"));
    assert_eq!(task, format!("c{campaign}"));
    let (_, audit) = server.get("/api/v1/audit");
    assert_eq!(
        actions(&audit),
        [
            format!("firmware.upload firmware/{fw}"),
            "assignment.set product/p".to_string()
        ]
    );
}

/// Issue 10 item 13 ("every write in the audit log names the token"):
/// every mutating route of the OpenAPI document (POST, PUT, PATCH,
/// DELETE) is exercised with a named token, and each successful call must
/// leave at least one new audit entry whose `actor` is that token's name.
/// A mutating route added without an exerciser here fails the test, so a
/// new write cannot slip past the audit log unnoticed.
#[test]
fn every_mutating_route_leaves_an_audit_entry_naming_its_token() {
    let server = TestServer::start();
    let (status, created) = server.post_json(
        "/api/v1/tokens",
        &json!({"name": "auditor", "role": "admin"}),
    );
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap().to_string();
    let call = |method: &str, path: &str, body: Option<Value>| -> (u16, Value) {
        let request = common::with_token(ureq::request(method, &server.url(path)), &token);
        common::http(match body {
            Some(b) => request.send_json(b),
            None => request.call(),
        })
    };
    let upload = |version: &str| -> (u16, Value) {
        let request = common::with_token(
            ureq::request(
                "POST",
                &server.url(&format!("/api/v1/firmware?product=p&version={version}")),
            ),
            &token,
        );
        common::http(request.send_bytes(&image(300, version.len() as u8)))
    };
    let last_id = || -> u64 {
        let (_, all) = server.get("/api/v1/audit?limit=10000");
        all.as_array()
            .and_then(|a| a.last())
            .and_then(|e| e["id"].as_u64())
            .unwrap_or(0)
    };
    let mut exercised: Vec<(String, String)> = Vec::new();
    let mut expect_audited = |method: &str, route: &str, (status, body): (u16, Value)| {
        assert!(
            (200..300).contains(&status),
            "{method} {route}: {status} {body}"
        );
        exercised.push((method.to_string(), route.to_string()));
    };
    // Each step: the call, then its audit entries (those after `before`).
    let check = |before: u64, method: &str, route: &str| {
        let (_, entries) = server.get(&format!("/api/v1/audit?after={before}"));
        let entries = entries.as_array().unwrap().clone();
        assert!(
            entries.iter().any(|e| e["actor"] == "auditor"),
            "{method} {route} left no audit entry naming the token: {entries:?}"
        );
    };
    macro_rules! step {
        ($method:expr, $route:expr, $call:expr) => {{
            let before = last_id();
            let result = $call;
            let body = result.1.clone();
            expect_audited($method, $route, result);
            check(before, $method, $route);
            body
        }};
    }

    step!(
        "POST",
        "/api/v1/tokens",
        call(
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": "spare", "role": "read"}))
        )
    );
    step!(
        "DELETE",
        "/api/v1/tokens/{name}",
        call("DELETE", "/api/v1/tokens/spare", None)
    );
    let fw2 = step!("POST", "/api/v1/firmware", upload("2.0"))["id"]
        .as_u64()
        .unwrap();
    let (s, fw3) = upload("3.00");
    assert_eq!(s, 201, "{fw3}");
    let fw3 = fw3["id"].as_u64().unwrap();
    step!(
        "PATCH",
        "/api/v1/firmware/{id}",
        call(
            "PATCH",
            &format!("/api/v1/firmware/{fw2}"),
            Some(json!({"description": "audited"}))
        )
    );
    step!(
        "POST",
        "/api/v1/devices",
        call(
            "POST",
            "/api/v1/devices",
            Some(json!([
                {"name": "a", "product": "p", "version": "1.0"},
                {"name": "b", "product": "p", "version": "1.0"}
            ]))
        )
    );
    step!(
        "POST",
        "/api/v1/products/{product}/signing-key",
        call("POST", "/api/v1/products/p/signing-key", None)
    );
    step!(
        "DELETE",
        "/api/v1/products/{product}/signing-key",
        call("DELETE", "/api/v1/products/p/signing-key", None)
    );
    let key = "00112233445566778899aabbccddeeff";
    step!(
        "PUT",
        "/api/v1/devices/{name}/psk",
        call(
            "PUT",
            "/api/v1/devices/a/psk",
            Some(json!({"identity": "id-a", "key": key}))
        )
    );
    step!(
        "PUT",
        "/api/v1/psks",
        call(
            "PUT",
            "/api/v1/psks",
            Some(json!({"credentials": [{"device": "b", "identity": "id-b", "key": key}]}))
        )
    );
    // Two waves of one device each; any failure in the first pauses.
    let c = step!(
        "POST",
        "/api/v1/campaigns",
        call(
            "POST",
            "/api/v1/campaigns",
            Some(json!({
                "firmware": fw2, "target": {"devices": ["a", "b"]}, "force": true,
                "waves": [{"percent": 50, "abort_failure_percent": 0}, {"percent": 100}]
            }))
        )
    );
    let id = c["id"].as_u64().unwrap();
    let mut a = Device::new(server.coap, "a", "p");
    let (task, _) = task_of(&a.poll("1.0"));
    a.report(&task, "failed", &[("error", common::device::text("flash"))]);
    let c = server.wait_for(
        &format!("/api/v1/campaigns/{id}"),
        std::time::Duration::from_secs(10),
        |c| c["status"] == "paused",
    );
    assert_eq!(c["status"], "paused");
    let campaign = |action: &str| format!("/api/v1/campaigns/{id}/{action}");
    step!(
        "POST",
        "/api/v1/campaigns/{id}/resume",
        call("POST", &campaign("resume"), Some(json!({})))
    );
    step!(
        "POST",
        "/api/v1/campaigns/{id}/retry",
        call("POST", &campaign("retry"), Some(json!({})))
    );
    step!(
        "POST",
        "/api/v1/campaigns/{id}/devices/{name}/cancel",
        call("POST", &campaign("devices/b/cancel"), Some(json!({})))
    );
    step!(
        "POST",
        "/api/v1/campaigns/{id}/devices/{name}/retry",
        call("POST", &campaign("devices/b/retry"), Some(json!({})))
    );
    step!(
        "POST",
        "/api/v1/campaigns/{id}/cancel-unseen",
        call("POST", &campaign("cancel-unseen"), Some(json!({})))
    );
    step!(
        "POST",
        "/api/v1/campaigns/{id}/cancel",
        call("POST", &campaign("cancel"), Some(json!({})))
    );
    step!(
        "DELETE",
        "/api/v1/campaigns/{id}",
        call("DELETE", &format!("/api/v1/campaigns/{id}"), None)
    );
    step!(
        "PUT",
        "/api/v1/products/{product}/firmware",
        call(
            "PUT",
            "/api/v1/products/p/firmware",
            Some(json!({"firmware": fw3}))
        )
    );
    step!(
        "PUT",
        "/api/v1/devices/{name}/firmware",
        call(
            "PUT",
            "/api/v1/devices/a/firmware",
            Some(json!({"firmware": fw2}))
        )
    );
    step!(
        "DELETE",
        "/api/v1/devices/{name}/firmware",
        call("DELETE", "/api/v1/devices/a/firmware", None)
    );
    step!(
        "DELETE",
        "/api/v1/products/{product}/firmware",
        call("DELETE", "/api/v1/products/p/firmware", None)
    );
    let (s, spare) = upload("4.000");
    assert_eq!(s, 201, "{spare}");
    let spare = spare["id"].as_u64().unwrap();
    step!(
        "DELETE",
        "/api/v1/firmware/{id}",
        call("DELETE", &format!("/api/v1/firmware/{spare}"), None)
    );

    // Every mutating route of the API was exercised above.
    let (_, doc) = server.get("/api/v1/openapi.json");
    let mut mutating: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                mutating.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    let missing: Vec<_> = mutating.iter().filter(|m| !exercised.contains(m)).collect();
    assert!(
        missing.is_empty(),
        "mutating routes without an audit check here: {missing:?}"
    );
}
