//! `GET /ota/{device}/task` (issue 10 item 10): the device's current task,
//! the same CBOR map as a poll answer (`{}` when none). With Observe=0 the
//! device holds an RFC 7641 observation and is pushed the task as soon as
//! one is handed out (campaign creation, assignment, retry), instead of at
//! its next poll.
//!
//! The relation itself lives in the shard's sans-IO endpoint
//! (`coap/observe.rs`: NON notifications, CON at least every 24 h, the
//! relation ends when a CON goes unanswered or the device sends RST).
//! [`TaskObservers`] remembers which device each relation is for, and
//! which task it was last told about. Anything that may have handed out or
//! ended tasks calls [`changed`]; the push worker (`server/task_push.rs`)
//! then reads the current offer of every affected observed device and
//! notifies the relations whose task changed. The GET is read-only: the
//! task becomes `initiated`/`downloading` when the device acts on it.
//!
//! A device whose relation ended (it stopped answering) simply falls back
//! to polling; nothing is lost, the task waits in the store.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use coap_lite::{Packet, ResponseType};

use super::Reply;
use crate::coap::endpoint::error_response;
use crate::coap::{IncomingRequest, RelationId};
use crate::ota::poll::{PollAnswer, TaskOffer};
use crate::ota::valid_device_name;
use crate::state::App;
use crate::store::{ReadTx, StoreError};

/// Observed devices tracked at most (each shard's endpoint also bounds its
/// relations at 100,000); registrations beyond it are answered as a plain
/// GET would be.
pub const MAX_OBSERVERS: usize = 100_000;
/// Relations kept per device (a device that re-registers from a new
/// address keeps its old relation until that one fails).
pub const MAX_PER_DEVICE: usize = 4;
/// Devices remembered as "changed" before the next push round; more than
/// this becomes "every observed device".
const MAX_PENDING: usize = 10_000;

/// Which devices' tasks may have changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    All,
    Devices(Vec<String>),
}

/// How the registry reaches a shard: queue `packet` as a notification on
/// `relation` of shard `shard`; false when the shard cannot take it now.
pub type Notifier = Arc<dyn Fn(usize, RelationId, Packet) -> bool + Send + Sync>;

struct Watcher {
    shard: usize,
    relation: RelationId,
    /// The task id last sent ("" for `{}`); `None` forces the next send.
    last: Option<String>,
}

#[derive(Default)]
struct Inner {
    by_device: HashMap<String, Vec<Watcher>>,
    by_relation: HashMap<(usize, RelationId), String>,
    pending_all: bool,
    pending: HashSet<String>,
}

/// Observed devices and what each relation was last told.
#[derive(Default)]
pub struct TaskObservers {
    inner: Mutex<Inner>,
    wake: tokio::sync::Notify,
    notifier: OnceLock<Notifier>,
}

impl TaskObservers {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing in the critical sections panics.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Set once by the CoAP shell when the shards exist.
    pub fn set_notifier(&self, notifier: Notifier) {
        let _ = self.notifier.set(notifier);
    }

    /// Records a relation made on `shard`; `sent` is the task id of the
    /// first response. False when a bound is reached: the caller ends the
    /// relation (the device then polls).
    pub fn register(&self, device: &str, shard: usize, relation: RelationId, sent: String) -> bool {
        let mut inner = self.lock();
        let total = inner.by_relation.len();
        let list = inner.by_device.entry(device.to_string()).or_default();
        if total >= MAX_OBSERVERS || list.len() >= MAX_PER_DEVICE {
            if list.is_empty() {
                inner.by_device.remove(device);
            }
            metrics::counter!("lwota_task_observers_refused_total").increment(1);
            return false;
        }
        list.push(Watcher {
            shard,
            relation,
            last: Some(sent),
        });
        inner
            .by_relation
            .insert((shard, relation), device.to_string());
        // The first response was read before the relation existed: a task
        // handed out in between would be missed, so look once more.
        inner.pending.insert(device.to_string());
        metrics::gauge!("lwota_task_observers").set(inner.by_relation.len() as f64);
        drop(inner);
        self.wake.notify_one();
        true
    }

    /// The relation is over (RST, unanswered CON, deregistration).
    pub fn ended(&self, shard: usize, relation: RelationId) {
        let mut inner = self.lock();
        let Some(device) = inner.by_relation.remove(&(shard, relation)) else {
            return;
        };
        if let Some(list) = inner.by_device.get_mut(&device) {
            list.retain(|w| (w.shard, w.relation) != (shard, relation));
            if list.is_empty() {
                inner.by_device.remove(&device);
            }
        }
        metrics::gauge!("lwota_task_observers").set(inner.by_relation.len() as f64);
    }

