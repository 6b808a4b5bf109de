//! Polls, reports, campaigns, cancel and block progress.

use super::*;
use crate::model::{CampaignStatus, TaskKey, Timer};
use crate::ota::campaign::{self, CampaignError, Target};
use crate::ota::poll::PollError;
use crate::ota::progress;
use crate::ota::task_id;

backends!(
    poll_auto_registers_and_coalesces_idle_polls,
    poll_refuses_wrong_product_and_unknown_device,
    campaign_create_queues_tasks_and_reports_skipped,
    poll_hands_out_task_and_arms_its_timeout,
    report_moves_forward_is_idempotent_and_finishes_campaign,
    polling_with_target_version_completes_task,
    cancel_fails_unfinished_tasks_only,
    block_progress_starts_download,
    bulk_queued_history_entry_is_shown_then_stored_once,
    source_versions_take_devices_in_name_order_across_versions,
);

/// Issue 10: a campaign by source versions finds its devices through the
/// version index (redb) and still takes them in name order across
/// versions, so waves hold the first names; devices whose version changed
/// since they registered count by their current version.
fn source_versions_take_devices_in_name_order_across_versions(s: &impl SyncStore) {
    register(s, &["c", "a"], "p", "1.0");
    register(s, &["b", "d", "f"], "p", "1.1");
    register(s, &["e"], "p", "2.0");
    register(s, &["x"], "q", "1.0");
    // "f" moved to 1.2 after it registered: not a 1.0/1.1 device any more.
    s.write_sync(|tx| {
        let mut f = tx.device("f")?.unwrap();
        f.version = "1.2".into();
        tx.put_device("f", &f)
    })
    .unwrap();
    let fw = add_firmware(s, "p", "2.0", 1);
    let new = campaign::NewCampaign {
        firmware: fw.id,
        target: Target::SourceVersions(vec!["1.1".into(), "1.0".into(), "2.0".into()]),
        policy: crate::model::CampaignPolicy {
            kind: "batch".into(),
            waves: vec![crate::model::WavePolicy {
                percent: 50,
                abort_failure_percent: 100,
            }],
            ..Default::default()
        },
        require_verified: false,
    };
    let created = s
        .write_sync(|tx| campaign::create_with(tx, T0, &new))
        .unwrap()
        .unwrap();
    assert_eq!(created.campaign.total, 4);
    assert_eq!(created.skipped.up_to_date, ["e"]);
    assert!(created.skipped.wrong_product.is_empty());
    let id = created.campaign.id;
    let waves: Vec<(String, u8)> = s
        .read_sync(|tx| tx.tasks(id, None, 100))
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, t.wave))
        .collect();
    let expect = [("a", 0), ("b", 0), ("c", 1), ("d", 1)];
    let expect: Vec<(String, u8)> = expect.iter().map(|(n, w)| (n.to_string(), *w)).collect();
    assert_eq!(waves, expect);
}

fn poll_auto_registers_and_coalesces_idle_polls(s: &impl SyncStore) {
    assert_eq!(poll_at(s, T0, "d1", "p", "1.0"), Ok(PollAnswer::Nothing));
    assert_eq!(poll_at(s, at(1), "d1", "p", "1.0"), Ok(PollAnswer::Nothing));
    assert_eq!(poll_at(s, at(2), "d1", "p", "1.0"), Ok(PollAnswer::Nothing));
    let h = history(s, "d1");
    assert_eq!(events(s, "d1"), ["registered", "poll"]);
    assert_eq!(h[1].repeat, Some(3));
    assert_eq!(h[1].since, Some(T0));
    assert_eq!(h[1].at, at(2));
    let device = s.read_sync(|tx| tx.device("d1")).unwrap().unwrap();
    assert_eq!(device.last_seen, Some(at(2)));
    // A version change starts a new entry.
    poll_at(s, at(3), "d1", "p", "1.1").unwrap();
    assert_eq!(events(s, "d1"), ["registered", "poll", "version", "poll"]);
}

