//! The sans-IO firmware update of one LwM2M device through Object 5
//! (Firmware Update) or Object 9 (Software Management): responses and
//! notifications in, requests and task events out. No socket, no clock,
//! no store: `server/lwm2m_shell.rs` sends the requests and writes the
//! events through `ota::ledger`.
//!
//! Driving contract:
//! 1. [`Flow::start`] → commands.
//! 2. For every `Command::Send { id, .. }` the shell sends the request and
//!    feeds its outcome to [`Flow::on_response`] (an observe's first
//!    response too); each notification of an observe goes to
//!    [`Flow::on_notify`].
//! 3. Drain: apply every returned command in order; stop at `Done`.
//!
//! Object 5: read `/5/0/9` (delivery method) and `/5/0/8` (protocols) when
//! present, read `/5/0/3`; if State is Downloaded with an old package,
//! write "" to `/5/0/1` (a new URI is refused in that state); observe
//! `/5/0/3` and `/5/0/5`; pull (write `/5/0/1`, the device downloads from
//! our Block2 resource, progress counted per block) or push (Block1 PUT
//! of the image to `/5/0/0`, CF 42); execute `/5/0/2` at State 2; Update
//! Result 1 is success, 2-10 failure. Object 9 has the same shape with
//! its own resources (package 2, URI 3, install 4, update state 7,
//! update result 9, activate 10) and codes (success 2, failures 50-59).

use super::accept::{self, Preference, Shape};
use super::config::Delivery;
use super::content::{self, format, Path, Value};
use crate::model::TaskState;
use crate::ota::task::TaskEvent;

/// The resources and codes of Object 5 or Object 9.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub object: u16,
    package: u16,
    uri: u16,
    execute: u16,
    state: u16,
    result: u16,
    /// State in which `execute` is run.
    ready_state: i64,
    /// Update Result of success.
    success: i64,
    /// Resource executed after success (Object 9 Activate), if any.
    activate: Option<u16>,
}

pub const FIRMWARE: Spec = Spec {
    object: 5,
    package: 0,
    uri: 1,
    execute: 2,
    state: 3,
    result: 5,
    ready_state: 2,
    success: 1,
    activate: None,
};

pub const SOFTWARE: Spec = Spec {
    object: 9,
    package: 2,
    uri: 3,
    execute: 4,
    state: 7,
    result: 9,
    ready_state: 3,
    success: 2,
    activate: Some(10),
};

/// The readable meaning of an Update Result (TS Core E.6 for Object 5;
/// the Software Management object's 50-59), `None` for non-final codes.
pub fn result_error(spec: &Spec, code: i64) -> Option<String> {
    let what = match (spec.object, code) {
        (5, 2) => "not enough flash memory for the new firmware package",
        (5, 3) => "out of RAM during the download",
        (5, 4) => "connection lost during the download",
        (5, 5) => "integrity check failure",
        (5, 6) => "unsupported package type",
        (5, 7) => "invalid URI",
        (5, 8) => "firmware update failed",
        (5, 9) => "unsupported protocol",
        (5, 10) => "firmware update cancelled",
        (9, 50) => "not enough storage for the new software package",
        (9, 51) => "out of memory during the download",
        (9, 52) => "connection lost during the download",
        (9, 53) => "package integrity check failure",
        (9, 54) => "unsupported package type",
        (9, 56) => "invalid URI",
        (9, 57) => "device defined update error",
        (9, 58) => "software installation failure",
        (9, 59) => "uninstallation failure",
        (5, 0 | 1) | (9, 0..=3) => return None,
        (5, _) => "unknown update result",
        (9, c) if c >= 50 => "unknown update result",
        _ => return None,
    };
    Some(format!("update result {code}: {what}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Post,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    None,
    Bytes(Vec<u8>),
    /// The task's firmware image (the shell reads it from the catalogue).
    Image,
}

/// A request to send to the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub path: Path,
    /// Always set on reads: clients without TLV answer 5.00 otherwise.
    /// Chosen by `lwm2m::accept` (TLV first for 1.0, text after).
    pub accept: Option<u16>,
    /// Always set on writes: a PUT without it is Write-Attributes.
    pub content_format: Option<u16>,
    pub body: Body,
    pub observe: bool,
}

/// What came back for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// A response: its class (2 = success), code text (`2.05`), format
    /// and payload.
    Answer {
        success: bool,
        code: String,
        content_format: Option<u16>,
        payload: Vec<u8>,
    },
    /// No response (timeout, reset, overload).
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Send {
        id: u32,
        request: Request,
    },
    /// Apply to the task through `ota::ledger` (cause `lwm2m`).
    Task(TaskEvent),
    /// The device's version as read from `/3/0/3`.
    Version(String),
    /// The flow is over; drop its observations.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    CheckVersion,
    ReadDelivery,
    ReadProtocols,
    ReadState,
    ClearUri,
    ObserveState,
    ObserveResult,
    Deliver,
    Waiting,
    Execute,
    ReadVersion,
    Activate,
    Done,
}

