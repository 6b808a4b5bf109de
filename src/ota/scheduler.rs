//! The sans-IO scheduler: what happens when a [`Timer`] is due.
//!
//! Driving contract (the shell in `server/scheduler.rs` follows it):
//! 1. Read [`next_due`]; sleep until then, or until the store's timer
//!    signal says a commit set an earlier timer.
//! 2. When due, run [`handle_due`] in one write transaction with `now`.
//! 3. If it reports `more`, run it again at once (each call is bounded by
//!    `limit`); otherwise go back to 1.
//!
//! Timers are claimed (`Tx::take_due_timers`) in the same transaction that
//! acts on them, so a timer is handled exactly once even with several
//! schedulers on one database.

pub use crate::model::Timer;

use super::campaign::{gate, lifecycle};
use super::ledger::{self, Context};
use super::task::TaskEvent;
use super::OtaSettings;
use crate::store::{ReadTx, StoreError, Tx};
use crate::time::Timestamp;

/// Timers handled per transaction: one call is one bounded write.
pub const BATCH_LIMIT: usize = 1_000;

/// What one [`handle_due`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct Handled {
    /// Timers taken off the table.
    pub timers: usize,
    /// Tasks that failed with `timeout`.
    pub timed_out: usize,
    /// The limit was reached: more may be due now.
    pub more: bool,
    /// Campaign-engine timers handled, by kind (for metrics).
    pub campaign: CampaignTimers,
}

/// Campaign-engine timers one [`handle_due`] call handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CampaignTimers {
    pub task_retry: usize,
    pub campaign_start: usize,
    pub rate_window: usize,
    pub wave_check: usize,
    pub campaign_end: usize,
}

/// The earliest due time, for the shell to sleep until.
pub fn next_due(tx: &(impl ReadTx + ?Sized)) -> Result<Option<Timestamp>, StoreError> {
    tx.earliest_timer()
}

/// Handles up to `limit` timers due at or before `now`, and records `now`
/// as the clock floor (the server clock never restarts below it).
pub fn handle_due(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    settings: OtaSettings,
    limit: usize,
) -> Result<Handled, StoreError> {
    tx.raise_clock_floor(now)?;
    let due = tx.take_due_timers(now, limit)?;
    let mut handled = Handled {
        timers: due.len(),
        timed_out: 0,
        more: due.len() >= limit,
        campaign: CampaignTimers::default(),
    };
    for (at, timer) in due {
        match timer {
            Timer::TaskTimeout(key) => {
                let task = match tx.task(key.campaign, &key.device) {
                    Ok(Some(task)) => task,
                    Ok(None) => continue,
                    // Issue 8 item 7c: a corrupt task must not stall every
                    // timeout (failing here would roll back the claim and
                    // retry forever); its timer is dropped (claimed above)
                    // and `lwota check --repair` moves the record out.
                    Err(StoreError::Corrupt(e)) => {
                        tracing::warn!(
                            "skipping corrupt task ({}, {:?}): {e}",
                            key.campaign,
                            key.device
                        );
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                // Only the task's current deadline counts: a timer left
                // behind by a moved deadline is stale.
                if task.deadline != Some(at) {
                    continue;
                }
                let ctx = Context {
                    now,
                    timeout_ms: settings.timeout_ms,
                    device_name: &key.device,
                    alive: false,
                    cause: "timeout",
                };
                let device = match tx.device(&key.device) {
                    Ok(Some(device)) => device,
                    Ok(None) => continue,
                    // Like a corrupt task above: one corrupt device record
                    // must not fail (and so retry forever) the whole batch.
                    // Its timer stays dropped; `lwota check --repair` moves
                    // the record out.
                    Err(StoreError::Corrupt(e)) => {
                        tracing::warn!(
                            "skipping timeout of ({}, {:?}): corrupt device record: {e}",
                            key.campaign,
                            key.device
                        );
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if ledger::transition_loaded_device(tx, &ctx, device, &task, &TaskEvent::TimedOut)?
                {
                    handled.timed_out += 1;
                }
            }
            // LwM2M (issue 9): a registration's lifetime ran out; a
            // sleeping device's queued requests gave up.
            // A corrupt registration is skipped like a corrupt task above.
            Timer::RegistrationExpiry(name) => {
                match crate::lwm2m::registration::expire(tx, now, &name, at) {
                    Ok(_) => {}
                    Err(StoreError::Corrupt(e)) => {
                        tracing::warn!("skipping expiry of {name:?}: corrupt registration: {e}")
                    }
                    Err(e) => return Err(e),
                }
            }
            Timer::QueuedRequest(name) => {
                match crate::lwm2m::queue::give_up(tx, now, settings, &name, at) {
                    Ok(n) => handled.timed_out += n,
                    Err(StoreError::Corrupt(e)) => {
                        tracing::warn!("skipping queued requests of {name:?}: corrupt record: {e}")
                    }
                    Err(e) => return Err(e),
                }
            }
            Timer::TaskRetry(ref key) => {
                handled.campaign.task_retry += 1;
                skip_corrupt(&timer, lifecycle::retry_due(tx, now, at, key))?
            }
            Timer::CampaignStart(id) => {
                handled.campaign.campaign_start += 1;
                skip_corrupt(&timer, lifecycle::start(tx, id))?
            }
            Timer::RateWindow(id) => {
                handled.campaign.rate_window += 1;
                skip_corrupt(&timer, gate::window_rolled(tx, now, id))?
            }
            Timer::WaveCheck(id) => {
                handled.campaign.wave_check += 1;
                skip_corrupt(&timer, lifecycle::advance_waves(tx, id))?
            }
            Timer::CampaignEnd(id) => {
                handled.campaign.campaign_end += 1;
                skip_corrupt(&timer, lifecycle::end_dynamic(tx, now, id))?
            }
        }
    }
    Ok(handled)
}

/// Like the timeout arm: a corrupt record drops its timer (claimed) with a
/// warning instead of failing, and so retrying forever, the whole batch.
fn skip_corrupt(timer: &Timer, result: Result<(), StoreError>) -> Result<(), StoreError> {
    match result {
        Err(StoreError::Corrupt(e)) => {
            tracing::warn!(?timer, "skipping timer over a corrupt record: {e}");
            Ok(())
        }
        other => other,
    }
}
