//! Device registration, firmware records, the history cap.

use super::*;
use crate::ota::campaign::{self, Target};
use crate::ota::firmware::FirmwareError;
use crate::store::StoreOptions;

backends!(
    register_creates_new_and_leaves_existing,
    firmware_insert_refuses_duplicates_and_delete_refuses_in_use,
    history_stays_bounded_with_a_note_counting_dropped_entries,
    history_sequences_are_per_device,
);

fn register_creates_new_and_leaves_existing(s: &impl SyncStore) {
    register(s, &["a"], "p", "1.0");
    let list = vec![
        ota_devices::NewDevice {
            name: "a".into(),
            product: "q".into(),
            version: None,
        },
        ota_devices::NewDevice {
            name: "b".into(),
            product: "p".into(),
            version: None,
        },
    ];
    let out = s
        .write_sync(|tx| ota_devices::register(tx, at(1), &list))
        .unwrap();
    assert_eq!(out.created, ["b"]);
    assert_eq!(out.existing, ["a"]);
    let a = s.read_sync(|tx| tx.device("a")).unwrap().unwrap();
    assert_eq!((a.product.as_str(), a.version.as_str()), ("p", "1.0"));
    assert_eq!(events(s, "b"), ["registered"]);
    let page = s.read_sync(|tx| tx.devices(Some("a"), 10)).unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].0, "b");
}

fn firmware_insert_refuses_duplicates_and_delete_refuses_in_use(s: &impl SyncStore) {
    let fw = add_firmware(s, "p", "2.0", 1);
    let twin = add_firmware(s, "p", "2.1", 1); // same bytes
    let meta = firmware::NewFirmware {
        product: "p".into(),
        name: "p".into(),
        version: "2.0".into(),
        kind: "firmware".into(),
        signature: "sha256".into(),
        description: String::new(),
        filename: "x".into(),
    };
    let dup = s
        .read_sync(|tx| firmware::check_slot(tx, &meta, 10))
        .unwrap();
    assert!(matches!(dup, Err(FirmwareError::DuplicateVersion { .. })));
    let full = s
        .read_sync(|tx| firmware::check_slot(tx, &meta, 2))
        .unwrap();
    assert!(matches!(
        full,
        Err(FirmwareError::DuplicateVersion { .. }) | Err(FirmwareError::ProductFull { .. })
    ));

    register(s, &["d"], "p", "1.0");
    let id = s
        .write_sync(|tx| campaign::create(tx, T0, fw.id, &Target::All))
        .unwrap()
        .unwrap()
        .campaign
        .id;
    let in_use = s
        .write_sync(|tx| firmware::delete(tx, fw.id, None))
        .unwrap();
    assert_eq!(
        in_use,
        Err(FirmwareError::InUse {
            id: fw.id,
            campaign: id
        })
    );
    // The snapshot scan finds it too, and the write skips campaigns it checked.
    let scanned = s
        .read_sync(|tx| firmware::unfinished_campaign_using(tx, fw.id, None))
        .unwrap();
    assert_eq!(scanned, (Some(id), Some(id)));
    s.write_sync(|tx| campaign::cancel(tx, at(1), settings(), id))
        .unwrap()
        .unwrap();
    let (record, unreferenced) = s
        .write_sync(|tx| firmware::delete(tx, fw.id, None))
        .unwrap()
        .unwrap();
    assert_eq!(record.id, fw.id);
    assert!(!unreferenced, "the twin still uses the bytes");
    let (_, unreferenced) = s
        .write_sync(|tx| firmware::delete(tx, twin.id, None))
        .unwrap()
        .unwrap();
    assert!(unreferenced);
    assert_eq!(
        s.write_sync(|tx| firmware::delete(tx, twin.id, None))
            .unwrap(),
        Err(FirmwareError::Unknown(twin.id))
    );
    assert!(s.read_sync(|tx| tx.firmware_all()).unwrap().is_empty());
    // The (product, version) slot is free again.
    add_firmware(s, "p", "2.0", 3);
}

fn history_stays_bounded_with_a_note_counting_dropped_entries(s: &impl SyncStore) {
    let cap = options().history_cap;
    // A device alternating versions: each poll adds a `version` and a
    // `poll` entry. 40,000 alternations, in chunks of transactions.
    let alternations = 40_000u64;
    let chunk = 2_000u64;
    for start in (0..alternations).step_by(chunk as usize) {
        s.write_sync(|tx| {
            for i in start..start + chunk {
                let version = if i % 2 == 0 { "1.0" } else { "2.0" };
                let request = PollRequest {
                    product: "p".into(),
                    version: version.into(),
                    battery: None,
                    block: None,
                    software_version: None,
                };
                poll::poll(tx, at(i), settings(), "flip", None, &request)?.map_err(|_| fail())?;
            }
            Ok(())
        })
        .unwrap();
    }
    let h = history(s, "flip");
    assert_eq!(h.len(), cap, "history is capped");
    assert_eq!(h[0].event, HistoryEntry::TRUNCATED);
    // Every entry ever written is either kept or counted in the note:
    // registered + poll first, then version + poll per alternation.
    let written = 2 * alternations;
    let kept = (h.len() - 1) as u64;
    assert_eq!(u64::from(h[0].repeat.unwrap()) + kept, written);
    assert_eq!(h.last().unwrap().at, at(alternations - 1));
}

fn history_sequences_are_per_device(s: &impl SyncStore) {
    register(s, &["a", "b"], "p", "1.0");
    s.write_sync(|tx| {
        tx.append_history("a", &HistoryEntry::note(at(1), "x", "1".into()))?;
        tx.append_history("b", &HistoryEntry::note(at(1), "x", "1".into()))
    })
    .unwrap();
    let a = s.read_sync(|tx| tx.history("a", None, 10)).unwrap();
    let b = s.read_sync(|tx| tx.history("b", None, 10)).unwrap();
    let seqs = |h: &[(u64, HistoryEntry)]| h.iter().map(|(s, _)| *s).collect::<Vec<_>>();
    assert_eq!(seqs(&a), [1, 2]);
    assert_eq!(seqs(&b), [1, 2]);
    let page = s.read_sync(|tx| tx.history("a", Some(1), 10)).unwrap();
    assert_eq!(seqs(&page), [2]);
    let _ = StoreOptions::default();
}
