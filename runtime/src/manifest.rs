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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

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

/// A sha256 digest: the address of a file's content. Text form: 64 lowercase hex digits
/// (uppercase is accepted when parsing); serde uses the text form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest with these bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The sha256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The sha256 of everything `reader` yields, read in chunks, and the number of bytes read.
    pub fn of_reader(mut reader: impl Read) -> io::Result<(Self, u64)> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0; 64 * 1024];
        let mut size = 0;
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Ok((Self(hasher.finalize().into()), size)),
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    size += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = ManifestError;

    fn from_str(text: &str) -> Result<Self, ManifestError> {
        let invalid = || ManifestError::InvalidDigest {
            input: text.to_owned(),
        };
        let hex = text.as_bytes();
        if hex.len() != 64 {
            return Err(invalid());
        }
        let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        let mut bytes = [0; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            *byte =
                nibble(pair[0]).ok_or_else(invalid)? << 4 | nibble(pair[1]).ok_or_else(invalid)?;
        }
        Ok(Self(bytes))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
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

/// A host path and the manifest path it is added as: the value of a `--file` or `--dir`
/// argument. See [`parse_mount`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The file or directory on this host.
    pub host: PathBuf,
    /// Where it appears in the manifest.
    pub at: ManifestPath,
}

/// Reads `PATH` or `PATH:AS`, the syntax of `--file` and `--dir`.
///
/// Without `AS` the entry is named by the last component of `PATH`, so `examples/wordcount/data`
/// becomes `data`; `AS` may be `.` to put a directory's contents at the root. The argument is
/// split at its last `:` when what follows is non-empty and does not start with `/` or `\` (so
/// `C:\data` and `C:/data` stay whole); a host path that itself contains such a `:` must be given
/// with an explicit `:AS`, as in `a:b:b`.
pub fn parse_mount(arg: &str) -> Result<Mount, ManifestError> {
    if let Some((host, at)) = arg.rsplit_once(':')
        && !host.is_empty()
        && !at.is_empty()
        && !at.starts_with(['/', '\\'])
    {
        return Ok(Mount {
            host: PathBuf::from(host),
            at: ManifestPath::new(at)?,
        });
    }
    let host = PathBuf::from(arg);
    let name = host.file_name().and_then(|name| name.to_str());
    let Some(name) = name else {
        return Err(ManifestError::NoName { host });
    };
    let at = ManifestPath::new(name)?;
    Ok(Mount { host, at })
}

impl FromStr for Mount {
    type Err = ManifestError;

    fn from_str(arg: &str) -> Result<Self, ManifestError> {
        parse_mount(arg)
    }
}

/// A manifest together with where each of its files is on this host: what the submitter needs to
/// upload the bytes. The [`Manifest`] itself never holds host paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalManifest {
    /// The manifest.
    pub manifest: Manifest,
    /// The host path of every file of the manifest.
    pub sources: BTreeMap<ManifestPath, PathBuf>,
}

impl LocalManifest {
    /// One host path for each distinct content, so that each blob is uploaded once.
    pub fn blobs(&self) -> BTreeMap<Digest, &Path> {
        self.manifest
            .files()
            .map(|(path, entry)| (entry.sha256, self.sources[path].as_path()))
            .collect()
    }
}

/// Builds a [`LocalManifest`] from files and directories of this host.
///
/// The `add_*` methods only record what to add; [`build`](Self::build) reads and hashes
/// everything, in the order added, and stops at the first problem.
///
/// Directories are added recursively with all their entries, hidden ones included, and their
/// empty subdirectories. Symbolic links are followed, to files and to directories alike, as if
/// the target were at the link's place; a link to nothing, a link to a directory that contains
/// it, and anything that is neither a regular file nor a directory (a socket, a FIFO, a device)
/// are errors rather than skipped, so a manifest never silently lacks a file.
///
/// Two directories added at the same path merge; a file added twice at one path, or a file where
/// a directory is, is an error.
#[derive(Clone, Debug, Default)]
pub struct ManifestBuilder {
    entries: Vec<(EntryKind, PathBuf, ManifestPath)>,
}

