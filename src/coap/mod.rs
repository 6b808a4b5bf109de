//! The CoAP peer (RFC 7252 over UDP, RFC 7641 Observe, RFC 7959
//! block-wise), sans-IO.
//!
//! `coap-lite` is the codec only; all state lives in [`Endpoint`], which
//! never touches a socket, a clock or the OS's randomness. The shards in
//! `server/shard.rs` feed it datagrams and `now`. Nothing here imports the
//! domain (`ota/`, `store/`, `resources/`, `lwm2m/`).
//!
//! | file | what |
//! |---|---|
//! | `endpoint.rs` | [`Endpoint`], the driving contract, incoming requests |
//! | `exchange.rs` | outgoing exchanges, retransmission, NSTART, client Observe, Block1/Block2 as client |
//! | `observe.rs` | observe relations served (notifications) |
//! | `block1.rs` | Block1 request bodies reassembled (server) |
//! | `block.rs` | the Block option value |
//! | `dedup.rs` | (peer, Message ID) deduplication |
//! | `message.rs` | §3 format checks on raw bytes, option checks, builders |
//! | `timer.rs` | `enum Timer`, the deadline table, transmission parameters |
//! | `ctx.rs` | the output every part writes to |
//! | `rng.rs` | seeded generator for tokens, Message IDs, jitter |
//! | `rate.rs` | per-source token buckets (abuse limits) |
//! | `amplification.rs` | bounded responses to unverified addresses, Echo (RFC 9175) |

pub mod amplification; // issue 11: RFC 9175 Echo, bounded responses
pub mod block;
mod block1;
mod ctx;
pub mod dedup;
pub mod endpoint;
mod exchange;
pub mod message;
mod observe;
pub mod rate; // issue 11 item 4: per-source token buckets
pub mod rng;
pub mod timer;

#[cfg(test)]
mod tests;

pub use amplification::AmplificationConfig;
pub use block1::Block1Limits;
pub use endpoint::{
    ClientLimits, Endpoint, EndpointConfig, Event, ExchangeId, IncomingRequest, NotifyError,
    ObserveLimits, PeerIdentity, RelationId, RequestMeta, Transmit, Why,
};
pub use timer::TransmissionParams;
