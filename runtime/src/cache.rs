//! A worker host's local cache: manifest files by sha256, and the job trees built from them.
//!
//! Blobs are stored once per content under `blobs/<sha256>`, verified when they are written
//! (a download that does not hash to its name is refused, never stored) and kept between runs.
//! A job's tree is assembled under `jobs/<job id>/` from hard links to the blobs (a copy where
//! links are not possible), so a job's files cost no extra disk and appear at their manifest
//! paths, read-only. The guest sees that tree through a read-only preopen.
//!
//! The cache does not know where blobs come from: the caller passes a fetch function.

use crate::manifest::{ContentMismatch, Digest, FileEntry, Manifest};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

/// Why a file could not be put into the cache.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The fetched bytes are not the content the manifest names.
    #[error("hash mismatch for {path}: {mismatch}")]
    HashMismatch {
        /// The manifest path of the file.
        path: String,
        /// What was expected and what came.
        mismatch: ContentMismatch,
    },
    /// Fetching the bytes failed.
    #[error("cannot fetch {path}: {reason}")]
    Fetch {
        /// The manifest path of the file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The cache directory could not be written.
    #[error("cache directory {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The cache, rooted at one directory.
#[derive(Debug, Clone)]
pub struct BlobCache {
    root: PathBuf,
}

impl BlobCache {
    /// A cache rooted at `root`, created if missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, CacheError> {
        let root = root.into();
        for dir in [root.join("blobs"), root.join("jobs")] {
            std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        }
        Ok(BlobCache { root })
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives once cached.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join(digest.to_string())
    }

    /// The bytes of a file, from the cache or, if missing, from `fetch`, which are verified and
    /// then kept.
    pub async fn blob<F, Fut, E>(
        &self,
        path: &str,
        entry: &FileEntry,
        fetch: F,
    ) -> Result<Vec<u8>, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
        E: std::fmt::Display,
    {
        let cached = self.blob_path(&entry.sha256);
        if let Ok(bytes) = tokio::fs::read(&cached).await {
            // Written only after verification, but a disk can still rot or be edited by hand.
            if entry.verify(&bytes).is_ok() {
                return Ok(bytes);
            }
        }
        let bytes = fetch().await.map_err(|e| CacheError::Fetch {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        entry
            .verify(&bytes)
            .map_err(|mismatch| CacheError::HashMismatch {
                path: path.to_owned(),
                mismatch,
            })?;
        self.store(&cached, &bytes).await?;
        Ok(bytes)
    }

    /// Writes a verified blob atomically: a reader sees the whole file or none.
    async fn store(&self, target: &Path, bytes: &[u8]) -> Result<(), CacheError> {
        let blobs = self.root.join("blobs");
        let temp = tempfile::NamedTempFile::new_in(&blobs).map_err(io_error(&blobs))?;
        tokio::fs::write(temp.path(), bytes)
            .await
            .map_err(io_error(temp.path()))?;
        let mut permissions = std::fs::metadata(temp.path())
            .map_err(io_error(temp.path()))?
            .permissions();
        permissions.set_readonly(true);
        std::fs::set_permissions(temp.path(), permissions).map_err(io_error(temp.path()))?;
        temp.persist(target).map_err(|e| CacheError::Io {
            path: target.to_path_buf(),
            source: e.error,
        })?;
        Ok(())
    }

    /// Builds the job's tree under `jobs/<job>/`, fetching each missing blob with `fetch`, and
    /// returns its directory. An existing tree of the same job is rebuilt from scratch.
    pub async fn job_tree<F, Fut, E>(
        &self,
        job: &str,
        manifest: &Manifest,
        fetch: F,
    ) -> Result<PathBuf, CacheError>
    where
        F: Fn(Digest) -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
        E: std::fmt::Display,
    {
        let tree = self.root.join("jobs").join(job);
        if tree.exists() {
            std::fs::remove_dir_all(&tree).map_err(io_error(&tree))?;
        }
        std::fs::create_dir_all(&tree).map_err(io_error(&tree))?;
        for dir in manifest.dirs() {
            let dir = tree.join(dir.as_str());
            std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        }
        for (path, entry) in manifest.files() {
            let blob = self.blob_path(&entry.sha256);
            let present = std::fs::metadata(&blob).is_ok_and(|m| m.len() == entry.size);
            if !present {
                self.blob(path.as_str(), entry, || fetch(entry.sha256))
                    .await?;
            }
            let target = tree.join(path.as_str());
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(io_error(parent))?;
            }
            if std::fs::hard_link(&blob, &target).is_err() {
                std::fs::copy(&blob, &target).map_err(io_error(&target))?;
            }
        }
        Ok(tree)
    }

    /// Removes a job's tree (its blobs stay cached).
    pub fn remove_job_tree(&self, job: &str) {
        // Best effort: a leftover tree is rebuilt before its next use anyway.
        let _ = std::fs::remove_dir_all(self.root.join("jobs").join(job));
    }
}