/// One device's update.
#[derive(Debug, Clone)]
pub struct Flow {
    spec: Spec,
    /// The Accept of reads and observes, by LwM2M version; a 4.06 moves
    /// it to the next format.
    formats: Preference,
    /// The read or observe in flight and its shape, resent in the next
    /// format when it is refused with 4.06.
    in_flight: Option<(u32, Request, Shape)>,
    package_uri: String,
    default_delivery: Delivery,
    delivery: Option<i64>,
    protocols: Option<Vec<i64>>,
    step: Step,
    next_id: u32,
    /// The id of the request whose answer moves `step` on.
    waiting_for: Option<u32>,
    observe_state: Option<u32>,
    observe_result: Option<u32>,
    delivered: bool,
    executed: bool,
    /// The Update Result seen before this flow delivered anything: a
    /// result left from an earlier update is not this one's.
    first_result: Option<i64>,
    result_moved: bool,
    /// Set for a flow that resumes a task an earlier flow handed out:
    /// the version it installs, checked first so a device that already
    /// runs it is not sent the package again.
    resumed_target: Option<String>,
    /// Re-reads sent on a wake-up: (id, resource); their answers count
    /// as notifications of that resource.
    resync: Vec<(u32, u16)>,
}

impl Flow {
    /// `lwm2m_version` of the registration; `package_uri` the
    /// `coap://HOST:PORT/...` the device downloads from when pulling.
    pub fn new(spec: Spec, lwm2m_version: &str, package_uri: String, default: Delivery) -> Flow {
        Flow {
            spec,
            formats: Preference::for_version(lwm2m_version),
            in_flight: None,
            package_uri,
            default_delivery: default,
            delivery: None,
            protocols: None,
            step: Step::ReadDelivery,
            next_id: 1,
            waiting_for: None,
            observe_state: None,
            observe_result: None,
            delivered: false,
            executed: false,
            first_result: None,
            result_moved: false,
            resumed_target: None,
            resync: Vec::new(),
        }
    }

    /// A flow for a task an earlier flow already handed out (it ended
    /// when the device fell silent or asleep): it first reads `/3/0/3`,
    /// and a device that already runs `target` is done without a second
    /// delivery.
    pub fn resuming(mut self, target: &str) -> Flow {
        self.resumed_target = Some(target.to_string());
        self
    }

    fn res(&self, r: u16) -> Path {
        Path::resource(self.spec.object, 0, r)
    }

    fn send(&mut self, request: Request) -> Command {
        let id = self.next_id;
        self.next_id += 1;
        self.waiting_for = Some(id);
        Command::Send { id, request }
    }

    /// A read or observe in the preferred format for its shape.
    fn get(&mut self, path: Path, shape: Shape, observe: bool) -> Command {
        let request = Request {
            method: Method::Get,
            path,
            accept: Some(self.formats.accept(shape)),
            content_format: None,
            body: Body::None,
            observe,
        };
        let cmd = self.send(request.clone());
        if let Command::Send { id, .. } = &cmd {
            self.in_flight = Some((*id, request, shape));
        }
        cmd
    }

    fn read(&mut self, path: Path, shape: Shape) -> Command {
        self.get(path, shape, false)
    }

    fn observe(&mut self, r: u16) -> Command {
        let cmd = self.get(self.res(r), Shape::Single, true);
        if let Command::Send { id, .. } = &cmd {
            if r == self.spec.state {
                self.observe_state = Some(*id);
            } else {
                self.observe_result = Some(*id);
            }
        }
        cmd
    }

    /// A read or observe refused with 4.06 Not Acceptable goes out again
    /// in the next format (a new id; an observe's id moves with it).
    fn retry_in_next_format(&mut self, id: u32, response: &Response) -> Option<Command> {
        let Response::Answer { code, .. } = response else {
            return None;
        };
        if !accept::not_acceptable(code) || self.waiting_for != Some(id) {
            return None;
        }
        let (sent, mut request, shape) = self.in_flight.take()?;
        if sent != id {
            return None;
        }
        let next = self.formats.refused(shape, request.accept?)?;
        request.accept = Some(next);
        let cmd = self.send(request.clone());
        if let Command::Send { id: new, .. } = &cmd {
            self.in_flight = Some((*new, request, shape));
            if self.observe_state == Some(id) {
                self.observe_state = Some(*new);
            }
            if self.observe_result == Some(id) {
                self.observe_result = Some(*new);
            }
        }
        Some(cmd)
    }

