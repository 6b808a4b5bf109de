//! The store seen from outside: the timer scheduler waking for a timer a
//! write set, paged listings with a next link, chunked registration.

use crate::common;

use std::time::Duration;

use common::device::{task_of, Device};
use common::*;
use serde_json::{json, Value};

fn register(server: &TestServer, prefix: &str, n: usize) {
    let list: Vec<Value> = (0..n)
        .map(|i| json!({"name": format!("{prefix}{i:05}"), "product": "p", "version": "1.0"}))
        .collect();
    let (status, body) = server.post_json("/api/v1/devices", &json!(list));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["created"], n, "{body}");
}

fn campaign_all(server: &TestServer, fw: u64) -> u64 {
    let (status, c) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": fw, "target": {"all": true}}),
    );
    assert_eq!(status, 201, "{c}");
    c["id"].as_u64().unwrap()
}

/// GET returning the body and the `Link: <...>; rel="next"` target.
fn get_page(server: &TestServer, path: &str) -> (Vec<Value>, Option<String>) {
    let response = server.request("GET", path).call().expect("200");
    let next = response.header("link").map(|link| {
        assert!(link.ends_with("; rel=\"next\""), "{link}");
        link[1..link.find('>').unwrap()].to_string()
    });
    let body: Value = response.into_json().unwrap();
    (body.as_array().unwrap().clone(), next)
}

#[test]
fn scheduler_wakes_for_a_timer_a_write_set_while_it_slept() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.tasks.timeout = 1;
    let server = TestServer::start_with(config, None);
    register(&server, "s", 1);
    let fw = server.upload_ok("p", "2.0", &image(100, 1));
    let cid = campaign_all(&server, fw);
    // The scheduler has no timer and sleeps without a deadline; the poll's
    // commit sets one and must wake it.
    let mut dev = Device::new(server.coap, "s00000", "p");
    task_of(&dev.poll("1.0"));
    let failed = server.wait_for(
        &format!("/api/v1/campaigns/{cid}/devices?state=failed"),
        Duration::from_secs(10),
        |l| l.as_array().is_some_and(|a| a.len() == 1),
    );
    assert_eq!(failed[0]["error"], "timeout");
}

#[test]
fn campaign_devices_and_history_page_with_a_next_link() {
    let server = TestServer::start();
    register(&server, "g", 5);
    let fw = server.upload_ok("p", "2.0", &image(100, 2));
    let cid = campaign_all(&server, fw);

    let mut path = format!("/api/v1/campaigns/{cid}/devices?limit=2");
    let mut seen = Vec::new();
    for _ in 0..10 {
        let (page, next) = get_page(&server, &path);
        assert!(page.len() <= 2);
        seen.extend(
            page.iter()
                .map(|t| t["device"].as_str().unwrap().to_string()),
        );
        match next {
            Some(next) => path = next,
            None => break,
        }
    }
    let expected: Vec<String> = (0..5).map(|i| format!("g{i:05}")).collect();
    assert_eq!(seen, expected);
    // Filters carry over to the next page.
    let (page, next) = get_page(
        &server,
        &format!("/api/v1/campaigns/{cid}/devices?state=queued&limit=4"),
    );
    assert_eq!(page.len(), 4);
    let next = next.expect("a next link");
    assert!(next.contains("state=queued"), "{next}");
    let (rest, _) = get_page(&server, &next);
    assert_eq!(rest.len(), 1);

    // History: registered + queued, paged one at a time.
    let (first, next) = get_page(&server, "/api/v1/devices/g00000/history?limit=1");
    assert_eq!(first[0]["event"], "registered");
    let (second, _) = get_page(&server, &next.expect("a next link"));
    assert_eq!(second[0]["event"], "queued");
    // Without a limit, a short history comes whole and without a link.
    let (all, next) = get_page(&server, "/api/v1/devices/g00000/history");
    assert_eq!(all.len(), 2);
    assert!(next.is_none());
}

#[test]
fn registering_more_devices_than_one_chunk_registers_them_all() {
    let server = TestServer::start();
    register(&server, "r", 2_500);
    let (_, again) = server.post_json(
        "/api/v1/devices",
        &json!([{"name": "r00000", "product": "p"}, {"name": "new", "product": "p"}]),
    );
    assert_eq!(again["created"], 1);
    assert_eq!(again["existing"], json!(["r00000"]));
    let (_, versions) = server.get("/api/v1/versions");
    assert_eq!(versions["1.0"], 2_500);
}
