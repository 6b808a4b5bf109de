//! Signed manifests: sign/verify, key ids, rotation, the poll answer
//! with and without a key, damaged key records. Store-backed cases run on
//! both backends.

use super::*;
use crate::ota::campaign::{self, Target};
use crate::ota::poll::PollAnswer;
use crate::ota::tests::{add_firmware, at, options, poll_at, register, settings, T0};
use crate::store::SyncStore;

fn key(product: &str, byte: u8) -> ProductKey {
    ProductKey::from_random(product, [byte; 32], T0)
}

fn manifest() -> Manifest {
    Manifest {
        product: "p".into(),
        version: "2.0".into(),
        kind: "firmware".into(),
        size: 1000,
        sha256: vec![7; 32],
    }
}

#[test]
fn sign_then_verify_round_trips() {
    let k = key("p", 1);
    let signed = k.sign(&manifest()).unwrap();
    // Tagged COSE_Sign1: CBOR tag 18 (0xd2), then a 4-element array.
    assert_eq!(&signed[..2], &[0xd2, 0x84]);
    assert_eq!(verify(&signed, &k.public().public_key), Ok(manifest()));
    // Deterministic: the same key and firmware give the same bytes.
    assert_eq!(signed, k.sign(&manifest()).unwrap());
}

#[test]
fn kid_is_the_first_8_bytes_of_the_public_keys_sha256() {
    let k = key("p", 2);
    let public = k.public();
    let digest = Sha256::digest(public.public_key);
    assert_eq!(public.kid.as_slice(), &digest[..8]);
    assert_eq!(k.kid(), public.kid);
    let signed = CoseSign1::from_tagged_slice(&k.sign(&manifest()).unwrap()).unwrap();
    assert_eq!(signed.protected.header.key_id, public.kid.to_vec());
    assert_eq!(
        signed.protected.header.alg,
        Some(RegisteredLabelWithPrivate::Assigned(iana::Algorithm::EdDSA))
    );
}

#[test]
fn wrong_key_or_tampered_manifest_is_refused() {
    let k = key("p", 3);
    let other = key("p", 4);
    let signed = k.sign(&manifest()).unwrap();
    assert!(matches!(
        verify(&signed, &other.public().public_key),
        Err(ManifestError::KeyId { .. })
    ));
    // Same kid (forged header), different payload: the signature fails.
    let mut sign1 = CoseSign1::from_tagged_slice(&signed).unwrap();
    let mut changed = manifest();
    changed.version = "9.9".into();
    sign1.payload = Some(changed.payload());
    let forged = sign1.to_tagged_vec().unwrap();
    assert_eq!(
        verify(&forged, &k.public().public_key),
        Err(ManifestError::Signature)
    );
    assert!(matches!(
        verify(b"\x01\x02", &k.public().public_key),
        Err(ManifestError::Format(_))
    ));
}

#[test]
fn public_key_exports_as_spki_pem() {
    let pem = key("p", 5).public().pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    assert!(pem.trim_end().ends_with("-----END PUBLIC KEY-----"));
}

#[test]
fn debug_never_shows_the_private_key() {
    let k = key("p", 6);
    let shown = format!("{k:?}");
    assert!(shown.contains("redacted"));
    assert!(!shown.contains(&hex::encode([6u8; 32])));
}

#[test]
fn damaged_key_records_are_clear_errors() {
    let good = key("p", 8).encode().unwrap();
    assert!(ProductKey::decode("p", &good).is_ok());
    let err = ProductKey::decode("p", b"\xff\x00junk").unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt(m) if m.contains("signing key of product \"p\"")),
        "{err}"
    );
    // A record whose public half does not match its private half.
    let mut record: KeyRecord = ciborium::from_reader(good.as_slice()).unwrap();
    record.public[0] ^= 1;
    let mut bytes = Vec::new();
    ciborium::into_writer(&record, &mut bytes).unwrap();
    let err = ProductKey::decode("p", &bytes).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    // A short private key.
    record.secret.truncate(5);
    let mut bytes = Vec::new();
    ciborium::into_writer(&record, &mut bytes).unwrap();
    let err = ProductKey::decode("p", &bytes).unwrap_err();
    assert!(err.to_string().contains("5 bytes, not 32"), "{err}");
}

/// A device of product `p` with a queued task to firmware 2.0.
fn queued(s: &impl SyncStore) -> FirmwareRecord {
    register(s, &["d"], "p", "1.0");
    let fw = add_firmware(s, "p", "2.0", 1);
    s.write_sync(|tx| campaign::create(tx, T0, fw.id, &Target::All))
        .unwrap()
        .unwrap();
    fw
}

fn offered_manifest(s: &impl SyncStore, minute: u64) -> Option<Vec<u8>> {
    match poll_at(s, at(minute), "d", "p", "1.0").unwrap() {
        PollAnswer::Task(offer) => offer.manifest,
        other => panic!("expected a task, got {other:?}"),
    }
}