    fn write_text(&mut self, r: u16, text: &str) -> Command {
        self.send(Request {
            method: Method::Put,
            path: self.res(r),
            accept: None,
            content_format: Some(format::TEXT),
            body: Body::Bytes(text.as_bytes().to_vec()),
            observe: false,
        })
    }

    fn execute(&mut self, r: u16) -> Command {
        self.send(Request {
            method: Method::Post,
            path: self.res(r),
            accept: None,
            content_format: None,
            body: Body::None,
            observe: false,
        })
    }

    pub fn start(&mut self) -> Vec<Command> {
        if self.resumed_target.is_some() {
            self.step = Step::CheckVersion;
            return vec![self.read(Path::resource(3, 0, 3), Shape::Single)];
        }
        self.first_read()
    }

    fn first_read(&mut self) -> Vec<Command> {
        if self.spec.object == 5 {
            self.step = Step::ReadDelivery;
            vec![self.read(self.res(9), Shape::Single)]
        } else {
            self.step = Step::ReadState;
            vec![self.read(self.res(self.spec.state), Shape::Single)]
        }
    }

    /// Whether the flow pushes the image: the device's Delivery Method
    /// (0 pull only, 1 push only, 2 both) and Protocol Support (a pull
    /// needs CoAP, 0), else the configured default.
    pub fn pushes(&self) -> bool {
        let pull_ok = self
            .protocols
            .as_ref()
            .is_none_or(|p| p.is_empty() || p.contains(&0));
        match self.delivery {
            Some(0) => false,
            Some(1) => true,
            _ if !pull_ok => true,
            _ => self.default_delivery == Delivery::Push,
        }
    }

    fn fail(&mut self, why: String) -> Vec<Command> {
        self.step = Step::Done;
        vec![
            Command::Task(TaskEvent::Report {
                state: TaskState::Failed,
                progress: None,
                error: Some(why),
            }),
            Command::Done,
        ]
    }

    fn value(&self, path: &Path, response: &Response) -> Option<Value> {
        let Response::Answer {
            success: true,
            content_format,
            payload,
            ..
        } = response
        else {
            return None;
        };
        let cf = content_format.unwrap_or(format::TEXT);
        let values = content::decode(cf, path, payload).ok()?;
        content::find(&values, path)
            .or_else(|| values.first().map(|v| &v.value))
            .cloned()
    }

    fn deliver(&mut self) -> Vec<Command> {
        self.step = Step::Deliver;
        // The device may notify before its answer to the write arrives.
        self.delivered = true;
        let mut out = vec![Command::Task(TaskEvent::Handed)];
        if self.pushes() {
            let package = self.res(self.spec.package);
            out.push(self.send(Request {
                method: Method::Put,
                path: package,
                accept: None,
                content_format: Some(format::OPAQUE),
                body: Body::Image,
                observe: false,
            }));
            out.push(Command::Task(TaskEvent::Report {
                state: TaskState::Downloading,
                progress: None,
                error: None,
            }));
        } else {
            let uri = self.package_uri.clone();
            out.push(self.write_text(self.spec.uri, &uri));
        }
        out
    }

