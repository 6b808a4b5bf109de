//! The CoAP endpoint (RFC 7252 over UDP, RFC 7959 block-wise), sans-IO.
//!
//! `coap-lite` is the codec; state (deduplication, message ids) lives in
//! [`endpoint::Endpoint`], which never touches a socket or a clock. The
//! tokio shell in `server/coap_shell.rs` feeds it datagrams and `now`.

pub mod block;
pub mod dedup;
pub mod endpoint;

pub use endpoint::{Endpoint, IncomingRequest, RequestMeta, Transmit};
