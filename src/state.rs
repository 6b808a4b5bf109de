//! What the CoAP resources, the admin API and the scheduler share.

use std::sync::Arc;

use crate::config::Config;
use crate::ota::catalogue::Catalogue;
use crate::ota::OtaSettings;
use crate::store::blobs::BlobStore;
use crate::store::Store;
use crate::time::{Clock, Timestamp};

pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub blobs: BlobStore,
    pub catalogue: Catalogue,
    pub clock: Arc<dyn Clock>,
    /// Serialises "is this blob still used?" decisions (upload, delete):
    /// blobs are shared by identical images, so deciding and acting must
    /// not interleave.
    pub blob_lock: tokio::sync::Mutex<()>,
    /// Coalesces block-fetch signs of life (see `ota::progress::Touches`).
    pub touches: crate::ota::progress::Touches,
    /// LwM2M: registrations committed → the session shell.
    pub lwm2m: crate::lwm2m::hub::Hub,
    /// Device pre-shared keys for CoAPS handshakes (issue 11), kept in
    /// step with the store by the PSK admin route.
    pub psks: crate::dtls::keys::PskDirectory,
    /// Devices holding an Observe on `/ota/{device}/task` (issue 10 item 10).
    pub task_observers: crate::resources::task_observe::TaskObservers,
    /// Issue 11 item 4: self-registrations per source IP and in total.
    pub registrations: crate::resources::registration::Limits,
}

impl AppState {
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now().as_millis()
    }

    pub fn ota_settings(&self) -> OtaSettings {
        OtaSettings {
            auto_register: self.config.devices.auto_register,
            timeout_ms: self.config.tasks.timeout.saturating_mul(1000),
        }
    }
}

pub type App = Arc<AppState>;
