//! Signed manifests (issue 11 item 5): an optional Ed25519 key per
//! product, and the COSE_Sign1 manifest (RFC 9052) a poll answer carries
//! when the firmware's product has one. docs/PROTOCOL.md, "Signed
//! manifests", is the device's side of this.
//!
//! - The key lives in the store's `secret` rows, kind [`KIND_SIGNING_KEY`],
//!   keyed by product (so the backup copies it and a restored server keeps
//!   signing with the same key). The private half never leaves this
//!   module: [`ProductKey`] has no accessor for it and its `Debug` hides it.
//! - The manifest covers what identifies the image and nothing that varies
//!   per device or campaign: `product`, `version`, `kind`, `size`,
//!   `sha256`. Ed25519 (RFC 8032) is deterministic and the payload is
//!   encoded deterministically (RFC 8949 §4.2.1 key order), so a firmware's
//!   manifest is the same bytes on every poll until the key rotates. It is
//!   signed when the task is handed out, from the stored firmware record,
//!   inside the poll's transaction: firmware uploaded before the key
//!   existed is signed too, and a rotation or removal applies to the next
//!   answer. Signing is memoised ([`SignedCache`]) because the Observe
//!   push re-reads the offer of every observing device after a change:
//!   the cache is keyed by a digest of the stored key record and the
//!   payload, so it can never serve a manifest of a rotated or deleted key
//!   (the stored record is read on every answer; only the signature is
//!   reused).
//! - Sans-IO like the rest of `ota/`: key generation takes its 32 random
//!   bytes from the caller (the admin handler reads the OS generator).

use coset::{iana, CoseSign1, CoseSign1Builder, HeaderBuilder};
use coset::{Label, RegisteredLabelWithPrivate, TaggedCborSerializable};
use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::FirmwareRecord;
use crate::store::{ReadTx, StoreError, Tx};
use crate::time::Timestamp;

/// Store kind of a product's signing key, keyed by product.
pub const KIND_SIGNING_KEY: &str = "signing_key";
/// The only algorithm: the `algorithm` field of the admin API.
pub const ALGORITHM: &str = "Ed25519";
/// Bytes of the key id: the first 8 of SHA-256 over the raw public key.
pub const KID_LEN: usize = 8;
/// The CBOR tag of a tagged COSE_Sign1 (RFC 9052 §4.2).
pub const COSE_SIGN1_TAG: u64 = 18;

/// A product's signing key as stored: the 32-byte RFC 8032 secret and,
/// to catch a damaged record, the public key it must derive.
#[derive(Serialize, Deserialize)]
struct KeyRecord {
    #[serde(with = "serde_bytes")]
    secret: Vec<u8>,
    #[serde(with = "serde_bytes")]
    public: Vec<u8>,
    created_at: Timestamp,
}

/// A product's signing key, loaded. The private key stays inside.
pub struct ProductKey {
    product: String,
    key: SigningKey,
    created_at: Timestamp,
}

impl std::fmt::Debug for ProductKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProductKey")
            .field("product", &self.product)
            .field("kid", &hex::encode(self.kid()))
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What anyone may know about a product's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyInfo {
    pub product: String,
    pub public_key: [u8; 32],
    pub kid: [u8; KID_LEN],
    pub created_at: Timestamp,
}

impl PublicKeyInfo {
    /// The public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo, RFC
    /// 8410), what `cryptography`'s `load_pem_public_key` and `openssl
    /// pkey -pubin` read.
    pub fn pem(&self) -> Result<String, String> {
        let key = VerifyingKey::from_bytes(&self.public_key).map_err(|e| e.to_string())?;
        key.to_public_key_pem(LineEnding::LF)
            .map_err(|e| format!("cannot encode the public key as PEM: {e}"))
    }
}