fn poll_refuses_wrong_product_and_unknown_device(s: &impl SyncStore) {
    register(s, &["d1"], "p", "1.0");
    assert!(matches!(
        poll_at(s, T0, "d1", "q", "1.0"),
        Err(PollError::WrongProduct { .. })
    ));
    let request = PollRequest {
        product: "p".into(),
        version: "1".into(),
        battery: None,
        block: None,
        software_version: None,
    };
    let strict = OtaSettings {
        auto_register: false,
        timeout_ms: TIMEOUT_MS,
    };
    let out = s
        .write_sync(|tx| poll::poll(tx, T0, strict, "ghost", None, &request))
        .unwrap();
    assert_eq!(out, Err(PollError::UnknownDevice("ghost".into())));
    assert!(s.read_sync(|tx| tx.device("ghost")).unwrap().is_none());
}

fn campaign_create_queues_tasks_and_reports_skipped(s: &impl SyncStore) {
    register(s, &["a", "b"], "p", "1.0");
    register(s, &["up"], "p", "2.0");
    register(s, &["other"], "q", "1.0");
    let fw = add_firmware(s, "p", "2.0", 1);
    let created = s
        .write_sync(|tx| {
            campaign::create(
                tx,
                T0,
                fw.id,
                &Target::Devices(vec![
                    "a".into(),
                    "up".into(),
                    "other".into(),
                    "ghost".into(),
                    "a".into(),
                ]),
            )
        })
        .unwrap()
        .unwrap();
    assert_eq!(created.campaign.total, 1);
    assert_eq!(created.skipped.up_to_date, ["up"]);
    assert_eq!(created.skipped.wrong_product, ["other"]);
    assert_eq!(created.skipped.unknown, ["ghost"]);
    let id = created.campaign.id;
    assert_eq!(task(s, id, "a").state, TaskState::Queued);
    assert_eq!(events(s, "a"), ["registered", "queued"]);
    // "all": only b is free (a is busy with the first campaign).
    let all = s
        .write_sync(|tx| campaign::create(tx, T0, fw.id, &Target::All))
        .unwrap()
        .unwrap();
    assert_eq!(all.campaign.total, 1);
    assert_eq!(all.skipped.busy, ["a"]);
    let counts = s
        .read_sync(|tx| tx.campaign_counts(all.campaign.id))
        .unwrap();
    assert_eq!(counts[usize::from(TaskState::Queued.index())], 1);
    // Nothing left: a finished, empty campaign.
    let none = s
        .write_sync(|tx| campaign::create(tx, T0, fw.id, &Target::SourceVersions(vec!["9".into()])))
        .unwrap()
        .unwrap();
    assert_eq!(none.campaign.status, CampaignStatus::Finished);
    let unknown = s
        .write_sync(|tx| campaign::create(tx, T0, 999, &Target::All))
        .unwrap();
    assert!(matches!(unknown, Err(CampaignError::UnknownFirmware(999))));
}

fn start_campaign(s: &impl SyncStore, names: &[&str]) -> u64 {
    register(s, names, "p", "1.0");
    let fw = add_firmware(s, "p", "2.0", 1);
    s.write_sync(|tx| campaign::create(tx, T0, fw.id, &Target::All))
        .unwrap()
        .unwrap()
        .campaign
        .id
}

fn poll_hands_out_task_and_arms_its_timeout(s: &impl SyncStore) {
    let id = start_campaign(s, &["d"]);
    let PollAnswer::Task(offer) = poll_at(s, at(1), "d", "p", "1.0").unwrap() else {
        panic!("a task is offered");
    };
    assert_eq!(offer.task, task_id(id));
    assert_eq!(offer.version, "2.0");
    assert_eq!(offer.size, 1000);
    let t = task(s, id, "d");
    assert_eq!(t.state, TaskState::Initiated);
    let deadline = at(1).add_millis(TIMEOUT_MS);
    assert_eq!(t.deadline, Some(deadline));
    let timers = s.read_sync(|tx| tx.timers(10)).unwrap();
    assert_eq!(
        timers,
        [(deadline, Timer::TaskTimeout(TaskKey::new(id, "d")))]
    );
    // Polling again offers the same task and moves the deadline.
    assert!(matches!(
        poll_at(s, at(2), "d", "p", "1.0"),
        Ok(PollAnswer::Task(_))
    ));
    let timers = s.read_sync(|tx| tx.timers(10)).unwrap();
    assert_eq!(timers.len(), 1);
    assert_eq!(timers[0].0, at(2).add_millis(TIMEOUT_MS));
}

