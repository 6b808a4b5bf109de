//! The push worker of `resources/task_observe.rs`: waits until tasks may
//! have changed, reads the current offer of each affected observed device
//! on the blocking pool (one snapshot per round), and hands notifications
//! to the shards that hold the relations. Rounds coalesce: any number of
//! changes while a round runs make one more round.

use std::time::Duration;

use tokio::sync::watch;

use crate::resources::task_observe::{answer_key, current};
use crate::state::App;
use crate::store::StoreError;

/// Pause before re-trying devices whose shard was full, or after a failed read.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

pub async fn run(app: App, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = app.task_observers.wait() => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
        let devices = app.task_observers.take_pending();
        if devices.is_empty() {
            continue;
        }
        let read = app
            .store
            .scan(move |tx| {
                let mut out = Vec::with_capacity(devices.len());
                for device in devices {
                    match current(tx, &device) {
                        Ok(Some(answer)) => out.push((device, answer)),
                        Ok(None) => {}
                        // One damaged record (e.g. a product's signing
                        // key) must not hold back the other devices' pushes.
                        Err(StoreError::Corrupt(why)) => {
                            tracing::warn!(device = %device, "task push skipped: {why}")
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(out)
            })
            .await;
        let offers = match read {
            Ok(offers) => offers,
            Err(e) => {
                tracing::warn!("task push: read failed: {e}");
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        let mut behind = false;
        for (device, answer) in offers {
            let key = answer_key(&answer);
            let packet = crate::resources::notification_packet(&app, answer);
            if !app.task_observers.deliver(&device, &key, &packet) {
                app.task_observers.retry_later(&device);
                behind = true;
            }
        }
        if behind {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}
