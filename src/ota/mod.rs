//! OTA domain logic: firmware catalogue, device task state machine,
//! campaigns, timers. Operations run inside a store transaction
//! (`&mut impl Tx`) and take `now` as an argument: none reads the clock,
//! a file or a socket.

pub mod assignment;
pub mod audit;
pub mod campaign;
pub mod catalogue;
pub mod cleanup; // issue 11: campaign deletion, never-seen devices
pub mod devices;
pub mod firmware;
pub mod firmware_edit;
pub mod history;
pub mod ledger;
pub mod poll;
pub mod progress;
pub mod report;
pub mod scheduler;
pub mod signing; // issue 11 item 5: signed manifests
pub mod stats;
pub mod task;
#[cfg(test)]
mod tests;

/// Settings the device-facing operations need, from the config.
#[derive(Debug, Clone, Copy)]
pub struct OtaSettings {
    pub auto_register: bool,
    pub timeout_ms: u64,
}

/// The task id a device sees: one task per device per campaign, so the
/// campaign id names it.
pub fn task_id(campaign: u64) -> String {
    format!("c{campaign}")
}

pub fn parse_task_id(task: &str) -> Option<u64> {
    task.strip_prefix('c')?.parse().ok()
}

/// Device names travel in URI paths: 1-64 of letters, digits, `. _ - :`.
pub fn valid_device_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}