fn report_moves_forward_is_idempotent_and_finishes_campaign(s: &impl SyncStore) {
    let id = start_campaign(s, &["d"]);
    let task_name = task_id(id);
    assert!(matches!(
        report_at(s, T0, "d", &task_name, TaskState::Downloading, None),
        Err(ReportError::Conflict(_))
    ));
    poll_at(s, at(1), "d", "p", "1.0").unwrap();
    assert_eq!(
        report_at(s, at(2), "d", &task_name, TaskState::Downloaded, None),
        Ok(Applied::Changed)
    );
    assert_eq!(
        report_at(s, at(3), "d", &task_name, TaskState::Downloaded, None),
        Ok(Applied::Repeat)
    );
    assert!(matches!(
        report_at(s, at(3), "d", &task_name, TaskState::Downloading, None),
        Err(ReportError::Conflict(_))
    ));
    assert!(matches!(
        report_at(s, at(3), "d", "c999", TaskState::Updated, None),
        Err(ReportError::UnknownTask { .. })
    ));
    assert_eq!(
        report_at(s, at(4), "d", &task_name, TaskState::Updated, Some("2.0-b")),
        Ok(Applied::Changed)
    );
    let device = s.read_sync(|tx| tx.device("d")).unwrap().unwrap();
    assert_eq!(device.version, "2.0-b");
    let pointers = s
        .read_sync(|tx| crate::ota::assignment::pointers(tx, "d"))
        .unwrap();
    assert_eq!(pointers.firmware, None);
    let campaign = s.read_sync(|tx| tx.campaign(id)).unwrap().unwrap();
    assert_eq!(campaign.status, CampaignStatus::Finished);
    assert_eq!(campaign.finished_at, Some(at(4)));
    assert!(s.read_sync(|tx| tx.timers(10)).unwrap().is_empty());
    assert!(events(s, "d").contains(&"version".to_string()));
}

fn polling_with_target_version_completes_task(s: &impl SyncStore) {
    let id = start_campaign(s, &["d"]);
    poll_at(s, at(1), "d", "p", "1.0").unwrap();
    assert_eq!(poll_at(s, at(5), "d", "p", "2.0"), Ok(PollAnswer::Nothing));
    let t = task(s, id, "d");
    assert_eq!((t.state, t.progress), (TaskState::Updated, 100));
}

fn cancel_fails_unfinished_tasks_only(s: &impl SyncStore) {
    let id = start_campaign(s, &["a", "b", "c"]);
    poll_at(s, at(1), "a", "p", "1.0").unwrap();
    poll_at(s, at(1), "b", "p", "1.0").unwrap();
    poll_at(s, at(2), "b", "p", "2.0").unwrap(); // b is done
    let n = s
        .write_sync(|tx| campaign::cancel(tx, at(3), settings(), id))
        .unwrap()
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(task(s, id, "a").error.as_deref(), Some("cancelled"));
    assert_eq!(task(s, id, "b").state, TaskState::Updated);
    assert_eq!(task(s, id, "c").state, TaskState::Failed);
    assert!(s.read_sync(|tx| tx.timers(10)).unwrap().is_empty());
    assert_eq!(poll_at(s, at(4), "a", "p", "1.0"), Ok(PollAnswer::Nothing));
    let again = s
        .write_sync(|tx| campaign::cancel(tx, at(5), settings(), id))
        .unwrap();
    assert_eq!(again, Err(CampaignError::AlreadyFinished(id)));
}

