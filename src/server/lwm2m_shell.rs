//! The LwM2M session shell: the I/O around the sans-IO `lwm2m::update`
//! flow. It learns of committed registrations from `App::lwm2m`
//! (`resources/rd.rs`), reads `/3/0/3` after every Register, sends the
//! requests queued for a sleeping device right after it wakes, and runs
//! one update flow per device with a task, sending its requests through
//! [`CoapHandle`] and writing its task events through the store.
//!
//! Sessions are in memory and rebuilt from the registrations table at
//! start-up, so a restart resumes: a device with an unfinished task gets
//! its flow again on the next check.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use tokio::sync::{mpsc, watch};

use super::coap_shell::{CoapHandle, RequestError};
use crate::coap::Why;
use crate::lwm2m::content::Path;
use crate::lwm2m::device::{self, Work};
use crate::lwm2m::hub::RdEvent;
use crate::lwm2m::update::{self, Body, Command, Flow, Method, Request, Response};
use crate::model::{QueuedOp, RegistrationRecord};
use crate::state::App;

/// Largest image pushed with Block1 (it is held in memory while it goes
/// out); larger images need pull.
pub const MAX_PUSH_BYTES: u64 = 16 << 20;

/// How long a device whose flow ended unfinished waits for the next.
const UNFINISHED_BACKOFF_MS: u64 = 30_000;

/// Devices checked for new tasks per tick at most.
const CHECK_BATCH: usize = 10_000;

struct Session {
    record: RegistrationRecord,
    /// A flow or a task check is running for the device.
    busy: bool,
    /// The campaign already queued for the sleeping device.
    queued: Option<u64>,
    /// No new flow before this (ms): a flow that ended unfinished (the
    /// device went silent) is not restarted at once.
    not_before: u64,
    /// Tells the running flow the device woke up (`Flow::on_wake`).
    wake: Option<mpsc::Sender<Wake>>,
}

/// The device of a running flow sent an Update or a Register.
#[derive(Debug, Clone, Copy)]
struct Wake {
    register: bool,
    /// Where it speaks from now (a NAT may have given it a new port).
    peer: SocketAddr,
}

enum Msg {
    /// A check found work for the device (or none).
    Checked(String, Option<Box<Work>>),
    /// The device's flow ended (`finished`: it ran to its end).
    Done(String, bool),
}

/// The CoAP and CoAPS endpoints requests go out on: a device that
/// registered over CoAPS is asked through its DTLS session.
#[derive(Clone)]
pub struct Endpoints {
    pub coap: CoapHandle,
    pub coaps: Option<CoapHandle>,
}

impl Endpoints {
    fn for_record(&self, record: &RegistrationRecord) -> CoapHandle {
        match (&self.coaps, record.secure) {
            (Some(coaps), true) => coaps.clone(),
            _ => self.coap.clone(),
        }
    }
}

pub fn spawn(
    app: App,
    endpoints: Endpoints,
    events: mpsc::Receiver<RdEvent>,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(app, endpoints, events, shutdown))
}

async fn run(
    app: App,
    coap: Endpoints,
    mut events: mpsc::Receiver<RdEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sessions: HashMap<String, Session> = HashMap::new();
    match load(&app).await {
        Ok(records) => {
            let mut live = app.lwm2m.live();
            for (name, record) in records {
                // In-memory refreshes before the restart are lost: each
                // registration gets its timer's grace (`lwm2m::live`).
                live.track(&name, &record, true);
                sessions.insert(
                    name,
                    Session {
                        record,
                        busy: false,
                        queued: None,
                        not_before: 0,
                        wake: None,
                    },
                );
            }
        }
        Err(e) => tracing::error!("lwm2m: registrations not loaded: {e}"),
    }
    app.lwm2m.set_registered(sessions.len());
    let (msg_tx, mut msgs) = mpsc::channel::<Msg>(4096);
    let mut tick = tokio::time::interval(Duration::from_millis(app.config.lwm2m.check_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            Some(event) = events.recv() => {
                on_event(&app, &coap, &mut sessions, &msg_tx, event);
                app.lwm2m.set_registered(sessions.len());
            }
            Some(msg) = msgs.recv() => on_msg(&app, &coap, &mut sessions, &msg_tx, msg),
            _ = tick.tick() => {
                let now = app.now();
                expire_lapsed(&app, &mut sessions, now);
                app.lwm2m.set_registered(sessions.len());
                let idle: Vec<String> = sessions
                    .iter()
                    .filter(|(_, s)| !s.busy && s.not_before <= now.as_millis())
                    .map(|(n, _)| n.clone())
                    .take(CHECK_BATCH)
                    .collect();
                check(&app, &mut sessions, &msg_tx, idle);
            }
        }
    }
}

