//! The executor: the one place where guest code runs.
//!
//! It owns the wasmtime [`Engine`] (with epoch interruption and the ticker thread that drives it),
//! compiles modules into [`TaskModule`]s, and runs one [`Attempt`] at a time per call in a fresh
//! [`Store`] with a fresh WASI context built exactly as the guest contract in `wasmjob-host-api`
//! says. It turns how the attempt ended into an [`AttemptReport`] through the contract's
//! [`outcome`] function.
//!
//! It does not know about queues, leases or retries: the worker hands it an attempt and an
//! [`AttemptControl`] (through which it can cancel the attempt and read its progress) and gets a
//! report back. Nothing outside this module touches a `Store`.
//!
//! Execution uses wasmtime's async style throughout (`instantiate_async`, `call_async`, a
//! yield at every epoch tick, a tokio timeout around the whole attempt). Only that style stops a
//! guest that is blocked inside a WASI call, such as a long `poll_oneoff` sleep, at its lifetime:
//! with the synchronous style the epoch is checked only while wasm code runs.
//!
//! Every limit of an attempt is enforced here: the lifetime (epochs and the timeout), memory
//! and tables (a [`ResourceLimiter`]), output caps (the pipes in `output`), the scratch
//! directory's quota and the open-descriptor cap (the checked WASI calls in `quota`), and
//! wasmtime's own bounds on what one WASI call may make the host allocate.

mod compiled;
mod imports;
mod output;
mod quota;

use crate::limits::Limits;
use crate::manifest::Digest;
use compiled::DiskCache;
use output::{LogPipe, OutputLimitExceeded, ResultPipe};
use quota::Quota;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use wasmjob_host_api::{Ending, JOB_DIR, Outcome, SCRATCH_DIR, env, outcome};
use wasmtime::{
    Config, Engine, ExternType, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ResourceLimiter, Store, Trap, UpdateDeadline,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// The most bytes the host copies out of, or allocates for, a guest in one WASI call
/// (wasmtime's host-call fuel), unless the guest's memory limit is lower.
const MAX_HOSTCALL_BYTES: u64 = 128 << 20;

/// The most random bytes one `random_get` may ask for, unless the guest's memory limit is lower.
const MAX_RANDOM_BYTES: u64 = 64 << 20;

/// The most tables one attempt's module may define or import.
const MAX_TABLES: u32 = 4;

/// How many emptied scratch directories an executor keeps for reuse.
const MAX_SPARE_SCRATCH_DIRS: usize = 64;

/// How many compiled modules an executor keeps in memory.
const MAX_CACHED_MODULES: usize = 64;

/// The most lines of a trap's description (with its wasm backtrace) added to the log.
const MAX_NOTE_LINES: usize = 24;

/// How the executor is set up; the defaults suit a worker host.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// How often the epoch advances: the granularity at which lifetimes and cancellations are
    /// noticed while wasm code runs.
    pub epoch_tick: Duration,
    /// The most native stack a guest's wasm frames may use before it traps with a stack
    /// overflow.
    pub max_wasm_stack: usize,
    /// Where scratch directories are created; the system's temporary directory if `None`.
    pub scratch_root: Option<PathBuf>,
    /// The largest module the executor compiles; a larger one is an invalid module.
    pub max_module_size: u64,
    /// How long compiling one module may take; a module that takes longer is an invalid module.
    pub compile_timeout: Duration,
    /// Where compiled modules are kept between runs; none are kept if `None`.
    pub module_cache_dir: Option<PathBuf>,
    /// How many instances wasmtime's pooling allocator keeps ready, so that an attempt reuses
    /// the memory, tables and stack of an earlier one instead of mapping fresh ones. At least
    /// the number of attempts run at once; 0 maps fresh ones for every attempt.
    pub pooled_instances: u32,
    /// The largest linear memory an attempt may be given (the size of a pool slot).
    pub max_memory: u64,
    /// The most table elements an attempt may be given (the size of a pool slot's tables).
    pub max_table_elements: u32,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            epoch_tick: Duration::from_millis(10),
            max_wasm_stack: 512 << 10,
            scratch_root: None,
            max_module_size: DEFAULT_MAX_MODULE_SIZE,
            compile_timeout: DEFAULT_COMPILE_TIMEOUT,
            module_cache_dir: None,
            pooled_instances: 0,
            max_memory: Limits::MAX.memory,
            max_table_elements: Limits::MAX.table_elements,
        }
    }
}

