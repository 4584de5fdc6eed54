//! The files a job reads: their manifest paths, sizes and sha256 digests.
//!
//! Owns [`Manifest`] (what travels inside the job spec), its path type [`ManifestPath`], the
//! content address [`Digest`], and [`ManifestBuilder`], which hashes files and directories of the
//! submitting host into a manifest while remembering where each file's bytes are, so that the
//! submitter can upload them. It does not own the bytes themselves: uploading, storing and
//! verifying blobs belong to the storage backends and the worker's blob cache, and laying the tree
//! out for a guest belongs to the executor.
//!
//! A manifest path is `/`-separated and relative to the job's root, which the guest sees at
//! [`wasmjob_host_api::JOB_DIR`]; `.` is the root itself. Paths cannot climb out of the tree
//! (no `..`, not absolute) on any host: workers lay the tree out on their own disks.
//!
//! `digest` holds the content address and `builder` the submitting host's side. This file keeps
//! the error type, [`ManifestPath`] and [`Manifest`] together, above 400 lines, because the
//! manifest's order leans on the path's text form (everything below `dir` sorts in one block from
//! `dir/`) and builds such unchecked paths to search it, which no other file may do.

mod builder;
mod digest;

pub use builder::{LocalManifest, ManifestBuilder, Mount, parse_mount};
pub use digest::Digest;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};

/// What went wrong with a manifest, a manifest path, or the host files a manifest is built from.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// A string that is not a valid manifest path.
    #[error("invalid manifest path {path:?}: {reason}")]
    InvalidPath {
        /// The offending path.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A string that is not a sha256 digest in hex.
    #[error("invalid sha256 digest {input:?}: expected 64 hexadecimal digits")]
    InvalidDigest {
        /// The offending text.
        input: String,
    },
    /// The manifest has no file; a job needs at least its module.
    #[error("the manifest has no files: add at least the job's module")]
    NoFiles,
    /// Two files were given the same path.
    #[error("{path:?} appears twice in the manifest: give one of them another name")]
    DuplicatePath {
        /// The path given twice.
        path: ManifestPath,
    },
    /// A path that would be both a file and a directory: a file at a directory's path, or a file
    /// where another entry needs a parent directory.
    #[error("{path:?} would be both a file and a directory in the manifest")]
    FileDirConflict {
        /// The path that is both.
        path: ManifestPath,
    },
    /// A host path with no final component to name its entry by, such as `.` or `/`.
    #[error("cannot name {} in the manifest: write it as PATH:NAME", host.display())]
    NoName {
        /// The host path.
        host: PathBuf,
    },
    /// A host path given as a file is a directory.
    #[error("{} is a directory, not a file", host.display())]
    NotAFile {
        /// The host path.
        host: PathBuf,
    },
    /// A host path given as a directory is not one.
    #[error("{} is not a directory", host.display())]
    NotADirectory {
        /// The host path.
        host: PathBuf,
    },
    /// A host path that is neither a regular file nor a directory (a socket, a FIFO, a device).
    #[error("{} is neither a regular file nor a directory", host.display())]
    Unsupported {
        /// The host path.
        host: PathBuf,
    },
    /// A symbolic link whose target does not exist.
    #[error("{} is a symbolic link to nothing", host.display())]
    BrokenSymlink {
        /// The link.
        host: PathBuf,
    },
    /// A symbolic link to a directory that contains the link, which would make the tree infinite.
    #[error("{} is a symbolic link to a directory containing it", host.display())]
    SymlinkLoop {
        /// The link.
        host: PathBuf,
    },
    /// A host file name that is not valid UTF-8, which manifest paths must be.
    #[error("{} has a name that is not valid UTF-8", host.display())]
    NonUtf8Name {
        /// The host path.
        host: PathBuf,
    },
    /// Reading a host file or directory failed.
    #[error("cannot read {}: {error}", host.display())]
    Io {
        /// The host path.
        host: PathBuf,
        /// The failure.
        error: io::Error,
    },
}

/// A normalized path inside a manifest: relative, `/`-separated, with no empty, `.` or `..`
/// component, no backslash and no NUL; or `.`, the root.
///
/// Backslashes are refused so that a worker on any operating system lays the tree out exactly as
/// named, never reading one as a separator.
///
/// `Debug` shows the path as a quoted string, which is how error messages quote it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ManifestPath(String);

