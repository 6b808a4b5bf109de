//! The scheduler shell: drives `ota::scheduler` (see its driving
//! contract). It sleeps until the earliest timer is due, or until the
//! store signals that a commit set an earlier timer, or until an injected
//! clock jumps; it never polls. Due timers are handled in bounded
//! batches, each one durable write.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::ota::scheduler;
use crate::state::App;
use crate::store::StoreError;
use crate::time::Timestamp;

/// Pause after a storage error before trying again.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

pub async fn run(app: App, mut shutdown: watch::Receiver<bool>) {
    let signal = app.store.timer_signal();
    let jumps = app.clock.jumps();
    loop {
        // Awake: any commit that sets a timer leaves a wake-up permit, so
        // one set between reading `next_due` and sleeping is not lost.
        signal.sleeping_until(Timestamp::MAX);
        let sleep = match step(&app).await {
            Ok(Step::Again) => continue,
            Ok(Step::SleepUntil(at)) => {
                signal.sleeping_until(at.unwrap_or(Timestamp::MAX));
                at.map(|at| at.saturating_since(app.now()))
            }
            Err(e) => {
                tracing::error!("timer handling failed: {e}");
                Some(ERROR_BACKOFF)
            }
        };
        tokio::select! {
            _ = sleep_for(sleep) => {}
            _ = signal.notified() => {}
            _ = jumped(&jumps) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
}

enum Step {
    /// More timers may be due right now.
    Again,
    /// Nothing due; the next timer (if any) is due then.
    SleepUntil(Option<Timestamp>),
}

async fn step(app: &App) -> Result<Step, StoreError> {
    let now = app.now();
    let next = scheduler::next_due(app.store.read()?.as_ref())?;
    match next {
        Some(at) if at <= now => {
            let settings = app.ota_settings();
            let handled = app
                .store
                .write(move |tx| {
                    scheduler::handle_due(tx, now, settings, scheduler::BATCH_LIMIT)
                        .map(Ok::<_, ()>)
                })
                .await?
                .unwrap_or_default();
            if handled.timers > 0 {
                // Timeouts, retries, starts: observing devices see the result.
                crate::resources::task_observe::changed(
                    app,
                    crate::resources::task_observe::Scope::All,
                );
            }
            if handled.timed_out > 0 {
                tracing::info!("{} tasks timed out", handled.timed_out);
            }
            campaign_metrics(&handled.campaign);
            Ok(if handled.more || handled.timers > 0 {
                Step::Again
            } else {
                Step::SleepUntil(next)
            })
        }
        next => Ok(Step::SleepUntil(next)),
    }
}

async fn sleep_for(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

async fn jumped(jumps: &Option<Arc<Notify>>) {
    match jumps {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

/// `lwota_campaign_timers_total{kind}`: campaign-engine timers handled
/// (counted after their transaction committed).
fn campaign_metrics(c: &scheduler::CampaignTimers) {
    for (kind, n) in [
        ("task_retry", c.task_retry),
        ("campaign_start", c.campaign_start),
        ("rate_window", c.rate_window),
        ("wave_check", c.wave_check),
        ("campaign_end", c.campaign_end),
    ] {
        if n > 0 {
            metrics::counter!("lwota_campaign_timers_total", "kind" => kind).increment(n as u64);
        }
    }
}
