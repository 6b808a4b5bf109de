//! Audit log, assignments (firmware and software), statistics and firmware
//! edits (issue 10 items 9, 12, 13), against both backends.

use serde_json::json;

use super::*;
use crate::model::{AssignmentScope, CampaignStatus};
use crate::ota::assignment;
use crate::ota::audit::{self, Action};
use crate::ota::campaign::{self, Target};
use crate::ota::firmware_edit::{self, FirmwareEdit};
use crate::ota::stats;

backends!(
    audit_appends_pages_and_drops_the_oldest,
    product_assignment_queues_existing_and_new_devices,
    device_assignment_beats_product_and_falls_back,
    software_and_firmware_tasks_coexist,
    campaign_stats_after_a_small_rollout,
    firmware_edit_validates_and_changes_name_and_description,
    version_distribution_has_top_five_and_others,
);

fn add_kind(s: &impl SyncStore, product: &str, version: &str, kind: &str, seed: u8) -> u64 {
    let meta = NewFirmware {
        product: product.into(),
        name: product.into(),
        version: version.into(),
        kind: kind.into(),
        signature: "sha256".into(),
        description: String::new(),
        filename: format!("{product}-{version}.bin"),
    };
    let blob = StoredBlob {
        sha256: [seed; 32],
        md5: [seed; 16],
        size: 1000,
    };
    s.write_sync(|tx| firmware::insert(tx, T0, &meta, &blob, 10))
        .unwrap()
        .unwrap()
        .id
}

fn assign(s: &impl SyncStore, scope: &AssignmentScope, fw: u64) -> assignment::SetOutcome {
    s.write_sync(|tx| assignment::set(tx, at(1), settings(), scope, fw))
        .unwrap()
        .unwrap()
}

fn device(s: &impl SyncStore, name: &str) -> crate::model::DeviceRecord {
    s.read_sync(|tx| tx.device(name)).unwrap().unwrap()
}

fn tasks_of(s: &impl SyncStore, name: &str) -> crate::model::DeviceTasks {
    s.read_sync(|tx| crate::ota::assignment::pointers(tx, name))
        .unwrap()
}

fn offered(answer: &PollAnswer) -> Option<(&str, &str)> {
    match answer {
        PollAnswer::Task(o) => Some((o.task.as_str(), o.version.as_str())),
        PollAnswer::Nothing | PollAnswer::LowBattery => None,
    }
}

fn audit_appends_pages_and_drops_the_oldest(s: &impl SyncStore) {
    for i in 0..5u64 {
        let action = Action::new(
            "campaign.create",
            format!("campaign/{i}"),
            (i % 2 == 0).then(|| "ops".to_string()),
            json!({"n": i}),
        );
        let id = s
            .write_sync(|tx| audit::record(tx, at(i), 3, &action))
            .unwrap();
        assert_eq!(id, i + 1, "ids increase from 1");
    }
    let all = s.read_sync(|tx| tx.audit(None, 100)).unwrap();
    let ids: Vec<u64> = all.iter().map(|e| e.id).collect();
    assert_eq!(ids, [3, 4, 5], "cap 3 keeps the newest, oldest first");
    assert_eq!(all[0].target, "campaign/2");
    assert_eq!(all[0].actor.as_deref(), Some("ops"));
    assert_eq!(all[1].actor, None);
    assert_eq!(all[2].details, json!({"n": 4}));
    assert_eq!(all[2].at, at(4));
    let page = s.read_sync(|tx| tx.audit(Some(3), 1)).unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, 4);
    assert!(s.read_sync(|tx| tx.audit(Some(5), 10)).unwrap().is_empty());
}

