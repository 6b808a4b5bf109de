//! The device-facing CoAP resources: one file per resource, each
//! parse → apply → respond. [`dispatch`] routes a request by path and
//! method.
//!
//! | path | method | file |
//! |---|---|---|
//! | `/ota/fw/{id}` and `/ota/fw/{id}/{device}/{task}` | GET | `firmware.rs` |
//! | `/ota/{device}/poll` | POST | `poll.rs` |
//! | `/ota/{device}/report` | POST | `report.rs` |
//! | `/.well-known/core` | GET | `well_known.rs` |

mod cbor;
mod firmware;
mod poll;
pub mod registration; // issue 11 item 4
mod report;
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
            poll::handle(app, &request.packet, device, request.meta.peer)
        }),
        ["ota", device, "report"] => expect(RequestType::Post, &|| {
            report::handle(app, &request.packet, device)
        }),
        ["ota", "fw", id] => expect(RequestType::Get, &|| {
            Reply::Now(firmware::handle(app, &request.packet, id, None))
        }),
        ["ota", "fw", id, device, task] => expect(RequestType::Get, &|| {
            Reply::Now(firmware::handle(
                app,
                &request.packet,
                id,
                Some((device, task)),
            ))
        }),
        _ => Reply::Now(error_response(ResponseType::NotFound, "no such resource")),
    }
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