/// The key id of a public key (the manifest's `kid` header).
pub fn kid(public_key: &[u8; 32]) -> [u8; KID_LEN] {
    let digest = Sha256::digest(public_key);
    let mut out = [0u8; KID_LEN];
    out.copy_from_slice(&digest[..KID_LEN]);
    out
}

impl ProductKey {
    /// A key made from 32 bytes of OS randomness (the caller's).
    pub fn from_random(product: &str, secret: [u8; 32], now: Timestamp) -> ProductKey {
        ProductKey {
            product: product.to_string(),
            key: SigningKey::from_bytes(&secret),
            created_at: now,
        }
    }

    pub fn product(&self) -> &str {
        &self.product
    }

    pub fn public(&self) -> PublicKeyInfo {
        let public_key = self.key.verifying_key().to_bytes();
        PublicKeyInfo {
            product: self.product.clone(),
            public_key,
            kid: kid(&public_key),
            created_at: self.created_at,
        }
    }

    pub fn kid(&self) -> [u8; KID_LEN] {
        kid(&self.key.verifying_key().to_bytes())
    }

    fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let record = KeyRecord {
            secret: self.key.to_bytes().to_vec(),
            public: self.key.verifying_key().to_bytes().to_vec(),
            created_at: self.created_at,
        };
        let mut out = Vec::new();
        ciborium::into_writer(&record, &mut out).map_err(|e| StoreError::Db(e.to_string()))?;
        Ok(out)
    }

    /// Decodes a stored record; a damaged one is a `Corrupt` error that
    /// names the product (never the bytes).
    pub fn decode(product: &str, bytes: &[u8]) -> Result<ProductKey, StoreError> {
        let bad =
            |why: String| StoreError::Corrupt(format!("signing key of product {product:?}: {why}"));
        let record: KeyRecord =
            ciborium::from_reader(bytes).map_err(|e| bad(format!("undecodable record: {e}")))?;
        let secret: [u8; 32] = record.secret.as_slice().try_into().map_err(|_| {
            bad(format!(
                "private key is {} bytes, not 32",
                record.secret.len()
            ))
        })?;
        let key = SigningKey::from_bytes(&secret);
        if key.verifying_key().as_bytes().as_slice() != record.public.as_slice() {
            return Err(bad(
                "the stored public key does not match the private key".into()
            ));
        }
        Ok(ProductKey {
            product: product.to_string(),
            key,
            created_at: record.created_at,
        })
    }

    /// The manifest of `manifest`, signed: a tagged COSE_Sign1.
    pub fn sign(&self, manifest: &Manifest) -> Result<Vec<u8>, StoreError> {
        self.sign_payload(manifest.payload())
    }

    fn sign_payload(&self, payload: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let protected = HeaderBuilder::new()
            .algorithm(iana::Algorithm::EdDSA)
            .key_id(self.kid().to_vec())
            .content_format(iana::CoapContentFormat::Cbor)
            .build();
        CoseSign1Builder::new()
            .protected(protected)
            .payload(payload)
            .create_signature(b"", |to_be_signed| {
                self.key.sign(to_be_signed).to_bytes().to_vec()
            })
            .build()
            .to_tagged_vec()
            .map_err(|e| StoreError::Db(format!("cannot encode a manifest: {e}")))
    }
}

/// What a manifest says about an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub product: String,
    pub version: String,
    /// `firmware` or `software`.
    pub kind: String,
    pub size: u64,
    pub sha256: Vec<u8>,
}

impl Manifest {
    pub fn of(fw: &FirmwareRecord) -> Manifest {
        Manifest {
            product: fw.product.clone(),
            version: fw.version.clone(),
            kind: fw.kind.clone(),
            size: fw.size,
            sha256: fw.sha256.clone(),
        }
    }

