//! The compiled-module cache on disk, so that a worker host compiles a module once, not once per
//! process start.
//!
//! A module is stored as `<module sha256>-<engine fingerprint>.cwasm`: the bytes of
//! `Module::serialize`, preceded by their own sha256. The fingerprint is the sha256 of the
//! engine's compilation settings (wasmtime's compatibility hash, fed to sha256 rather than to
//! `DefaultHasher`, whose output may change between Rust releases). Files of other fingerprints
//! are removed when the cache is opened: no engine of this build can load them. Files are
//! written to a temporary name and renamed into place, so a reader sees a whole file or none.
//! A file that does not hash to its header (a torn or rotted disk, an edit by hand) or that
//! wasmtime refuses (a foreign engine) is removed and the module compiled again.
//!
//! Loading a file runs it as native code, so whoever can write the directory can run code in
//! the worker. A directory owned by another user, or writable by group or others, is not used
//! (the worker compiles every module instead, and says why once); nor is a file in it owned by
//! another user.
//!
//! The in-memory side (one linked module per content, shared by every job that uses it) is the
//! executor's; this module only reads and writes files.

use crate::manifest::Digest;
use sha2::{Digest as _, Sha256};
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use wasmtime::{Engine, Module};

/// The cache directory of one engine.
#[derive(Debug)]
pub(super) struct DiskCache {
    dir: PathBuf,
    fingerprint: String,
    /// The user this process writes files as: only files of theirs are loaded.
    owner: u32,
}

impl DiskCache {
    /// A cache in `dir` (created if missing) for modules compiled by `engine`; `None`, with a
    /// warning, when the directory is not safe to load native code from.
    pub(super) fn open(dir: &Path, engine: &Engine) -> std::io::Result<Option<Self>> {
        std::fs::create_dir_all(dir)?;
        let owner = owner_of_new_files(dir)?;
        if let Some(reason) = unsafe_reason(dir, owner)? {
            tracing::warn!(
                dir = %dir.display(),
                "not using the compiled-module cache: {reason}; every module is compiled afresh"
            );
            return Ok(None);
        }
        let cache = DiskCache {
            dir: dir.to_path_buf(),
            fingerprint: fingerprint(engine),
            owner,
        };
        cache.remove_foreign();
        Ok(Some(cache))
    }

    /// Removes the compiled modules of other engines: this build cannot load them, and they
    /// would stay for ever.
    fn remove_foreign(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let own = format!("-{}.cwasm", self.fingerprint);
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".cwasm") && !name.ends_with(&own) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn path(&self, module: &Digest) -> PathBuf {
        self.dir
            .join(format!("{module}-{}.cwasm", self.fingerprint))
    }

    /// The module stored for this content, if there is a sound one.
    pub(super) fn load(&self, engine: &Engine, module: &Digest) -> Option<Module> {
        let path = self.path(module);
        let owned = std::fs::metadata(&path).ok()?.uid() == self.owner;
        if !owned {
            tracing::warn!(path = %path.display(), "ignoring a compiled module another user wrote");
            return None;
        }
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

/// The engine's fingerprint: the sha256, in hex, of wasmtime's compatibility hash, stable for
/// one build of wasmtime and one engine configuration, which is all a compiled module is valid
/// for.
fn fingerprint(engine: &Engine) -> String {
    /// Feeds what a `Hash` writes into sha256.
    struct Sha256Hasher(Sha256);
    impl Hasher for Sha256Hasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            unreachable!("only the sha256 is read")
        }
    }
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest: [u8; 32] = hasher.0.finalize().into();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The user id that files this process creates in `dir` get.
fn owner_of_new_files(dir: &Path) -> std::io::Result<u32> {
    Ok(tempfile::tempfile_in(dir)?.metadata()?.uid())
}

/// Why `dir` is not safe to load native code from, if it is not: someone other than `owner`
/// could have written into it.
fn unsafe_reason(dir: &Path, owner: u32) -> std::io::Result<Option<String>> {
    let meta = std::fs::metadata(dir)?;
    Ok(if meta.uid() != owner {
        Some(format!(
            "it is owned by user {}, not by this worker's user {owner}",
            meta.uid()
        ))
    } else if meta.mode() & 0o022 != 0 {
        Some(format!(
            "it is writable by {} (mode {:o}): chmod go-w it",
            if meta.mode() & 0o002 != 0 {
                "every user"
            } else {
                "its group"
            },
            meta.mode() & 0o777
        ))
    } else {
        None
    })
}

/// Loads a module that `Module::serialize` wrote.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, bytes: &[u8]) -> Option<Module> {
    // SAFETY: wasmtime runs these bytes as native code without checking them. They come only
    // from `DiskCache::store`, i.e. from `Module::serialize` of this worker or another of the
    // same engine fingerprint, in a directory only the worker's user can write (checked when the
    // cache is opened) and a file of that user's (checked before loading), and they matched the
    // sha256 written with them, so a torn or rotted file is never loaded. wasmtime itself refuses
    // bytes of another version or configuration. (Whoever can write the cache directory can also
    // replace the wasmjob binary.)
    unsafe { Module::deserialize(engine, bytes) }.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn wat_module(engine: &Engine) -> Module {
        Module::new(engine, "(module)").unwrap()
    }

    #[test]
    fn the_fingerprint_is_a_sha256_that_names_the_engine_settings() {
        let a = fingerprint(&Engine::default());
        assert_eq!(
            a,
            fingerprint(&Engine::default()),
            "stable for one configuration"
        );
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        assert_ne!(a, fingerprint(&Engine::new(&config).unwrap()));
    }

    #[test]
    fn opening_removes_the_modules_of_other_engines_only() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let module = Digest::of(b"(module)");
        let cache = DiskCache::open(dir.path(), &engine).unwrap().unwrap();
        cache.store(&module, &wat_module(&engine));
        let foreign = dir.path().join(format!("{module}-0123456789abcdef.cwasm"));
        let other = dir.path().join("notes.txt");
        std::fs::write(&foreign, b"from an older wasmjob").unwrap();
        std::fs::write(&other, b"not ours to judge").unwrap();

        let cache = DiskCache::open(dir.path(), &engine).unwrap().unwrap();
        assert!(!foreign.exists());
        assert!(other.exists());
        assert!(
            cache.load(&engine, &module).is_some(),
            "its own module stays"
        );
    }

    #[test]
    fn a_directory_others_can_write_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        for mode in [0o777, 0o775] {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(
                DiskCache::open(dir.path(), &engine).unwrap().is_none(),
                "{mode:o}"
            );
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(DiskCache::open(dir.path(), &engine).unwrap().is_some());
    }

    #[test]
    fn a_directory_or_file_of_another_user_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let owner = owner_of_new_files(dir.path()).unwrap();
        assert_eq!(unsafe_reason(dir.path(), owner).unwrap(), None);
        let reason = unsafe_reason(dir.path(), owner + 1).unwrap().unwrap();
        assert!(reason.contains("owned by user"), "{reason}");

        // A module file planted by someone else is not loaded, whatever it holds.
        let engine = Engine::default();
        let module = Digest::of(b"(module)");
        let cache = DiskCache::open(dir.path(), &engine).unwrap().unwrap();
        cache.store(&module, &wat_module(&engine));
        let planted = DiskCache {
            owner: owner + 1,
            ..cache
        };
        assert!(planted.load(&engine, &module).is_none());
        assert!(
            planted.path(&module).exists(),
            "another user's file is left alone"
        );
    }
}
