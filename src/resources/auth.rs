//! Who may act as a device (issue 11, docs/PROTOCOL.md "CoAPS").
//!
//! Over CoAPS the peer's PSK identity binds it to exactly one device: a
//! request that names another device is a 4.03 and changes nothing. On
//! plain CoAP devices are unauthenticated, except that products listed in
//! `[dtls] require_dtls` are refused there with 4.01. `/rd` (LwM2M) uses
//! the same two checks with its endpoint name.

use coap_lite::{Packet, ResponseType};

use crate::coap::endpoint::error_response;
use crate::coap::IncomingRequest;
use crate::state::App;

/// Over CoAPS, `device` must be the device of the session's identity.
pub fn check_device(request: &IncomingRequest, device: &str) -> Result<(), Packet> {
    match &request.identity {
        Some(peer) if peer.device != device => {
            tracing::warn!(
                peer = %request.meta.peer,
                identity = %peer.identity,
                bound_to = %peer.device,
                "request for another device over its DTLS session refused (4.03)"
            );
            Err(error_response(
                ResponseType::Forbidden,
                "this PSK identity belongs to another device",
            ))
        }
        _ => Ok(()),
    }
}

/// Whether devices of `product` must use CoAPS.
pub fn requires_dtls(app: &App, product: &str) -> bool {
    app.config.dtls.require_dtls.iter().any(|p| p == product)
}

/// The 4.01 a plain-CoAP request of a DTLS-only product gets.
pub fn dtls_required() -> Packet {
    error_response(
        ResponseType::Unauthorized,
        "this device must use CoAPS (DTLS-PSK)",
    )
}

/// The scheme and authority a task URI gets over CoAPS (the address the
/// request arrived on), `None` on plain CoAP (URIs stay paths).
pub fn secure_base(request: &IncomingRequest) -> Option<String> {
    request
        .identity
        .as_ref()
        .map(|_| format!("coaps://{}", request.local))
}