    /// How many relations are tracked.
    pub fn len(&self) -> usize {
        self.lock().by_relation.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn mark(&self, scope: Scope) {
        let mut inner = self.lock();
        if inner.by_device.is_empty() {
            return;
        }
        match scope {
            Scope::All => inner.pending_all = true,
            Scope::Devices(names) => {
                for name in names {
                    if inner.by_device.contains_key(&name) {
                        inner.pending.insert(name);
                    }
                }
                if inner.pending.len() > MAX_PENDING {
                    inner.pending.clear();
                    inner.pending_all = true;
                }
            }
        }
        drop(inner);
        self.wake.notify_one();
    }

    /// Waits until something is marked (the push worker).
    pub async fn wait(&self) {
        self.wake.notified().await
    }

    /// The observed devices to look at now, and clears the marks.
    pub fn take_pending(&self) -> Vec<String> {
        let mut inner = self.lock();
        let out = if inner.pending_all {
            inner.by_device.keys().cloned().collect()
        } else {
            inner
                .pending
                .iter()
                .filter(|d| inner.by_device.contains_key(*d))
                .cloned()
                .collect()
        };
        inner.pending_all = false;
        inner.pending.clear();
        out
    }

    /// Notifies every relation of `device` whose last sent task is not
    /// `key`. Returns false when a shard could not take a notification
    /// (the caller marks the device again and retries shortly).
    pub fn deliver(&self, device: &str, key: &str, packet: &Packet) -> bool {
        let Some(notifier) = self.notifier.get() else {
            return true;
        };
        let mut inner = self.lock();
        let Some(list) = inner.by_device.get_mut(device) else {
            return true;
        };
        let mut all_sent = true;
        for w in list.iter_mut() {
            if w.last.as_deref() == Some(key) {
                continue;
            }
            if notifier(w.shard, w.relation, packet.clone()) {
                w.last = Some(key.to_string());
                metrics::counter!("lwota_task_notifications_total").increment(1);
            } else {
                w.last = None;
                all_sent = false;
            }
        }
        all_sent
    }

    /// Marks `device` for the next round (after a failed delivery).
    pub fn retry_later(&self, device: &str) {
        self.lock().pending.insert(device.to_string());
        self.wake.notify_one();
    }
}

/// Something may have handed out or ended tasks of `scope`'s devices:
/// observers among them get the new state. Cheap when nobody observes.
/// Call it after the write committed (campaign create/cancel/retry,
/// assignment, the scheduler's batches).
pub fn changed(app: &App, scope: Scope) {
    app.task_observers.mark(scope);
}

/// The task id of an answer ("" for `{}`): what observers are compared by.
pub fn answer_key(answer: &PollAnswer) -> String {
    match answer {
        PollAnswer::Task(offer) => offer.task.clone(),
        PollAnswer::Nothing | PollAnswer::LowBattery => String::new(),
    }
}

/// The device's current offer: its unfinished firmware task, else its
/// unfinished software task, else nothing. `None` for an unknown device.
pub fn current(tx: &dyn ReadTx, device: &str) -> Result<Option<PollAnswer>, StoreError> {
    if tx.device(device)?.is_none() {
        return Ok(None);
    }
    let pointers = crate::ota::assignment::pointers(tx, device)?;
    for campaign in [pointers.firmware, pointers.software].into_iter().flatten() {
        let Some(task) = tx.task(campaign, device)? else {
            continue;
        };
        if task.state.is_final() {
            continue;
        }
        let Some(fw) = tx.firmware(task.firmware)? else {
            continue;
        };
        return Ok(Some(PollAnswer::Task(TaskOffer::new(
            tx, &fw, device, campaign,
        )?)));
    }
    Ok(Some(PollAnswer::Nothing))
}

/// `GET /ota/{device}/task`, with or without Observe. Point reads of a
/// snapshot (device, task, firmware): cheap enough for the shard loop.
pub fn handle(app: &App, request: &IncomingRequest, device: &str) -> Reply {
    if !valid_device_name(device) {
        return Reply::Now(error_response(
            ResponseType::BadRequest,
            "device name must be 1-64 characters of letters, digits, '.', '_', '-', ':'",
        ));
    }
    let answer = match app.store.read().and_then(|tx| current(tx.as_ref(), device)) {
        Ok(Some(answer)) => answer,
        Ok(None) => {
            return Reply::Now(error_response(ResponseType::NotFound, "unknown device"));
        }
        Err(e) => {
            tracing::warn!("task read failed: {e}");
            return Reply::Now(error_response(
                ResponseType::ServiceUnavailable,
                "busy, retry later",
            ));
        }
    };
    let key = answer_key(&answer);
    let packet =
        super::poll::answer_packet(app, answer, super::auth::secure_base(request).as_deref());
    if request.meta.observe {
        Reply::Observe {
            packet,
            device: device.to_string(),
            sent: key,
        }
    } else {
        Reply::Now(packet)
    }
}
