//! A worker host's local cache: manifest files by sha256, and the job trees built from them.
//!
//! Blobs are stored once per content under `blobs/<sha256>`, verified when they are written
//! (a download that does not hash to its name is refused, never stored) and kept between runs.
//! A job's tree is assembled from hard links to the blobs (a copy where links are not possible),
//! so a job's files cost no extra disk and appear at their manifest paths, read-only. The guest
//! sees that tree through a read-only preopen.
//!
//! Several worker processes on one host may share a cache directory (the default one is per
//! user). Blobs are safe to share: they are written atomically and never change. Job trees are
//! not: one process must not rebuild or remove a tree another one's guests are reading. So each
//! open cache builds its trees under a directory of its own, `jobs/<instance>/<tree>/`, and
//! holds an exclusive lock on `jobs/<instance>.lock` while it is open; it removes that
//! directory when it is dropped, and removes on open any other whose lock nobody holds (left by
//! a process that died).
//!
//! The cache does not know where blobs come from: the caller passes a fetch function.

use crate::manifest::{ContentMismatch, Digest, FileEntry, Manifest};
use std::fs::File;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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
    #[error("cannot fetch {path}")]
    Fetch {
        /// The manifest path of the file.
        path: String,
        /// Why: the store's error, most often.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
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
    /// Where this cache builds its job trees, removed when the last clone is dropped.
    trees: Arc<TreeRoot>,
}

/// A directory of job trees that belongs to one open cache, locked while it lives.
#[derive(Debug)]
struct TreeRoot {
    dir: PathBuf,
    lock_path: PathBuf,
    /// Holds the exclusive lock; closing it releases the lock.
    _lock: File,
}

impl Drop for TreeRoot {
    fn drop(&mut self) {
        // Best effort: a leftover directory is swept by the next cache opened here.
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// A tree directory's lock younger than this is never swept: its owner may be between
/// creating the lock file and taking the lock.
const SWEEP_AFTER: Duration = Duration::from_secs(60);

impl BlobCache {
    /// A cache rooted at `root`, created if missing, with a tree directory of its own.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, CacheError> {
        let root = root.into();
        let jobs = root.join("jobs");
        for dir in [root.join("blobs"), jobs.clone()] {
            std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        }
        sweep_abandoned_trees(&jobs);
        let instance = ulid::Ulid::new().to_string();
        let lock_path = jobs.join(format!("{instance}.lock"));
        let lock = File::create(&lock_path).map_err(io_error(&lock_path))?;
        lock.lock().map_err(io_error(&lock_path))?;
        let dir = jobs.join(&instance);
        std::fs::create_dir(&dir).map_err(io_error(&dir))?;
        let trees = Arc::new(TreeRoot {
            dir,
            lock_path,
            _lock: lock,
        });
        Ok(BlobCache { root, trees })
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
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
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
            source: e.into(),
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

    /// Builds a tree of the manifest in this cache's tree directory, fetching each missing blob
    /// with `fetch`. Each tree has a directory of its own, removed when the tree is dropped.
    pub async fn job_tree<F, Fut, E>(
        &self,
        manifest: &Manifest,
        fetch: F,
    ) -> Result<JobTree, CacheError>
    where
        F: Fn(Digest) -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let tree = JobTree {
            path: self.trees.dir.join(ulid::Ulid::new().to_string()),
        };
        std::fs::create_dir_all(&tree.path).map_err(io_error(&tree.path))?;
        for dir in manifest.dirs() {
            let dir = tree.path.join(dir.as_str());
            std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        }
        for (path, entry) in manifest.files() {
            let blob = self.blob_path(&entry.sha256);
            let present = std::fs::metadata(&blob).is_ok_and(|m| m.len() == entry.size);
            if !present {
                self.blob(path.as_str(), entry, || fetch(entry.sha256))
                    .await?;
            }
            let target = tree.path.join(path.as_str());
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(io_error(parent))?;
            }
            if std::fs::hard_link(&blob, &target).is_err() {
                std::fs::copy(&blob, &target).map_err(io_error(&target))?;
            }
        }
        Ok(tree)
    }
}

/// A manifest's files at their paths, hard links to the cache's blobs: what a job's guests see
/// through their read-only preopen. Removed (its blobs stay cached) when dropped.
#[derive(Debug)]
pub struct JobTree {
    path: PathBuf,
}

impl JobTree {
    /// The tree's root directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for JobTree {
    fn drop(&mut self) {
        // Best effort: what is left is swept with this cache's directory.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Removes the tree directories under `jobs` whose lock nobody holds: their process is gone.
fn sweep_abandoned_trees(jobs: &Path) {
    let Ok(entries) = std::fs::read_dir(jobs) else {
        return;
    };
    let settled = SystemTime::now() - SWEEP_AFTER;
    for entry in entries.flatten() {
        let lock_path = entry.path();
        let Some(instance) = lock_path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".lock"))
        else {
            continue;
        };
        let young = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|modified| modified > settled);
        let Ok(lock) = File::open(&lock_path) else {
            continue;
        };
        if young || lock.try_lock().is_err() {
            continue;
        }
        let _ = std::fs::remove_dir_all(jobs.join(instance));
        let _ = std::fs::remove_file(&lock_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock file and tree directory as a process that died leaves them, `age` ago.
    fn abandoned_tree(jobs: &Path, instance: &str, age: Duration) {
        std::fs::create_dir_all(jobs.join(instance).join("01JOB")).unwrap();
        let lock = File::create(jobs.join(format!("{instance}.lock"))).unwrap();
        lock.set_modified(SystemTime::now() - age).unwrap();
    }

    #[test]
    fn a_cache_sweeps_abandoned_trees_and_keeps_those_in_use() {
        let root = tempfile::tempdir().unwrap();
        let jobs = root.path().join("jobs");
        let first = BlobCache::open(root.path()).unwrap();
        // Old enough to be swept, were it not locked.
        File::options()
            .write(true)
            .open(&first.trees.lock_path)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        abandoned_tree(&jobs, "dead", Duration::from_secs(3600));
        abandoned_tree(&jobs, "starting", Duration::ZERO);

        let second = BlobCache::open(root.path()).unwrap();
        assert!(!jobs.join("dead").exists(), "an unlocked old tree is swept");
        assert!(!jobs.join("dead.lock").exists());
        assert!(
            jobs.join("starting").exists(),
            "a young lock may be about to be taken"
        );
        assert!(first.trees.dir.is_dir(), "a locked tree stays");
        assert_ne!(first.trees.dir, second.trees.dir);

        let second_dir = second.trees.dir.clone();
        drop(second);
        assert!(
            !second_dir.exists(),
            "a cache removes its own trees when dropped"
        );
        assert!(first.trees.dir.is_dir());
    }
}
