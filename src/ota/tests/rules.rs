//! The campaign engine's rules (issue 10) with an injected clock: each
//! retry interval and max, the start window, the pack rate, wave opening
//! and pausing, dynamic end, per-campaign timeouts, battery, conflicts and
//! verification. Time only moves through the `now` passed in.

use super::*;
use crate::model::{CampaignStatus, RatePolicy, RetryPolicy, WavePolicy};
use crate::ota::campaign::options::{self, Defaults, Options};
use crate::ota::campaign::{self, operator, CampaignError, NewCampaign, Target};
use crate::ota::scheduler;

backends!(
    retry_each_interval_once_then_final,
    retry_max_counts_attempts,
    retry_after_timeout_and_history_has_every_attempt,
    scheduled_start_hands_out_only_after_start,
    pack_rate_limits_hand_outs_per_window,
    waves_open_in_order_and_pause_on_failures,
    dynamic_takes_late_devices_until_end,
    campaign_timeout_overrides_config,
    low_battery_waits,
    conflict_and_verification,
    operator_retry_and_per_device_cancel,
);

const SEC: u64 = 1000;

fn now_s(s: u64) -> Timestamp {
    T0.add_millis(s * SEC)
}

fn create(
    s: &impl SyncStore,
    version: &str,
    target: Target,
    o: Options,
) -> Result<u64, CampaignError> {
    let fw = s
        .read_sync(|tx| tx.firmware_all())
        .unwrap()
        .into_iter()
        .find(|f| f.version == version)
        .unwrap_or_else(|| add_firmware(s, "p", version, version.len() as u8));
    let listed = match &target {
        Target::Devices(d) => Some(d.len()),
        _ => None,
    };
    let policy = options::validate(T0, &o, listed, Defaults::default()).unwrap();
    let new = NewCampaign {
        firmware: fw.id,
        target,
        policy,
        require_verified: o.kind.is_none() && o.min_battery == Some(0),
    };
    s.write_sync(|tx| campaign::create_with(tx, T0, &new))
        .unwrap()
        .map(|c| c.campaign.id)
}

/// Like the shell: handle timers while any is due (a handled timer may set
/// another due now, e.g. a 0 s retry after a timeout); bounded.
fn due(s: &impl SyncStore, now: Timestamp) {
    for _ in 0..100 {
        let next = s.read_sync(|tx| scheduler::next_due(tx)).unwrap();
        if next.is_none_or(|at| at > now) {
            return;
        }
        let _ = s
            .write_sync(|tx| scheduler::handle_due(tx, now, settings(), 100))
            .unwrap();
    }
    panic!("timers keep coming due");
}

fn handed(s: &impl SyncStore, now: Timestamp, name: &str) -> bool {
    matches!(poll_at(s, now, name, "p", "1.0"), Ok(PollAnswer::Task(_)))
}

fn fail_at(s: &impl SyncStore, now: Timestamp, name: &str, id: u64) {
    report_at(s, now, name, &format!("c{id}"), TaskState::Failed, None).unwrap();
}

fn status(s: &impl SyncStore, id: u64) -> CampaignStatus {
    s.read_sync(|tx| {
        let c = tx.campaign(id)?.unwrap();
        Ok(campaign::effective_status(&c, &tx.campaign_counts(id)?))
    })
    .unwrap()
}

fn retry(interval_s: u64, max: u8) -> Options {
    Options {
        retry: Some(RetryPolicy { interval_s, max }),
        ..Options::default()
    }
}