fn product_assignment_queues_existing_and_new_devices(s: &impl SyncStore) {
    register(s, &["a1", "a2"], "p", "1.0");
    register(s, &["a3"], "p", "2.0");
    register(s, &["other"], "q", "1.0");
    let fw = add_firmware(s, "p", "2.0", 1).id;
    let scope = AssignmentScope::Product("p".into());
    let out = assign(s, &scope, fw);
    assert_eq!(
        out.queued, 2,
        "a1 and a2; a3 is on 2.0, other is another product"
    );
    assert_eq!(out.kind, "firmware");
    let c = out.assigned.campaign;
    assert_eq!(task(s, c, "a1").state, TaskState::Queued);
    assert!(s.read_sync(|tx| tx.task(c, "a3")).unwrap().is_none());
    assert!(s.read_sync(|tx| tx.task(c, "other")).unwrap().is_none());
    let record = s.read_sync(|tx| tx.campaign(c)).unwrap().unwrap();
    assert_eq!(record.target["assignment"]["product"], "p");

    // Same firmware again: nothing new.
    let again = assign(s, &scope, fw);
    assert!(again.unchanged);
    assert_eq!(again.assigned.campaign, c);

    // A device registered later gets its task at registration.
    register(s, &["a4"], "p", "1.0");
    s.write_sync(|tx| assignment::on_registered(tx, at(2), &["a4".to_string()]))
        .unwrap();
    assert_eq!(task(s, c, "a4").state, TaskState::Queued);
    // An auto-registered device gets it at its first poll.
    let answer = poll_at(s, at(3), "a5", "p", "1.0").unwrap();
    assert_eq!(
        offered(&answer),
        Some((crate::ota::task_id(c).as_str(), "2.0"))
    );
    assert_eq!(task(s, c, "a5").state, TaskState::Initiated);
    let record = s.read_sync(|tx| tx.campaign(c)).unwrap().unwrap();
    assert_eq!(record.total, 4);

    // A device that updates and later rolls back does not loop: its task
    // in this assignment is done.
    poll_at(s, at(4), "a5", "p", "2.0").unwrap();
    assert_eq!(task(s, c, "a5").state, TaskState::Updated);
    assert_eq!(offered(&poll_at(s, at(5), "a5", "p", "1.0").unwrap()), None);

    // Replacing the assignment cancels the old campaign.
    let v3 = add_firmware(s, "p", "3.0", 2).id;
    let next = assign(s, &scope, v3);
    assert_eq!(next.replaced.map(|r| r.firmware), Some(fw));
    let old = s.read_sync(|tx| tx.campaign(c)).unwrap().unwrap();
    assert_eq!(old.status, CampaignStatus::Cancelled);
    assert_eq!(task(s, c, "a1").error.as_deref(), Some("cancelled"));
    assert_eq!(
        task(s, next.assigned.campaign, "a1").state,
        TaskState::Queued
    );
}

fn device_assignment_beats_product_and_falls_back(s: &impl SyncStore) {
    register(s, &["b1", "b2"], "p", "1.0");
    let v2 = add_firmware(s, "p", "2.0", 1).id;
    let v3 = add_firmware(s, "p", "3.0", 2).id;
    let product = assign(s, &AssignmentScope::Product("p".into()), v2);
    let pc = product.assigned.campaign;
    let own = assign(s, &AssignmentScope::Device("b1".into()), v3);
    let dc = own.assigned.campaign;
    assert_eq!(own.queued, 1);
    assert_eq!(task(s, pc, "b1").error.as_deref(), Some("cancelled"));
    assert_eq!(tasks_of(s, "b1").firmware, Some(dc));
    let answer = poll_at(s, at(2), "b1", "p", "1.0").unwrap();
    assert_eq!(offered(&answer).map(|o| o.1), Some("3.0"));
    // b2 still follows the product.
    let answer = poll_at(s, at(2), "b2", "p", "1.0").unwrap();
    assert_eq!(offered(&answer).map(|o| o.1), Some("2.0"));
    // A new product assignment leaves the overridden device alone.
    let v4 = add_firmware(s, "p", "4.0", 3).id;
    let product2 = assign(s, &AssignmentScope::Product("p".into()), v4);
    assert!(s
        .read_sync(|tx| tx.task(product2.assigned.campaign, "b1"))
        .unwrap()
        .is_none());
    // A wrong product is refused, changing nothing.
    let q = add_firmware(s, "q", "1.0", 4).id;
    let refused = s
        .write_sync(|tx| {
            assignment::set(
                tx,
                at(3),
                settings(),
                &AssignmentScope::Device("b1".into()),
                q,
            )
        })
        .unwrap();
    assert!(matches!(
        refused,
        Err(assignment::AssignError::WrongProduct { .. })
    ));
    // Clearing the device's own assignment brings it back to the product's.
    let cleared = s
        .write_sync(|tx| {
            assignment::clear(
                tx,
                at(4),
                settings(),
                &AssignmentScope::Device("b1".into()),
                None,
            )
        })
        .unwrap()
        .unwrap();
    assert_eq!(cleared.firmware.map(|a| a.firmware), Some(v3));
    assert_eq!(task(s, dc, "b1").error.as_deref(), Some("cancelled"));
    let pc2 = product2.assigned.campaign;
    assert_eq!(task(s, pc2, "b1").state, TaskState::Queued);
    assert_eq!(tasks_of(s, "b1").firmware, Some(pc2));
}

