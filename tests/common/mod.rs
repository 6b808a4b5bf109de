//! Shared test harness: real servers on 127.0.0.1 port 0 with a real redb
//! file in a temp dir, in-process (with an injectable clock) or as a child
//! process (for kill -9 and CLI tests).

#![allow(dead_code)]

pub mod cli;
pub mod device;
pub mod lwm2m;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lwota::config::Config;
use lwota::server::SystemClock;
use lwota::time::{Clock, ManualClock};
use serde_json::Value;

pub struct TestServer {
    pub coap: SocketAddr,
    /// The CoAPS (DTLS-PSK) address.
    pub coaps: Option<SocketAddr>,
    pub http: SocketAddr,
    pub dir: PathBuf,
    pub clock: Option<Arc<ManualClock>>,
    /// The admin token the server wrote on first start (issue 11); every
    /// helper below sends it.
    pub token: String,
    runtime: Option<tokio::runtime::Runtime>,
    running: Option<lwota::server::Running>,
    _tmp: Option<tempfile::TempDir>,
}

pub fn test_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.server.data_dir = dir.to_path_buf();
    config.server.coap_bind = "127.0.0.1:0".parse().unwrap();
    config.server.http_bind = "127.0.0.1:0".parse().unwrap();
    config.server.coaps_bind = "127.0.0.1:0".parse().unwrap();
    config.devices.poll_interval = 1;
    config
}

impl TestServer {
    pub fn start() -> TestServer {
        let tmp = tempfile::tempdir().unwrap();
        let config = test_config(tmp.path());
        let mut server = TestServer::start_with(config, None);
        server._tmp = Some(tmp);
        server
    }

    /// A server whose clock only moves when the test says so.
    pub fn start_with_manual_clock() -> TestServer {
        let tmp = tempfile::tempdir().unwrap();
        let config = test_config(tmp.path());
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let mut server = TestServer::start_with(config, Some(clock));
        server._tmp = Some(tmp);
        server
    }

    pub fn start_with(config: Config, clock: Option<Arc<ManualClock>>) -> TestServer {
        TestServer::start_on(config, clock, None)
    }

    /// Like `start_with`, opening the database through `opener` (for
    /// fault injection, `lwota::store::fault`).
    pub fn start_on(
        config: Config,
        clock: Option<Arc<ManualClock>>,
        opener: Option<lwota::store::recovery::Opener>,
    ) -> TestServer {
        // `LWOTA_TEST_LOG=lwota=debug` shows the in-process server's log.
        if let Ok(filter) = std::env::var("LWOTA_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dyn_clock: Arc<dyn Clock> = match &clock {
            Some(c) => c.clone(),
            None => Arc::new(SystemClock::new()),
        };
        let dir = config.server.data_dir.clone();
        let running = runtime
            .block_on(lwota::server::start_on(config, dyn_clock, opener))
            .expect("server starts");
        let token = read_token(&dir);
        TestServer {
            coap: running.coap_addr,
            coaps: running.coaps_addr,
            http: running.http_addr,
            dir,
            clock,
            token,
            runtime: Some(runtime),
            running: Some(running),
            _tmp: None,
        }
    }

