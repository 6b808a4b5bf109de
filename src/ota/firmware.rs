//! Firmware catalogue operations: validation of operator input, and the
//! metadata records (the bytes live in `store::blobs`).

use crate::model::{CampaignId, FirmwareId, FirmwareRecord};
use crate::store::blobs::StoredBlob;
use crate::store::{ReadTx, StoreError, Tx};
use crate::time::Timestamp;

/// Validated upload parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFirmware {
    pub product: String,
    pub name: String,
    pub version: String,
    pub kind: String,
    pub signature: String,
    pub description: String,
    pub filename: String,
}

/// Raw upload parameters as the operator sent them.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct UploadParams {
    pub product: Option<String>,
    pub version: Option<String>,
    pub name: Option<String>,
    pub kind: Option<String>,
    pub signature: Option<String>,
    pub description: Option<String>,
    pub filename: Option<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FirmwareError {
    #[error("{0}")]
    Invalid(String),
    #[error("product {product} already has version {version} (firmware {id})")]
    DuplicateVersion {
        product: String,
        version: String,
        id: u64,
    },
    #[error(
        "product {product} already has {limit} firmware images (limit firmware.max_per_product)"
    )]
    ProductFull { product: String, limit: u32 },
    #[error("unknown firmware {0}")]
    Unknown(u64),
    #[error("firmware {id} is used by unfinished campaign {campaign}")]
    InUse { id: u64, campaign: u64 },
}

/// Products, like device names, are 1-64 of letters, digits, `. _ - :`.
pub fn valid_product(product: &str) -> bool {
    crate::ota::valid_device_name(product)
}

/// 1-32 of letters, digits, `_ - ( )`, starting with a letter or digit.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    (1..=32).contains(&name.len())
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'(' | b')'))
}