/// Expires the registrations whose in-memory expiry has passed (the
/// stored one may be older: Updates answered from memory): the session
/// goes at once, the record in a write that skips it if an Update came
/// in the meantime.
fn expire_lapsed(app: &App, sessions: &mut HashMap<String, Session>, now: crate::time::Timestamp) {
    let lapsed: Vec<(String, String)> = {
        let live = app.lwm2m.live();
        sessions
            .iter()
            .filter(|(name, s)| {
                let expiry = match live.of_name(name) {
                    Some(l) if l.location == s.record.location => l.expires_at,
                    _ => s.record.expires_at,
                };
                expiry <= now
            })
            .map(|(name, s)| (name.clone(), s.record.location.clone()))
            .collect()
    };
    if lapsed.is_empty() {
        return;
    }
    for (name, _) in &lapsed {
        sessions.remove(name);
    }
    let app = app.clone();
    tokio::spawn(async move {
        let hub_app = app.clone();
        let result = app
            .store
            .write(move |tx| {
                let mut gone = Vec::new();
                for (name, location) in &lapsed {
                    // An Update answered from memory since the sweep
                    // keeps it.
                    let renewed = hub_app
                        .lwm2m
                        .live()
                        .of_name(name)
                        .is_some_and(|l| &l.location == location && l.expires_at > now);
                    if !renewed {
                        // Expired here, or already by its timer.
                        crate::lwm2m::registration::lapse(tx, now, name, location)?;
                        gone.push(name.clone());
                    }
                }
                Ok::<_, crate::store::StoreError>(Ok::<_, ()>(gone))
            })
            .await;
        match result {
            Ok(Ok(gone)) => {
                let mut live = app.lwm2m.live();
                for name in gone {
                    live.forget(&name);
                }
            }
            Ok(Err(())) => {}
            Err(e) => tracing::warn!("lwm2m: expiry not written: {e}"),
        }
    });
}

async fn load(app: &App) -> crate::store::Result<Vec<(String, RegistrationRecord)>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let cursor = after.clone();
        let page = app
            .store
            .scan(move |tx| tx.registrations(cursor.as_deref(), 10_000))
            .await?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(last.clone());
        out.extend(page);
        if out.len() >= app.config.lwm2m.max_registrations {
            break;
        }
    }
    Ok(out)
}