impl ManifestPath {
    /// Validates `path`.
    pub fn new(path: &str) -> Result<Self, ManifestError> {
        let reason = if path.is_empty() {
            Some("it is empty")
        } else if path == "." {
            None
        } else if path.starts_with('/') {
            Some("it is absolute; manifest paths are relative to the job's root")
        } else if path.contains('\\') {
            Some("it contains a backslash; separate components with /")
        } else if path.contains('\0') {
            Some("it contains a NUL byte")
        } else if path.split('/').any(str::is_empty) {
            Some("it has an empty component")
        } else if path.split('/').any(|c| c == "." || c == "..") {
            Some("it has a . or .. component")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(ManifestError::InvalidPath {
                path: path.to_owned(),
                reason,
            }),
            None => Ok(Self(path.to_owned())),
        }
    }

    /// The root of the tree, `.`.
    pub fn root() -> Self {
        Self(".".to_owned())
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0 == "."
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path's components; none for the root.
    pub fn components(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.0.split('/').filter(|_| !self.is_root())
    }

    /// The last component; `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        self.components().next_back()
    }

    /// The directory containing this path (the root for a top-level entry); `None` for the root.
    pub fn parent(&self) -> Option<ManifestPath> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.rsplit_once('/') {
            Some((parent, _)) => Self(parent.to_owned()),
            None => Self::root(),
        })
    }

    /// `relative` (one or more components) inside this directory.
    pub fn join(&self, relative: &str) -> Result<ManifestPath, ManifestError> {
        if self.is_root() {
            Self::new(relative)
        } else {
            Self::new(&format!("{}/{relative}", self.0))
        }
    }

    /// Every directory above this path, nearest first, excluding the root.
    fn ancestors(&self) -> impl Iterator<Item = ManifestPath> + '_ {
        self.0
            .rmatch_indices('/')
            .map(|(i, _)| ManifestPath(self.0[..i].to_owned()))
    }
}

impl fmt::Display for ManifestPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ManifestPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl FromStr for ManifestPath {
    type Err = ManifestError;

    fn from_str(path: &str) -> Result<Self, ManifestError> {
        Self::new(path)
    }
}

impl TryFrom<String> for ManifestPath {
    type Error = ManifestError;

    fn try_from(path: String) -> Result<Self, ManifestError> {
        Self::new(&path)
    }
}

impl From<ManifestPath> for String {
    fn from(path: ManifestPath) -> String {
        path.0
    }
}

impl AsRef<str> for ManifestPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// One file of a manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileEntry {
    /// The sha256 of the file's content: where the storage keeps it.
    pub sha256: Digest,
    /// The file's size in bytes.
    pub size: u64,
}

impl FileEntry {
    /// Checks that `bytes` are this file's content.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), ContentMismatch> {
        let actual = Digest::of(bytes);
        if actual == self.sha256 && bytes.len() as u64 == self.size {
            return Ok(());
        }
        Err(ContentMismatch {
            expected: self.sha256,
            expected_size: self.size,
            actual,
            actual_size: bytes.len() as u64,
        })
    }
}

/// Bytes that are not the content a manifest entry names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected sha256 {expected} ({expected_size} bytes), got sha256 {actual} ({actual_size} bytes)"
)]
pub struct ContentMismatch {
    /// The manifest's digest.
    pub expected: Digest,
    /// The manifest's size.
    pub expected_size: u64,
    /// The digest of the bytes received.
    pub actual: Digest,
    /// The size of the bytes received.
    pub actual_size: u64,
}

/// The files and directories a job reads.
///
/// Always consistent: its paths are valid and no path is both a file and a directory. Every
/// parent of a file is a directory; empty directories can be added explicitly. Whether it has
/// any file at all is checked by [`validate`](Manifest::validate) (and by
/// [`ManifestBuilder::build`]), not by construction, so a manifest can be filled step by step.
///
/// JSON form: `{"files": {"data/a.txt": {"sha256": "ba78…", "size": 3}}, "dirs": ["out"]}`, where
/// `dirs` lists only the directories nothing else implies (empty ones with no directory below
/// them), and is omitted when there are none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "OwnedManifestRepr")]
pub struct Manifest {
    files: BTreeMap<ManifestPath, FileEntry>,
    /// Every directory except the root: the parents of every file and entry, and the directories
    /// added explicitly.
    dirs: BTreeSet<ManifestPath>,
}

