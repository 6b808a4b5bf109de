//! Content-addressed firmware blob files: `DATA/blobs/<sha256 hex>`.
//!
//! An upload streams into `DATA/blobs/tmp/<random>` while SHA-256 and MD5
//! are computed; on success the file is fsynced and renamed to its digest
//! (then the directory is fsynced), and only then is the metadata record
//! committed. A crash between rename and commit leaves an unreferenced blob,
//! which [`BlobStore::remove_unreferenced`] deletes at start-up; a crash
//! mid-upload leaves a temp file, deleted the same way.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use md5::Md5;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    tmp: PathBuf,
}

/// An upload in progress. Dropping it without [`TempBlob::persist`]
/// deletes the temp file, so a rejected or aborted upload leaves nothing.
pub struct TempBlob {
    file: Option<File>,
    path: PathBuf,
    sha256: Sha256,
    md5: Md5,
    size: u64,
}

/// An open blob: served by positioned reads (`pread`), so a block never
/// loads an image whole and concurrent readers share one handle.
#[derive(Debug)]
pub struct BlobFile(File);

impl BlobFile {
    /// Reads `buf.len()` bytes at `offset` (the caller clamps to the size).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
}

/// A blob that reached its final name.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    pub sha256: [u8; 32],
    pub md5: [u8; 16],
    pub size: u64,
}

impl BlobStore {
    pub fn open(data_dir: &Path) -> io::Result<BlobStore> {
        let dir = data_dir.join("blobs");
        let tmp = dir.join("tmp");
        fs::create_dir_all(&tmp)?;
        Ok(BlobStore { dir, tmp })
    }

    pub fn path_of(&self, sha256: &[u8]) -> PathBuf {
        self.dir.join(hex::encode(sha256))
    }

    /// Opens a blob for positioned reads.
    pub fn open_blob(&self, sha256: &[u8]) -> io::Result<BlobFile> {
        Ok(BlobFile(File::open(self.path_of(sha256))?))
    }

    pub fn create_temp(&self) -> io::Result<TempBlob> {
        let name = format!("upload-{:016x}", rand::random::<u64>());
        let path = self.tmp.join(name);
        let file = File::options().write(true).create_new(true).open(&path)?;
        Ok(TempBlob {
            file: Some(file),
            path,
            sha256: Sha256::new(),
            md5: Md5::new(),
            size: 0,
        })
    }

    /// Deletes temp files and blobs no record refers to. Returns how many
    /// files were removed.
    ///
    /// Issue 8 item 7b/7d: only ever touches plain files named like a
    /// sha256 (64 lowercase hex) in the blob dir and like our uploads
    /// (`upload-*`) in the temp dir; anything else (a directory, an
    /// operator's file) is left alone with a warning. Every error names the
    /// path. Whether blobs may be deleted at all (not on a new or empty
    /// catalogue) is the caller's decision: see `server/startup.rs`.
    pub fn remove_unreferenced(&self, referenced: &HashSet<String>) -> io::Result<usize> {
        Ok(self.remove_temp_files()? + self.remove_blobs_except(referenced)?)
    }

    /// Deletes leftover uploads in the temp dir (never referenced).
    pub fn remove_temp_files(&self) -> io::Result<usize> {
        let mut removed = 0;
        for entry in read_dir_named(&self.tmp)? {
            let (path, kind) = entry?;
            let ours = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("upload-"));
            if !kind.is_file() || !ours {
                tracing::warn!("leaving {} alone: not an upload temp file", path.display());
                continue;
            }
            remove_named(&path)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Names of the blob files present (sha256-named plain files).
    pub fn blob_names(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in read_dir_named(&self.dir)? {
            let (path, kind) = entry?;
            if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                if kind.is_file() && is_blob_name(name) {
                    names.push(name.to_string());
                }
            }
        }
        Ok(names)
    }

    fn remove_blobs_except(&self, referenced: &HashSet<String>) -> io::Result<usize> {
        let mut removed = 0;
        for entry in read_dir_named(&self.dir)? {
            let (path, kind) = entry?;
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !kind.is_file() || !is_blob_name(name) || referenced.contains(name) {
                continue;
            }
            tracing::info!("removing unreferenced blob {name}");
            remove_named(&path)?;
            removed += 1;
        }
        Ok(removed)
    }

    pub fn remove(&self, sha256: &[u8]) -> io::Result<()> {
        match fs::remove_file(self.path_of(sha256)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// A blob file name: a sha256 digest in lowercase hex.
pub fn is_blob_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `read_dir` whose errors name the path; yields (path, file type).
fn read_dir_named(
    dir: &Path,
) -> io::Result<impl Iterator<Item = io::Result<(PathBuf, fs::FileType)>> + '_> {
    let named = move |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
    Ok(fs::read_dir(dir).map_err(named)?.map(move |entry| {
        let entry = entry.map_err(named)?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok((path, kind))
    }))
}

fn remove_named(path: &Path) -> io::Result<()> {
    fs::remove_file(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

impl TempBlob {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("temp blob already closed"))?;
        file.write_all(chunk)?;
        self.sha256.update(chunk);
        self.md5.update(chunk);
        self.size += chunk.len() as u64;
        Ok(())
    }

    /// fsync, rename to the digest name, fsync the directory.
    pub fn persist(mut self, store: &BlobStore) -> io::Result<StoredBlob> {
        let file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("temp blob already closed"))?;
        file.sync_all()?;
        drop(file);
        let sha256: [u8; 32] = self.sha256.clone().finalize().into();
        let md5: [u8; 16] = self.md5.clone().finalize().into();
        fs::rename(&self.path, store.path_of(&sha256))?;
        File::open(&store.dir)?.sync_all()?;
        // Renamed away: nothing for Drop to delete.
        self.path = PathBuf::new();
        Ok(StoredBlob {
            sha256,
            md5,
            size: self.size,
        })
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_upload_leaves_nothing_and_persisted_is_named_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let mut blob = store.create_temp().unwrap();
        blob.write(b"half").unwrap();
        drop(blob);
        assert_eq!(
            fs::read_dir(dir.path().join("blobs/tmp")).unwrap().count(),
            0
        );

        let mut blob = store.create_temp().unwrap();
        blob.write(b"abc").unwrap();
        let stored = blob.persist(&store).unwrap();
        assert_eq!(
            hex::encode(stored.sha256),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(fs::read(store.path_of(&stored.sha256)).unwrap(), b"abc");
        let removed = store.remove_unreferenced(&HashSet::new()).unwrap();
        assert_eq!(removed, 1);
    }
}