    /// The payload: a CBOR map with text keys in deterministic order
    /// (RFC 8949 §4.2.1: shorter keys first, then bytewise).
    pub fn payload(&self) -> Vec<u8> {
        use ciborium::Value;
        let map = Value::Map(vec![
            (Value::Text("kind".into()), Value::Text(self.kind.clone())),
            (Value::Text("size".into()), Value::Integer(self.size.into())),
            (
                Value::Text("sha256".into()),
                Value::Bytes(self.sha256.clone()),
            ),
            (
                Value::Text("product".into()),
                Value::Text(self.product.clone()),
            ),
            (
                Value::Text("version".into()),
                Value::Text(self.version.clone()),
            ),
        ]);
        let mut out = Vec::new();
        // Writing a Value to a Vec cannot fail.
        let _ = ciborium::into_writer(&map, &mut out);
        out
    }

    fn from_payload(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        use ciborium::Value;
        let bad = |m: &str| ManifestError::Payload(m.to_string());
        let value: Value =
            ciborium::from_reader(bytes).map_err(|e| ManifestError::Payload(e.to_string()))?;
        let Value::Map(entries) = value else {
            return Err(bad("not a CBOR map"));
        };
        let get = |k: &str| {
            entries
                .iter()
                .find(|(key, _)| key.as_text() == Some(k))
                .map(|(_, v)| v)
        };
        let text = |k: &str| {
            get(k)
                .and_then(Value::as_text)
                .map(str::to_string)
                .ok_or_else(|| ManifestError::Payload(format!("no text {k:?}")))
        };
        let size = get("size")
            .and_then(Value::as_integer)
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| bad("no unsigned \"size\""))?;
        let sha256 = get("sha256")
            .and_then(Value::as_bytes)
            .filter(|b| b.len() == 32)
            .cloned()
            .ok_or_else(|| bad("no 32-byte \"sha256\""))?;
        Ok(Manifest {
            product: text("product")?,
            version: text("version")?,
            kind: text("kind")?,
            size,
            sha256,
        })
    }
}

/// Why a manifest was refused (device side: the simulator, tests).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not a tagged COSE_Sign1: {0}")]
    Format(String),
    #[error("manifest algorithm is not EdDSA (-8)")]
    Algorithm,
    #[error("manifest is signed by key id {found}, not {expected} (was the key rotated?)")]
    KeyId { found: String, expected: String },
    #[error("manifest signature does not verify with the given public key")]
    Signature,
    #[error("manifest payload: {0}")]
    Payload(String),
    #[error("the verification key is not a valid Ed25519 public key")]
    PublicKey,
}

/// Verifies a tagged COSE_Sign1 manifest with `public_key` and returns
/// what it says. The caller then checks it against the offer and image.
pub fn verify(bytes: &[u8], public_key: &[u8; 32]) -> Result<Manifest, ManifestError> {
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| ManifestError::PublicKey)?;
    let sign1 =
        CoseSign1::from_tagged_slice(bytes).map_err(|e| ManifestError::Format(e.to_string()))?;
    let header = &sign1.protected.header;
    let eddsa = RegisteredLabelWithPrivate::Assigned(iana::Algorithm::EdDSA);
    if header.alg.as_ref() != Some(&eddsa) {
        return Err(ManifestError::Algorithm);
    }
    let expected = kid(public_key);
    if header.key_id != expected {
        return Err(ManifestError::KeyId {
            found: hex::encode(&header.key_id),
            expected: hex::encode(expected),
        });
    }
    // Nothing critical we do not understand may hide in the header.
    if header
        .crit
        .iter()
        .any(|l| !matches!(l, RegisteredLabelWithPrivate::Assigned(_)))
        || header.rest.iter().any(|(l, _)| matches!(l, Label::Int(_)))
    {
        return Err(ManifestError::Format("unexpected protected header".into()));
    }
    sign1.verify_signature(b"", |signature, to_be_signed| {
        let signature = Signature::from_slice(signature).map_err(|_| ManifestError::Signature)?;
        key.verify(to_be_signed, &signature)
            .map_err(|_| ManifestError::Signature)
    })?;
    let payload = sign1
        .payload
        .as_deref()
        .ok_or_else(|| ManifestError::Format("detached payload".into()))?;
    Manifest::from_payload(payload)
}

