//! The device-facing CoAP resources: one file per resource, each
//! parse → apply → respond. [`dispatch`] routes a request by path and
//! method.
//!
//! | path | method | file |
//! |---|---|---|
//! | `/ota/fw/{id}` and `/ota/fw/{id}/{device}/{task}` | GET | `firmware.rs` |
//! | `/ota/{device}/poll` | POST | `poll.rs` |
//! | `/ota/{device}/report` | POST | `report.rs` |
//! | `/ota/{device}/task` | GET (Observe) | `task_observe.rs` |
//! | `/.well-known/core` | GET | `well_known.rs` |
//! | `/rd`, `/rd/{id}` | POST, DELETE | `rd.rs` (LwM2M registration) |

pub mod auth;
mod cbor;
mod firmware;
mod poll;
mod rd;
pub mod registration; // issue 11 item 4
mod report;
pub mod task_observe; // issue 10 item 10
mod well_known;

use std::future::Future;
use std::pin::Pin;

use coap_lite::{CoapOption, ContentFormat, MessageClass, Packet, RequestType, ResponseType};

use crate::coap::endpoint::{error_response, uri_path};
use crate::coap::IncomingRequest;
use crate::state::App;

/// A response now, or one that needs a durable write first.
pub enum Reply {
    Now(Packet),
    Later(Pin<Box<dyn Future<Output = Packet> + Send>>),
    /// A GET with Observe=0 the shard serves as an observe relation
    /// (`Endpoint::accept_observe`), registered for `device` with the task
    /// id `sent` (see `task_observe.rs`).
    Observe {
        packet: Packet,
        device: String,
        sent: String,
    },
}

pub fn dispatch(app: &App, request: &IncomingRequest) -> Reply {
    let path = uri_path(&request.packet);
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    let method = request.method;
    let expect = |wanted: RequestType, handler: &dyn Fn() -> Reply| {
        if method == wanted {
            handler()
        } else {
            Reply::Now(error_response(
                ResponseType::MethodNotAllowed,
                "method not allowed",
            ))
        }
    };
    match segments.as_slice() {
        [".well-known", "core"] => expect(RequestType::Get, &|| {
            Reply::Now(well_known::handle(app, &request.packet))
        }),
        // Device resources first: a device may be called "fw".
        ["ota", device, "poll"] => expect(RequestType::Post, &|| {
            if let Err(refused) = auth::check_device(request, device) {
                return Reply::Now(refused);
            }
            poll::handle(app, request, device)
        }),
        ["ota", device, "report"] => expect(RequestType::Post, &|| {
            if let Err(refused) = auth::check_device(request, device) {
                return Reply::Now(refused);
            }
            report::handle(app, &request.packet, device, request.identity.is_some())
        }),
        ["ota", device, "task"] => expect(RequestType::Get, &|| {
            task_observe::handle(app, request, device)
        }),
        ["ota", "fw", id] => expect(RequestType::Get, &|| {
            Reply::Now(firmware::handle(app, request, id, None))
        }),
        ["ota", "fw", id, device, task] => expect(RequestType::Get, &|| {
            if let Err(refused) = auth::check_device(request, device) {
                return Reply::Now(refused);
            }
            Reply::Now(firmware::handle(app, request, id, Some((device, task))))
        }),
        ["rd"] => expect(RequestType::Post, &|| rd::register(app, request)),
        ["rd", id] => match method {
            RequestType::Post => rd::update(app, request, id),
            RequestType::Delete => rd::deregister(app, request, id),
            _ => Reply::Now(error_response(
                ResponseType::MethodNotAllowed,
                "method not allowed",
            )),
        },
        _ => Reply::Now(error_response(ResponseType::NotFound, "no such resource")),
    }
}