fn on_event(
    app: &App,
    coap: &Endpoints,
    sessions: &mut HashMap<String, Session>,
    msg_tx: &mpsc::Sender<Msg>,
    event: RdEvent,
) {
    match event {
        RdEvent::Gone { name } => {
            sessions.remove(&name);
        }
        RdEvent::Registered {
            name,
            record,
            register,
        } => {
            let queued = !record.queued.is_empty();
            let session = sessions.entry(name.clone()).or_insert(Session {
                record: (*record).clone(),
                busy: false,
                queued: None,
                not_before: 0,
                wake: None,
            });
            // It is awake now: a flow may start at once.
            session.not_before = 0;
            session.record = *record;
            if queued {
                session.queued = None;
            }
            let peer = session.record.peer.parse::<SocketAddr>().ok();
            if let (Some(wake), Some(peer)) = (&session.wake, peer) {
                // A queue-mode device hears only while awake: requests
                // of its flow still waiting for an ACK go out again now
                // instead of at their back-off. (An always-on device
                // heard them; resending at each Update would only put
                // the retransmissions in step with its Update period.)
                // Either way the flow re-reads what it may have missed.
                if session.record.queue_mode {
                    coap.for_record(&session.record).peer_awake(peer);
                }
                let _ = wake.try_send(Wake { register, peer });
            }
            if let (true, Some(peer)) = (register || queued, peer) {
                // After a Register: what firmware does it run now? Also
                // the requests queued while it slept go out first.
                let (app, name) = (app.clone(), name.clone());
                let coap = coap.for_record(&session.record);
                let lwm2m_version = session.record.lwm2m_version.clone();
                tokio::spawn(async move {
                    if queued {
                        let n = name.clone();
                        let taken = app
                            .store
                            .write(move |tx| crate::lwm2m::queue::take(tx, &n).map(Ok::<_, ()>))
                            .await;
                        if let Ok(Ok(ops)) = &taken {
                            tracing::debug!(device = %name, ?ops, "queued requests go out");
                        }
                    }
                    read_version(&app, &coap, &name, peer, &lwm2m_version).await;
                });
            }
            // A Register, or a queue-mode device waking up: look for its
            // task now. A routine Update of an always-on device leaves
            // that to the periodic check, so thousands of Updates a
            // second cost no extra reads.
            let now_awake = register || session.record.queue_mode;
            tracing::debug!(device = %name, register, queued, busy = session.busy, "lwm2m: registration event");
            if now_awake && !session.busy {
                check(app, sessions, msg_tx, vec![name]);
            }
        }
    }
}

fn check(
    app: &App,
    sessions: &mut HashMap<String, Session>,
    msg_tx: &mpsc::Sender<Msg>,
    names: Vec<String>,
) {
    if names.is_empty() {
        return;
    }
    for name in &names {
        if let Some(s) = sessions.get_mut(name) {
            s.busy = true;
        }
    }
    let (app, msg_tx) = (app.clone(), msg_tx.clone());
    tokio::spawn(async move {
        let list = names.clone();
        let found = app
            .store
            .scan(move |tx| {
                list.iter()
                    .map(|n| Ok((n.clone(), device::work(tx, n)?.map(Box::new))))
                    .collect::<crate::store::Result<Vec<_>>>()
            })
            .await;
        match found {
            Ok(found) => {
                for (name, work) in found {
                    let _ = msg_tx.send(Msg::Checked(name, work)).await;
                }
            }
            Err(e) => {
                tracing::warn!("lwm2m: task check failed: {e}");
                for name in names {
                    let _ = msg_tx.send(Msg::Checked(name, None)).await;
                }
            }
        }
    });
}

fn on_msg(
    app: &App,
    coap: &Endpoints,
    sessions: &mut HashMap<String, Session>,
    msg_tx: &mpsc::Sender<Msg>,
    msg: Msg,
) {
    match msg {
        Msg::Done(name, finished) => {
            tracing::debug!(device = %name, finished, "lwm2m: flow ended");
            if let Some(s) = sessions.get_mut(&name) {
                s.busy = false;
                s.wake = None;
                if !finished {
                    s.not_before = app.now().as_millis().saturating_add(UNFINISHED_BACKOFF_MS);
                }
            }
        }
        Msg::Checked(name, None) => {
            if let Some(s) = sessions.get_mut(&name) {
                s.busy = false;
            }
        }
        Msg::Checked(name, Some(work)) => {
            let Some(session) = sessions.get_mut(&name) else {
                return;
            };
            let record = &session.record;
            let now = app.now();
            let asleep = record.queue_mode
                && now.as_millis()
                    > record
                        .last_update
                        .as_millis()
                        .saturating_add(app.config.lwm2m.queue_awake_ms);
            if asleep {
                session.busy = false;
                if session.queued != Some(work.campaign) {
                    session.queued = Some(work.campaign);
                    enqueue(app, &name, work.campaign);
                }
                return;
            }
            let Ok(peer) = record.peer.parse::<SocketAddr>() else {
                session.busy = false;
                return;
            };
            let flow = new_flow(app, &name, record, &work);
            let queue_mode = record.queue_mode;
            let coap = coap.for_record(record);
            let (wake_tx, wake_rx) = mpsc::channel(4);
            session.wake = Some(wake_tx);
            metrics::counter!("lwota_lwm2m_flows_started_total").increment(1);
            let (app, msg_tx) = (app.clone(), msg_tx.clone());
            tokio::spawn(async move {
                let link = Link {
                    coap,
                    peer,
                    queue_mode,
                    wake: wake_rx,
                };
                let finished = drive(&app, link, &name, *work, flow).await;
                let _ = msg_tx.send(Msg::Done(name, finished)).await;
            });
        }
    }
}

