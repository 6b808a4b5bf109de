//! The web console over plain HTTP (no browser): the login form, the
//! session cookie's flags, logout, CSRF and origin refusals, read tokens,
//! escaping of device-supplied text, API errors next to form fields.
//! `tests/console_browser.rs` drives the same pages in Chromium.

use crate::common;

use std::time::Duration;

use common::device::{self, Device};
use common::TestServer;
use serde_json::json;

/// A browser-like client: no redirects followed, the session cookie kept
/// by hand (ureq 2 has no cookie jar without an extra crate).
struct Browser<'a> {
    server: &'a TestServer,
    agent: ureq::Agent,
    cookie: Option<String>,
}

struct Page {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of `<meta name="csrf-token" content="...">`.
    fn csrf(&self) -> String {
        let start = self
            .body
            .find("name=\"csrf-token\" content=\"")
            .expect("csrf meta")
            + 27;
        self.body[start..start + 64].to_string()
    }
}

impl<'a> Browser<'a> {
    fn new(server: &'a TestServer) -> Browser<'a> {
        Browser {
            server,
            agent: ureq::AgentBuilder::new().redirects(0).build(),
            cookie: None,
        }
    }

    fn send(&self, mut request: ureq::Request, body: Option<&str>) -> Page {
        if let Some(c) = &self.cookie {
            request = request.set("Cookie", c);
        }
        let result = match body {
            Some(form) => request
                .set("Content-Type", "application/x-www-form-urlencoded")
                .send_string(form),
            None => request.call(),
        };
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("transport error: {e}"),
        };
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .flat_map(|n| {
                response
                    .all(&n)
                    .into_iter()
                    .map(|v| (n.clone(), v.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let body = response.into_string().unwrap_or_default();
        Page {
            status,
            headers,
            body,
        }
    }

    fn get(&self, path: &str) -> Page {
        self.send(self.agent.get(&self.server.url(path)), None)
    }

    /// A same-origin form POST (the `Origin` a browser sends).
    fn post(&self, path: &str, form: &str) -> Page {
        let origin = format!("http://{}", self.server.http);
        self.send(
            self.agent
                .post(&self.server.url(path))
                .set("Origin", &origin),
            Some(form),
        )
    }

    fn login(&mut self, token: &str) -> Page {
        let page = self.post("/login", &format!("token={token}"));
        if let Some(set) = page.header("set-cookie") {
            self.cookie = set.split(';').next().map(str::to_string);
        }
        page
    }
}

fn read_token(server: &TestServer) -> String {
    let (status, body) =
        server.post_json("/api/v1/tokens", &json!({"name": "viewer", "role": "read"}));
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().expect("token").to_string()
}

#[test]
fn login_form_without_a_session_and_pages_redirect_to_it() {
    let server = TestServer::start();
    let b = Browser::new(&server);
    let home = b.get("/");
    assert_eq!(home.status, 200);
    assert!(
        home.body.contains(r#"type="password" name="token""#),
        "{}",
        home.body
    );
    assert!(home
        .header("content-security-policy")
        .is_some_and(|v| v.contains("default-src 'none'")));
    for path in ["/firmware", "/campaigns/1", "/devices/x", "/versions"] {
        let page = b.get(path);
        assert_eq!(page.status, 303, "{path}");
        assert_eq!(page.header("location"), Some("/"), "{path}");
    }
    // Assets are embedded and served without a session.
    assert_eq!(b.get("/console/console.css").status, 200);
    assert_eq!(b.get("/console/console.js").status, 200);
}

#[test]
fn login_sets_a_strict_http_only_cookie_and_logout_ends_the_session() {
    let server = TestServer::start();
    let mut b = Browser::new(&server);
    let refused = b.login("wrong-token");
    assert_eq!(refused.status, 401);
    assert!(refused.header("set-cookie").is_none());
    assert!(refused.body.contains("not accepted"));

    let ok = b.login(&server.token);
    assert_eq!(ok.status, 303);
    let cookie = ok.header("set-cookie").expect("cookie").to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    let page = b.get("/firmware");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("upload-form"));
    assert_eq!(page.header("cache-control"), Some("no-store"));

    // Logout needs the CSRF token too.
    assert_eq!(b.post("/logout", "csrf=0").status, 403);
    let csrf = page.csrf();
    let out = b.post("/logout", &format!("csrf={csrf}"));
    assert_eq!(out.status, 303);
    assert!(out
        .header("set-cookie")
        .is_some_and(|c| c.contains("Max-Age=0")));
    assert_eq!(b.get("/firmware").status, 303, "the old cookie still works");
}

#[test]
fn writes_need_the_csrf_token_and_a_same_site_origin() {
    let server = TestServer::start();
    let id = server.upload_ok("p", "1.0", &common::image(2048, 1));
    let mut b = Browser::new(&server);
    b.login(&server.token);
    let csrf = b.get("/firmware").csrf();

    let path = format!("/firmware/{id}/delete");
    assert_eq!(b.post(&path, "csrf=").status, 403);
    assert_eq!(
        b.post(&path, &format!("csrf={}", "0".repeat(64))).status,
        403
    );
    let cross = b.send(
        b.agent
            .post(&server.url(&path))
            .set("Origin", "http://evil.example"),
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(cross.status, 403);
    // The upload route takes the token in a header.
    let upload = b.send(
        b.agent
            .post(&server.url("/console/upload?product=p&version=2.0")),
        None,
    );
    assert_eq!(upload.status, 403);
    let (_, list) = server.get("/api/v1/firmware");
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "a refused request changed something"
    );

    let uploaded = b.send(
        b.agent
            .post(&server.url("/console/upload?product=p&version=2.0"))
            .set("X-CSRF-Token", &csrf),
        None,
    );
    // An empty body is the API's own refusal, passed through as JSON.
    assert_eq!(uploaded.status, 400, "{}", uploaded.body);
    assert!(uploaded.body.contains("empty image"));

    let deleted = b.post(&path, &format!("csrf={csrf}"));
    assert_eq!(deleted.status, 303, "{}", deleted.body);
    assert_eq!(server.get(&format!("/api/v1/firmware/{id}")).0, 404);
}

#[test]
fn delete_in_use_is_refused_with_the_reason() {
    let server = TestServer::start();
    let id = server.upload_ok("p", "2.0", &common::image(2048, 2));
    server.post_json(
        "/api/v1/devices",
        &json!({"name": "d1", "product": "p", "version": "1.0"}),
    );
    let (status, campaign) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": id, "target": {"all": true}}),
    );
    assert_eq!(status, 201, "{campaign}");
    let mut b = Browser::new(&server);
    b.login(&server.token);
    let csrf = b.get("/firmware").csrf();
    let refused = b.post(&format!("/firmware/{id}/delete"), &format!("csrf={csrf}"));
    assert_eq!(refused.status, 409);
    assert!(refused.body.contains("Not deleted"), "{}", refused.body);
    assert!(
        refused
            .body
            .contains(&format!("campaign {}", campaign["id"])),
        "{}",
        refused.body
    );
}

#[test]
fn a_read_token_sees_everything_and_changes_nothing() {
    let server = TestServer::start();
    let id = server.upload_ok("p", "1.0", &common::image(2048, 3));
    let read = read_token(&server);
    let mut b = Browser::new(&server);
    assert_eq!(b.login(&read).status, 303);
    let list = b.get("/firmware");
    assert_eq!(list.status, 200);
    assert!(list.body.contains("read-only"));
    assert!(!list.body.contains("upload-form"));
    let details = b.get(&format!("/firmware/{id}"));
    assert!(!details.body.contains("/delete"));
    let refused = b.post(
        &format!("/firmware/{id}/delete"),
        &format!("csrf={}", list.csrf()),
    );
    assert_eq!(refused.status, 403);
    assert_eq!(server.get(&format!("/api/v1/firmware/{id}")).0, 200);
    let form = b.post(
        "/campaigns",
        &format!("csrf={}&firmware={id}&target=all", list.csrf()),
    );
    assert_eq!(form.status, 403);
    assert_eq!(server.get("/api/v1/campaigns").1, json!([]));
}

#[test]
fn campaign_form_shows_the_api_message_next_to_the_field() {
    let server = TestServer::start();
    let id = server.upload_ok("p", "2.0", &common::image(2048, 4));
    let mut b = Browser::new(&server);
    b.login(&server.token);
    let csrf = b.get("/campaigns/new").csrf();
    let page = b.post(
        "/campaigns",
        &format!("csrf={csrf}&firmware={id}&target=devices&devices="),
    );
    assert_eq!(page.status, 400);
    assert!(page.body.contains(r#"id="devices-error""#), "{}", page.body);
    assert!(page.body.contains("must not be empty"));
    let bad_number = b.post(
        "/campaigns",
        &format!("csrf={csrf}&firmware={id}&target=all&timeout_s=soon"),
    );
    assert_eq!(bad_number.status, 400);
    assert!(bad_number.body.contains(r#"id="timeout_s-error""#));
    server.post_json(
        "/api/v1/devices",
        &json!({"name": "d1", "product": "p", "version": "1.0"}),
    );
    let created = b.post(
        "/campaigns",
        &format!("csrf={csrf}&firmware={id}&target=all"),
    );
    assert_eq!(created.status, 303, "{}", created.body);
    let location = created.header("location").unwrap().to_string();
    let live = b.get(&format!("{location}/live"));
    assert_eq!(live.status, 200);
    assert!(
        live.body.contains(r#"data-status="running""#),
        "{}",
        live.body
    );
}

#[test]
fn device_supplied_text_is_escaped() {
    let server = TestServer::start();
    let id = server.upload_ok("p", "2.0", &common::image(4096, 5));
    server.post_json(
        "/api/v1/devices",
        &json!({"name": "d1", "product": "p", "version": "1.0"}),
    );
    let (status, c) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": id, "target": {"all": true}}),
    );
    assert_eq!(status, 201);
    let mut dev = Device::new(server.coap, "d1", "p");
    let (task, _) = device::task_of(&dev.poll("1.0"));
    let hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    dev.report(&task, "failed", &[("error", device::text(hostile))]);
    let mut b = Browser::new(&server);
    b.login(&server.token);
    for path in [
        "/devices/d1".to_string(),
        format!("/campaigns/{}", c["id"]),
        format!("/campaigns/{}/live", c["id"]),
    ] {
        let page = b.get(&path);
        assert_eq!(page.status, 200, "{path}");
        assert!(
            !page.body.contains("<script>alert"),
            "{path}: {}",
            page.body
        );
        assert!(!page.body.contains("<img src=x"), "{path}");
        assert!(
            page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}: {}",
            page.body
        );
    }
}

#[test]
fn sessions_expire() {
    let server = TestServer::start_with_manual_clock();
    let mut b = Browser::new(&server);
    b.login(&server.token);
    assert_eq!(b.get("/devices").status, 200);
    server.advance(Duration::from_secs(8 * 3600 + 1));
    assert_eq!(b.get("/devices").status, 303);
    assert_eq!(
        b.get("/campaigns/1/live").status,
        401,
        "a polling script gets 401"
    );
}

#[test]
fn revoking_a_token_ends_its_console_sessions() {
    let server = TestServer::start();
    let read = read_token(&server);
    let mut b = Browser::new(&server);
    assert_eq!(b.login(&read).status, 303);
    assert_eq!(b.get("/devices").status, 200);
    let (status, body) = server.delete("/api/v1/tokens/viewer");
    assert!(status == 204 || status == 200, "{status} {body}");
    assert_eq!(
        b.get("/devices").status,
        303,
        "a revoked token's session lives on"
    );
}

#[test]
fn retry_and_resume_buttons_go_through_the_api_rules() {
    let server = TestServer::start();
    let id = server.upload_ok("p", "2.0", &common::image(2048, 5));
    server.post_json(
        "/api/v1/devices",
        &json!({"name": "d1", "product": "p", "version": "1.0"}),
    );
    let (status, c) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": id, "target": {"all": true}}),
    );
    assert_eq!(status, 201, "{c}");
    let cid = c["id"].as_u64().unwrap();
    let mut dev = Device::new(server.coap, "d1", "p");
    let (task, _) = device::task_of(&dev.poll("1.0"));
    dev.report(&task, "failed", &[("error", device::text("no space"))]);
    let tasks = format!("/api/v1/campaigns/{cid}/devices");
    server.wait_for(&tasks, Duration::from_secs(5), |t| {
        t[0]["state"] == "failed"
    });

    let mut b = Browser::new(&server);
    b.login(&server.token);
    let back = format!("/campaigns/{cid}");
    let csrf = b.get(&back).csrf();
    // Without the CSRF token nothing happens.
    assert_eq!(b.post(&format!("{back}/retry"), "csrf=").status, 403);
    assert_eq!(server.get(&tasks).1[0]["state"], "failed");
    let retried = b.post(&format!("{back}/retry"), &format!("csrf={csrf}"));
    assert_eq!(retried.status, 303, "{}", retried.body);
    assert_eq!(retried.header("location"), Some(back.as_str()));
    assert_eq!(server.get(&tasks).1[0]["state"], "queued");
    // A running campaign is not paused: the API's own refusal, shown.
    let resumed = b.post(&format!("{back}/resume"), &format!("csrf={csrf}"));
    assert_eq!(resumed.status, 409, "{}", resumed.body);
}

#[test]
fn audit_page_lists_api_changes_with_the_token_name() {
    let server = TestServer::start();
    server.upload_ok("meter", "4.2", &common::image(2048, 6));
    let tokens = server.get("/api/v1/tokens").1;
    let name = tokens[0]["name"].as_str().expect("token name").to_string();
    let mut b = Browser::new(&server);
    b.login(&server.token);
    let page = b.get("/audit");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("firmware.upload"), "{}", page.body);
    assert!(page.body.contains(&name), "{}", page.body);
    assert!(!page.body.contains("no audit log"));
    // Paging: after the last entry there is nothing more.
    let last = server.get("/api/v1/audit").1.as_array().unwrap().len();
    let after = b.get(&format!("/audit?after={last}"));
    assert_eq!(after.status, 200);
    assert!(after.body.contains("No entries"), "{}", after.body);
    assert!(after.body.contains(r#"href="/audit""#));
}