#[derive(Clone, Copy, Debug)]
enum EntryKind {
    File,
    Dir,
}

impl ManifestBuilder {
    /// A builder with nothing added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the host file `host` as `at`.
    pub fn add_file(&mut self, host: impl Into<PathBuf>, at: ManifestPath) -> &mut Self {
        self.entries.push((EntryKind::File, host.into(), at));
        self
    }

    /// Adds the host directory `host`, recursively, as `at` (the root `.` is allowed: the
    /// directory's contents are then at the top of the tree).
    pub fn add_dir(&mut self, host: impl Into<PathBuf>, at: ManifestPath) -> &mut Self {
        self.entries.push((EntryKind::Dir, host.into(), at));
        self
    }

    /// Reads and hashes everything added. Fails on the first unreadable or unsupported host
    /// path, on a path conflict, and when the result has no file.
    pub fn build(&self) -> Result<LocalManifest, ManifestError> {
        let mut out = LocalManifest {
            manifest: Manifest::new(),
            sources: BTreeMap::new(),
        };
        for (kind, host, at) in &self.entries {
            let meta = metadata(host)?;
            match kind {
                EntryKind::File if meta.is_dir() => {
                    return Err(ManifestError::NotAFile { host: host.clone() });
                }
                EntryKind::File => add_file(&mut out, host, &meta, at.clone())?,
                EntryKind::Dir if !meta.is_dir() => {
                    return Err(ManifestError::NotADirectory { host: host.clone() });
                }
                EntryKind::Dir => add_dir(&mut out, host, at, &mut Vec::new())?,
            }
        }
        out.manifest.validate()?;
        Ok(out)
    }
}

/// The metadata of what `host` is or links to, telling a broken link from a missing file.
fn metadata(host: &Path) -> Result<fs::Metadata, ManifestError> {
    fs::metadata(host).map_err(|error| {
        let is_link = fs::symlink_metadata(host).is_ok_and(|m| m.file_type().is_symlink());
        if is_link && error.kind() == io::ErrorKind::NotFound {
            ManifestError::BrokenSymlink {
                host: host.to_owned(),
            }
        } else {
            io_error(host, error)
        }
    })
}

fn io_error(host: &Path, error: io::Error) -> ManifestError {
    ManifestError::Io {
        host: host.to_owned(),
        error,
    }
}

fn add_file(
    out: &mut LocalManifest,
    host: &Path,
    meta: &fs::Metadata,
    at: ManifestPath,
) -> Result<(), ManifestError> {
    // Checked before opening: opening a FIFO would block.
    if !meta.is_file() {
        return Err(ManifestError::Unsupported {
            host: host.to_owned(),
        });
    }
    let file = fs::File::open(host).map_err(|e| io_error(host, e))?;
    // The size is what was hashed, not what the metadata said, in case the file changed since.
    let (sha256, size) = Digest::of_reader(file).map_err(|e| io_error(host, e))?;
    out.manifest
        .insert_file(at.clone(), FileEntry { sha256, size })?;
    out.sources.insert(at, host.to_owned());
    Ok(())
}

