//! Issue 11 item 4: self-registration is rate-limited. Any datagram used
//! to be able to create a device record forever (2,000-2,800 fake devices
//! per second from one client); now an unknown device's poll is admitted
//! only within `[abuse] auto_register_per_min_per_source` (per source IP)
//! and `auto_register_per_min` (in total), else 4.29 Too Many Requests
//! with Max-Age (RFC 8516). Known devices are not affected. And once the
//! store holds `auto_register_max_devices` devices, no unknown device is
//! self-registered at all (5.03, Max-Age 3600).
//!
//! The buckets use the monotonic clock of the caller's process: this is
//! the I/O shell's side of the resource, like the block-fetch table.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use coap_lite::{CoapOption, Packet, ResponseType};

use crate::coap::endpoint::error_response;
use crate::coap::rate::RateLimiter;
use crate::config::AbuseConfig;
use crate::state::App;

/// Self-registrations refused at `[abuse] auto_register_max_devices`.
pub const CAPPED: &str = "lwota_coap_registrations_capped_total";

/// Source IPs with a registration bucket.
const SOURCES: usize = 100_000;

#[derive(Debug)]
pub struct Limits {
    per_source: Mutex<RateLimiter<IpAddr>>,
    total: Mutex<RateLimiter<()>>,
}

impl Limits {
    pub fn new(config: &AbuseConfig) -> Limits {
        let per_min = |n: u32| f64::from(n) / 60.0;
        Limits {
            per_source: Mutex::new(RateLimiter::new(
                per_min(config.auto_register_per_min_per_source),
                config.auto_register_per_min_per_source,
                SOURCES,
            )),
            total: Mutex::new(RateLimiter::new(
                per_min(config.auto_register_per_min),
                config.auto_register_per_min,
                1,
            )),
        }
    }

    fn admit(&self, now: Instant, source: IpAddr) -> bool {
        let mut per_source = self.per_source.lock().unwrap_or_else(|e| e.into_inner());
        if !per_source.admit(now, &source) {
            return false;
        }
        let mut total = self.total.lock().unwrap_or_else(|e| e.into_inner());
        total.admit(now, &())
    }
}

/// `Err(4.29)` when `device` is unknown, would be self-registered and the
/// limits are used up.
pub fn check(app: &App, device: &str, peer: SocketAddr) -> Result<(), Packet> {
    if !app.config.devices.auto_register {
        return Ok(());
    }
    // A known device never counts; a store error lets the poll go on (the
    // write path reports it).
    let (known, devices) = app
        .store
        .read()
        .and_then(|tx| Ok((tx.device(device)?.is_some(), tx.device_count()?)))
        .unwrap_or((true, 0));
    if known {
        return Ok(());
    }
    let cap = app.config.abuse.auto_register_max_devices;
    if cap > 0 && devices >= cap {
        tracing::debug!(
            devices,
            cap,
            "self-registration refused: device cap reached"
        );
        metrics::counter!(CAPPED).increment(1);
        let mut packet = error_response(
            ResponseType::ServiceUnavailable,
            "device limit reached; ask the operator to register this device",
        );
        packet.add_option(CoapOption::MaxAge, crate::coap::message::uint(3600));
        return Err(packet);
    }
    if app.registrations.admit(Instant::now(), peer.ip()) {
        return Ok(());
    }
    metrics::counter!("lwota_coap_registrations_refused_total").increment(1);
    let mut packet = error_response(
        ResponseType::TooManyRequests,
        "too many new devices; retry later",
    );
    packet.add_option(CoapOption::MaxAge, vec![60]);
    Err(packet)
}