fn software_and_firmware_tasks_coexist(s: &impl SyncStore) {
    register(s, &["c1"], "p", "1.0");
    let fw = add_kind(s, "p", "2.0", "firmware", 1);
    let sw = add_kind(s, "p", "app-2", "software", 2);
    let product = AssignmentScope::Product("p".into());
    let f = assign(s, &product, fw);
    let w = assign(s, &product, sw);
    assert_eq!(w.kind, "software");
    assert_eq!(
        w.queued, 1,
        "the software task does not wait for the firmware one"
    );
    let d = tasks_of(s, "c1");
    assert_eq!(d.firmware, Some(f.assigned.campaign));
    assert_eq!(d.software, Some(w.assigned.campaign));
    // Firmware first.
    let request = PollRequest {
        product: "p".into(),
        version: "1.0".into(),
        battery: None,
        block: None,
        software_version: Some("app-1".into()),
    };
    let answer = s
        .write_sync(|tx| poll::poll(tx, at(2), settings(), "c1", None, &request))
        .unwrap()
        .unwrap();
    assert_eq!(offered(&answer).map(|o| o.1), Some("2.0"));
    assert_eq!(device(s, "c1").software_version.as_deref(), Some("app-1"));
    let ftask = crate::ota::task_id(f.assigned.campaign);
    report_at(s, at(3), "c1", &ftask, TaskState::Updated, Some("2.0")).unwrap();
    assert_eq!(device(s, "c1").version, "2.0");
    // Then the software task.
    let answer = poll_at(s, at(4), "c1", "p", "2.0").unwrap();
    let stask = crate::ota::task_id(w.assigned.campaign);
    assert_eq!(offered(&answer), Some((stask.as_str(), "app-2")));
    report_at(s, at(5), "c1", &stask, TaskState::Updated, Some("app-2")).unwrap();
    let d = device(s, "c1");
    assert_eq!(
        d.version, "2.0",
        "a software update leaves the firmware version"
    );
    assert_eq!(d.software_version.as_deref(), Some("app-2"));
    let pointers = tasks_of(s, "c1");
    assert_eq!((pointers.firmware, pointers.software), (None, None));
    assert_eq!(pointers.last, Some(w.assigned.campaign));
    // A software campaign compares software versions.
    let sw3 = add_kind(s, "p", "app-3", "software", 3);
    let created = s
        .write_sync(|tx| {
            campaign::create(
                tx,
                at(6),
                sw3,
                &Target::SourceVersions(vec!["app-2".into()]),
            )
        })
        .unwrap()
        .unwrap();
    assert_eq!(created.campaign.total, 1);
    assert_eq!(tasks_of(s, "c1").software, Some(created.campaign.id));
}

