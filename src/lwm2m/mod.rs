//! The LwM2M server (OMA LwM2M 1.0/1.1): content formats, the
//! registration interface as domain operations, and the sans-IO firmware
//! update flow (Objects 5 and 9). The shell that sends the requests is
//! `server/lwm2m_shell.rs`; the device-facing resource is `resources/rd.rs`.

pub mod accept;
pub mod config;
pub mod content;
pub mod device;
pub mod hub;
pub mod live;
pub mod queue;
pub mod registration;
pub mod update;
