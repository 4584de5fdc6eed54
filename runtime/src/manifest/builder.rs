//! The submitting host's side of a manifest: [`Mount`] (a `--file` or `--dir` argument),
//! [`ManifestBuilder`], which reads and hashes host files and directories into a manifest, and
//! [`LocalManifest`], the result, which remembers where each file's bytes are so that they can be
//! uploaded.
//!
//! The manifest's own rules (valid paths, no path both a file and a directory) are
//! [`Manifest`]'s, which the builder fills through its checked inserts; uploading the bytes is the
//! submitter's.

use super::{Digest, FileEntry, Manifest, ManifestError, ManifestPath};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

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
