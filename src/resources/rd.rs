//! The LwM2M registration interface (TS Core §6.2, §8.2.3):
//! `POST /rd?ep=&lt=&lwm2m=&b=` (Register, CoRE link payload, possibly in
//! Block1 pieces the endpoint has already reassembled) → 2.01 with
//! `Location-Path: rd/{id}`; `POST /rd/{id}` (Update) → 2.04;
//! `DELETE /rd/{id}` (De-register) → 2.02. Parse → apply
//! (`lwm2m::registration`) → respond after the commit; the session shell
//! hears about it through `App::lwm2m`.

use coap_lite::{CoapOption, Packet, ResponseType};

use super::{durable, response, Reply};
use crate::coap::endpoint::error_response;
use crate::coap::IncomingRequest;
use crate::lwm2m::content::{format, RegisteredObjects};
use crate::lwm2m::hub::RdEvent;
use crate::lwm2m::registration::{self, Params, RdError, Register};
use crate::state::App;

fn queries(packet: &Packet) -> Vec<String> {
    packet
        .get_option(CoapOption::UriQuery)
        .map(|q| {
            q.iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn rd_error(e: &RdError) -> Packet {
    let code = match e {
        RdError::BadRequest(_) => ResponseType::BadRequest,
        RdError::Version(_) => ResponseType::PreconditionFailed,
        RdError::UnknownEndpoint(_) => ResponseType::Forbidden,
        RdError::NotFound(_) => ResponseType::NotFound,
    };
    metrics::counter!("lwota_lwm2m_rd_rejected_total").increment(1);
    error_response(code, &e.to_string())
}

/// The payload's links, checked for size and Content-Format (40, or none).
fn objects(app: &App, packet: &Packet) -> Result<Option<RegisteredObjects>, Packet> {
    if packet.payload.len() > app.config.lwm2m.max_payload {
        metrics::counter!("lwota_lwm2m_rd_rejected_total").increment(1);
        return Err(error_response(
            ResponseType::RequestEntityTooLarge,
            "registration payload too large",
        ));
    }
    if let Some(cf) = packet.get_first_option(CoapOption::ContentFormat) {
        let cf = crate::coap::message::read_uint(cf).unwrap_or(u32::MAX);
        if cf != u32::from(format::LINK) {
            metrics::counter!("lwota_lwm2m_rd_rejected_total").increment(1);
            return Err(error_response(
                ResponseType::UnsupportedContentFormat,
                "registration payload must be link format (40)",
            ));
        }
    }
    if packet.payload.is_empty() {
        return Ok(None);
    }
    RegisteredObjects::parse(&packet.payload)
        .map(Some)
        .map_err(|e| rd_error(&RdError::BadRequest(e.to_string())))
}

/// A fresh registration location: 10 random letters and digits (not a
/// counter, so no shared row is written on every Register).
fn new_location() -> String {
    use rand::Rng as _;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..10)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

pub fn register(app: &App, request: &IncomingRequest) -> Reply {
    let packet = &request.packet;
    let params = match registration::parse_query(&queries(packet), true) {
        Ok(p) => p,
        Err(e) => return Reply::Now(rd_error(&e)),
    };
    let version =
        match registration::check_version(params.version.as_deref(), app.config.lwm2m.accept_1_2) {
            Ok(v) => v,
            Err(e) => return Reply::Now(rd_error(&e)),
        };
    let objects = match objects(app, packet) {
        Ok(o) => o.unwrap_or_default(),
        Err(resp) => return Reply::Now(resp),
    };
    if app.lwm2m.registered() >= app.config.lwm2m.max_registrations {
        metrics::counter!("lwota_lwm2m_rd_rejected_total").increment(1);
        let mut packet = error_response(ResponseType::ServiceUnavailable, "too many registrations");
        packet.add_option(CoapOption::MaxAge, crate::coap::message::uint(60));
        return Reply::Now(packet);
    }
    let name = params.endpoint.clone().unwrap_or_default();
    // Over CoAPS the PSK identity registers its own device only.
    if let Err(refused) = super::auth::check_device(request, &name) {
        metrics::counter!("lwota_lwm2m_rd_rejected_total").increment(1);
        return Reply::Now(refused);
    }
    let secure = request.identity.is_some();
    // Issue 11: an unknown endpoint would be self-registered: same rate
    // limits and device cap as a poll.
    if let Err(refused) = super::registration::check(app, &name, request.meta.peer) {
        return Reply::Now(refused);
    }
    let location = new_location();
    let peer = request.meta.peer.to_string();
    let local = request.local.to_string();
    let default_product = app.config.lwm2m.default_product.clone();
    let job = move |tx: &mut dyn crate::store::Tx, now, settings: crate::ota::OtaSettings| {
        registration::register(
            tx,
            now,
            &Register {
                params: &params,
                objects: &objects,
                version: &version,
                location: &location,
                peer: peer.clone(),
                local: local.clone(),
                secure,
                auto_register: settings.auto_register,
                default_product: &default_product,
            },
        )
    };
    durable(
        app,
        "lwm2m register",
        job,
        move |app, outcome| match outcome {
            Ok(record) => {
                metrics::counter!("lwota_lwm2m_registers_total").increment(1);
                app.lwm2m.live().track(&name, &record, false);
                let mut packet = response(ResponseType::Created);
                packet.add_option(CoapOption::LocationPath, b"rd".to_vec());
                packet.add_option(
                    CoapOption::LocationPath,
                    record.location.as_bytes().to_vec(),
                );
                app.lwm2m.send(RdEvent::Registered {
                    name,
                    record: Box::new(record),
                    register: true,
                });
                packet
            }
            Err(e) => rd_error(&e),
        },
    )
}

/// Over CoAPS, `/rd/{location}` must be the session's own device's.
fn check_location(app: &App, request: &IncomingRequest, location: &str) -> Result<(), Packet> {
    if request.identity.is_none() {
        return Ok(());
    }
    let owner = app.lwm2m.live().get(location).map(|l| l.name.clone());
    match owner {
        Some(name) => super::auth::check_device(request, &name),
        None => Ok(()),
    }
}

pub fn update(app: &App, request: &IncomingRequest, location: &str) -> Reply {
    let packet = &request.packet;
    if let Err(refused) = check_location(app, request, location) {
        return Reply::Now(refused);
    }
    let params: Params = match registration::parse_query(&queries(packet), false) {
        Ok(p) => p,
        Err(e) => return Reply::Now(rd_error(&e)),
    };
    let objects = match objects(app, packet) {
        Ok(o) => o,
        Err(resp) => return Reply::Now(resp),
    };
    let peer = request.meta.peer.to_string();
    // An Update that changes nothing but the expiry is answered from
    // memory when `lwm2m::live` says it may be (why that is crash-safe
    // is argued there); everything else is written before the reply.
    if params == Params::default() && objects.is_none() {
        let refreshed = app.lwm2m.live().refresh(location, app.now(), &peer);
        if refreshed.is_some() {
            metrics::counter!("lwota_lwm2m_updates_total").increment(1);
            metrics::counter!("lwota_lwm2m_updates_in_memory_total").increment(1);
            return Reply::Now(response(ResponseType::Changed));
        }
    }
    let location = location.to_string();
    let job = move |tx: &mut dyn crate::store::Tx, now, _settings| {
        registration::update(tx, now, &location, &params, objects.as_ref(), peer.clone())
    };
    durable(app, "lwm2m update", job, |app, outcome| match outcome {
        Ok((name, record)) => {
            metrics::counter!("lwota_lwm2m_updates_total").increment(1);
            app.lwm2m.live().track(&name, &record, false);
            app.lwm2m.send(RdEvent::Registered {
                name,
                record: Box::new(record),
                register: false,
            });
            response(ResponseType::Changed)
        }
        Err(e) => rd_error(&e),
    })
}

pub fn deregister(app: &App, request: &IncomingRequest, location: &str) -> Reply {
    if let Err(refused) = check_location(app, request, location) {
        return Reply::Now(refused);
    }
    let location = location.to_string();
    let job = move |tx: &mut dyn crate::store::Tx, now, _settings| {
        registration::deregister(tx, now, &location)
    };
    durable(
        app,
        "lwm2m de-register",
        job,
        |app, outcome| match outcome {
            Ok(name) => {
                metrics::counter!("lwota_lwm2m_deregisters_total").increment(1);
                app.lwm2m.live().forget(&name);
                app.lwm2m.send(RdEvent::Gone { name });
                response(ResponseType::Deleted)
            }
            Err(e) => rd_error(&e),
        },
    )
}
