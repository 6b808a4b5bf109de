//! The notifications of one observation between its shard and its reader.
//!
//! Hand-written rather than a tokio channel: an mpsc channel that is full
//! can only refuse the NEWEST item, and a watch channel would lose the
//! final outcome behind a later notification. RFC 7641 only promises the
//! latest state, so a reader that falls behind loses the OLDEST
//! notifications, and the final outcome is never dropped.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use coap_lite::Packet;
use tokio::sync::Notify;

use crate::coap::Why;

/// Unread notifications kept per observation (the final outcome comes on
/// top of them).
pub const UNREAD_NOTIFICATIONS: usize = 16;

#[derive(Default)]
struct State {
    items: VecDeque<Result<Packet, Why>>,
    /// The final outcome was queued: nothing follows it.
    finished: bool,
    /// The reader was dropped: the shard cancels the observation.
    reader_gone: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    readable: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing in the critical sections panics; a poisoned lock still
        // holds a consistent queue.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The shard's end.
pub struct NotificationSender {
    shared: Arc<Shared>,
}

/// The reader's end.
pub struct NotificationReader {
    shared: Arc<Shared>,
}

pub fn queue() -> (NotificationSender, NotificationReader) {
    let shared = Arc::new(Shared::default());
    (
        NotificationSender {
            shared: shared.clone(),
        },
        NotificationReader { shared },
    )
}

impl NotificationSender {
    /// Queues a notification, dropping the oldest unread one when
    /// [`UNREAD_NOTIFICATIONS`] are waiting. Returns false when the reader
    /// is gone (the observation should be cancelled).
    pub fn notify(&self, packet: Packet) -> bool {
        let mut state = self.shared.lock();
        if state.reader_gone {
            return false;
        }
        if state.items.len() >= UNREAD_NOTIFICATIONS {
            state.items.pop_front();
            tracing::debug!("oldest unread notification dropped: reader is behind");
        }
        state.items.push_back(Ok(packet));
        drop(state);
        self.shared.readable.notify_one();
        true
    }

    /// Queues the final outcome; it is never dropped.
    pub fn finish(&self, outcome: Result<Packet, Why>) {
        let mut state = self.shared.lock();
        state.items.push_back(outcome);
        state.finished = true;
        drop(state);
        self.shared.readable.notify_one();
    }
}

impl Drop for NotificationSender {
    fn drop(&mut self) {
        // A shard that stops ends the stream (`next` yields None).
        self.shared.lock().finished = true;
        self.shared.readable.notify_one();
    }
}

impl NotificationReader {
    /// The next notification in order, then the final outcome, then None.
    pub async fn next(&mut self) -> Option<Result<Packet, Why>> {
        loop {
            {
                let mut state = self.shared.lock();
                if let Some(item) = state.items.pop_front() {
                    return Some(item);
                }
                if state.finished {
                    return None;
                }
            }
            // notify_one stores a permit when nobody waits: no lost wake-up.
            self.shared.readable.notified().await;
        }
    }
}

impl Drop for NotificationReader {
    fn drop(&mut self) {
        self.shared.lock().reader_gone = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(n: u8) -> Packet {
        let mut p = Packet::new();
        p.payload = vec![n];
        p
    }

    /// Fails with the former mpsc channel: it kept notifications 0..16 and
    /// dropped the newest.
    #[tokio::test]
    async fn reader_behind_gets_the_latest_notifications_then_the_final_outcome() {
        let (tx, mut rx) = queue();
        for n in 0..40u8 {
            assert!(tx.notify(numbered(n)));
        }
        tx.finish(Err(Why::TimedOut));
        let mut seen = Vec::new();
        while let Some(item) = rx.next().await {
            match item {
                Ok(p) => seen.push(p.payload[0]),
                Err(why) => {
                    assert_eq!(why, Why::TimedOut);
                    seen.push(u8::MAX);
                }
            }
        }
        let mut want: Vec<u8> = (24..40).collect();
        want.push(u8::MAX);
        assert_eq!(seen, want);
    }

    #[tokio::test]
    async fn dropped_reader_is_reported_and_waiting_reader_wakes() {
        let (tx, mut rx) = queue();
        let reader = tokio::spawn(async move {
            let first = rx.next().await;
            (first.map(|r| r.map(|p| p.payload)), rx)
        });
        tokio::task::yield_now().await;
        assert!(tx.notify(numbered(7)));
        let (first, rx) = reader.await.unwrap();
        assert_eq!(first, Some(Ok(vec![7])));
        drop(rx);
        assert!(!tx.notify(numbered(8)));
    }
}