/// Adds `host` recursively. `open` holds the canonical paths of the directories being walked,
/// outermost first, to refuse a link back into one of them.
fn add_dir(
    out: &mut LocalManifest,
    host: &Path,
    at: &ManifestPath,
    open: &mut Vec<PathBuf>,
) -> Result<(), ManifestError> {
    let canonical = fs::canonicalize(host).map_err(|e| io_error(host, e))?;
    if open.contains(&canonical) {
        return Err(ManifestError::SymlinkLoop {
            host: host.to_owned(),
        });
    }
    out.manifest.insert_dir(at.clone())?;

    let mut children = fs::read_dir(host)
        .and_then(|entries| entries.collect::<Result<Vec<_>, _>>())
        .map_err(|e| io_error(host, e))?;
    // Sorted so that the first problem reported does not depend on the file system's order.
    children.sort_by_key(|entry| entry.file_name());

    open.push(canonical);
    for child in children {
        let child_host = child.path();
        let Some(name) = child.file_name().to_str().map(str::to_owned) else {
            return Err(ManifestError::NonUtf8Name { host: child_host });
        };
        let child_at = at.join(&name)?;
        let meta = metadata(&child_host)?;
        if meta.is_dir() {
            add_dir(out, &child_host, &child_at, open)?;
        } else {
            add_file(out, &child_host, &meta, child_at)?;
        }
    }
    open.pop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn path(p: &str) -> ManifestPath {
        ManifestPath::new(p).unwrap()
    }

    fn entry(content: &[u8]) -> FileEntry {
        FileEntry {
            sha256: Digest::of(content),
            size: content.len() as u64,
        }
    }

    #[test]
    fn digests_are_sha256_in_hex() {
        assert_eq!(Digest::of(b"abc").to_string(), ABC_SHA256);
        assert_eq!(Digest::of(b"").to_string(), EMPTY_SHA256);
        let big = vec![7u8; 200_000];
        assert_eq!(
            Digest::of_reader(&big[..]).unwrap(),
            (Digest::of(&big), 200_000)
        );

        let parsed: Digest = ABC_SHA256.parse().unwrap();
        assert_eq!(parsed, Digest::of(b"abc"));
        assert_eq!(ABC_SHA256.to_uppercase().parse::<Digest>().unwrap(), parsed);
        for bad in [
            "",
            "abc",
            &ABC_SHA256[1..],
            &format!("{ABC_SHA256}0"),
            &ABC_SHA256.replace('a', "g"),
        ] {
            assert!(
                matches!(
                    bad.parse::<Digest>(),
                    Err(ManifestError::InvalidDigest { .. })
                ),
                "{bad:?}"
            );
        }
        let json = serde_json::to_string(&parsed).unwrap();
        assert_eq!(json, format!("\"{ABC_SHA256}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), parsed);
    }

    #[test]
    fn validates_paths() {
        for good in [
            ".",
            "a",
            "a/b",
            "a.txt",
            ".hidden",
            "a/..b/c.",
            "with space/ü",
        ] {
            assert_eq!(ManifestPath::new(good).unwrap().as_str(), good);
        }
        for bad in [
            "", "/", "/a", "a/", "a//b", "./a", "a/.", "..", "a/../b", "a\\b", "a\0b",
        ] {
            let err = ManifestPath::new(bad).unwrap_err();
            assert!(
                matches!(&err, ManifestError::InvalidPath { path, .. } if path == bad),
                "{bad:?}"
            );
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid manifest path {bad:?}: "))
            );
        }
        assert_eq!(
            ManifestPath::new("/etc/passwd").unwrap_err().to_string(),
            "invalid manifest path \"/etc/passwd\": it is absolute; manifest paths are relative \
             to the job's root"
        );
        assert!(serde_json::from_str::<ManifestPath>(r#""../x""#).is_err());
    }

    #[test]
    fn path_navigation() {
        let p = path("a/b/c.txt");
        assert_eq!(p.parent(), Some(path("a/b")));
        assert_eq!(path("a").parent(), Some(ManifestPath::root()));
        assert_eq!(ManifestPath::root().parent(), None);
        assert_eq!(p.file_name(), Some("c.txt"));
        assert_eq!(ManifestPath::root().file_name(), None);
        assert_eq!(p.components().collect::<Vec<_>>(), ["a", "b", "c.txt"]);
        assert_eq!(ManifestPath::root().components().count(), 0);
        assert_eq!(p.ancestors().collect::<Vec<_>>(), [path("a/b"), path("a")]);
        assert_eq!(ManifestPath::root().join("x/y").unwrap(), path("x/y"));
        assert_eq!(path("a").join("b").unwrap(), path("a/b"));
        assert!(path("a").join("../b").is_err());
    }

    #[test]
    fn manifests_stay_consistent() {
        let mut m = Manifest::new();
        assert!(matches!(m.validate(), Err(ManifestError::NoFiles)));
        m.insert_file(path("a/b/c.txt"), entry(b"abc")).unwrap();
        m.insert_dir(path("a/empty")).unwrap();
        m.insert_dir(path("a")).unwrap();
        m.validate().unwrap();
        assert!(m.is_dir(&path("a")) && m.is_dir(&path("a/b")) && m.is_dir(&ManifestPath::root()));
        assert!(!m.is_dir(&path("a/b/c.txt")));
        assert_eq!(m.file(&path("a/b/c.txt")), Some(&entry(b"abc")));

        let conflict = |r: Result<(), ManifestError>, at: &str| {
            assert!(
                matches!(&r, Err(ManifestError::FileDirConflict { path }) if path.as_str() == at),
                "{r:?}"
            );
        };
        conflict(m.insert_file(path("a/b"), entry(b"")), "a/b");
        conflict(m.insert_file(path("a/b/c.txt/d"), entry(b"")), "a/b/c.txt");
        conflict(m.insert_dir(path("a/b/c.txt")), "a/b/c.txt");
        conflict(m.insert_dir(path("a/b/c.txt/d")), "a/b/c.txt");
        assert!(matches!(
            m.insert_file(path("a/b/c.txt"), entry(b"x")),
            Err(ManifestError::DuplicatePath { .. })
        ));
        assert!(matches!(
            m.insert_file(ManifestPath::root(), entry(b"x")),
            Err(ManifestError::InvalidPath { .. })
        ));
        // Failed inserts change nothing.
        assert_eq!(m.file_count(), 1);
        assert_eq!(
            m.dirs().map(ManifestPath::as_str).collect::<Vec<_>>(),
            ["a", "a/b", "a/empty"]
        );
    }

    #[test]
    fn json_round_trip_lists_only_empty_dirs() {
        let mut m = Manifest::new();
        m.insert_file(path("task.wasm"), entry(b"abc")).unwrap();
        m.insert_file(path("data/x"), entry(b"")).unwrap();
        m.insert_dir(path("data")).unwrap();
        m.insert_dir(path("out/logs")).unwrap();
        m.insert_dir(path("data-2")).unwrap();
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "files": {
                    "data/x": {"sha256": EMPTY_SHA256, "size": 0},
                    "task.wasm": {"sha256": ABC_SHA256, "size": 3},
                },
                "dirs": ["data-2", "out/logs"],
            })
        );
        let back: Manifest = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
        assert!(back.is_dir(&path("out")));

        let only_files = r#"{"files": {"a": {"sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "size": 3}}}"#;
        assert_eq!(
            serde_json::from_str::<Manifest>(only_files)
                .unwrap()
                .file_count(),
            1
        );
        let conflicting = format!(
            r#"{{"files": {{"a": {{"sha256": "{ABC_SHA256}", "size": 3}}}}, "dirs": ["a/b"]}}"#
        );
        assert!(serde_json::from_str::<Manifest>(&conflicting).is_err());
        let bad_path = format!(r#"{{"files": {{"/a": {{"sha256": "{ABC_SHA256}", "size": 3}}}}}}"#);
        assert!(serde_json::from_str::<Manifest>(&bad_path).is_err());
    }

    #[test]
    fn parses_mounts() {
        let cases = [
            ("examples/wordcount/data", "examples/wordcount/data", "data"),
            (
                "examples/wordcount/data/",
                "examples/wordcount/data/",
                "data",
            ),
            ("task.wasm", "task.wasm", "task.wasm"),
            ("build/out.wasm:task.wasm", "build/out.wasm", "task.wasm"),
            ("data:inputs/2024", "data", "inputs/2024"),
            ("data:.", "data", "."),
            ("a:b:c", "a:b", "c"),
            ("/tmp/x:/y", "/tmp/x:/y", "y"),
            ("C:\\data", "C:\\data", "C:\\data"),
        ];
        for (arg, host, at) in cases {
            match parse_mount(arg) {
                Ok(mount) => {
                    assert_eq!(mount.host, PathBuf::from(host), "{arg}");
                    assert_eq!(mount.at.as_str(), at, "{arg}");
                }
                // Only a backslash name is expected to fail, as an invalid manifest path.
                Err(ManifestError::InvalidPath { path, .. }) if at.contains('\\') => {
                    assert_eq!(path, at);
                }
                Err(e) => panic!("{arg}: {e}"),
            }
        }
        assert!(matches!(
            parse_mount("."),
            Err(ManifestError::NoName { .. })
        ));
        assert!(matches!(
            parse_mount("/"),
            Err(ManifestError::NoName { .. })
        ));
        assert!(matches!(
            parse_mount("x:../y"),
            Err(ManifestError::InvalidPath { .. })
        ));
        assert_eq!("a:b".parse::<Mount>().unwrap().at, path("b"));
    }

    /// A tree to build from:
    ///
    /// ```text
    /// module.wasm      "abc"
    /// data/a.txt       "abc"
    /// data/sub/b.txt   ""
    /// data/empty/
    /// ```
    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("module.wasm"), "abc").unwrap();
        fs::create_dir_all(root.join("data/sub")).unwrap();
        fs::create_dir_all(root.join("data/empty")).unwrap();
        fs::write(root.join("data/a.txt"), "abc").unwrap();
        fs::write(root.join("data/sub/b.txt"), "").unwrap();
        dir
    }

    #[test]
    fn builds_from_files_and_nested_dirs() {
        let dir = tree();
        let root = dir.path();
        let local = ManifestBuilder::new()
            .add_file(root.join("module.wasm"), path("task.wasm"))
            .add_dir(root.join("data"), path("data"))
            .build()
            .unwrap();
        let m = &local.manifest;
        let files: Vec<_> = m
            .files()
            .map(|(p, e)| (p.as_str(), e.sha256.to_string(), e.size))
            .collect();
        assert_eq!(
            files,
            [
                ("data/a.txt", ABC_SHA256.to_owned(), 3),
                ("data/sub/b.txt", EMPTY_SHA256.to_owned(), 0),
                ("task.wasm", ABC_SHA256.to_owned(), 3),
            ]
        );
        assert!(m.is_dir(&path("data/empty")) && m.is_dir(&path("data/sub")));
        assert_eq!(m.total_size(), 6);
        assert_eq!(m.digests().len(), 2);
        assert_eq!(
            local.sources[&path("data/sub/b.txt")],
            root.join("data/sub/b.txt")
        );
        assert_eq!(local.sources.len(), 3);
        assert_eq!(local.blobs().len(), 2);

        // The root as the mount point puts the directory's contents at the top.
        let at_root = ManifestBuilder::new()
            .add_dir(root.join("data"), ManifestPath::root())
            .build()
            .unwrap();
        assert!(at_root.manifest.file(&path("sub/b.txt")).is_some());
    }

    #[test]
    fn detects_duplicates_and_conflicts() {
        let dir = tree();
        let root = dir.path();
        let err = ManifestBuilder::new()
            .add_file(root.join("module.wasm"), path("a.txt"))
            .add_file(root.join("data/a.txt"), path("a.txt"))
            .build()
            .unwrap_err();
        assert!(matches!(&err, ManifestError::DuplicatePath { path } if path.as_str() == "a.txt"));
        assert_eq!(
            err.to_string(),
            "\"a.txt\" appears twice in the manifest: give one of them another name"
        );

        // The same directory twice at one path: its files collide.
        let err = ManifestBuilder::new()
            .add_dir(root.join("data"), path("d"))
            .add_dir(root.join("data"), path("d"))
            .build()
            .unwrap_err();
        assert!(
            matches!(&err, ManifestError::DuplicatePath { path } if path.as_str() == "d/a.txt")
        );

        // Directories merge when their files do not collide.
        let merged = ManifestBuilder::new()
            .add_dir(root.join("data/sub"), path("d"))
            .add_file(root.join("module.wasm"), path("d/module.wasm"))
            .build()
            .unwrap();
        assert_eq!(merged.manifest.file_count(), 2);

        // A file where a directory is, and a directory where a file is.
        let err = ManifestBuilder::new()
            .add_dir(root.join("data"), path("x"))
            .add_file(root.join("module.wasm"), path("x/sub"))
            .build()
            .unwrap_err();
        assert!(
            matches!(&err, ManifestError::FileDirConflict { path } if path.as_str() == "x/sub")
        );
        let err = ManifestBuilder::new()
            .add_file(root.join("module.wasm"), path("x"))
            .add_dir(root.join("data"), path("x/y"))
            .build()
            .unwrap_err();
        assert!(matches!(&err, ManifestError::FileDirConflict { path } if path.as_str() == "x"));
    }

    #[test]
    fn refuses_empty_manifests_and_wrong_kinds() {
        let dir = tree();
        let root = dir.path();
        assert!(matches!(
            ManifestBuilder::new().build(),
            Err(ManifestError::NoFiles)
        ));
        let only_empty_dir = ManifestBuilder::new()
            .add_dir(root.join("data/empty"), path("empty"))
            .build();
        assert!(matches!(only_empty_dir, Err(ManifestError::NoFiles)));

        let err = ManifestBuilder::new()
            .add_file(root.join("data"), path("data"))
            .build()
            .unwrap_err();
        assert!(matches!(err, ManifestError::NotAFile { .. }));
        let err = ManifestBuilder::new()
            .add_dir(root.join("module.wasm"), path("m"))
            .build()
            .unwrap_err();
        assert!(matches!(err, ManifestError::NotADirectory { .. }));
        let err = ManifestBuilder::new()
            .add_file(root.join("missing"), path("m"))
            .build()
            .unwrap_err();
        assert!(
            matches!(&err, ManifestError::Io { error, .. } if error.kind() == io::ErrorKind::NotFound)
        );
        assert!(err.to_string().starts_with("cannot read "), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn follows_symlinks_and_refuses_bad_ones() {
        use std::os::unix::fs::symlink;

        let dir = tree();
        let root = dir.path();
        symlink(root.join("module.wasm"), root.join("data/link.wasm")).unwrap();
        symlink(root.join("data/sub"), root.join("data/sublink")).unwrap();
        let local = ManifestBuilder::new()
            .add_dir(root.join("data"), path("data"))
            .build()
            .unwrap();
        let m = &local.manifest;
        assert_eq!(
            m.file(&path("data/link.wasm")).unwrap().sha256.to_string(),
            ABC_SHA256
        );
        assert!(m.file(&path("data/sublink/b.txt")).is_some());

        symlink(root.join("nowhere"), root.join("data/sub/broken")).unwrap();
        let err = ManifestBuilder::new()
            .add_dir(root.join("data"), path("data"))
            .build()
            .unwrap_err();
        assert!(matches!(err, ManifestError::BrokenSymlink { .. }), "{err}");
        fs::remove_file(root.join("data/sub/broken")).unwrap();

        symlink(root.join("data"), root.join("data/sub/up")).unwrap();
        let err = ManifestBuilder::new()
            .add_dir(root.join("data"), path("data"))
            .build()
            .unwrap_err();
        assert!(
            matches!(&err, ManifestError::SymlinkLoop { host } if host.ends_with("data/sub/up")),
            "{err}"
        );
    }
}
