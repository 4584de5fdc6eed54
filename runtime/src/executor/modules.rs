//! Compiling modules into [`TaskModule`]s: the checks a module must pass before it is compiled
//! (its size, its magic bytes, not a component) and after (a `_start () -> ()`), compiling on a
//! blocking thread within the executor's time budget, linking, and the executor's in-memory
//! cache of linked modules by content, invalid ones included.
//!
//! Compiled modules on disk are `compiled`'s; the linker is `sandbox`'s; running a module is the
//! executor's.

use super::{Executor, InvalidModule, TaskModule};
use crate::manifest::Digest;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use wasmtime::{ExternType, Module};

/// How many compiled modules an executor keeps in memory.
const MAX_CACHED_MODULES: usize = 64;

/// How an executor came by its modules so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModuleStats {
    /// Modules compiled from their bytes.
    pub compiled: u64,
    /// Modules loaded from the disk cache instead.
    pub loaded: u64,
}

impl Executor {
    /// The linked module of these bytes: from memory, from the disk cache, or compiled on a
    /// blocking thread within the executor's size and time budgets. A compilation that runs out
    /// of time goes on in the background (Cranelift cannot be interrupted), but its module is
    /// refused. Two callers asking for the same new module at once may both compile it.
    pub async fn compile_within_budget(
        self: &Arc<Self>,
        wasm: Vec<u8>,
    ) -> Result<TaskModule, InvalidModule> {
        let digest = Digest::of(&wasm);
        if let Some(known) = self.lock_modules().get(&digest) {
            return known.clone();
        }
        let executor = Arc::clone(self);
        let compiling =
            tokio::task::spawn_blocking(move || executor.compile_with_digest(&wasm, Some(digest)));
        let compiled = match tokio::time::timeout(self.compile_timeout, compiling).await {
            Ok(Ok(compiled)) => compiled,
            Ok(Err(panicked)) => Err(InvalidModule(format!("compiling panicked: {panicked}"))),
            Err(_elapsed) => Err(InvalidModule(format!(
                "compiling took longer than the worker's budget of {}",
                humantime::format_duration(self.compile_timeout)
            ))),
        };
        let mut modules = self.lock_modules();
        if modules.len() >= MAX_CACHED_MODULES && !modules.contains_key(&digest) {
            // Any one will do: a module dropped here is loaded from disk if it comes back.
            if let Some(&evicted) = modules.keys().next() {
                modules.remove(&evicted);
            }
        }
        modules.entry(digest).or_insert(compiled).clone()
    }

    /// The module of this content if the executor holds it already (compiled, or known to be
    /// invalid).
    pub fn module_of(&self, digest: &Digest) -> Option<Result<TaskModule, InvalidModule>> {
        self.lock_modules().get(digest).cloned()
    }

    fn lock_modules(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Digest, Result<TaskModule, InvalidModule>>> {
        self.modules.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Compiles and links a module. CPU-heavy: call it off the async runtime's worker threads.
    pub fn compile(&self, wasm: &[u8]) -> Result<TaskModule, InvalidModule> {
        let digest = self.disk.as_ref().map(|_| Digest::of(wasm));
        self.compile_with_digest(wasm, digest)
    }

    /// [`compile`](Self::compile), with the module's digest when the caller has it already
    /// (the disk cache needs it; hashing a large module twice is measurable).
    fn compile_with_digest(
        &self,
        wasm: &[u8],
        digest: Option<Digest>,
    ) -> Result<TaskModule, InvalidModule> {
        if wasm.len() as u64 > self.max_module_size {
            return Err(InvalidModule(format!(
                "the module is {} bytes, above the worker's limit of {} bytes",
                wasm.len(),
                self.max_module_size
            )));
        }
        if wasm.is_empty() {
            return Err(InvalidModule("the module is empty (0 bytes)".into()));
        }
        if !wasm.starts_with(b"\0asm") && std::str::from_utf8(wasm).is_err() {
            return Err(InvalidModule(
                "not a WebAssembly module: it neither starts with the `\\0asm` magic bytes nor is \
                 WebAssembly text"
                    .into(),
            ));
        }
        if is_component(wasm) {
            return Err(InvalidModule(
                "this is a WebAssembly component, not a core module; build the task for \
                 wasm32-wasip1"
                    .into(),
            ));
        }
        let module = self.load_or_compile(wasm, digest)?;
        match module.get_export("_start") {
            Some(ExternType::Func(f)) if f.params().len() == 0 && f.results().len() == 0 => {}
            Some(_) => {
                return Err(InvalidModule(
                    "`_start` is not a function `() -> ()`".into(),
                ));
            }
            None => {
                return Err(InvalidModule(
                    "the module has no `_start` export; a task must be a WASI command".into(),
                ));
            }
        }
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| InvalidModule(format!("{e:#}")))?;
        Ok(TaskModule { pre })
    }

    /// How many modules were compiled and how many loaded from the disk cache.
    pub fn module_stats(&self) -> ModuleStats {
        ModuleStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            loaded: self.loaded.load(Ordering::Relaxed),
        }
    }

    /// The module from the disk cache, or compiled (and then cached).
    fn load_or_compile(
        &self,
        wasm: &[u8],
        digest: Option<Digest>,
    ) -> Result<Module, InvalidModule> {
        if let (Some(disk), Some(digest)) = (&self.disk, &digest)
            && let Some(module) = disk.load(&self.engine, digest)
        {
            self.loaded.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%digest, "loaded a compiled module from the cache");
            return Ok(module);
        }
        let started = Instant::now();
        let module =
            Module::new(&self.engine, wasm).map_err(|e| InvalidModule(format!("{e:#}")))?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            bytes = wasm.len(),
            ms = started.elapsed().as_millis() as u64,
            "compiled a module"
        );
        if let (Some(disk), Some(digest)) = (&self.disk, &digest) {
            disk.store(digest, &module);
        }
        Ok(module)
    }
}

/// Whether `wasm` is a binary WebAssembly component (layer 1) rather than a core module.
fn is_component(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm.starts_with(b"\0asm") && wasm[6..8] == [1, 0]
}
