//! The scheduler shell: sleeps until the earliest task deadline (or at most
//! a second, so an injected clock that jumps is noticed), then runs the
//! timeout sweep as one durable write. Nothing is written while no
//! deadline is due.

use std::time::Duration;

use tokio::sync::watch;

use crate::ota::timeouts;
use crate::state::App;

const MAX_SLEEP: Duration = Duration::from_secs(1);

pub async fn run(app: App, mut shutdown: watch::Receiver<bool>) {
    loop {
        let sleep = match tick(&app).await {
            Ok(sleep) => sleep,
            Err(e) => {
                tracing::error!("timeout sweep failed: {e}");
                MAX_SLEEP
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
}

/// One round: sweep if a deadline is due; return how long to sleep.
async fn tick(app: &App) -> Result<Duration, crate::store::StoreError> {
    let now = app.now_ms();
    let earliest = timeouts::earliest(&app.store.read()?)?;
    match earliest {
        Some(at) if at <= now => {
            let settings = app.ota_settings();
            let n = app
                .store
                .write(move |txn| timeouts::sweep(txn, now, settings).map(Ok::<usize, ()>))
                .await?
                .unwrap_or(0);
            if n > 0 {
                tracing::info!("{n} tasks timed out");
            }
            // More may be due right away (the sweep is bounded).
            Ok(if n >= timeouts::SWEEP_LIMIT {
                Duration::ZERO
            } else {
                Duration::from_millis(10)
            })
        }
        Some(at) => Ok(MAX_SLEEP.min(Duration::from_millis(at - now))),
        None => Ok(MAX_SLEEP),
    }
}