impl Manifest {
    /// An empty manifest.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file.
    ///
    /// Fails with [`ManifestError::InvalidPath`] for the root,
    /// [`DuplicatePath`](ManifestError::DuplicatePath) when `path` is already a file, and
    /// [`FileDirConflict`](ManifestError::FileDirConflict) when `path` is a directory or a parent
    /// of it is a file.
    pub fn insert_file(
        &mut self,
        path: ManifestPath,
        entry: FileEntry,
    ) -> Result<(), ManifestError> {
        if path.is_root() {
            return Err(ManifestError::InvalidPath {
                path: path.0,
                reason: "the root is a directory, not a file",
            });
        }
        if self.files.contains_key(&path) {
            return Err(ManifestError::DuplicatePath { path });
        }
        if self.dirs.contains(&path) {
            return Err(ManifestError::FileDirConflict { path });
        }
        self.insert_parents(&path)?;
        self.files.insert(path, entry);
        Ok(())
    }

    /// Adds a directory, with its parents; adding one that exists, or the root, does nothing.
    ///
    /// Fails with [`ManifestError::FileDirConflict`] when `path` or a parent of it is a file.
    pub fn insert_dir(&mut self, path: ManifestPath) -> Result<(), ManifestError> {
        if path.is_root() || self.dirs.contains(&path) {
            return Ok(());
        }
        if self.files.contains_key(&path) {
            return Err(ManifestError::FileDirConflict { path });
        }
        self.insert_parents(&path)?;
        self.dirs.insert(path);
        Ok(())
    }

    fn insert_parents(&mut self, path: &ManifestPath) -> Result<(), ManifestError> {
        let parents: Vec<ManifestPath> = path.ancestors().collect();
        if let Some(file) = parents.iter().find(|p| self.files.contains_key(*p)) {
            return Err(ManifestError::FileDirConflict { path: file.clone() });
        }
        self.dirs.extend(parents);
        Ok(())
    }

    /// Checks what construction does not: that the manifest has at least one file.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.files.is_empty() {
            return Err(ManifestError::NoFiles);
        }
        Ok(())
    }

    /// The file at `path`, if it is one.
    pub fn file(&self, path: &ManifestPath) -> Option<&FileEntry> {
        self.files.get(path)
    }

    /// Whether `path` is a directory; the root always is.
    pub fn is_dir(&self, path: &ManifestPath) -> bool {
        path.is_root() || self.dirs.contains(path)
    }

    /// Every file, by path.
    pub fn files(&self) -> impl ExactSizeIterator<Item = (&ManifestPath, &FileEntry)> {
        self.files.iter()
    }

    /// Every directory except the root, parents before their children.
    pub fn dirs(&self) -> impl ExactSizeIterator<Item = &ManifestPath> {
        self.dirs.iter()
    }

    /// The number of files.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Whether the manifest has no file and no directory.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty()
    }

    /// The sum of the files' sizes.
    pub fn total_size(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }

    /// The distinct contents of the manifest: the blobs a job needs before it can run.
    pub fn digests(&self) -> BTreeSet<Digest> {
        self.files.values().map(|f| f.sha256).collect()
    }

    /// Directories with nothing below them: the only ones the serialized form must list.
    fn empty_dirs(&self) -> impl Iterator<Item = &ManifestPath> {
        self.dirs.iter().filter(|dir| {
            // Everything below `dir/` sorts in one block starting at `dir/`.
            let below = ManifestPath(format!("{}/", dir.0));
            let starts_below = |p: &ManifestPath| p.0.starts_with(&below.0);
            !self
                .files
                .range(&below..)
                .next()
                .is_some_and(|(p, _)| starts_below(p))
                && !self.dirs.range(&below..).next().is_some_and(starts_below)
        })
    }
}

/// The serialized form of a [`Manifest`].
#[derive(Serialize, Deserialize)]
#[serde(bound(deserialize = "F: Deserialize<'de>, D: Deserialize<'de>"))]
struct ManifestRepr<F, D> {
    files: F,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    dirs: Vec<D>,
}

impl Serialize for Manifest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ManifestRepr {
            files: &self.files,
            dirs: self.empty_dirs().collect(),
        }
        .serialize(serializer)
    }
}

type OwnedManifestRepr = ManifestRepr<BTreeMap<ManifestPath, FileEntry>, ManifestPath>;

impl TryFrom<OwnedManifestRepr> for Manifest {
    type Error = ManifestError;

    fn try_from(repr: OwnedManifestRepr) -> Result<Self, ManifestError> {
        let mut manifest = Manifest::new();
        for (path, entry) in repr.files {
            manifest.insert_file(path, entry)?;
        }
        for dir in repr.dirs {
            manifest.insert_dir(dir)?;
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests;