/// The largest module compiled unless the worker says otherwise: 128 MiB.
pub const DEFAULT_MAX_MODULE_SIZE: u64 = 128 << 20;

/// How long a compilation may take unless the worker says otherwise: 60 s.
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(60);

/// A failure of the host while running an attempt: the task is not to blame and the attempt
/// should be handed back, not counted against the task.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// The wasmtime engine could not be configured.
    #[error("cannot set up the wasmtime engine: {0}")]
    Engine(String),
    /// The attempt's scratch directory could not be created.
    #[error("cannot create a scratch directory under {root}: {source}")]
    Scratch {
        /// The directory it was to be created in.
        root: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The compiled-module cache directory could not be created.
    #[error("cannot use {path} as the compiled-module cache: {source}")]
    ModuleCache {
        /// The directory.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A host directory could not be opened for the guest.
    #[error("cannot open {path} for the guest: {reason}")]
    Preopen {
        /// The host directory.
        path: PathBuf,
        /// Why it failed.
        reason: String,
    },
}

/// A module that cannot be run: it does not compile, is a component, needs imports the host
/// does not provide or has no `_start`. The task fails as fatal with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidModule(pub String);

impl From<InvalidModule> for Ending {
    fn from(invalid: InvalidModule) -> Ending {
        Ending::InvalidModule(invalid.0)
    }
}

/// A compiled, linked module, ready to be instantiated once per attempt. Cheap to clone.
#[derive(Clone)]
pub struct TaskModule {
    pre: InstancePre<TaskState>,
}

/// Everything one attempt of a task is run with.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    /// The job's id.
    pub job_id: &'a str,
    /// The job's name.
    pub job_name: &'a str,
    /// This attempt's task id.
    pub task_id: &'a str,
    /// The task value.
    pub value: u64,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// The module's path in the manifest, passed as `argv[0]`.
    pub script: &'a str,
    /// The job's metadata, passed as `WASMJOB_META_*` variables.
    pub metadata: &'a BTreeMap<String, String>,
    /// The host directory holding the job's manifest tree.
    pub job_dir: &'a Path,
    /// The job's working directory inside `job_dir`, relative (`"."` for the root).
    pub workdir: &'a str,
    /// The attempt's limits.
    pub limits: Limits,
}

/// Shared between the executor running an attempt and whoever watches it (the worker's
/// heartbeat): the way to stop the attempt early and to read the progress it reports.
#[derive(Debug, Default)]
pub struct AttemptControl {
    /// Set once the attempt should stop; the guest can see it through the `cancelled` import.
    cancelled: AtomicBool,
    /// Wakes the executor when `cancelled` is set.
    cancel_notify: Notify,
    /// The latest progress the guest reported and nobody has read yet.
    progress: Mutex<Option<Vec<u8>>>,
}

