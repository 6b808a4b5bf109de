//! The tokio shell of one simulated LwM2M client: a UDP socket and a
//! sans-IO `coap::Endpoint` (server and client on the socket it registers
//! from, as LwM2M requires), registration and updates at the configured
//! interval, queue mode (awake for a window after each Update, deaf
//! otherwise), and pull downloads from a second socket (a new source port,
//! as real clients do).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use tokio::net::UdpSocket;

use super::content;
use super::objects::{self, Action, Objects};
use super::{Lwm2mConfig, Lwm2mOutcome};
use crate::coap::{
    ClientLimits, Endpoint, EndpointConfig, Event, ExchangeId, ObserveLimits, RelationId,
};

/// Largest package a simulated device takes (pushed or pulled).
const MAX_PACKAGE: usize = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegOp {
    Register,
    Update,
    Deregister,
}

struct Observer {
    relation: RelationId,
    path: String,
    format: u16,
}

struct Download {
    socket: UdpSocket,
    local: SocketAddr,
    ep: Endpoint,
    exchange: ExchangeId,
}

struct Device<'a> {
    cfg: &'a Lwm2mConfig,
    ep: Endpoint,
    local: SocketAddr,
    objects: Objects,
    queue: bool,
    observers: Vec<Observer>,
    location: Option<String>,
    reg: Option<(ExchangeId, RegOp)>,
    next_update: Option<Instant>,
    /// Queue mode: deaf from this instant until the next update.
    sleep_at: Option<Instant>,
    asleep: bool,
    install_at: Option<Instant>,
    download: Option<Download>,
    /// When the device stops (a final result was reached; `linger` later).
    stop_at: Option<Instant>,
    gave_up: bool,
    out: Lwm2mOutcome,
}

fn endpoint_config(cfg: &Lwm2mConfig) -> EndpointConfig {
    let mut config = EndpointConfig {
        params: cfg.params.clone(),
        dedup_capacity: 256,
        client: ClientLimits {
            max_exchanges: 16,
            max_queued_per_peer: 16,
            max_body: MAX_PACKAGE,
            ..ClientLimits::default()
        },
        observe: ObserveLimits {
            max_relations: 16,
            max_per_peer: 16,
        },
        // Reads carry Accept: the client answers in the format asked for.
        understand_accept: true,
        ..EndpointConfig::default()
    };
    config.block1.max_body = MAX_PACKAGE;
    config.block1.max_total_bytes = MAX_PACKAGE;
    config.block1.max_assemblies = 4;
    config
}

async fn bind_like(peer: SocketAddr) -> std::io::Result<UdpSocket> {
    let bind: SocketAddr = if peer.is_ipv4() {
        ([127, 0, 0, 1], 0).into()
    } else {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    };
    let bind = if peer.ip().is_loopback() {
        bind
    } else if peer.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    UdpSocket::bind(bind).await
}

pub async fn run(cfg: &Lwm2mConfig, index: usize, until: Instant) -> Lwm2mOutcome {
    let name = format!("{}{index:05}", cfg.prefix);
    let queue = cfg.is_queue(index);
    let mut out = Lwm2mOutcome {
        name: name.clone(),
        version: cfg.version.clone(),
        queue,
        ..Default::default()
    };
    let socket = match bind_like(cfg.server).await {
        Ok(s) => s,
        Err(e) => {
            out.errors += 1;
            out.last_error = Some(format!("cannot open a UDP socket: {e}"));
            return out;
        }
    };
    let local = socket.local_addr().unwrap_or(cfg.server);
    let binding = if queue && !cfg.v10 { "UQ" } else { "U" };
    let objects = Objects {
        name,
        version: cfg.version.clone(),
        v10: cfg.v10,
        binding: if queue { "UQ".into() } else { binding.into() },
        lifetime: cfg.lifetime,
        delivery: cfg.delivery,
        package_uri: String::new(),
        state: objects::IDLE,
        result: 0,
        fail: cfg.fail_of(index),
        new_version: cfg.new_version.clone(),
        package_len: 0,
    };
    let mut device = Device {
        cfg,
        ep: Endpoint::new(endpoint_config(cfg), rand::random()),
        local,
        objects,
        queue,
        observers: Vec::new(),
        location: None,
        reg: None,
        next_update: None,
        sleep_at: None,
        asleep: false,
        install_at: None,
        download: None,
        stop_at: None,
        gave_up: false,
        out,
    };
    if !cfg.start_spread.is_zero() && cfg.devices > 1 {
        let delay = cfg.start_spread.mul_f64(index as f64 / cfg.devices as f64);
        tokio::time::sleep(delay.min(until.saturating_duration_since(Instant::now()))).await;
    }
    device.register(Instant::now());
    device.main_loop(&socket, until).await;
    device.out.version = device.objects.version.clone();
    device.out.result = device.objects.result;
    device.out
}

