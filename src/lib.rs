//! lwota: a lightweight firmware-over-the-air update server for constrained
//! CoAP devices. See `docs/ARCHITECTURE.md` for the map of modules.

pub mod admin;
pub mod bench;
pub mod cli;
pub mod coap;
pub mod config;
pub mod console; // issue 12 item 1: operators' web console
pub mod dtls;
pub mod lwm2m;
pub mod model;
pub mod ota;
pub mod resources;
pub mod server;
pub mod sim;
pub mod state;
pub mod store;
pub mod telemetry; // issue 12 item 2: Prometheus metrics
pub mod time;
