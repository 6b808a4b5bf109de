//! LwM2M registration, expiry and queue mode as domain operations with
//! injected time, on both backends (issue 9).

use super::*;
use crate::lwm2m::content::RegisteredObjects;
use crate::lwm2m::registration::{self, Params, RdError, Register};
use crate::lwm2m::{device, queue};
use crate::model::{QueuedOp, RegistrationRecord, Timer};
use crate::ota::campaign::{self, Target};
use crate::ota::scheduler;

fn params(ep: &str, lt: u64, queue: bool) -> Params {
    Params {
        endpoint: Some(ep.into()),
        lifetime: Some(lt),
        version: Some("1.1".into()),
        binding: Some("U".into()),
        queue,
    }
}

fn reg(
    s: &impl SyncStore,
    now: Timestamp,
    p: &Params,
    location: &str,
    auto: bool,
) -> Result<RegistrationRecord, RdError> {
    let objects = RegisteredObjects::parse(b"</1/0>,</3/0>,</5/0>").unwrap();
    s.write_sync(|tx| {
        registration::register(
            tx,
            now,
            &Register {
                params: p,
                objects: &objects,
                version: "1.1",
                location,
                peer: "127.0.0.1:5000".into(),
                local: "127.0.0.1:5683".into(),
                secure: false,
                auto_register: auto,
                default_product: "lwm2m",
            },
        )
    })
    .unwrap()
}

fn stored(s: &impl SyncStore, name: &str) -> Option<RegistrationRecord> {
    s.read_sync(|tx| tx.registration(name)).unwrap()
}

fn registration_lifecycle(s: &impl SyncStore) {
    let r = reg(s, T0, &params("d1", 60, false), "loc1", true).unwrap();
    assert_eq!(r.expires_at, T0.add_millis(60_000));
    assert_eq!(
        s.read_sync(|tx| tx.registration_name("loc1")).unwrap(),
        Some("d1".into())
    );
    assert_eq!(
        s.read_sync(|tx| tx.device("d1")).unwrap().unwrap().product,
        "lwm2m"
    );
    // An Update moves the expiry; the old timer is gone.
    let upd = s
        .write_sync(|tx| {
            registration::update(
                tx,
                at(0).add_millis(30_000),
                "loc1",
                &Params::default(),
                None,
                "127.0.0.1:5001".into(),
            )
        })
        .unwrap()
        .unwrap();
    assert_eq!(upd.1.expires_at, T0.add_millis(90_000));
    assert_eq!(
        upd.1.peer, "127.0.0.1:5001",
        "requests follow the device's address"
    );
    // The timer is the backstop half a lifetime later (`lwm2m::live`:
    // Updates answered from memory never reach past it).
    let timers = s.read_sync(|tx| tx.timers(10)).unwrap();
    assert_eq!(
        timers,
        vec![(
            T0.add_millis(120_000),
            Timer::RegistrationExpiry("d1".into())
        )]
    );
    // Nothing expires before the timer...
    let h = s
        .write_sync(|tx| scheduler::handle_due(tx, T0.add_millis(119_999), settings(), 100))
        .unwrap();
    assert_eq!(h.timers, 0);
    assert!(stored(s, "d1").is_some());
    // ...and at it, the registration is removed with a history entry.
    let _ = s
        .write_sync(|tx| scheduler::handle_due(tx, T0.add_millis(120_000), settings(), 100))
        .unwrap();
    assert!(stored(s, "d1").is_none());
    assert_eq!(
        s.read_sync(|tx| tx.registration_name("loc1")).unwrap(),
        None
    );
    assert!(events(s, "d1").contains(&"lwm2m-expired".to_string()));
    // The last registration is kept for the operator, marked expired.
    let ended = s
        .read_sync(|tx| tx.ended_registration("d1"))
        .unwrap()
        .unwrap();
    assert_eq!(
        (ended.reason.as_str(), ended.ended_at),
        ("expired", T0.add_millis(120_000))
    );
    assert_eq!(ended.record.location, "loc1");
    // A new Register forgets it.
    reg(s, at(100), &params("d1", 60, false), "loc9", true).unwrap();
    assert!(s
        .read_sync(|tx| tx.ended_registration("d1"))
        .unwrap()
        .is_none());
}

fn register_again_replaces_and_deregister_removes(s: &impl SyncStore) {
    reg(s, T0, &params("d2", 60, false), "old", true).unwrap();
    reg(s, at(1), &params("d2", 120, true), "new", true).unwrap();
    assert_eq!(s.read_sync(|tx| tx.registration_name("old")).unwrap(), None);
    let r = stored(s, "d2").unwrap();
    assert!(r.queue_mode);
    assert_eq!(r.lifetime, 120);
    // Exactly one expiry timer: the new one.
    let timers = s.read_sync(|tx| tx.timers(10)).unwrap();
    assert_eq!(timers.len(), 1);
    let stale = s
        .write_sync(|tx| {
            registration::update(tx, at(2), "old", &Params::default(), None, "x".into())
        })
        .unwrap();
    assert_eq!(stale, Err(RdError::NotFound("old".into())));
    let gone = s
        .write_sync(|tx| registration::deregister(tx, at(2), "new"))
        .unwrap();
    assert_eq!(gone, Ok("d2".into()));
    assert!(stored(s, "d2").is_none());
    assert!(s.read_sync(|tx| tx.timers(10)).unwrap().is_empty());
}