fn enqueue(app: &App, name: &str, campaign: u64) {
    let (app, name) = (app.clone(), name.to_string());
    tokio::spawn(async move {
        let timeout_ms = app.ota_settings().timeout_ms;
        let now = app.now();
        let n = name.clone();
        let result = app
            .store
            .write(move |tx| {
                crate::lwm2m::queue::enqueue(tx, now, timeout_ms, &n, QueuedOp::Update(campaign))
                    .map(Ok::<_, ()>)
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(device = %name, "lwm2m: request not queued: {e}");
        }
    });
}

fn new_flow(app: &App, name: &str, record: &RegistrationRecord, work: &Work) -> Flow {
    let software = work.firmware.kind == "software"
        && record
            .objects
            .iter()
            .any(|p| p.parse::<Path>().is_ok_and(|p| p.object == 9));
    let spec = if software {
        update::SOFTWARE
    } else {
        update::FIRMWARE
    };
    // Over CoAPS the device downloads over CoAPS too, from the address
    // it registered to (`coap.public_uri` names the plain CoAP one).
    let host = match (&app.config.coap.public_uri, record.secure) {
        (_, true) => format!("coaps://{}", record.local),
        (Some(uri), false) => uri.trim_end_matches('/').to_string(),
        (None, false) => format!("coap://{}", record.local),
    };
    let uri = format!(
        "{host}{}",
        crate::ota::poll::task_uri(work.firmware.id, name, work.campaign)
    );
    let flow = Flow::new(spec, &record.lwm2m_version, uri, app.config.lwm2m.delivery);
    // An earlier flow handed this task out already.
    if work.state == crate::model::TaskState::Queued {
        flow
    } else {
        flow.resuming(&work.firmware.version)
    }
}

async fn read_version(
    app: &App,
    coap: &CoapHandle,
    name: &str,
    peer: SocketAddr,
    lwm2m_version: &str,
) {
    let mut response = Response::Failed("no format to ask for".into());
    for request in update::read_version(lwm2m_version) {
        response = send(app, coap, peer, &request, None).await;
        // Only 4.06 Not Acceptable asks for the next format.
        let refused = matches!(&response, Response::Answer { code, .. } if crate::lwm2m::accept::not_acceptable(code));
        if !refused {
            break;
        }
    }
    if let Some(version) = update::version_of(&response) {
        let (now, settings, name) = (app.now(), app.ota_settings(), name.to_string());
        let result = app
            .store
            .write(move |tx| {
                device::record_version(tx, now, settings, &name, &version).map(Ok::<_, ()>)
            })
            .await;
        if let Err(e) = result {
            tracing::warn!("lwm2m: version not recorded: {e}");
        }
    }
}

fn packet(request: &Request, body: Vec<u8>) -> Packet {
    let mut packet = Packet::new();
    packet.header.set_type(MessageType::Confirmable);
    packet.header.code = MessageClass::Request(match request.method {
        Method::Get => RequestType::Get,
        Method::Put => RequestType::Put,
        Method::Post => RequestType::Post,
    });
    for segment in request.path.segments() {
        packet.add_option(CoapOption::UriPath, segment.into_bytes());
    }
    if let Some(cf) = request.content_format {
        packet.add_option(
            CoapOption::ContentFormat,
            crate::coap::message::uint(cf.into()),
        );
    }
    if let Some(accept) = request.accept {
        packet.add_option(
            CoapOption::Accept,
            crate::coap::message::uint(accept.into()),
        );
    }
    packet.payload = body;
    packet
}

fn response_of(result: Result<Packet, RequestError>) -> Response {
    match result {
        Ok(packet) => {
            let code = packet.header.get_code();
            let success =
                matches!(packet.header.code, MessageClass::Response(_)) && code.starts_with('2');
            let content_format = packet
                .get_first_option(CoapOption::ContentFormat)
                .and_then(|v| crate::coap::message::read_uint(v))
                .and_then(|v| u16::try_from(v).ok());
            Response::Answer {
                success,
                code,
                content_format,
                payload: packet.payload,
            }
        }
        Err(e) => Response::Failed(e.to_string()),
    }
}

/// Whether a request failed because the device did not answer (every
/// retransmission unacknowledged, or a RST), rather than for a reason
/// trying again would not change.
fn out_of_reach(why: &str) -> bool {
    [Why::TimedOut, Why::Reset]
        .iter()
        .any(|w| RequestError::Failed(*w).to_string() == why)
}

async fn send(
    _app: &App,
    coap: &CoapHandle,
    peer: SocketAddr,
    request: &Request,
    body: Option<Vec<u8>>,
) -> Response {
    let body = match (&request.body, body) {
        (_, Some(b)) => b,
        (Body::Bytes(b), None) => b.clone(),
        _ => Vec::new(),
    };
    response_of(coap.request(peer, packet(request, body)).await)
}

/// The whole image, for a push.
async fn image(app: &App, work: &Work) -> Result<Vec<u8>, String> {
    if work.firmware.size > MAX_PUSH_BYTES {
        return Err(format!(
            "image of {} bytes is too large to push (at most {MAX_PUSH_BYTES}); use pull",
            work.firmware.size
        ));
    }
    let image = app
        .catalogue
        .get(work.firmware.id)
        .ok_or_else(|| "firmware image is gone".to_string())?;
    let size = work.firmware.size as usize;
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; size];
        image.read_at(&mut buf, 0).map(|()| buf)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("image not readable: {e}"))
}