fn retry_each_interval_once_then_final(s: &impl SyncStore) {
    let names: Vec<String> = (0..5).map(|i| format!("d{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    register(s, &refs, "p", "1.0");
    for (i, interval) in options::RETRY_INTERVALS.into_iter().enumerate() {
        let name = &names[i];
        let id = create(
            s,
            &format!("2.{i}"),
            Target::Devices(vec![name.clone()]),
            retry(interval, 1),
        )
        .unwrap();
        assert!(handed(s, T0, name));
        fail_at(s, T0, name, id);
        let t = task(s, id, name);
        assert_eq!(t.retry_at, Some(now_s(interval)), "interval {interval}");
        assert_eq!(status(s, id), CampaignStatus::Running);
        if interval > 0 {
            due(s, now_s(interval - 1));
            assert_eq!(task(s, id, name).state, TaskState::Failed);
        }
        due(s, now_s(interval));
        let t = task(s, id, name);
        assert_eq!((t.state, t.attempt), (TaskState::Queued, 1));
        assert!(handed(s, now_s(interval), name));
        fail_at(s, now_s(interval), name, id);
        // max 1: the second failure is final.
        assert_eq!(task(s, id, name).retry_at, None);
        assert_eq!(status(s, id), CampaignStatus::Finished);
    }
}

fn retry_max_counts_attempts(s: &impl SyncStore) {
    register(s, &["a", "b", "c"], "p", "1.0");
    for (i, (max, name)) in options::RETRY_MAX
        .into_iter()
        .zip(["a", "b", "c"])
        .enumerate()
    {
        let id = create(
            s,
            &format!("3.{i}"),
            Target::Devices(vec![name.into()]),
            retry(600, max),
        )
        .unwrap();
        let mut now = T0;
        for attempt in 0..=max {
            assert!(handed(s, now, name), "attempt {attempt} of {max}");
            fail_at(s, now, name, id);
            now = now.add_millis(600 * SEC);
            due(s, now);
        }
        let t = task(s, id, name);
        assert_eq!(
            (t.state, t.attempt, t.retry_at),
            (TaskState::Failed, max, None)
        );
        let retries = events(s, name).iter().filter(|e| *e == "retry").count();
        assert_eq!(retries, usize::from(max));
    }
}

fn retry_after_timeout_and_history_has_every_attempt(s: &impl SyncStore) {
    register(s, &["d"], "p", "1.0");
    let id = create(s, "2.0", Target::All, retry(0, 2)).unwrap();
    assert!(handed(s, T0, "d"));
    let deadline = T0.add_millis(TIMEOUT_MS);
    due(s, deadline);
    // The timeout failed it and the 0 s retry queued it again at once.
    let t = task(s, id, "d");
    assert_eq!((t.state, t.attempt), (TaskState::Queued, 1));
    let h = history(s, "d");
    let timeout = h.iter().find(|e| e.event == "timeout").unwrap();
    assert_eq!(timeout.error.as_deref(), Some("timeout"));
    let retry = h.iter().find(|e| e.event == "retry").unwrap();
    assert_eq!(retry.error.as_deref(), Some("timeout"));
}

fn scheduled_start_hands_out_only_after_start(s: &impl SyncStore) {
    register(s, &["d"], "p", "1.0");
    let start = T0.add_millis(options::START_MIN_MS);
    let id = create(
        s,
        "2.0",
        Target::All,
        Options {
            start_at: Some(start),
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(status(s, id), CampaignStatus::Scheduled);
    assert!(!handed(s, T0, "d"));
    due(s, Timestamp::from_millis(start.as_millis() - 1));
    assert_eq!(status(s, id), CampaignStatus::Scheduled);
    assert!(!handed(
        s,
        Timestamp::from_millis(start.as_millis() - 1),
        "d"
    ));
    due(s, start);
    assert_eq!(status(s, id), CampaignStatus::Running);
    assert!(handed(s, start, "d"));
}

fn pack_rate_limits_hand_outs_per_window(s: &impl SyncStore) {
    let names = ["a", "b", "c", "d", "e"];
    register(s, &names, "p", "1.0");
    let id = create(
        s,
        "2.0",
        Target::All,
        Options {
            rate: Some(RatePolicy {
                pack_size: 2,
                pack_interval_s: 60,
            }),
            ..Options::default()
        },
    )
    .unwrap();
    let got: Vec<bool> = names.iter().map(|n| handed(s, T0, n)).collect();
    assert_eq!(got, [true, true, false, false, false]);
    assert_eq!(
        task(s, id, "c").pending,
        Some(crate::model::PendingReason::RateLimited)
    );
    let c = s.read_sync(|tx| tx.campaign(id)).unwrap().unwrap();
    assert_eq!(c.progress.rate_limited, 3);
    // Still the same window a second before it ends.
    assert!(!handed(s, now_s(59), "c"));
    due(s, now_s(60));
    let got: Vec<bool> = ["c", "d", "e"]
        .iter()
        .map(|n| handed(s, now_s(60), n))
        .collect();
    assert_eq!(got, [true, true, false]);
    let c = s.read_sync(|tx| tx.campaign(id)).unwrap().unwrap();
    assert_eq!(c.progress.rate_limited, 1);
    assert!(handed(s, now_s(120), "e"));
}

fn waves_open_in_order_and_pause_on_failures(s: &impl SyncStore) {
    let names = ["d0", "d1", "d2", "d3", "d4"];
    register(s, &names, "p", "1.0");
    let wave = |percent, abort_failure_percent| WavePolicy {
        percent,
        abort_failure_percent,
    };
    let id = create(
        s,
        "2.0",
        Target::All,
        Options {
            waves: vec![wave(20, 0), wave(60, 50), wave(100, 0)],
            ..Options::default()
        },
    )
    .unwrap();
    // Waves: d0 | d1 d2 | d3 d4.
    assert!(!handed(s, T0, "d1"));
    assert!(handed(s, T0, "d0"));
    report_at(s, T0, "d0", &format!("c{id}"), TaskState::Updated, None).unwrap();
    assert!(!handed(s, T0, "d1"), "wave 1 opens through the scheduler");
    due(s, T0);
    assert!(handed(s, T0, "d1"));
    assert!(handed(s, T0, "d2"));
    assert!(!handed(s, T0, "d3"));
    fail_at(s, T0, "d1", id);
    // 1 of 2 failed = 50%: not more than the threshold.
    assert_eq!(status(s, id), CampaignStatus::Running);
    fail_at(s, T0, "d2", id);
    assert_eq!(status(s, id), CampaignStatus::Paused);
    due(s, now_s(1));
    assert!(!handed(s, now_s(1), "d3"), "paused: wave 2 never starts");
    s.write_sync(|tx| operator::resume(tx, id))
        .unwrap()
        .unwrap();
    assert_eq!(status(s, id), CampaignStatus::Running);
    assert!(handed(s, now_s(2), "d3"));
}

fn dynamic_takes_late_devices_until_end(s: &impl SyncStore) {
    register(s, &["a"], "p", "1.0");
    let end = now_s(3600);
    let id = create(
        s,
        "2.0",
        Target::SourceVersions(vec!["1.0".into()]),
        Options {
            dynamic: true,
            end_at: Some(end),
            ..Options::default()
        },
    )
    .unwrap();
    // Registered later: gets the task at registration.
    s.write_sync(|tx| {
        ota_devices::register(
            tx,
            now_s(10),
            &[ota_devices::NewDevice {
                name: "late".into(),
                product: "p".into(),
                version: Some("1.0".into()),
            }],
        )
    })
    .unwrap();
    assert!(handed(s, now_s(11), "late"));
    // A device on another version is not taken, until it polls with 1.0.
    register(s, &["other"], "p", "0.9");
    assert!(!matches!(
        poll_at(s, now_s(12), "other", "p", "0.9"),
        Ok(PollAnswer::Task(_))
    ));
    assert!(handed(s, now_s(13), "other"));
    assert!(handed(s, now_s(14), "a"));
    for n in ["a", "late", "other"] {
        report_at(s, now_s(20), n, &format!("c{id}"), TaskState::Updated, None).unwrap();
    }
    assert_eq!(status(s, id), CampaignStatus::Running, "dynamic until end");
    due(s, end);
    assert_eq!(status(s, id), CampaignStatus::Finished);
    assert!(!handed(s, end, "new-after-end"));
}

fn campaign_timeout_overrides_config(s: &impl SyncStore) {
    register(s, &["d"], "p", "1.0");
    let id = create(
        s,
        "2.0",
        Target::All,
        Options {
            timeout_s: Some(60),
            ..Options::default()
        },
    )
    .unwrap();
    assert!(handed(s, T0, "d"));
    assert_eq!(task(s, id, "d").deadline, Some(now_s(60)));
    due(s, now_s(59));
    assert_eq!(task(s, id, "d").state, TaskState::Initiated);
    due(s, now_s(60));
    assert_eq!(task(s, id, "d").error.as_deref(), Some("timeout"));
}

fn low_battery_waits(s: &impl SyncStore) {
    register(s, &["d"], "p", "1.0");
    let id = create(
        s,
        "2.0",
        Target::All,
        Options {
            min_battery: Some(30),
            ..Options::default()
        },
    )
    .unwrap();
    let poll = |battery| {
        let request = PollRequest {
            product: "p".into(),
            version: "1.0".into(),
            battery: Some(battery),
            block: None,
            software_version: None,
        };
        s.write_sync(|tx| poll::poll(tx, T0, settings(), "d", None, &request))
            .unwrap()
            .unwrap()
    };
    assert_eq!(poll(29), PollAnswer::LowBattery);
    assert_eq!(
        task(s, id, "d").pending,
        Some(crate::model::PendingReason::LowBattery)
    );
    assert!(matches!(poll(30), PollAnswer::Task(_)));
    assert_eq!(task(s, id, "d").pending, None);
}

fn conflict_and_verification(s: &impl SyncStore) {
    register(s, &["a", "b"], "p", "1.0");
    let first = create(
        s,
        "2.0",
        Target::SourceVersions(vec!["1.0".into()]),
        Options::default(),
    )
    .unwrap();
    let conflict = create(s, "3.0", Target::All, Options::default());
    assert_eq!(conflict, Err(CampaignError::Conflict(first)));
    // Same target version: no conflict (the devices are merely busy).
    assert!(create(s, "2.0", Target::All, Options::default()).is_ok());
    // require_verified (the helper's switch: min_battery 0).
    let unverified = create(
        s,
        "4.0",
        Target::SourceVersions(vec!["9.9".into()]),
        Options {
            min_battery: Some(0),
            ..Options::default()
        },
    );
    assert!(matches!(unverified, Err(CampaignError::Unverified(_))));
    s.write_sync(|tx| campaign::cancel(tx, T0, settings(), first))
        .unwrap()
        .unwrap();
    let verify = create(
        s,
        "4.0",
        Target::Devices(vec!["a".into()]),
        Options {
            kind: Some("verify".into()),
            ..Options::default()
        },
    )
    .unwrap();
    assert!(handed(s, T0, "a"));
    report_at(s, T0, "a", &format!("c{verify}"), TaskState::Updated, None).unwrap();
    let fw = s.read_sync(|tx| tx.firmware_all()).unwrap();
    assert!(fw.iter().any(|f| f.version == "4.0" && f.verified));
    assert!(fw.iter().any(|f| f.version == "2.0" && !f.verified));
}

fn operator_retry_and_per_device_cancel(s: &impl SyncStore) {
    register(s, &["a", "b", "c"], "p", "1.0");
    let id = create(s, "2.0", Target::All, Options::default()).unwrap();
    for n in ["a", "b"] {
        assert!(handed(s, T0, n));
        fail_at(s, T0, n, id);
    }
    s.write_sync(|tx| operator::cancel_device(tx, T0, settings(), id, "c"))
        .unwrap()
        .unwrap();
    assert_eq!(task(s, id, "c").error.as_deref(), Some("cancelled"));
    assert_eq!(status(s, id), CampaignStatus::Finished);
    let retried = s
        .write_sync(|tx| operator::retry_failed(tx, now_s(1), id))
        .unwrap()
        .unwrap();
    assert_eq!(retried.requeued, 3);
    assert_eq!(status(s, id), CampaignStatus::Running);
    assert!(handed(s, now_s(2), "c"));
    fail_at(s, now_s(2), "c", id);
    s.write_sync(|tx| operator::retry_device(tx, now_s(3), id, "c"))
        .unwrap()
        .unwrap();
    assert_eq!(task(s, id, "c").state, TaskState::Queued);
    let not_failed = s.write_sync(|tx| operator::retry_device(tx, now_s(3), id, "c"));
    assert!(not_failed.unwrap().is_err());
}
