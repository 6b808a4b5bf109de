//! `POST /ota/{device}/report`: body `{"task", "state", ?"progress",
//! ?"error", ?"version"}` → 2.04 once the report is committed; the same
//! report again changes nothing and is answered 2.04 too.

use coap_lite::{Packet, ResponseType};

use super::cbor::CborMap;
use super::{durable, require_cbor, response, Reply};
use crate::coap::endpoint::error_response;
use crate::ota::report::{self, Report, ReportError};
use crate::ota::task::TaskState;
use crate::state::App;

/// Device error strings are kept verbatim, up to this many bytes.
const MAX_ERROR_LEN: usize = 256;

pub fn handle(app: &App, packet: &Packet, device: &str) -> Reply {
    if !crate::ota::valid_device_name(device) {
        return Reply::Now(error_response(ResponseType::NotFound, "unknown device"));
    }
    let parsed = match parse(packet) {
        Ok(parsed) => parsed,
        Err(resp) => return Reply::Now(resp),
    };
    metrics::counter!(crate::telemetry::REPORTS).increment(1);
    if crate::ota::parse_task_id(&parsed.task).is_some() {
        tracing::Span::current().record("task", parsed.task.as_str());
    }
    let device = device.to_string();
    let job = move |tx: &mut dyn crate::store::Tx, now, settings| {
        report::report(tx, now, settings, &device, &parsed)
    };
    durable(app, "report", job, |_, outcome| match outcome {
        Ok(_) => response(ResponseType::Changed),
        Err(e @ (ReportError::UnknownDevice(_) | ReportError::UnknownTask { .. })) => {
            error_response(ResponseType::NotFound, &e.to_string())
        }
        Err(e @ ReportError::Conflict(_)) => error_response(ResponseType::Conflict, &e.to_string()),
    })
}

fn parse(packet: &Packet) -> Result<Report, Packet> {
    require_cbor(packet)?;
    let bad = |m: String| error_response(ResponseType::BadRequest, &m);
    let map = CborMap::parse(&packet.payload).map_err(bad)?;
    let task = map.required_text("task").map_err(bad)?;
    let state_name = map.required_text("state").map_err(bad)?;
    let state = TaskState::parse_reported(&state_name).ok_or_else(|| {
        bad(format!(
            "unknown state {state_name:?}: one of downloading, downloaded, verified, updating, updated, failed"
        ))
    })?;
    let progress = map.uint("progress", 100).map_err(bad)?.map(|p| p as u8);
    let error = map.text("error").map_err(bad)?;
    if error.as_ref().is_some_and(|e| e.len() > MAX_ERROR_LEN) {
        return Err(bad(format!(
            "\"error\" must be at most {MAX_ERROR_LEN} bytes"
        )));
    }
    let version = map.text("version").map_err(bad)?;
    if let Some(v) = &version {
        if !crate::ota::firmware::valid_version(v) {
            return Err(bad(
                "\"version\" must be 1-64 characters of letters, digits, '.', '_', '-'".into(),
            ));
        }
    }
    Ok(Report {
        task,
        state,
        progress,
        error,
        version,
    })
}
