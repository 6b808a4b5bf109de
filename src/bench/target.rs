//! What the benchmark measures against: an `lwota serve` child process,
//! the peer servers (aiocoap-fileserver, libcoap coap-server) and a plain
//! UDP echo that marks the ceiling.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

/// `lwota serve` as a child, so its RSS is its own.
pub struct ServerProcess {
    child: Child,
    pub coap: SocketAddr,
    pub http: SocketAddr,
    /// The CoAPS (DTLS-PSK) address.
    pub coaps: Option<SocketAddr>,
    /// The admin token the server wrote to its data dir (issue 11).
    pub token: String,
}

impl ServerProcess {
    /// Starts `lwota serve`; `shards` sets `[coap] shards` through a
    /// config file written beside `data_dir`.
    pub fn start(data_dir: &Path, shards: Option<usize>) -> anyhow::Result<ServerProcess> {
        ServerProcess::start_with(data_dir, shards, "")
    }

    /// Like [`start`](Self::start), with more `[coap]` lines (`key = value`).
    pub fn start_with(
        data_dir: &Path,
        shards: Option<usize>,
        coap_lines: &str,
    ) -> anyhow::Result<ServerProcess> {
        let exe = std::env::current_exe().context("cannot find own executable")?;
        let mut command = Command::new(exe);
        command.arg("serve");
        if shards.is_some() || !coap_lines.is_empty() {
            let file = data_dir.with_extension("toml");
            let shards = shards
                .map(|n| format!("shards = {n}\n"))
                .unwrap_or_default();
            std::fs::write(&file, format!("[coap]\n{shards}{coap_lines}"))
                .with_context(|| format!("cannot write {}", file.display()))?;
            command.arg("--config").arg(file);
        }
        let mut child = command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--coap-bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0"])
            .args(["--coaps-bind", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start lwota serve")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut coap, mut http, mut coaps) = (None, None, None);
        while coap.is_none() || http.is_none() {
            let line = lines
                .next()
                .ok_or_else(|| anyhow!("server exited before listening"))??;
            if let Some(a) = line.strip_prefix("coap listening on ") {
                coap = Some(a.trim().parse()?);
            } else if let Some(a) = line.strip_prefix("coaps listening on ") {
                coaps = Some(a.trim().parse()?);
            } else if let Some(a) = line.strip_prefix("http listening on ") {
                http = Some(a.trim().parse()?);
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Ok(ServerProcess {
            child,
            coap: coap.ok_or_else(|| anyhow!("no coap address"))?,
            coaps,
            http: http.ok_or_else(|| anyhow!("no http address"))?,
            token: std::fs::read_to_string(data_dir.join("admin.token"))
                .map(|t| t.trim().to_string())
                .context("no admin token in the data dir")?,
        })
    }

    pub fn rss_bytes(&self) -> u64 {
        rss_of(self.child.id())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// A request to `path` on `agent` with the admin token.
    pub fn request(&self, agent: &ureq::Agent, method: &str, path: &str) -> ureq::Request {
        agent
            .request(method, &self.url(path))
            .set("Authorization", &format!("Bearer {}", self.token))
    }

    /// SIGTERM and wait (a clean stop flushes).
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident set size of a process, from /proc.
pub fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// A peer CoAP server serving `image` at `path`.
pub struct Peer {
    child: Child,
    pub addr: SocketAddr,
    pub path: String,
}

impl Peer {
    /// Wraps a started peer once it serves `path` on loopback `port`.
    fn ready(child: Child, port: u16, path: &str) -> anyhow::Result<Peer> {
        let peer = Peer {
            child,
            addr: ([127, 0, 0, 1], port).into(),
            path: path.into(),
        };
        wait_ready(peer.addr, &peer.path)?;
        Ok(peer)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp_port() -> anyhow::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn first_on_path(names: &[&str]) -> Option<String> {
    names.iter().find_map(|name| {
        Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| name.to_string())
    })
}

/// Waits until a CoAP GET of `path` answers 2.05.
fn wait_ready(addr: SocketAddr, path: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let config = crate::sim::ClientConfig {
            ack_timeout: Duration::from_millis(200),
            max_retransmit: 1,
            loss: 0.0,
        };
        let mut client = crate::sim::CoapClient::connect(addr, config).await?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(p) = client
                .request(coap_lite::RequestType::Get, path, &[], vec![])
                .await
            {
                if matches!(
                    p.header.code,
                    coap_lite::MessageClass::Response(coap_lite::ResponseType::Content)
                ) {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("peer at {addr} did not serve {path}")
    })
}

pub fn start_aiocoap(image: &Path, dir: &Path) -> anyhow::Result<Peer> {
    let exe = first_on_path(&["aiocoap-fileserver"])
        .ok_or_else(|| anyhow!("aiocoap-fileserver not found (pip install aiocoap)"))?;
    std::fs::copy(image, dir.join("fw.bin"))?;
    let port = free_udp_port()?;
    let child = Command::new(exe)
        .arg(dir)
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Peer::ready(child, port, "/fw.bin")
}

pub fn start_libcoap(image: &Path) -> anyhow::Result<Peer> {
    let server = first_on_path(&[
        "coap-server",
        "coap-server-notls",
        "coap-server-openssl",
        "coap-server-gnutls",
    ])
    .ok_or_else(|| anyhow!("libcoap coap-server not found (apt install libcoap3-bin)"))?;
    let client = first_on_path(&[
        "coap-client",
        "coap-client-notls",
        "coap-client-openssl",
        "coap-client-gnutls",
    ])
    .ok_or_else(|| anyhow!("libcoap coap-client not found"))?;
    let port = free_udp_port()?;
    let child = Command::new(server)
        .args([
            "-A",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-d",
            "10",
            "-v",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new(client)
        .args(["-m", "put", "-b", "1024", "-f"])
        .arg(image)
        .arg(format!("coap://127.0.0.1:{port}/fw"))
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("uploading the image to coap-server failed");
    }
    Peer::ready(child, port, "/fw")
}

/// A plain UDP echo on a thread: answers each datagram with the request's
/// header and token plus `payload` bytes, which is the least work any
/// server can do per block.
pub struct Echo {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Echo {
    pub fn start(payload: usize) -> anyhow::Result<Echo> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut out = vec![0u8; 12 + 1 + payload];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if n < 4 {
                    continue;
                }
                let tkl = usize::from(buf[0] & 0x0f).min(8).min(n - 4);
                // ACK, 2.05, same message id and token, payload marker.
                out[0] = 0x60 | tkl as u8;
                out[1] = 0x45;
                out[2] = buf[2];
                out[3] = buf[3];
                out[4..4 + tkl].copy_from_slice(&buf[4..4 + tkl]);
                out[4 + tkl] = 0xff;
                let len = 5 + tkl + payload;
                let _ = socket.send_to(&out[..len], peer);
            }
        });
        Ok(Echo { addr, stop })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