impl Device<'_> {
    async fn main_loop(&mut self, socket: &UdpSocket, until: Instant) {
        let mut buf = vec![0u8; 2048];
        let mut dl_buf = vec![0u8; 2048];
        let mut deregistering = false;
        loop {
            self.flush(socket).await;
            let now = Instant::now();
            if self.gave_up {
                return;
            }
            let stop = self.stop_at.is_some_and(|t| now >= t) || now >= until;
            if stop && !deregistering {
                if self.location.is_none() || now >= until || !self.cfg.deregister {
                    return;
                }
                // A clean exit de-registers (TS Core §6.2.3).
                deregistering = true;
                self.asleep = false;
                self.send_reg(now, RegOp::Deregister);
                self.flush(socket).await;
            }
            if deregistering && self.reg.is_none() {
                return;
            }
            let deadline = self.next_deadline().min(until);
            let deadline = if deregistering {
                deadline.min(now + Duration::from_secs(5))
            } else {
                deadline
            };
            let download = self.download.as_ref();
            tokio::select! {
                received = socket.recv_from(&mut buf) => {
                    let now = Instant::now();
                    if let Ok((n, peer)) = received {
                        // Queue mode: a sleeping radio hears nothing.
                        if !self.asleep {
                            self.ep.handle(now, self.local, peer, &buf[..n]);
                        }
                    }
                }
                received = async {
                    match download {
                        Some(d) => d.socket.recv_from(&mut dl_buf).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = Instant::now();
                    if let (Ok((n, peer)), Some(d)) = (received, self.download.as_mut()) {
                        d.ep.handle(now, d.local, peer, &dl_buf[..n]);
                    }
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                    let now = Instant::now();
                    if deregistering && now >= deadline {
                        return;
                    }
                    self.on_timer(now);
                }
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        [
            self.ep.poll_timeout(),
            self.download.as_ref().and_then(|d| d.ep.poll_timeout()),
            self.next_update,
            self.sleep_at.filter(|_| !self.asleep),
            self.install_at,
            self.stop_at,
        ]
        .into_iter()
        .flatten()
        .fold(far, Instant::min)
    }

    fn on_timer(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
        if let Some(d) = self.download.as_mut() {
            d.ep.handle_timeout(now);
        }
        if self.install_at.is_some_and(|t| now >= t) {
            self.install_at = None;
            let before = self.snapshot();
            self.objects.installed();
            self.changed(now, before);
            if self.objects.result == objects::RESULT_SUCCESS {
                // "Rebooted" on the new image: tell the server at once.
                self.next_update = Some(now);
            }
        }
        if self.next_update.is_some_and(|t| now >= t) && self.reg.is_none() {
            self.next_update = None;
            self.asleep = false;
            self.sleep_at = None;
            if self.location.is_some() {
                self.send_reg(now, RegOp::Update);
            } else {
                self.register(now);
            }
        }
        if self.sleep_at.is_some_and(|t| now >= t) && !self.asleep {
            if self.busy() {
                self.sleep_at = Some(now + self.cfg.queue_window);
            } else {
                self.asleep = true;
                self.sleep_at = None;
            }
        }
    }

    /// Work in progress keeps a queue-mode device awake.
    fn busy(&self) -> bool {
        self.download.is_some()
            || self.install_at.is_some()
            || self.reg.is_some()
            || self.ep.load().0 > 0
    }

    fn register(&mut self, now: Instant) {
        self.send_reg(now, RegOp::Register);
    }

    fn send_reg(&mut self, now: Instant, op: RegOp) {
        let mut p = Packet::new();
        match op {
            RegOp::Register => {
                p.header.code = MessageClass::Request(RequestType::Post);
                p.add_option(CoapOption::UriPath, b"rd".to_vec());
                let cfg = self.cfg;
                let mut query = vec![
                    format!("ep={}", self.objects.name),
                    format!("lt={}", cfg.lifetime),
                    format!("lwm2m={}", if cfg.v10 { "1.0" } else { "1.1" }),
                ];
                // Queue mode: `b=UQ` in 1.0, a bare `Q` in 1.1 (TS Core
                // §6.2.1.1 and 1.0's binding modes).
                match (self.queue, cfg.v10) {
                    (true, true) => query.push("b=UQ".into()),
                    (true, false) => {
                        query.push("b=U".into());
                        query.push("Q".into());
                    }
                    (false, _) => query.push("b=U".into()),
                }
                for q in query {
                    p.add_option(CoapOption::UriQuery, q.into_bytes());
                }
                p.add_option(
                    CoapOption::ContentFormat,
                    crate::coap::message::uint(content::LINK.into()),
                );
                p.payload = self.objects.links().into_bytes();
            }
            RegOp::Update | RegOp::Deregister => {
                let method = if op == RegOp::Update {
                    RequestType::Post
                } else {
                    RequestType::Delete
                };
                p.header.code = MessageClass::Request(method);
                for segment in self.location.as_deref().unwrap_or("rd").split('/') {
                    if !segment.is_empty() {
                        p.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
                    }
                }
            }
        }
        let id = self.ep.request(now, self.cfg.server, p);
        self.reg = Some((id, op));
    }

    /// Sends what the endpoints have to send and handles their events
    /// (the drain rule of `coap::endpoint`).
    async fn flush(&mut self, socket: &UdpSocket) {
        loop {
            let mut progress = false;
            while let Some(event) = self.ep.poll_event() {
                progress = true;
                self.on_event(Instant::now(), event);
            }
            while let Some(t) = self.ep.poll_transmit() {
                progress = true;
                if let Err(e) = socket.send_to(&t.bytes, t.peer).await {
                    self.out.errors += 1;
                    self.out.last_error = Some(format!("send to {}: {e}", t.peer));
                }
            }
            let mut dl_events = Vec::new();
            if let Some(d) = self.download.as_mut() {
                while let Some(event) = d.ep.poll_event() {
                    dl_events.push(event);
                }
                while let Some(t) = d.ep.poll_transmit() {
                    progress = true;
                    let _ = d.socket.send_to(&t.bytes, t.peer).await;
                }
            }
            for event in dl_events {
                progress = true;
                self.on_download_event(Instant::now(), event);
            }
            if !progress {
                return;
            }
        }
    }

    fn on_event(&mut self, now: Instant, event: Event) {
        match event {
            Event::Request(req) => {
                let before = self.snapshot();
                let handled = self
                    .objects
                    .handle(req.method, &req.packet, req.meta.observe);
                match handled.observe {
                    Some((path, format)) => {
                        if let Some(relation) =
                            self.ep.accept_observe(now, req.meta, handled.response)
                        {
                            self.observers.retain(|o| o.relation != relation);
                            self.observers.push(Observer {
                                relation,
                                path,
                                format,
                            });
                        }
                    }
                    None => self.ep.respond(now, req.meta, handled.response),
                }
                match handled.action {
                    Action::None => {}
                    Action::Download(uri) => self.start_download(now, &uri),
                    Action::Install => {
                        self.install_at = Some(now + self.cfg.install_time);
                    }
                }
                self.changed(now, before);
            }
            Event::Response { id, packet } => self.on_reg_response(now, id, packet),
            Event::Failed { id, why } => {
                if let Some((reg, op)) = self.reg {
                    if reg == id {
                        self.reg = None;
                        self.out.errors += 1;
                        self.out.last_error = Some(format!("{op:?}: {why}"));
                        if op == RegOp::Register && self.location.is_none() {
                            // Never registered: the server is not there.
                            self.gave_up = true;
                        } else if op != RegOp::Deregister {
                            self.next_update = Some(now + self.cfg.update_interval);
                        }
                    }
                }
            }
            Event::RelationEnded { relation, .. } => {
                self.observers.retain(|o| o.relation != relation);
            }
            Event::Notification { .. } | Event::Unmatched { .. } => {}
        }
    }

    fn on_reg_response(&mut self, now: Instant, id: ExchangeId, packet: Packet) {
        let Some((reg, op)) = self.reg else { return };
        if reg != id {
            return;
        }
        self.reg = None;
        let code = packet.header.code;
        let ok = matches!(
            code,
            MessageClass::Response(
                ResponseType::Created | ResponseType::Changed | ResponseType::Deleted
            )
        );
        if !ok {
            self.out.errors += 1;
            self.out.last_error = Some(format!("{op:?} answered {}", packet.header.get_code()));
            match op {
                // Update answered 4.04: the registration is gone; register
                // again (TS Core §6.2.2).
                RegOp::Update => {
                    self.location = None;
                    self.next_update = Some(now);
                }
                RegOp::Register if self.location.is_none() && !self.out.registered => {
                    self.gave_up = true;
                }
                RegOp::Register => self.next_update = Some(now + self.cfg.update_interval),
                RegOp::Deregister => self.location = None,
            }
            return;
        }
        match op {
            RegOp::Register => {
                let location: Vec<String> = packet
                    .get_option(CoapOption::LocationPath)
                    .map(|values| {
                        values
                            .iter()
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                self.location = Some(location.join("/"));
                if !self.out.registered {
                    if let Some(live) = &self.cfg.live {
                        live.registered
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                self.out.registered = true;
                self.out.registrations += 1;
            }
            RegOp::Update => {
                self.out.updates += 1;
                if let Some(live) = &self.cfg.live {
                    live.updates
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            RegOp::Deregister => {
                self.location = None;
                self.out.deregistered = true;
                return;
            }
        }
        self.next_update = Some(now + self.cfg.update_interval);
        if self.queue {
            self.sleep_at = Some(now + self.cfg.queue_window);
        }
    }

    fn start_download(&mut self, now: Instant, uri: &str) {
        match download_request(uri) {
            Ok((peer, packet)) => {
                // A blocking bind of a fresh UDP socket never waits.
                let std_socket = match std::net::UdpSocket::bind(if peer.is_ipv4() {
                    SocketAddr::from(([0, 0, 0, 0], 0))
                } else {
                    SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
                })
                .and_then(|s| s.set_nonblocking(true).map(|_| s))
                .and_then(UdpSocket::from_std)
                {
                    Ok(s) => s,
                    Err(e) => {
                        self.out.last_error = Some(format!("download socket: {e}"));
                        self.objects
                            .download_failed(objects::RESULT_CONNECTION_LOST);
                        return;
                    }
                };
                let local = std_socket.local_addr().unwrap_or(self.local);
                let mut ep = Endpoint::new(endpoint_config(self.cfg), rand::random());
                let exchange = ep.request(now, peer, packet);
                self.download = Some(Download {
                    socket: std_socket,
                    local,
                    ep,
                    exchange,
                });
            }
            Err(e) => {
                self.out.last_error = Some(e);
                self.objects.download_failed(objects::RESULT_INVALID_URI);
            }
        }
    }

    fn on_download_event(&mut self, now: Instant, event: Event) {
        let Some(exchange) = self.download.as_ref().map(|d| d.exchange) else {
            return;
        };
        let before = self.snapshot();
        match event {
            Event::Response { id, packet } if id == exchange => {
                self.download = None;
                if packet.header.code == MessageClass::Response(ResponseType::Content) {
                    self.out.downloaded_bytes += packet.payload.len() as u64;
                    self.objects.downloaded(packet.payload.len());
                } else {
                    self.out.last_error =
                        Some(format!("download answered {}", packet.header.get_code()));
                    self.objects.download_failed(objects::RESULT_INVALID_URI);
                }
            }
            Event::Failed { id, why } if id == exchange => {
                self.download = None;
                self.out.last_error = Some(format!("download: {why}"));
                self.objects
                    .download_failed(objects::RESULT_CONNECTION_LOST);
            }
            _ => return,
        }
        self.changed(now, before);
    }

    fn snapshot(&self) -> (u8, u8, String) {
        (
            self.objects.state,
            self.objects.result,
            self.objects.version.clone(),
        )
    }

    /// Notifies observers of what changed since `before` and notes a final
    /// Update Result.
    fn changed(&mut self, now: Instant, before: (u8, u8, String)) {
        let (state, result, version) = before;
        let mut paths = Vec::new();
        if state != self.objects.state {
            paths.push("/5/0/3");
        }
        if result != self.objects.result {
            paths.push("/5/0/5");
        }
        if !paths.is_empty() {
            paths.push("/5/0");
        }
        if version != self.objects.version {
            paths.extend(["/3/0/3", "/3/0"]);
        }
        for observer in &self.observers {
            if !paths.contains(&observer.path.as_str()) {
                continue;
            }
            let ids: Vec<u16> = observer
                .path
                .split('/')
                .filter_map(|s| s.parse().ok())
                .collect();
            if let Ok(payload) = self.objects.read(&ids, observer.format) {
                let packet =
                    objects::response(ResponseType::Content, Some(observer.format), payload);
                // Confirmable: state changes must not be lost.
                let _ = self.ep.notify_confirmable(now, observer.relation, packet);
            }
        }
        if result != self.objects.result {
            match self.objects.result {
                objects::RESULT_SUCCESS => self.out.updated += 1,
                0 => {}
                code => {
                    self.out.failed += 1;
                    self.out.fail_results.push(code);
                }
            }
            if self.objects.result != 0 && self.cfg.stop_when_done {
                self.stop_at = Some(now + self.cfg.linger);
            }
        }
    }
}

/// The GET for a `coap://HOST:PORT/path?query` Package URI, without a
/// Block2 option (the server picks the block size, as Anjay lets it).
fn download_request(uri: &str) -> Result<(SocketAddr, Packet), String> {
    let rest = uri
        .strip_prefix("coap://")
        .ok_or_else(|| format!("not a coap:// URI: {uri}"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let authority = authority.trim_start_matches('[');
    let hostport = if authority.contains(']') {
        let (host, port) = authority.split_once(']').unwrap_or((authority, ""));
        let port = port.trim_start_matches(':');
        format!("[{host}]:{}", if port.is_empty() { "5683" } else { port })
    } else if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:5683")
    };
    let peer = hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("cannot resolve {hostport}"))?;
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut p = Packet::new();
    p.header.code = MessageClass::Request(RequestType::Get);
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        p.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
    }
    for q in query.split('&').filter(|s| !s.is_empty()) {
        p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
    }
    Ok((peer, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_uris_become_get_requests() {
        let (peer, p) = download_request("coap://127.0.0.1:5999/ota/fw/3?x=1").unwrap();
        assert_eq!(peer, "127.0.0.1:5999".parse().unwrap());
        assert_eq!(crate::coap::endpoint::uri_path(&p), ["ota", "fw", "3"]);
        let (peer, _) = download_request("coap://[::1]/a").unwrap();
        assert_eq!(peer, "[::1]:5683".parse().unwrap());
        assert!(download_request("http://x/y").is_err());
    }
}