    /// The device woke up while this flow runs (an Update or, with
    /// `register`, a new Register). A notification lost on the way, or
    /// observations the device dropped (a Register ends them), would
    /// leave the flow waiting until the task times out: after delivery,
    /// State and Update Result are read again, and their answers count
    /// as notifications. After a Register they are observed again.
    pub fn on_wake(&mut self, register: bool) -> Vec<Command> {
        if !self.delivered || self.step == Step::Done {
            return Vec::new();
        }
        let mut out = Vec::new();
        for r in [self.spec.state, self.spec.result] {
            // A re-read of `r` still unanswered serves this wake-up too:
            // piled-up reads would queue the flow's own requests (the
            // Execute) behind them.
            if !register && self.resync.iter().any(|(_, pending)| *pending == r) {
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            if register {
                // The new observation replaces the old one's id.
                if r == self.spec.state {
                    self.observe_state = Some(id);
                } else {
                    self.observe_result = Some(id);
                }
            } else {
                // Bounded: only the latest wake-up's reads matter.
                if self.resync.len() >= 8 {
                    self.resync.drain(..2);
                }
                self.resync.push((id, r));
            }
            let request = Request {
                method: Method::Get,
                path: self.res(r),
                accept: Some(self.formats.accept(Shape::Single)),
                content_format: None,
                body: Body::None,
                observe: register,
            };
            out.push(Command::Send { id, request });
        }
        out
    }

    /// Whether `id` is a wake-up's re-read (`on_wake`): its failure
    /// changes nothing, the observation it double-checks still stands.
    pub fn is_reread(&self, id: u32) -> bool {
        self.resync.iter().any(|(sent, _)| *sent == id)
    }

    /// The outcome of request `id`.
    pub fn on_response(&mut self, id: u32, response: &Response) -> Vec<Command> {
        if let Some(at) = self.resync.iter().position(|(sent, _)| *sent == id) {
            let (_, r) = self.resync.remove(at);
            let observed = if r == self.spec.state {
                self.observe_state
            } else {
                self.observe_result
            };
            return match observed {
                Some(obs) => self.observed(obs, response),
                None => Vec::new(),
            };
        }
        if let Some(retry) = self.retry_in_next_format(id, response) {
            return vec![retry];
        }
        if Some(id) == self.observe_state || Some(id) == self.observe_result {
            let mut out = self.observed(id, response);
            if self.waiting_for == Some(id) {
                out.extend(self.advance(id, response));
            }
            return out;
        }
        if self.waiting_for != Some(id) {
            return Vec::new();
        }
        self.advance(id, response)
    }

    fn advance(&mut self, _id: u32, response: &Response) -> Vec<Command> {
        self.waiting_for = None;
        let ok = matches!(response, Response::Answer { success: true, .. });
        let describe = || match response {
            Response::Answer { code, .. } => code.clone(),
            Response::Failed(why) => why.clone(),
        };
        match self.step {
            Step::CheckVersion => {
                let version = version_of(response);
                if version.is_some() && version == self.resumed_target {
                    self.step = Step::Done;
                    let mut out = vec![Command::Task(TaskEvent::ReachedTarget)];
                    out.extend(version.map(Command::Version));
                    out.push(Command::Done);
                    return out;
                }
                self.first_read()
            }
            Step::ReadDelivery => {
                self.delivery = self.value(&self.res(9), response).and_then(|v| v.as_int());
                if matches!(self.delivery, Some(0 | 1)) {
                    // Protocol Support only decides between pull and push
                    // when the device takes both: skip the read otherwise.
                    // A client that silently drops reads of a multi-value
                    // resource in a format it lacks (lwm2m-node-lib does
                    // with TLV) would otherwise stall the update for the
                    // whole CON retransmission window (~90 s).
                    self.step = Step::ReadState;
                    return vec![self.read(self.res(self.spec.state), Shape::Single)];
                }
                self.step = Step::ReadProtocols;
                vec![self.read(self.res(8), Shape::Multi)]
            }
            Step::ReadProtocols => {
                if let Some(Response::Answer {
                    success: true,
                    content_format,
                    payload,
                    ..
                }) = Some(response)
                {
                    let cf = content_format.unwrap_or(self.formats.accept(Shape::Multi));
                    if let Ok(values) = content::decode(cf, &self.res(8), payload) {
                        self.protocols =
                            Some(values.iter().filter_map(|v| v.value.as_int()).collect());
                    }
                }
                self.step = Step::ReadState;
                vec![self.read(self.res(self.spec.state), Shape::Single)]
            }
            Step::ReadState => {
                if matches!(response, Response::Failed(_)) {
                    return self.fail(format!("device did not answer: {}", describe()));
                }
                let state = self
                    .value(&self.res(self.spec.state), response)
                    .and_then(|v| v.as_int());
                if self.spec.object == 5 && state == Some(2) {
                    // A new Package URI is refused in Downloaded: clear
                    // the old package first.
                    self.step = Step::ClearUri;
                    return vec![self.write_text(self.spec.uri, "")];
                }
                self.step = Step::ObserveState;
                vec![self.observe(self.spec.state)]
            }
            Step::ClearUri => {
                self.step = Step::ObserveState;
                vec![self.observe(self.spec.state)]
            }
            Step::ObserveState => {
                self.step = Step::ObserveResult;
                vec![self.observe(self.spec.result)]
            }
            Step::ObserveResult => self.deliver(),
            Step::Deliver => {
                if !ok {
                    let what = if self.pushes() {
                        "package write"
                    } else {
                        "package URI write"
                    };
                    return self.fail(format!("{what} refused: {}", describe()));
                }
                // A state notification may have moved on already.
                if self.step == Step::Deliver {
                    self.step = Step::Waiting;
                }
                Vec::new()
            }
            Step::Execute => {
                if !ok {
                    let what = self.res(self.spec.execute);
                    return self.fail(format!("execute {what} refused: {}", describe()));
                }
                self.step = Step::Waiting;
                vec![Command::Task(TaskEvent::Report {
                    state: TaskState::Updating,
                    progress: None,
                    error: None,
                })]
            }
            Step::ReadVersion => {
                let version = version_of(response);
                let mut out: Vec<Command> = version.into_iter().map(Command::Version).collect();
                match self.spec.activate {
                    Some(r) => {
                        self.step = Step::Activate;
                        out.push(self.execute(r));
                    }
                    None => {
                        self.step = Step::Done;
                        out.push(Command::Done);
                    }
                }
                out
            }
            Step::Activate => {
                self.step = Step::Done;
                vec![Command::Done]
            }
            Step::Waiting | Step::Done => Vec::new(),
        }
    }

    /// A notification (or first response) of an observed resource.
    pub fn on_notify(&mut self, id: u32, response: &Response) -> Vec<Command> {
        self.observed(id, response)
    }

    fn observed(&mut self, id: u32, response: &Response) -> Vec<Command> {
        // Once the result is in, later copies of it (a notification and
        // a wake-up's re-read) change nothing.
        if matches!(self.step, Step::Done | Step::ReadVersion | Step::Activate) {
            return Vec::new();
        }
        if Some(id) == self.observe_result {
            let Some(code) = self
                .value(&self.res(self.spec.result), response)
                .and_then(|v| v.as_int())
            else {
                return Vec::new();
            };
            if self.first_result.is_none() && !self.delivered {
                self.first_result = Some(code);
                return Vec::new();
            }
            if self.first_result != Some(code) {
                self.result_moved = true;
            }
            if !self.delivered || !self.result_moved {
                return Vec::new();
            }
            return self.on_result(code);
        }
        if Some(id) != self.observe_state || !self.delivered {
            return Vec::new();
        }
        let Some(state) = self
            .value(&self.res(self.spec.state), response)
            .and_then(|v| v.as_int())
        else {
            return Vec::new();
        };
        let report = |state| {
            Command::Task(TaskEvent::Report {
                state,
                progress: None,
                error: None,
            })
        };
        match state {
            s if s == self.spec.ready_state && !self.executed => {
                self.executed = true;
                self.result_moved = true;
                self.step = Step::Execute;
                let exec = self.execute(self.spec.execute);
                vec![report(TaskState::Downloaded), exec]
            }
            1 => vec![report(TaskState::Downloading)],
            2 if self.spec.object == 9 => vec![report(TaskState::Downloaded)],
            3 if self.spec.object == 5 => vec![report(TaskState::Updating)],
            _ => Vec::new(),
        }
    }

    fn on_result(&mut self, code: i64) -> Vec<Command> {
        if code == self.spec.success {
            self.step = Step::ReadVersion;
            return vec![
                Command::Task(TaskEvent::ReachedTarget),
                self.read(Path::resource(3, 0, 3), Shape::Single),
            ];
        }
        match result_error(&self.spec, code) {
            Some(error) => self.fail(error),
            None => Vec::new(),
        }
    }
}

/// The read of `/3/0/3` after a Register, in each format worth trying
/// for the client's LwM2M version, best first: the next one is sent only
/// when the previous was answered 4.06 Not Acceptable.
pub fn read_version(lwm2m_version: &str) -> Vec<Request> {
    let mut formats = Preference::for_version(lwm2m_version);
    let mut out = Vec::new();
    let mut accept = Some(formats.accept(Shape::Single));
    while let Some(a) = accept {
        out.push(Request {
            method: Method::Get,
            path: Path::resource(3, 0, 3),
            accept: Some(a),
            content_format: None,
            body: Body::None,
            observe: false,
        });
        accept = formats.refused(Shape::Single, a);
    }
    out
}

/// The firmware version in a `/3/0/3` answer.
pub fn version_of(response: &Response) -> Option<String> {
    let Response::Answer {
        success: true,
        content_format,
        payload,
        ..
    } = response
    else {
        return None;
    };
    let path = Path::resource(3, 0, 3);
    let values = content::decode(content_format.unwrap_or(format::TEXT), &path, payload).ok()?;
    let v = content::find(&values, &path)?.as_str()?.trim().to_string();
    crate::ota::firmware::valid_version(&v).then_some(v)
}

#[cfg(test)]
mod tests;
