//! The compiled-module cache on disk, so that a worker host compiles a module once, not once per
//! process start.
//!
//! A module is stored as `<module sha256>-<engine fingerprint>.cwasm`: the bytes of
//! `Module::serialize`, preceded by their own sha256. The fingerprint names the engine's
//! compilation settings (wasmtime's compatibility hash), so workers of other versions or
//! settings sharing the directory keep files of their own. Files are written to a temporary
//! name and renamed into place, so a reader sees a whole file or none. A file that does not
//! hash to its header (a torn or rotted disk, an edit by hand) or that wasmtime refuses (a
//! foreign engine) is removed and the module compiled again.
//!
//! The in-memory side (one linked module per content, shared by every job that uses it) is the
//! executor's; this module only reads and writes files.

use crate::manifest::Digest;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::{Engine, Module};

/// The cache directory of one engine.
#[derive(Debug)]
pub(super) struct DiskCache {
    dir: PathBuf,
    fingerprint: String,
}

impl DiskCache {
    /// A cache in `dir` (created if missing) for modules compiled by `engine`.
    pub(super) fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        // Stable for one build of wasmtime and one engine configuration, which is all a
        // compiled module is valid for.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(DiskCache {
            dir: dir.to_path_buf(),
            fingerprint: format!("{:016x}", hasher.finish()),
        })
    }

    fn path(&self, module: &Digest) -> PathBuf {
        self.dir
            .join(format!("{module}-{}.cwasm", self.fingerprint))
    }

    /// The module stored for this content, if there is a sound one.
    pub(super) fn load(&self, engine: &Engine, module: &Digest) -> Option<Module> {
        let path = self.path(module);
        let file = std::fs::read(&path).ok()?;
        let sound = file.len() > 32 && Digest::of(&file[32..]).as_bytes()[..] == file[..32];
        if sound && let Some(module) = deserialize(engine, &file[32..]) {
            return Some(module);
        }
        tracing::warn!(path = %path.display(), "ignoring a corrupt or foreign compiled module");
        let _ = std::fs::remove_file(&path);
        None
    }

    /// Stores a compiled module. Best effort: a cache that cannot be written costs a later
    /// compilation, nothing else.
    pub(super) fn store(&self, module: &Digest, compiled: &Module) {
        let Ok(bytes) = compiled.serialize() else {
            return;
        };
        let write = || -> std::io::Result<()> {
            let mut temp = tempfile::NamedTempFile::new_in(&self.dir)?;
            std::io::Write::write_all(&mut temp, Digest::of(&bytes).as_bytes())?;
            std::io::Write::write_all(&mut temp, &bytes)?;
            temp.persist(self.path(module))?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::warn!(dir = %self.dir.display(), "cannot store a compiled module: {e}");
        }
    }
}

/// Loads a module that `Module::serialize` wrote.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, bytes: &[u8]) -> Option<Module> {
    // SAFETY: wasmtime runs these bytes as native code without checking them. They come only
    // from `DiskCache::store`, i.e. from `Module::serialize` of this worker or another of the
    // same engine fingerprint, in a directory only the worker's user writes, and they matched the
    // sha256 written with them, so a torn or rotted file is never loaded. wasmtime itself refuses
    // bytes of another version or configuration. (Whoever can write the cache directory can also
    // replace the wasmjob binary.)
    unsafe { Module::deserialize(engine, bytes) }.ok()
}
