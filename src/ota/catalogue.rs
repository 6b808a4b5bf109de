//! The in-memory view of the firmware catalogue that the CoAP endpoint
//! serves blocks from: metadata plus an open blob per image
//! (`store::blobs::BlobFile`, positioned reads), so a block never loads an
//! image whole. The files themselves are `store/`'s business.
//!
//! Bounded by the number of firmware records (`max_per_product` per
//! product). A `std::sync::RwLock` because lookups are short, never held
//! across an await, and vastly outnumber changes.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, RwLock};

use crate::model::FirmwareRecord;
use crate::store::blobs::{BlobFile, BlobStore};

pub struct Image {
    pub record: FirmwareRecord,
    /// First 8 bytes of the SHA-256: stable per image, changes with content.
    pub etag: [u8; 8],
    file: BlobFile,
}

impl Image {
    /// Reads `buf.len()` bytes at `offset` (the caller clamps to the size).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_at(buf, offset)
    }
}

#[derive(Default)]
pub struct Catalogue {
    images: RwLock<HashMap<u64, Arc<Image>>>,
}

impl Catalogue {
    /// Opens every recorded image. One whose blob is missing or unreadable
    /// is logged and left out (its downloads answer 4.04) rather than
    /// keeping the whole server from starting.
    pub fn load(blobs: &BlobStore, records: Vec<FirmwareRecord>) -> Catalogue {
        let catalogue = Catalogue::default();
        for record in records {
            let id = record.id;
            if let Err(e) = catalogue.insert(blobs, record) {
                tracing::error!(firmware = id, "image file unusable, not served: {e}");
            }
        }
        catalogue
    }

    pub fn insert(&self, blobs: &BlobStore, record: FirmwareRecord) -> io::Result<()> {
        let file = blobs.open_blob(&record.sha256)?;
        let mut etag = [0u8; 8];
        etag.copy_from_slice(&record.sha256[..8]);
        let image = Arc::new(Image { record, etag, file });
        self.write().insert(image.record.id, image);
        Ok(())
    }

    pub fn remove(&self, id: u64) {
        self.write().remove(&id);
    }

    pub fn get(&self, id: u64) -> Option<Arc<Image>> {
        self.read().get(&id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Image>> {
        let mut images: Vec<_> = self.read().values().cloned().collect();
        images.sort_by_key(|i| i.record.id);
        images
    }

    // A poisoned lock only means another thread panicked mid-insert of a
    // complete value; the map itself is still consistent.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u64, Arc<Image>>> {
        self.images.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u64, Arc<Image>>> {
        self.images.write().unwrap_or_else(|e| e.into_inner())
    }
}
