//! How the registration resource tells the LwM2M session shell
//! (`server/lwm2m_shell.rs`) what was committed: a bounded channel of
//! [`RdEvent`]s, plus the live registration count the resource checks
//! `max_registrations` against.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::mpsc;

use super::live::LiveTable;
use crate::model::RegistrationRecord;

/// Events queued for the shell at most; beyond, an event is dropped and
/// counted (`lwota_lwm2m_events_dropped_total`): the shell's periodic
/// check still finds the device's task, only a little later.
pub const EVENT_CAPACITY: usize = 65_536;

#[derive(Debug, Clone)]
pub enum RdEvent {
    /// A committed Register (`register: true`) or Update.
    Registered {
        name: String,
        record: Box<RegistrationRecord>,
        register: bool,
    },
    /// De-registered or expired.
    Gone { name: String },
}

pub struct Hub {
    events: mpsc::Sender<RdEvent>,
    registered: AtomicUsize,
    /// Live registrations: expiries refreshed in memory (`lwm2m::live`).
    /// Bounded by `lwm2m.max_registrations` (Registers beyond get 5.03);
    /// its size is the `lwota_lwm2m_registrations` gauge's count.
    live: Mutex<LiveTable>,
}

impl Hub {
    pub fn new() -> (Hub, mpsc::Receiver<RdEvent>) {
        let (events, rx) = mpsc::channel(EVENT_CAPACITY);
        (
            Hub {
                events,
                registered: AtomicUsize::new(0),
                live: Mutex::new(LiveTable::default()),
            },
            rx,
        )
    }

    pub fn send(&self, event: RdEvent) {
        if self.events.try_send(event).is_err() {
            metrics::counter!("lwota_lwm2m_events_dropped_total").increment(1);
        }
    }

    /// Registrations the shell holds (approximate between commits).
    pub fn registered(&self) -> usize {
        self.registered.load(Ordering::Relaxed)
    }

    /// The live registrations (a short lock: lookups and small updates).
    pub fn live(&self) -> MutexGuard<'_, LiveTable> {
        // A panic while holding it leaves a consistent table: every
        // method changes it in one step.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_registered(&self, n: usize) {
        self.registered.store(n, Ordering::Relaxed);
        metrics::gauge!("lwota_lwm2m_registrations").set(n as f64);
    }
}