fn unknown_endpoint_follows_auto_register(s: &impl SyncStore) {
    let refused = reg(s, T0, &params("stranger", 60, false), "l", false);
    assert_eq!(refused, Err(RdError::UnknownEndpoint("stranger".into())));
    assert!(s.read_sync(|tx| tx.device("stranger")).unwrap().is_none());
    register(s, &["known"], "p", "1.0");
    let ok = reg(s, T0, &params("known", 60, false), "l2", false).unwrap();
    assert_eq!(ok.location, "l2");
    assert_eq!(
        s.read_sync(|tx| tx.device("known"))
            .unwrap()
            .unwrap()
            .product,
        "p"
    );
}

fn queued_requests_wait_in_order_then_time_out(s: &impl SyncStore) {
    register(s, &["q"], "lwm2m", "1.0");
    let fw = add_firmware(s, "lwm2m", "2.0", 4);
    let c = s
        .write_sync(|tx| campaign::create(tx, T0, fw.id, &Target::All))
        .unwrap()
        .unwrap()
        .campaign
        .id;
    reg(s, T0, &params("q", 3600, true), "lq", true).unwrap();
    for op in [
        QueuedOp::ReadVersion,
        QueuedOp::Update(c),
        QueuedOp::Update(c),
    ] {
        s.write_sync(|tx| queue::enqueue(tx, T0, TIMEOUT_MS, "q", op.clone()))
            .unwrap();
    }
    let r = stored(s, "q").unwrap();
    assert_eq!(
        r.queued,
        vec![QueuedOp::ReadVersion, QueuedOp::Update(c)],
        "in order, once"
    );
    assert_eq!(r.queued_deadline, Some(T0.add_millis(TIMEOUT_MS)));
    // A Register keeps the queue (it is what goes out after it).
    reg(s, at(1), &params("q", 3600, true), "lq2", true).unwrap();
    assert_eq!(stored(s, "q").unwrap().queued.len(), 2);
    // Asleep past the task timeout: the task fails with `timeout`.
    let h = s
        .write_sync(|tx| scheduler::handle_due(tx, T0.add_millis(TIMEOUT_MS), settings(), 100))
        .unwrap();
    assert_eq!(h.timed_out, 1);
    let t = task(s, c, "q");
    assert_eq!(
        (t.state, t.error.as_deref()),
        (TaskState::Failed, Some("timeout"))
    );
    assert!(stored(s, "q").unwrap().queued.is_empty());
}

fn waking_takes_the_queue(s: &impl SyncStore) {
    reg(s, T0, &params("w", 3600, true), "lw", true).unwrap();
    s.write_sync(|tx| queue::enqueue(tx, T0, TIMEOUT_MS, "w", QueuedOp::ReadVersion))
        .unwrap();
    let ops = s.write_sync(|tx| queue::take(tx, "w")).unwrap();
    assert_eq!(ops, vec![QueuedOp::ReadVersion]);
    assert_eq!(stored(s, "w").unwrap().queued_deadline, None);
    // Its timer is gone: nothing fails later.
    let h = s
        .write_sync(|tx| scheduler::handle_due(tx, T0.add_millis(TIMEOUT_MS), settings(), 100))
        .unwrap();
    assert_eq!(h.timed_out, 0);
}

fn version_read_counts_like_a_polled_version(s: &impl SyncStore) {
    register(s, &["v"], "lwm2m", "1.0");
    let fw = add_firmware(s, "lwm2m", "2.0", 5);
    let c = s
        .write_sync(|tx| campaign::create(tx, T0, fw.id, &Target::All))
        .unwrap()
        .unwrap()
        .campaign
        .id;
    s.write_sync(|tx| {
        device::apply(
            tx,
            at(1),
            settings(),
            "v",
            c,
            &crate::ota::task::TaskEvent::Handed,
        )
    })
    .unwrap();
    s.write_sync(|tx| device::record_version(tx, at(2), settings(), "v", "2.0"))
        .unwrap();
    assert_eq!(task(s, c, "v").state, TaskState::Updated);
    assert_eq!(
        s.read_sync(|tx| tx.device("v")).unwrap().unwrap().version,
        "2.0"
    );
    assert!(events(s, "v").contains(&"version".to_string()));
}

backends!(
    registration_lifecycle,
    register_again_replaces_and_deregister_removes,
    unknown_endpoint_follows_auto_register,
    queued_requests_wait_in_order_then_time_out,
    waking_takes_the_queue,
    version_read_counts_like_a_polled_version,
);

#[test]
fn query_parsing() {
    let q = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let p =
        registration::parse_query(&q(&["ep=a", "lt=60", "lwm2m=1.1", "b=U", "Q"]), true).unwrap();
    assert!(p.queue);
    assert_eq!(p.binding.as_deref(), Some("U"));
    let p = registration::parse_query(&q(&["ep=a", "b=UQ"]), true).unwrap();
    assert!(p.queue, "1.0 queue mode is b=UQ");
    assert!(
        registration::parse_query(&q(&["lt=60"]), true).is_err(),
        "ep is required"
    );
    assert!(registration::parse_query(&q(&["ep=a", "lt=0"]), true).is_err());
    assert!(registration::parse_query(&q(&["ep=a", "zz=1"]), true).is_err());
    assert!(registration::parse_query(&q(&["ep=a/b"]), true).is_err());
    assert_eq!(registration::check_version(None, false), Ok("1.0".into()));
    assert!(registration::check_version(Some("1.2"), false).is_err());
    assert_eq!(
        registration::check_version(Some("1.2"), true),
        Ok("1.2".into())
    );
}