    /// Stops the server cleanly, keeping the data dir.
    pub fn stop(&mut self) {
        if let (Some(rt), Some(running)) = (self.runtime.as_ref(), self.running.take()) {
            rt.block_on(running.stop());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }

    /// Takes the temp dir out so it outlives this server (for restarts).
    pub fn keep_dir(&mut self) -> tempfile::TempDir {
        self._tmp.take().expect("temp dir")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub fn advance(&self, by: Duration) {
        self.clock
            .as_ref()
            .expect("manual clock")
            .advance_ms(by.as_millis() as u64);
    }

    /// A request to `path` carrying the admin token.
    pub fn request(&self, method: &str, path: &str) -> ureq::Request {
        with_token(ureq::request(method, &self.url(path)), &self.token)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        http(self.request("GET", path).call())
    }

    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        http(self.request("POST", path).send_json(body.clone()))
    }

    pub fn put_json(&self, path: &str, body: &Value) -> (u16, Value) {
        http(self.request("PUT", path).send_json(body.clone()))
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        http(self.request("DELETE", path).call())
    }

    pub fn patch_json(&self, path: &str, body: &Value) -> (u16, Value) {
        http(self.request("PATCH", path).send_json(body.clone()))
    }

    /// `GET path` with the `Link` header's next-page target, if any.
    pub fn get_page(&self, path: &str) -> (u16, Value, Option<String>) {
        let result = self.request("GET", path).call();
        let link = match &result {
            Ok(r) => r.header("link").map(str::to_string),
            Err(_) => None,
        };
        let next = link.and_then(|l| {
            let start = l.find('<')? + 1;
            let end = l.find('>')?;
            Some(l[start..end].to_string())
        });
        let (status, body) = http(result);
        (status, body, next)
    }

    pub fn upload(&self, query: &str, image: &[u8]) -> (u16, Value) {
        http(
            self.request("POST", &format!("/api/v1/firmware?{query}"))
                .send_bytes(image),
        )
    }

    /// Uploads and returns the firmware id.
    pub fn upload_ok(&self, product: &str, version: &str, image: &[u8]) -> u64 {
        let (status, body) = self.upload(&format!("product={product}&version={version}"), image);
        assert_eq!(status, 201, "{body}");
        body["id"].as_u64().unwrap()
    }

    /// `GET path` as text (for `/metrics`): status and body.
    pub fn get_text(&self, path: &str) -> (u16, String) {
        match self.request("GET", path).call() {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
            Err(e) => panic!("http transport error: {e}"),
        }
    }

    /// The methods the router answers on `path`: the `Allow` header of
    /// the 405 to a method no route uses (TRACE).
    pub fn allowed_methods(&self, path: &str) -> Vec<String> {
        let response = match self.request("TRACE", path).call() {
            Err(ureq::Error::Status(405, r)) => r,
            other => panic!("TRACE {path}: expected 405, got {other:?}"),
        };
        response
            .header("allow")
            .unwrap_or("")
            .split(',')
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect()
    }

    /// Polls `GET path` until `pred` holds or `timeout` passes.
    pub fn wait_for(&self, path: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let (_, body) = self.get(path);
            if pred(&body) {
                return body;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out waiting on {path}: {body}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The admin token a server wrote to `data_dir` on its first start.
pub fn read_token(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("admin.token"))
        .map(|t| t.trim().to_string())
        .unwrap_or_default()
}

/// `request` with `Authorization: Bearer token`.
pub fn with_token(request: ureq::Request, token: &str) -> ureq::Request {
    request.set("Authorization", &format!("Bearer {token}"))
}

pub fn http(result: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    match result {
        Ok(r) => {
            let status = r.status();
            let text = r.into_string().unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        }
        Err(ureq::Error::Status(status, r)) => {
            let text = r.into_string().unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        }
        Err(e) => panic!("http transport error: {e}"),
    }
}

/// Deterministic pseudo-random bytes.
pub fn image(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// The server as a child process (`lwota serve`), for kill -9 and CLI tests.
pub struct ChildServer {
    pub child: Child,
    pub coap: SocketAddr,
    pub http: SocketAddr,
    /// The admin token from the data dir (issue 11).
    pub token: String,
}

impl ChildServer {
    pub fn spawn(data_dir: &Path, coap_bind: &str, http_bind: &str) -> ChildServer {
        ChildServer::spawn_with(data_dir, coap_bind, http_bind, &[])
    }

    /// `spawn` with more `serve` arguments (`--config FILE`).
    pub fn spawn_with(
        data_dir: &Path,
        coap_bind: &str,
        http_bind: &str,
        extra: &[&std::ffi::OsStr],
    ) -> ChildServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lwota"))
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .args(["--coap-bind", coap_bind, "--http-bind", http_bind])
            .args(["--coaps-bind", "127.0.0.1:0"])
            // `LWOTA_TEST_LOG=lwota=debug` shows the server's log in a test run.
            .env(
                "RUST_LOG",
                std::env::var("LWOTA_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn lwota serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut coap = None;
        let mut http = None;
        while coap.is_none() || http.is_none() {
            let line = lines.next().expect("server printed its addresses").unwrap();
            if let Some(a) = line.strip_prefix("coap listening on ") {
                coap = Some(a.trim().parse().unwrap());
            }
            if let Some(a) = line.strip_prefix("http listening on ") {
                http = Some(a.trim().parse().unwrap());
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ChildServer {
            child,
            coap: coap.unwrap(),
            http: http.unwrap(),
            token: read_token(data_dir),
        }
    }

    /// A request to `path` carrying the admin token.
    pub fn request(&self, method: &str, path: &str) -> ureq::Request {
        with_token(
            ureq::request(method, &format!("http://{}{path}", self.http)),
            &self.token,
        )
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL on unix
        let _ = self.child.wait();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// libcoap's client: Debian ships it as coap-client-notls/-openssl/-gnutls.
/// Missing tool = failed test, never a skip.
pub fn coap_client() -> String {
    for name in [
        "coap-client",
        "coap-client-notls",
        "coap-client-openssl",
        "coap-client-gnutls",
    ] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
        {
            return name.to_string();
        }
    }
    panic!("libcoap coap-client not found: install libcoap3-bin (scripts/test.sh does)");
}

pub fn python_with_aiocoap() -> String {
    let ok = Command::new("python3")
        .args(["-c", "import aiocoap, cbor2"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "python3 with aiocoap and cbor2 not found: pip install aiocoap cbor2 (scripts/test.sh does)");
    "python3".to_string()
}

pub fn sim_config(
    server: &TestServer,
    devices: usize,
    prefix: &str,
    product: &str,
    version: &str,
) -> lwota::sim::SimConfig {
    lwota::sim::SimConfig {
        server: server.coap,
        devices,
        product: product.into(),
        version: version.into(),
        prefix: prefix.into(),
        block: 1024,
        poll_interval: Duration::from_millis(100),
        failure_rate: 0.0,
        client: lwota::sim::ClientConfig {
            ack_timeout: Duration::from_millis(500),
            ..Default::default()
        },
        duration: Duration::from_secs(60),
        stop_when_done: true,
        observe: false,
        verify_key: None,
    }
}

pub fn run_sim(config: lwota::sim::SimConfig) -> lwota::sim::SimReport {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(lwota::sim::run(config))
}

/// A file under the repository's `fixtures/` (see fixtures/README.md).
pub fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(relative)
}