/// The signing key of `product`, if it has one.
pub fn load(tx: &(impl ReadTx + ?Sized), product: &str) -> Result<Option<ProductKey>, StoreError> {
    tx.secret(KIND_SIGNING_KEY, product)?
        .map(|bytes| ProductKey::decode(product, &bytes))
        .transpose()
}

/// The signed manifest of `fw` when its product has a key, else `None`.
pub fn manifest_for(
    tx: &(impl ReadTx + ?Sized),
    fw: &FirmwareRecord,
) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(record) = tx.secret(KIND_SIGNING_KEY, &fw.product)? else {
        return Ok(None);
    };
    let payload = Manifest::of(fw).payload();
    let id = SignedCache::id(&record, &payload);
    if let Some(hit) = SIGNED.get(&id) {
        return Ok(Some(hit));
    }
    let key = ProductKey::decode(&fw.product, &record)?;
    let signed = key.sign_payload(payload)?;
    metrics::counter!(crate::telemetry::MANIFESTS_SIGNED).increment(1);
    SIGNED.put(id, signed.clone());
    Ok(Some(signed))
}

/// Manifests signed so far, by [`SignedCache::id`]. A pure memo of a
/// deterministic function (same key record and payload, same bytes), so
/// it holds no state a reader could observe. Bounded: at most
/// [`SignedCache::CAP`] entries of ~150 bytes (one per firmware and key
/// in use; operators, not devices, add firmware and keys); when full it
/// starts over.
struct SignedCache(std::sync::Mutex<Option<std::collections::HashMap<[u8; 32], Vec<u8>>>>);

static SIGNED: SignedCache = SignedCache(std::sync::Mutex::new(None));

impl SignedCache {
    const CAP: usize = 4096;

    /// SHA-256 over the stored key record (length-prefixed) and the payload.
    fn id(record: &[u8], payload: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update((record.len() as u64).to_be_bytes());
        h.update(record);
        h.update(payload);
        h.finalize().into()
    }

    fn get(&self, id: &[u8; 32]) -> Option<Vec<u8>> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.as_ref()?.get(id).cloned()
    }

    fn put(&self, id: [u8; 32], signed: Vec<u8>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let map = map.get_or_insert_with(Default::default);
        if map.len() >= Self::CAP {
            map.clear();
        }
        map.insert(id, signed);
    }
}

/// Why a key was not created (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("product {0:?} already has a signing key; rotate it explicitly")]
    Exists(String),
}

/// Stores `key` as its product's signing key. Without `rotate`, a product
/// that has a key keeps it (`KeyError::Exists`); with it, the old key is
/// replaced and returned (a damaged old record is replaced too).
pub fn put(
    tx: &mut (impl Tx + ?Sized),
    key: &ProductKey,
    rotate: bool,
) -> Result<Result<Option<PublicKeyInfo>, KeyError>, StoreError> {
    let previous = match tx.secret(KIND_SIGNING_KEY, &key.product)? {
        None => None,
        Some(_) if !rotate => return Ok(Err(KeyError::Exists(key.product.clone()))),
        Some(bytes) => ProductKey::decode(&key.product, &bytes)
            .ok()
            .map(|k| k.public()),
    };
    tx.put_secret(KIND_SIGNING_KEY, &key.product, &key.encode()?)?;
    Ok(Ok(previous))
}

/// Removes a product's key: its answers are unsigned from the next poll
/// on. Whether it had one.
pub fn remove(tx: &mut (impl Tx + ?Sized), product: &str) -> Result<bool, StoreError> {
    tx.delete_secret(KIND_SIGNING_KEY, product)
}

#[cfg(test)]
#[path = "tests/signing.rs"]
mod tests;