/// 1-64 of letters, digits, `. _ -`.
pub fn valid_version(version: &str) -> bool {
    (1..=64).contains(&version.len())
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub fn validate(params: &UploadParams) -> Result<NewFirmware, FirmwareError> {
    let invalid = |m: &str| Err(FirmwareError::Invalid(m.to_string()));
    let product = params.product.clone().unwrap_or_default();
    if product.is_empty() {
        return invalid("product is required");
    }
    if !valid_product(&product) {
        return invalid("product must be 1-64 characters of letters, digits, '.', '_', '-', ':'");
    }
    let version = params.version.clone().unwrap_or_default();
    if version.is_empty() {
        return invalid("version is required");
    }
    if !valid_version(&version) {
        return invalid("version must be 1-64 characters of letters, digits, '.', '_', '-'");
    }
    let name = match params.name.clone() {
        Some(name) => name,
        None if valid_name(&product) => product.clone(),
        None => "firmware".to_string(),
    };
    if !valid_name(&name) {
        return invalid(
            "name must be 1-32 characters of letters, digits, '_', '-', '(', ')' and start with a letter or digit",
        );
    }
    let kind = params.kind.clone().unwrap_or_else(|| "firmware".into());
    if kind != "firmware" && kind != "software" {
        return invalid("kind must be firmware or software");
    }
    let signature = params
        .signature
        .clone()
        .unwrap_or_else(|| "sha256".into())
        .to_ascii_lowercase();
    if signature != "sha256" && signature != "md5" {
        return invalid("signature must be sha256 or md5");
    }
    let description = params.description.clone().unwrap_or_default();
    if description.chars().count() > 100 {
        return invalid("description must be at most 100 characters");
    }
    let filename = params
        .filename
        .clone()
        .unwrap_or_else(|| format!("{name}-{version}.bin"));
    if filename.len() > 255 || filename.contains(['/', '\\', '\0']) {
        return invalid("filename must be at most 255 characters without '/', '\\'");
    }
    Ok(NewFirmware {
        product,
        name,
        version,
        kind,
        signature,
        description,
        filename,
    })
}

/// Checks that the upload may proceed before any byte is read.
pub fn check_slot(
    tx: &(impl ReadTx + ?Sized),
    meta: &NewFirmware,
    limit: u32,
) -> Result<Result<(), FirmwareError>, StoreError> {
    let existing = list_for_product(tx, &meta.product)?;
    if let Some(fw) = existing.iter().find(|fw| fw.version == meta.version) {
        return Ok(Err(FirmwareError::DuplicateVersion {
            product: meta.product.clone(),
            version: meta.version.clone(),
            id: fw.id,
        }));
    }
    if existing.len() >= limit as usize {
        return Ok(Err(FirmwareError::ProductFull {
            product: meta.product.clone(),
            limit,
        }));
    }
    Ok(Ok(()))
}

/// Records an uploaded image. Fails, changing nothing, when the product
/// version exists or the product is at its limit.
pub fn insert(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    meta: &NewFirmware,
    blob: &StoredBlob,
    limit: u32,
) -> Result<Result<FirmwareRecord, FirmwareError>, StoreError> {
    if let Err(e) = check_slot(tx, meta, limit)? {
        return Ok(Err(e));
    }
    let id = tx.next_firmware_id()?;
    let record = FirmwareRecord {
        id,
        product: meta.product.clone(),
        name: meta.name.clone(),
        version: meta.version.clone(),
        kind: meta.kind.clone(),
        filename: meta.filename.clone(),
        size: blob.size,
        sha256: blob.sha256.to_vec(),
        md5: blob.md5.to_vec(),
        signature: meta.signature.clone(),
        description: meta.description.clone(),
        created_at: now,
        verified: false,
    };
    tx.put_firmware(&record)?;
    Ok(Ok(record))
}

/// Largest page of campaigns one step of [`unfinished_campaign_using`] reads.
const CAMPAIGN_PAGE: usize = 1000;

/// Removes a firmware record. Returns the record and whether its blob is
/// now unreferenced (another version may share identical bytes).
///
/// `checked_up_to` is the highest campaign id an earlier read-only scan
/// ([`unfinished_campaign_using`] on a snapshot, off the writer) found not
/// to use the image; only newer campaigns are checked here, so the write
/// stays short however many campaigns exist.
pub fn delete(
    tx: &mut (impl Tx + ?Sized),
    id: FirmwareId,
    checked_up_to: Option<CampaignId>,
) -> Result<Result<(FirmwareRecord, bool), FirmwareError>, StoreError> {
    let Some(record) = tx.firmware(id)? else {
        return Ok(Err(FirmwareError::Unknown(id)));
    };
    if let Some(campaign) = unfinished_campaign_using(tx, id, checked_up_to)?.0 {
        return Ok(Err(FirmwareError::InUse { id, campaign }));
    }
    tx.delete_firmware(&record)?;
    let shared = list_all(tx)?.iter().any(|fw| fw.sha256 == record.sha256);
    Ok(Ok((record, !shared)))
}

/// The first unfinished campaign (with id above `after`) that rolls out
/// firmware `id`, and the highest campaign id looked at.
pub fn unfinished_campaign_using(
    tx: &(impl ReadTx + ?Sized),
    id: FirmwareId,
    after: Option<CampaignId>,
) -> Result<(Option<CampaignId>, Option<CampaignId>), StoreError> {
    let mut cursor = after;
    loop {
        let page = tx.campaigns(cursor, CAMPAIGN_PAGE)?;
        let Some(last) = page.last() else {
            return Ok((None, cursor));
        };
        cursor = Some(last.id);
        for campaign in page.iter().filter(|c| c.firmware == id) {
            let counts = tx.campaign_counts(campaign.id)?;
            let status = crate::ota::campaign::effective_status(campaign, &counts);
            if status.is_open() {
                return Ok((Some(campaign.id), cursor));
            }
        }
    }
}

pub fn list_all(tx: &(impl ReadTx + ?Sized)) -> Result<Vec<FirmwareRecord>, StoreError> {
    tx.firmware_all()
}

pub fn list_for_product(
    tx: &(impl ReadTx + ?Sized),
    product: &str,
) -> Result<Vec<FirmwareRecord>, StoreError> {
    Ok(tx
        .firmware_all()?
        .into_iter()
        .filter(|fw| fw.product == product)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(name: &str, version: &str) -> UploadParams {
        UploadParams {
            product: Some("p".into()),
            version: Some(version.into()),
            name: Some(name.into()),
            ..Default::default()
        }
    }

    #[test]
    fn names_and_versions() {
        assert!(validate(&params("fw_1-(a)", "1.0.0-rc_1")).is_ok());
        assert!(validate(&params("_fw", "1")).is_err());
        assert!(validate(&params(&"a".repeat(33), "1")).is_err());
        assert!(validate(&params("a", &"1".repeat(65))).is_err());
        assert!(validate(&params("a", "1 0")).is_err());
        assert!(validate(&params("a.b", "1")).is_err());
    }
}
