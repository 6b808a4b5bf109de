//! Every integration test in one binary.
//!
//! One test crate instead of one per file: in release mode each separate test
//! binary was compiled and linked on its own (about 30 links of the whole
//! server), which made up most of the test command's time. Each file below
//! stays a self-contained module; run one with `cargo test --release --test
//! integration FILE::` (for example `lwm2m_server::`).

mod common; // both allow dead_code inside: not every file uses every helper
mod simnet;

mod admin_auth;
mod admin_errors;
mod backup;
mod bench_smoke;
mod campaign_rules;
mod cli;
mod cli_campaign_rules;
mod cli_fleet;
mod cli_newcomer;
mod cli_output;
mod coap_download;
mod coap_shards;
mod coap_sim;
mod console_browser;
mod console_http;
mod crash;
mod dtls_interop;
mod firmware_api;
mod fixtures_replay;
mod fleet_api;
mod logs;
mod lwm2m_coaps;
mod lwm2m_fleet;
mod lwm2m_interop;
mod lwm2m_server;
mod metrics;
mod observe_push;
mod openapi;
mod packaging;
mod rollout;
mod security;
mod signing;
mod storage;
mod storage_faults;
