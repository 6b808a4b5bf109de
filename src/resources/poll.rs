//! `POST /ota/{device}/poll`: body `{"product", "version", ?"battery", ?"block"}`;
//! answer `{"task", "version", "uri", "size", "sha256", ?"md5", ?"manifest"}` or `{}`
//! with Max-Age. The answer is sent only after the poll's effects (device
//! last seen, task handed out) are committed.

use std::net::SocketAddr;

use ciborium::Value;
use coap_lite::{CoapOption, ContentFormat, Packet, ResponseType};

use super::cbor::{encode_map, CborMap};
use super::{durable, require_cbor, response, Reply};
use crate::coap::endpoint::error_response;
use crate::coap::IncomingRequest;
use crate::ota::poll::{self, PollAnswer, PollError, PollRequest};
use crate::ota::valid_device_name;
use crate::state::App;

pub fn handle(app: &App, incoming: &IncomingRequest, device: &str) -> Reply {
    let peer: SocketAddr = incoming.meta.peer;
    let request = match parse(&incoming.packet, device) {
        Ok(request) => request,
        Err(resp) => return Reply::Now(resp),
    };
    if let Err(refused) = super::registration::check(app, device, peer) {
        return Reply::Now(refused);
    }
    // An existing device polls with its own product (else 4.00), so the
    // product in the body decides whether plain CoAP is allowed.
    if incoming.identity.is_none() && super::auth::requires_dtls(app, &request.product) {
        return Reply::Now(super::auth::dtls_required());
    }
    let base = super::auth::secure_base(incoming);
    metrics::counter!(crate::telemetry::POLLS).increment(1);
    let device = device.to_string();
    let job = move |tx: &mut dyn crate::store::Tx, now, settings| {
        let peer = Some(peer.to_string());
        poll::poll(tx, now, settings, &device, peer, &request)
    };
    durable(app, "poll", job, move |app, outcome| match outcome {
        Ok(answer) => answer_packet(app, answer, base.as_deref()),
        Err(e @ PollError::UnknownDevice(_)) => {
            error_response(ResponseType::NotFound, &e.to_string())
        }
        Err(e @ PollError::WrongProduct { .. }) => {
            error_response(ResponseType::BadRequest, &e.to_string())
        }
    })
}

fn parse(packet: &Packet, device: &str) -> Result<PollRequest, Packet> {
    if !valid_device_name(device) {
        return Err(error_response(
            ResponseType::BadRequest,
            "device name must be 1-64 characters of letters, digits, '.', '_', '-', ':'",
        ));
    }
    require_cbor(packet)?;
    let bad = |m: String| error_response(ResponseType::BadRequest, &m);
    let map = CborMap::parse(&packet.payload).map_err(bad)?;
    let product = map.required_text("product").map_err(bad)?;
    let version = map.required_text("version").map_err(bad)?;
    if !crate::ota::firmware::valid_product(&product) {
        return Err(bad(
            "\"product\" must be 1-64 characters of letters, digits, '.', '_', '-', ':'".into(),
        ));
    }
    if !crate::ota::firmware::valid_version(&version) {
        return Err(bad(
            "\"version\" must be 1-64 characters of letters, digits, '.', '_', '-'".into(),
        ));
    }
    let battery = map.uint("battery", 100).map_err(bad)?.map(|b| b as u8);
    let block = map.uint("block", 1024).map_err(bad)?.map(|b| b as u32);
    let software_version = map.text("software_version").map_err(bad)?;
    if software_version
        .as_ref()
        .is_some_and(|v| !crate::ota::firmware::valid_version(v))
    {
        return Err(bad(
            "\"software_version\" must be 1-64 characters of letters, digits, '.', '_', '-'".into(),
        ));
    }
    Ok(PollRequest {
        product,
        version,
        battery,
        block,
        software_version,
    })
}

pub(super) fn answer_packet(app: &App, answer: PollAnswer, base: Option<&str>) -> Packet {
    let mut packet = response(ResponseType::Content);
    packet.set_content_format(ContentFormat::ApplicationCBOR);
    packet.payload = match answer {
        PollAnswer::Nothing => {
            let max_age = super::firmware::encode_uint(u64::from(app.config.devices.poll_interval));
            packet.add_option(CoapOption::MaxAge, max_age);
            encode_map(vec![])
        }
        PollAnswer::LowBattery => {
            // Polls turned away by a campaign's `min_battery`.
            metrics::counter!("lwota_poll_low_battery_total").increment(1);
            let secs = app.config.campaigns.low_battery_retry_s;
            let max_age = super::firmware::encode_uint(u64::from(secs));
            packet.add_option(CoapOption::MaxAge, max_age);
            encode_map(vec![])
        }
        PollAnswer::Task(offer) => {
            // The request span (issue 12 item 6) names the task handed out.
            tracing::Span::current().record("task", offer.task.as_str());
            let mut entries = vec![
                ("task", Value::Text(offer.task)),
                ("version", Value::Text(offer.version)),
                // Over CoAPS the device must fetch over CoAPS too.
                (
                    "uri",
                    Value::Text(format!("{}{}", base.unwrap_or(""), offer.uri)),
                ),
                ("size", Value::Integer(offer.size.into())),
                ("sha256", Value::Bytes(offer.sha256)),
            ];
            if let Some(md5) = offer.md5 {
                entries.push(("md5", Value::Bytes(md5)));
            }
            // Issue 11 item 5: only for products with a signing key, so
            // answers of other products are byte-for-byte what they were.
            if let Some(manifest) = offer.manifest {
                entries.push(("manifest", Value::Bytes(manifest)));
            }
            encode_map(entries)
        }
    };
    packet
}