/// The resource a request is for, as the `resource` label of
/// `lwota_coap_requests_total` (a fixed set: paths carry device names).
pub fn resource_label(request: &IncomingRequest) -> &'static str {
    let path = uri_path(&request.packet);
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    match segments.as_slice() {
        [".well-known", "core"] => "well_known_core",
        ["ota", _, "poll"] => "poll",
        ["ota", _, "report"] => "report",
        ["ota", "fw", ..] => "firmware",
        _ => "other",
    }
}

/// The span a request is handled in (issue 12 item 6): the resource, the
/// peer, and the device and task ids where the path names them (a report
/// records its task from the body). Text a peer chose is recorded only
/// when it is a valid name, so no log line carries control characters.
pub fn request_span(request: &IncomingRequest, resource: &'static str) -> tracing::Span {
    let span = tracing::info_span!(
        "coap",
        resource,
        peer = %request.meta.peer,
        device = tracing::field::Empty,
        task = tracing::field::Empty,
    );
    if span.is_disabled() {
        return span;
    }
    let path = uri_path(&request.packet);
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    let (device, task) = match segments.as_slice() {
        ["ota", device, "poll" | "report"] => (Some(*device), None),
        ["ota", "fw", _, device, task] => (Some(*device), Some(*task)),
        _ => (None, None),
    };
    if let Some(device) = device.filter(|d| crate::ota::valid_device_name(d)) {
        span.record("device", device);
    }
    if let Some(task) = task.filter(|t| crate::ota::parse_task_id(t).is_some()) {
        span.record("task", task);
    }
    span
}

/// Runs `job` as a durable write (with `now` and the OTA settings) and
/// answers with `answer` once it is committed. A storage failure is a 5.00:
/// nothing was acknowledged, so the device simply retries.
fn durable<T, E, F, A>(app: &App, what: &'static str, job: F, answer: A) -> Reply
where
    T: Send + 'static,
    E: Send + 'static,
    F: FnMut(
            &mut dyn crate::store::Tx,
            crate::time::Timestamp,
            crate::ota::OtaSettings,
        ) -> crate::store::WriteOutcome<T, E>
        + Send
        + 'static,
    A: FnOnce(&App, Result<T, E>) -> Packet + Send + 'static,
{
    let app = app.clone();
    Reply::Later(Box::pin(async move {
        let now = app.now();
        let settings = app.ota_settings();
        let mut job = job;
        match app.store.write(move |tx| job(tx, now, settings)).await {
            Ok(outcome) => answer(&app, outcome),
            // Unavailable: writes refused while the database is reopened (7a).
            Err(crate::store::StoreError::Busy | crate::store::StoreError::Unavailable(_)) => {
                let mut packet =
                    error_response(ResponseType::ServiceUnavailable, "busy, retry later");
                packet.add_option(coap_lite::CoapOption::MaxAge, vec![5]);
                packet
            }
            Err(e) => {
                tracing::error!("{what} not stored: {e}");
                error_response(ResponseType::InternalServerError, "not stored, retry")
            }
        }
    }))
}

/// The packet of a task notification: the poll answer's CBOR map.
pub fn notification_packet(app: &App, answer: crate::ota::poll::PollAnswer) -> Packet {
    // Pushed to the observer's address: the task URI stays a path on the
    // server it observes, whichever scheme that is.
    poll::answer_packet(app, answer, None)
}

/// A response with a code and no payload.
pub fn response(code: ResponseType) -> Packet {
    let mut packet = Packet::new();
    packet.header.code = MessageClass::Response(code);
    packet
}

/// Rejects a request body whose Content-Format is set and is not CBOR.
fn require_cbor(packet: &Packet) -> Result<(), Packet> {
    match packet.get_first_option(CoapOption::ContentFormat) {
        None => Ok(()),
        Some(_) if packet.get_content_format() == Some(ContentFormat::ApplicationCBOR) => Ok(()),
        Some(_) => Err(error_response(
            ResponseType::UnsupportedContentFormat,
            "payload must be CBOR (content-format 60)",
        )),
    }
}