fn block_progress_starts_download(s: &impl SyncStore) {
    let id = start_campaign(s, &["d"]);
    poll_at(s, at(1), "d", "p", "1.0").unwrap();
    s.write_sync(|tx| progress::record(tx, at(2), settings(), "d", id, 10))
        .unwrap();
    s.write_sync(|tx| progress::record(tx, at(3), settings(), "d", id, 20))
        .unwrap();
    let t = task(s, id, "d");
    assert_eq!((t.state, t.progress), (TaskState::Downloading, 20));
    assert_eq!(t.deadline, Some(at(3).add_millis(TIMEOUT_MS)));
    // One history entry for the state change, none per percent.
    let downloads = events(s, "d").iter().filter(|e| *e == "download").count();
    assert_eq!(downloads, 1);
    // A task of another campaign is left alone.
    s.write_sync(|tx| progress::record(tx, at(3), settings(), "d", 77, 50))
        .unwrap();
}

/// A campaign queues its devices without writing their `queued` history
/// entries (a million rows); a history read shows each from its task,
/// and the hand-out stores it, dated at creation, exactly once.
fn bulk_queued_history_entry_is_shown_then_stored_once(s: &impl SyncStore) {
    register(s, &["a", "b"], "p", "1.0");
    let fw = add_firmware(s, "p", "2.0", 1);
    let created = s
        .write_sync(|tx| campaign::create(tx, at(1), fw.id, &Target::All))
        .unwrap()
        .unwrap();
    let id = created.campaign.id;
    let stored = |name: &str| {
        s.read_sync(|tx| tx.history(name, None, 100))
            .unwrap()
            .into_iter()
            .map(|(seq, e)| (seq, e.event))
            .collect::<Vec<_>>()
    };
    assert_eq!(stored("a"), [(1, "registered".to_string())]);
    assert!(task(s, id, "a").queued_unnoted);
    let shown = s
        .read_sync(|tx| crate::ota::history::page(tx, "a", None, 100))
        .unwrap();
    assert_eq!(shown.len(), 2);
    let (seq, queued) = &shown[1];
    assert_eq!(*seq, 2);
    assert_eq!(
        (queued.event.as_str(), queued.at, queued.campaign, queued.to),
        ("queued", at(1), Some(id), Some(TaskState::Queued))
    );
    assert_eq!(
        queued.detail.as_deref(),
        Some(format!("campaign {id}: 1.0 -> 2.0").as_str())
    );
    // Paging past it, or a page already full, shows nothing more.
    let after = s
        .read_sync(|tx| crate::ota::history::page(tx, "a", Some(2), 100))
        .unwrap();
    assert!(after.is_empty());
    let first = s
        .read_sync(|tx| crate::ota::history::page(tx, "a", None, 1))
        .unwrap();
    assert_eq!(first.len(), 1);
    let rest = s
        .read_sync(|tx| crate::ota::history::page(tx, "a", Some(1), 1))
        .unwrap();
    assert_eq!(rest[0].1.event, "queued");
    // Handed out: stored before the poll's entry, once, same content.
    assert!(matches!(
        poll_at(s, at(5), "a", "p", "1.0"),
        Ok(PollAnswer::Task(_))
    ));
    assert!(!task(s, id, "a").queued_unnoted);
    let after_poll = s
        .read_sync(|tx| crate::ota::history::page(tx, "a", None, 100))
        .unwrap();
    let events: Vec<&str> = after_poll.iter().map(|(_, e)| e.event.as_str()).collect();
    assert_eq!(events[..2], ["registered", "queued"]);
    assert_eq!(events.iter().filter(|e| **e == "queued").count(), 1);
    assert!(after_poll[2..]
        .iter()
        .any(|(_, e)| e.from == Some(TaskState::Queued)));
    assert_eq!(after_poll[1], (2, queued.clone()));
    assert_eq!(stored("a").len(), after_poll.len(), "all of it stored");
    // A cancel of the other device's queued task stores its entry too.
    s.write_sync(|tx| campaign::cancel(tx, at(6), settings(), id))
        .unwrap()
        .unwrap();
    assert_eq!(
        stored("b").into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
        ["registered", "queued", "cancel"]
    );
}