enum Outcome {
    Response(u32, Response),
    Notify(u32, Response),
}

enum Input {
    Outcome(Option<Outcome>),
    Wake(Wake),
}

/// How a flow reaches its device.
struct Link {
    coap: CoapHandle,
    peer: SocketAddr,
    queue_mode: bool,
    wake: mpsc::Receiver<Wake>,
}

/// Runs one update flow to its end (`true`), or until the device is
/// silent for the task timeout (the task's own timer fails it then) or,
/// in queue mode, stops answering: it fell asleep, so the update is
/// queued for its next wake-up (`false`).
async fn drive(app: &App, link: Link, name: &str, work: Work, mut flow: Flow) -> bool {
    let Link {
        coap,
        mut peer,
        queue_mode,
        mut wake,
    } = link;
    let coap = &coap;
    let mut finished = false;
    let (tx, mut rx) = mpsc::channel::<Outcome>(64);
    let mut observers: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    // The flow's requests in flight: cancelled when it ends, so none of
    // them (an Execute queued behind unanswered reads) reaches the device
    // later with nobody to see its outcome.
    let mut requests: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let mut peers = vec![peer];
    let mut queue: std::collections::VecDeque<Command> = flow.start().into();
    let silence = Duration::from_millis(app.ota_settings().timeout_ms.max(1000));
    'flow: loop {
        while let Some(command) = queue.pop_front() {
            match command {
                Command::Done => {
                    finished = true;
                    break 'flow;
                }
                Command::Task(event) => {
                    let (now, settings, n, campaign) = (
                        app.now(),
                        app.ota_settings(),
                        name.to_string(),
                        work.campaign,
                    );
                    let result = app
                        .store
                        .write(move |t| {
                            device::apply(t, now, settings, &n, campaign, &event).map(Ok::<_, ()>)
                        })
                        .await;
                    if let Err(e) = result {
                        tracing::warn!(device = %name, "lwm2m: task event not stored: {e}");
                    }
                }
                Command::Version(version) => {
                    let (now, n) = (app.now(), name.to_string());
                    let _ = app
                        .store
                        .write(move |t| {
                            device::note(
                                t,
                                now,
                                &n,
                                "lwm2m-version",
                                format!("/3/0/3 reads {version}"),
                            )
                            .map(Ok::<_, ()>)
                        })
                        .await;
                }
                Command::Send { id, request } => {
                    let body = match request.body {
                        Body::Image => match image(app, &work).await {
                            Ok(bytes) => Some(bytes),
                            Err(why) => {
                                let failed = Response::Failed(why);
                                queue.extend(flow.on_response(id, &failed));
                                continue;
                            }
                        },
                        _ => None,
                    };
                    let (coap, tx) = (coap.clone(), tx.clone());
                    if request.observe {
                        let packet = packet(&request, Vec::new());
                        observers.push(tokio::spawn(async move {
                            let mut observation = match coap.observe(peer, packet).await {
                                Ok(o) => o,
                                Err(e) => {
                                    let _ = tx
                                        .send(Outcome::Response(
                                            id,
                                            Response::Failed(e.to_string()),
                                        ))
                                        .await;
                                    return;
                                }
                            };
                            let mut first = true;
                            while let Some(item) = observation.next().await {
                                let response = response_of(item.map_err(RequestError::Failed));
                                let outcome = if first {
                                    Outcome::Response(id, response)
                                } else {
                                    Outcome::Notify(id, response)
                                };
                                first = false;
                                if tx.send(outcome).await.is_err() {
                                    return;
                                }
                            }
                        }));
                    } else {
                        let app = app.clone();
                        requests.retain(|r| !r.is_finished());
                        requests.push(tokio::spawn(async move {
                            let response = send(&app, &coap, peer, &request, body).await;
                            let _ = tx.send(Outcome::Response(id, response)).await;
                        }));
                    }
                }
            }
        }
        let next = tokio::time::timeout(silence, async {
            tokio::select! {
                outcome = rx.recv() => Input::Outcome(outcome),
                Some(woke) = wake.recv() => Input::Wake(woke),
            }
        })
        .await;
        let next = match next {
            Ok(Input::Wake(woke)) => {
                tracing::debug!(device = %name, ?woke, "lwm2m: device woke during its flow");
                peer = woke.peer;
                if !peers.contains(&peer) {
                    peers.push(peer);
                }
                queue.extend(flow.on_wake(woke.register));
                continue;
            }
            Ok(Input::Outcome(outcome)) => Ok(outcome),
            Err(e) => Err(e),
        };
        match &next {
            Ok(Some(Outcome::Response(id, r))) => {
                tracing::debug!(device = %name, id, ?r, "lwm2m: response")
            }
            Ok(Some(Outcome::Notify(id, r))) => {
                tracing::debug!(device = %name, id, ?r, "lwm2m: notification")
            }
            _ => tracing::debug!(device = %name, "lwm2m: flow silent"),
        }
        match next {
            // A wake-up's re-read lost on the way: the observation stands.
            Ok(Some(Outcome::Response(id, r @ Response::Failed(_)))) if flow.is_reread(id) => {
                queue.extend(flow.on_response(id, &r));
            }
            // No answer after every retransmission: the device is asleep
            // or out of reach, which is not a failed update. The flow
            // ends unfinished; the next one (after the device's next
            // Update in queue mode, else after the periodic check)
            // resumes the task, and the task's timeout bounds it all.
            Ok(Some(Outcome::Response(_, Response::Failed(why))))
                if queue_mode || out_of_reach(&why) =>
            {
                if queue_mode {
                    tracing::debug!(device = %name, "lwm2m: queue-mode device asleep ({why}); update queued");
                    enqueue(app, name, work.campaign);
                } else {
                    tracing::debug!(device = %name, "lwm2m: device out of reach ({why}); resumed later");
                }
                break;
            }
            Ok(Some(Outcome::Response(id, r))) => queue.extend(flow.on_response(id, &r)),
            Ok(Some(Outcome::Notify(id, r))) => queue.extend(flow.on_notify(id, &r)),
            Ok(None) | Err(_) => break,
        }
    }
    for observer in observers {
        observer.abort();
    }
    for request in &requests {
        request.abort();
    }
    for request in requests {
        // Wait until each is dropped (its exchange's waiter with it), so
        // the sweep below finds them abandoned.
        let _ = request.await;
    }
    for peer in peers {
        coap.cancel_abandoned(peer);
    }
    finished
}