impl AttemptControl {
    /// Asks the attempt to stop. The guest sees it at once through the `cancelled` import and is
    /// stopped within one epoch tick if it does not end by itself.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
        self.cancel_notify.notify_waiters();
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Takes the latest progress reported since the last call, if any.
    pub fn take_progress(&self) -> Option<Vec<u8>> {
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn set_progress(&self, bytes: Vec<u8>) {
        *self.progress.lock().unwrap_or_else(|e| e.into_inner()) = Some(bytes);
    }

    async fn cancelled(&self) {
        loop {
            // Registered before the flag is read, so a cancel between the two is not missed.
            let notified = self.cancel_notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptReport {
    /// How the attempt ended.
    pub ending: Ending,
    /// What that means for the task, per the contract.
    pub outcome: Outcome,
    /// The guest's stdout.
    pub result: Vec<u8>,
    /// The tail of the guest's stderr, with a closing `wasmjob:` line when the host stopped it.
    pub log: Vec<u8>,
    /// How many bytes of stderr were dropped before the tail.
    pub log_dropped: u64,
    /// How long the attempt took, instantiation included.
    pub duration: Duration,
}

/// Runs task attempts. One per worker; cheap to share behind an `Arc`.
pub struct Executor {
    engine: Engine,
    linker: Linker<TaskState>,
    scratch_root: PathBuf,
    max_module_size: u64,
    compile_timeout: Duration,
    /// Linked modules by content, so that jobs sharing a module compile it once per executor.
    /// Invalid modules are kept too: they fail the same way every time.
    modules: Mutex<HashMap<Digest, Result<TaskModule, InvalidModule>>>,
    disk: Option<DiskCache>,
    compiled: AtomicU64,
    loaded: AtomicU64,
    /// Empty scratch directories left by attempts that did not use them.
    spare_scratch: Mutex<Vec<tempfile::TempDir>>,
    _ticker: EpochTicker,
}

/// How an executor came by its modules so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModuleStats {
    /// Modules compiled from their bytes.
    pub compiled: u64,
    /// Modules loaded from the disk cache instead.
    pub loaded: u64,
}

impl Executor {
    /// Sets up the engine, its epoch ticker and the linker with WASI preview 1 and the
    /// `wasmjob_v1` imports.
    pub fn new(config: ExecutorConfig) -> Result<Self, ExecutorError> {
        let mut wasmtime_config = Config::new();
        wasmtime_config.epoch_interruption(true);
        wasmtime_config.max_wasm_stack(config.max_wasm_stack);
        // Host calls run on the same fiber stack as the guest, so leave them room above it.
        wasmtime_config.async_stack_size(config.max_wasm_stack + (1 << 20));
        if config.pooled_instances > 0 {
            let instances = config.pooled_instances;
            let mut pool = PoolingAllocationConfig::new();
            pool.total_core_instances(instances)
                .total_memories(instances)
                .total_tables(instances * MAX_TABLES)
                .total_stacks(instances)
                .total_component_instances(0)
                .max_memories_per_module(1)
                .max_tables_per_module(MAX_TABLES)
                .max_memory_size(usize::try_from(config.max_memory).unwrap_or(usize::MAX))
                .table_elements(config.max_table_elements as usize)
                .max_core_instance_size(4 << 20);
            wasmtime_config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine =
            Engine::new(&wasmtime_config).map_err(|e| ExecutorError::Engine(e.to_string()))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut TaskState| {
            &mut state.wasi
        })
        .and_then(|()| quota::add_to_linker(&mut linker))
        .and_then(|()| imports::add_to_linker(&mut linker))
        .map_err(|e| ExecutorError::Engine(e.to_string()))?;

        let disk = match &config.module_cache_dir {
            Some(dir) => {
                DiskCache::open(dir, &engine).map_err(|source| ExecutorError::ModuleCache {
                    path: dir.clone(),
                    source,
                })?
            }
            None => None,
        };
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick);
        Ok(Executor {
            engine,
            linker,
            scratch_root: config.scratch_root.unwrap_or_else(std::env::temp_dir),
            max_module_size: config.max_module_size,
            compile_timeout: config.compile_timeout,
            modules: Mutex::default(),
            disk,
            compiled: AtomicU64::new(0),
            loaded: AtomicU64::new(0),
            spare_scratch: Mutex::default(),
            _ticker: ticker,
        })
    }

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

    /// An empty scratch directory: a spare one, or a new one.
    fn scratch_dir(&self) -> Result<tempfile::TempDir, ExecutorError> {
        if let Some(spare) = self
            .spare_scratch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
        {
            return Ok(spare);
        }
        tempfile::Builder::new()
            .prefix("wasmjob-scratch-")
            .tempdir_in(&self.scratch_root)
            .map_err(|source| ExecutorError::Scratch {
                root: self.scratch_root.clone(),
                source,
            })
    }

    /// Keeps a scratch directory for the next attempt if its guest never asked to create
    /// anything in it (see `Quota::touched`); removes it otherwise. Most tasks never touch their
    /// scratch, and making and removing a directory per attempt, or even reading one to see it
    /// empty, was a good part of an attempt's cost.
    fn return_scratch_dir(&self, scratch: tempfile::TempDir, touched: bool) {
        if !touched {
            let mut spare = self.spare_scratch.lock().unwrap_or_else(|e| e.into_inner());
            if spare.len() < MAX_SPARE_SCRATCH_DIRS {
                spare.push(scratch);
                return;
            }
        }
        // Best effort: a failure leaves litter, not a wrong outcome.
        let _ = scratch.close();
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

    /// Runs one attempt to its end: exit, trap, lifetime, or cancellation through `control`.
    ///
    /// An `Err` is the host's failure, not the task's; the attempt did not count.
    pub async fn run(
        &self,
        module: &TaskModule,
        attempt: &Attempt<'_>,
        control: &Arc<AttemptControl>,
    ) -> Result<AttemptReport, ExecutorError> {
        let started = Instant::now();
        let scratch = self.scratch_dir()?;
        let result = ResultPipe::new(attempt.limits.result_cap);
        let log = LogPipe::new(attempt.limits.log_cap);
        let wasi = wasi_context(attempt, scratch.path(), &result, &log)?;

        let limits = &attempt.limits;
        let mut store = Store::new(
            &self.engine,
            TaskState {
                wasi,
                limiter: TaskLimiter::new(limits.memory, limits.table_elements),
                quota: Quota::new(scratch.path(), limits.scratch_bytes, limits.scratch_files),
                control: Arc::clone(control),
                deadline: started + limits.lifetime,
            },
        );
        store.limiter(|state| &mut state.limiter);
        // What the host may allocate for the guest in one call never exceeds what the guest
        // may hold itself.
        store.set_hostcall_fuel(limits.memory.min(MAX_HOSTCALL_BYTES) as usize);
        // Yield to tokio at every tick so the timeout and cancellation below get to run even
        // while the guest spins in pure wasm.
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        store.set_epoch_deadline(1);

        let ending = {
            let call = async {
                let instance = module.pre.instantiate_async(&mut store).await?;
                let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                start.call_async(&mut store, ()).await
            };
            tokio::select! {
                biased;
                () = control.cancelled() => Ending::Cancelled,
                ran = tokio::time::timeout(attempt.limits.lifetime, call) => match ran {
                    Err(_elapsed) => Ending::LifetimeExceeded,
                    Ok(Ok(())) => Ending::Exited(0),
                    Ok(Err(error)) => {
                        let ending = ending_of(&error);
                        if !matches!(ending, Ending::Exited(_)) {
                            log.note(&describe(&error));
                        }
                        ending
                    }
                },
            }
        };
        let memory_refused = store.data().limiter.refused;
        let scratch_refused = store.data().quota.refused;
        let scratch_touched = store.data().quota.touched;
        drop(store);
        self.return_scratch_dir(scratch, scratch_touched);

        let ending = match ending {
            Ending::Exited(0) => ending,
            Ending::Exited(_) | Ending::Trapped(_) if memory_refused => Ending::MemoryLimitExceeded,
            Ending::Exited(_) | Ending::Trapped(_) if scratch_refused => {
                Ending::ScratchLimitExceeded
            }
            other => other,
        };
        match &ending {
            Ending::LifetimeExceeded => log.note(&format!(
                "stopped: lifetime of {} exceeded",
                humantime::format_duration(attempt.limits.lifetime)
            )),
            Ending::MemoryLimitExceeded => log.note(&format!(
                "stopped: the guest asked for more than its memory limit of {} bytes",
                attempt.limits.memory
            )),
            Ending::ScratchLimitExceeded => log.note(&format!(
                "stopped: the guest wrote more than its scratch limit of {} bytes or {} files",
                attempt.limits.scratch_bytes, attempt.limits.scratch_files
            )),
            Ending::Cancelled => log.note("stopped: the task was cancelled"),
            _ => {}
        }
        let (log, log_dropped) = log.take();
        Ok(AttemptReport {
            outcome: outcome(&ending),
            ending,
            result: result.take(),
            log,
            log_dropped,
            duration: started.elapsed(),
        })
    }
}

/// The state of one attempt's store.
pub(crate) struct TaskState {
    wasi: WasiP1Ctx,
    limiter: TaskLimiter,
    quota: Quota,
    control: Arc<AttemptControl>,
    deadline: Instant,
}

/// Builds the attempt's WASI context: nothing inherited from the host, only what the contract
/// names.
fn wasi_context(
    attempt: &Attempt<'_>,
    scratch: &Path,
    result: &ResultPipe,
    log: &LogPipe,
) -> Result<WasiP1Ctx, ExecutorError> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .arg(attempt.script)
        .arg(attempt.value.to_string())
        .env(env::JOB_ID, attempt.job_id)
        .env(env::JOB_NAME, attempt.job_name)
        .env(env::TASK_ID, attempt.task_id)
        .env(env::TASK_VALUE, attempt.value.to_string())
        .env(env::ATTEMPT, attempt.attempt.to_string())
        .env(env::JOB_DIR, JOB_DIR)
        .env(env::SCRATCH_DIR, SCRATCH_DIR)
        .stdout(result.clone())
        .stderr(log.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .max_random_size(attempt.limits.memory.min(MAX_RANDOM_BYTES));
    for (key, value) in attempt.metadata {
        builder.env(format!("{}{key}", env::META_PREFIX), value);
    }
    let workdir = attempt.job_dir.join(attempt.workdir);
    for (host, guest, perms) in [
        (attempt.job_dir, JOB_DIR, FsPerms::ReadOnly),
        // The working directory, preopened as `.`, is where relative paths resolve.
        (workdir.as_path(), ".", FsPerms::ReadOnly),
        (scratch, SCRATCH_DIR, FsPerms::ReadWrite),
    ] {
        builder
            .preopened_dir(host, guest, perms)
            .map_err(|e| ExecutorError::Preopen {
                path: host.to_path_buf(),
                reason: e.to_string(),
            })?;
    }
    Ok(builder.build_p1())
}

/// How an attempt that returned an error ended.
fn ending_of(error: &wasmtime::Error) -> Ending {
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        Ending::Exited(exit.0)
    } else if error.downcast_ref::<OutputLimitExceeded>().is_some() {
        Ending::OutputLimitExceeded
    } else if let Some(trap) = error.downcast_ref::<Trap>() {
        Ending::Trapped(trap_name(*trap))
    } else {
        // A host call refused the guest (a pointer out of bounds, say): a trap by another name.
        Ending::Trapped(error.root_cause().to_string())
    }
}

/// The short, stable name of a trap, as users will see it in a task's reason.
fn trap_name(trap: Trap) -> String {
    let name = match trap {
        Trap::StackOverflow => "stack overflow",
        Trap::UnreachableCodeReached => "unreachable",
        Trap::IntegerDivisionByZero => "integer divide by zero",
        Trap::IntegerOverflow => "integer overflow",
        Trap::MemoryOutOfBounds => "out of bounds memory access",
        Trap::TableOutOfBounds => "out of bounds table access",
        Trap::BadConversionToInteger => "invalid conversion to integer",
        Trap::IndirectCallToNull => "uninitialized element",
        Trap::BadSignature => "indirect call type mismatch",
        other => {
            return other
                .to_string()
                .trim_start_matches("wasm trap: ")
                .to_owned();
        }
    };
    name.to_owned()
}

/// The error with its wasm backtrace, cut to a size that leaves room for the guest's own log.
fn describe(error: &wasmtime::Error) -> String {
    // The chain of messages (the wasm backtrace is one of them), not `{:?}`: with RUST_BACKTRACE
    // set that also resolves the host's own backtrace, which loads the binary's debug info and
    // cost a debug-build worker 200 MiB for one stack-overflow trap.
    let full: Vec<String> = error.chain().map(|cause| cause.to_string()).collect();
    let full = full.join("\n");
    let mut lines: Vec<&str> = full.lines().take(MAX_NOTE_LINES + 1).collect();
    if lines.len() > MAX_NOTE_LINES {
        lines.truncate(MAX_NOTE_LINES);
        lines.push("…");
    }
    lines.join("\n")
}

/// Whether `wasm` is a binary WebAssembly component (layer 1) rather than a core module.
fn is_component(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm.starts_with(b"\0asm") && wasm[6..8] == [1, 0]
}

/// Enforces an attempt's memory and table limits, and remembers whether it refused the guest,
/// so that a failure that follows is reported as the memory limit rather than as its symptom.
struct TaskLimiter {
    memory: usize,
    table_elements: usize,
    refused: bool,
}

impl TaskLimiter {
    fn new(memory: u64, table_elements: u32) -> Self {
        TaskLimiter {
            memory: usize::try_from(memory).unwrap_or(usize::MAX),
            table_elements: table_elements as usize,
            refused: false,
        }
    }
}

impl ResourceLimiter for TaskLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory && maximum.is_none_or(|max| desired <= max);
        self.refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.table_elements && maximum.is_none_or(|max| desired <= max);
        self.refused |= !allowed;
        Ok(allowed)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        MAX_TABLES as usize
    }
}

/// Advances the engine's epoch at a fixed interval until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("wasmjob-epoch".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                }
            })
            .expect("spawning the epoch ticker thread");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