fn manifest_absent_without_a_key(s: &impl SyncStore) {
    queued(s);
    assert_eq!(offered_manifest(s, 1), None);
}

fn poll_carries_a_manifest_that_verifies(s: &impl SyncStore) {
    // The key is made after the firmware: signing happens at hand-out.
    let fw = queued(s);
    let k = key("p", 9);
    let public = k.public();
    assert_eq!(s.write_sync(|tx| put(tx, &k, false)).unwrap(), Ok(None));
    let signed = offered_manifest(s, 1).expect("a manifest");
    let m = verify(&signed, &public.public_key).unwrap();
    assert_eq!(m, Manifest::of(&fw));
    assert_eq!(m.sha256, fw.sha256);
    // The Observe push builds its answer the same way.
    let pushed = s
        .read_sync(|tx| crate::resources::task_observe::current(tx, "d"))
        .unwrap();
    let Some(PollAnswer::Task(offer)) = pushed else {
        panic!("a task")
    };
    assert_eq!(offer.manifest, Some(signed));
}

fn rotation_changes_signatures_and_remove_stops_signing(s: &impl SyncStore) {
    queued(s);
    let first = key("p", 10);
    s.write_sync(|tx| put(tx, &first, false)).unwrap().unwrap();
    let before = offered_manifest(s, 1).unwrap();
    // A second create without rotate is refused and changes nothing.
    let second = key("p", 11);
    assert_eq!(
        s.write_sync(|tx| put(tx, &second, false)).unwrap(),
        Err(KeyError::Exists("p".into()))
    );
    assert_eq!(offered_manifest(s, 2).unwrap(), before);
    let replaced = s.write_sync(|tx| put(tx, &second, true)).unwrap().unwrap();
    assert_eq!(replaced, Some(first.public()));
    let after = offered_manifest(s, 3).unwrap();
    assert_ne!(after, before);
    assert!(verify(&after, &second.public().public_key).is_ok());
    assert!(matches!(
        verify(&after, &first.public().public_key),
        Err(ManifestError::KeyId { .. })
    ));
    assert!(s.write_sync(|tx| remove(tx, "p")).unwrap());
    assert_eq!(offered_manifest(s, 4), None);
    assert!(!s.write_sync(|tx| remove(tx, "p")).unwrap());
}

fn damaged_key_fails_the_poll_instead_of_answering_unsigned(s: &impl SyncStore) {
    queued(s);
    s.write_sync(|tx| tx.put_secret(KIND_SIGNING_KEY, "p", b"\x01"))
        .unwrap();
    let request = crate::ota::poll::PollRequest {
        product: "p".into(),
        version: "1.0".into(),
        battery: None,
        block: None,
        software_version: None,
    };
    let err = s
        .write_sync(|tx| crate::ota::poll::poll(tx, at(1), settings(), "d", None, &request))
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt(m) if m.contains("signing key of product")),
        "{err}"
    );
    assert_eq!(
        s.read_sync(|tx| load(tx, "p")).unwrap_err().to_string(),
        err.to_string()
    );
    // The way out: rotating replaces the damaged record; polls work again.
    let fresh = key("p", 12);
    assert_eq!(s.write_sync(|tx| put(tx, &fresh, true)).unwrap(), Ok(None));
    let signed = offered_manifest(s, 2).unwrap();
    assert!(verify(&signed, &fresh.public().public_key).is_ok());
}

crate::ota::tests::backends!(
    manifest_absent_without_a_key,
    poll_carries_a_manifest_that_verifies,
    rotation_changes_signatures_and_remove_stops_signing,
    damaged_key_fails_the_poll_instead_of_answering_unsigned,
);

#[test]
fn signed_cache_is_bounded_and_keyed_by_record_and_payload() {
    let cache = SignedCache(std::sync::Mutex::new(None));
    let a = SignedCache::id(b"key-a", b"payload");
    assert_ne!(a, SignedCache::id(b"key-b", b"payload"));
    assert_ne!(a, SignedCache::id(b"key-a", b"payload2"));
    // The length prefix keeps (record, payload) splits apart.
    assert_ne!(SignedCache::id(b"ab", b"c"), SignedCache::id(b"a", b"bc"));
    for i in 0..SignedCache::CAP as u32 + 10 {
        cache.put(SignedCache::id(&i.to_be_bytes(), b"p"), vec![1]);
        let len = cache.0.lock().unwrap().as_ref().map_or(0, |m| m.len());
        assert!(len <= SignedCache::CAP);
    }
    assert_eq!(cache.get(&a), None);
    cache.put(a, vec![9]);
    assert_eq!(cache.get(&a), Some(vec![9]));
}