fn campaign_stats_after_a_small_rollout(s: &impl SyncStore) {
    register(s, &["s1", "s2", "s3", "s4", "s5"], "p", "1.0");
    let fw = add_firmware(s, "p", "2.0", 1).id;
    let c = s
        .write_sync(|tx| campaign::create(tx, at(0), fw, &Target::All))
        .unwrap()
        .unwrap()
        .campaign
        .id;
    let t = crate::ota::task_id(c);
    for name in ["s1", "s2", "s3", "s4"] {
        poll_at(s, at(1), name, "p", "1.0").unwrap();
    }
    report_at(s, at(2), "s1", &t, TaskState::Updated, Some("2.0")).unwrap();
    let fail = |name: &str, error: &str| {
        let report = Report {
            task: t.clone(),
            state: TaskState::Failed,
            progress: None,
            error: Some(error.into()),
            version: None,
        };
        s.write_sync(|tx| report::report(tx, at(2), settings(), name, &report))
            .unwrap()
            .unwrap();
    };
    fail("s2", "flash write error");
    let report = Report {
        task: t.clone(),
        state: TaskState::Downloading,
        progress: Some(40),
        error: None,
        version: None,
    };
    s.write_sync(|tx| report::report(tx, at(2), settings(), "s3", &report))
        .unwrap()
        .unwrap();
    fail("s4", "flash write error");
    // s5 never polled: still queued.
    let st = s
        .read_sync(|tx| stats::campaign(tx, c, stats::MAX_SCAN))
        .unwrap()
        .unwrap();
    assert_eq!(st.counts["updated"], 1);
    assert_eq!(st.counts["failed"], 2);
    assert_eq!(st.counts["downloading"], 1);
    assert_eq!(st.counts["queued"], 1);
    assert_eq!(st.pending.total, 1);
    assert_eq!(st.pending.reasons["waiting"], 1);
    assert_eq!(st.in_progress.total, 1);
    assert_eq!(st.in_progress.mean_progress, 40);
    assert_eq!(st.in_progress.devices[0].device, "s3");
    assert_eq!(st.in_progress.devices[0].progress, 40);
    assert_eq!(st.failures["flash write error"], 2);
    assert_eq!(st.scanned, 5);
    assert!(st.complete);
    // A budget of 2 tasks says it is incomplete; counts stay exact.
    let partial = s
        .read_sync(|tx| stats::campaign(tx, c, 2))
        .unwrap()
        .unwrap();
    assert!(!partial.complete);
    assert_eq!(partial.scanned, 2);
    assert_eq!(partial.counts["failed"], 2);
    // Per firmware: the same numbers (one campaign uses it).
    let by_fw = s
        .read_sync(|tx| stats::firmware(tx, fw, stats::MAX_SCAN))
        .unwrap()
        .unwrap();
    assert_eq!(by_fw.failures, st.failures);
    assert_eq!(by_fw.counts, st.counts);
    assert!(s
        .read_sync(|tx| stats::campaign(tx, 999, 10))
        .unwrap()
        .is_none());
}

fn firmware_edit_validates_and_changes_name_and_description(s: &impl SyncStore) {
    let fw = add_firmware(s, "p", "2.0", 1).id;
    let bad = [
        FirmwareEdit::default(),
        FirmwareEdit {
            name: Some("-starts-badly".into()),
            description: None,
        },
        FirmwareEdit {
            name: Some("x".repeat(33)),
            description: None,
        },
        FirmwareEdit {
            name: None,
            description: Some("d".repeat(101)),
        },
    ];
    for edit in &bad {
        let out = s
            .write_sync(|tx| firmware_edit::apply(tx, fw, edit))
            .unwrap();
        assert!(out.is_err(), "{edit:?} must be refused");
    }
    let unchanged = s.read_sync(|tx| tx.firmware(fw)).unwrap().unwrap();
    assert_eq!(unchanged.name, "p");
    let edit = FirmwareEdit {
        name: Some("Gateway_(eu)".into()),
        description: Some("é".repeat(100)),
    };
    let (before, after) = s
        .write_sync(|tx| firmware_edit::apply(tx, fw, &edit))
        .unwrap()
        .unwrap();
    assert_eq!(before.name, "p");
    assert_eq!(after.name, "Gateway_(eu)");
    let stored = s.read_sync(|tx| tx.firmware(fw)).unwrap().unwrap();
    assert_eq!(stored, after);
    assert_eq!(stored.version, "2.0");
    let missing = s
        .write_sync(|tx| firmware_edit::apply(tx, 999, &edit))
        .unwrap();
    assert!(missing.is_err());
}

fn version_distribution_has_top_five_and_others(s: &impl SyncStore) {
    // 7 versions: v1 ×7, v2 ×6, ... v7 ×1.
    for v in 1..=7u32 {
        let names: Vec<String> = (0..(8 - v)).map(|i| format!("v{v}-{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        register(s, &refs, "p", &format!("{v}.0"));
    }
    register(s, &["elsewhere"], "q", "9.0");
    let (fw, sw) = s.read_sync(|tx| stats::versions(tx, Some("p"))).unwrap();
    assert_eq!(fw.devices, 28);
    assert_eq!(fw.versions.len(), 7);
    let top: Vec<(&str, u64)> = fw
        .top
        .iter()
        .map(|t| (t.version.as_str(), t.devices))
        .collect();
    assert_eq!(
        top,
        [("1.0", 7), ("2.0", 6), ("3.0", 5), ("4.0", 4), ("5.0", 3)]
    );
    assert_eq!(fw.top[0].percent, 25.0);
    assert_eq!(fw.others.versions, 2);
    assert_eq!(fw.others.devices, 3);
    assert_eq!(sw.versions["unknown"], 28);
}
