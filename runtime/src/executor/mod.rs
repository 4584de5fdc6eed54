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
//! and tables (a [`ResourceLimiter`](wasmtime::ResourceLimiter) in `sandbox`), output caps (the
//! pipes in `output`), the scratch directory's quota and the open-descriptor cap (the checked
//! WASI calls in `quota`), and wasmtime's own bounds on what one WASI call may make the host
//! allocate.
//!
//! This file is the seam: the executor, its run of one attempt and the types the worker sees.
//! The rest is one concept a file: `engine` (its configuration, the pooling allocator and the
//! epoch ticker), `modules` (compiling, checking and caching modules), `compiled` (compiled
//! modules on disk), `sandbox` (a store's state, the linker, the WASI context, the limiter and
//! the scratch directories), `imports` (the `wasmjob_v1` imports), `quota`, `output`, and
//! `ending` (how an attempt that returned an error ended).

mod compiled;
mod ending;
mod engine;
mod imports;
mod modules;
mod output;
mod quota;
mod sandbox;

pub use engine::{DEFAULT_COMPILE_TIMEOUT, DEFAULT_MAX_MODULE_SIZE, ExecutorConfig};
pub use modules::ModuleStats;

use crate::limits::Limits;
use crate::manifest::Digest;
use compiled::DiskCache;
use ending::{describe, ending_of};
use engine::EpochTicker;
use output::{LogPipe, ResultPipe};
use quota::Quota;
use sandbox::{TaskLimiter, TaskState, wasi_context};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use wasmjob_host_api::{Ending, Outcome, outcome};
use wasmtime::{Engine, InstancePre, Linker, Store, UpdateDeadline};

/// The most bytes the host copies out of, or allocates for, a guest in one WASI call
/// (wasmtime's host-call fuel), unless the guest's memory limit is lower.
const MAX_HOSTCALL_BYTES: u64 = 128 << 20;

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

impl Executor {
    /// Sets up the engine, its epoch ticker and the linker with WASI preview 1 and the
    /// `wasmjob_v1` imports.
    pub fn new(config: ExecutorConfig) -> Result<Self, ExecutorError> {
        let engine = engine::build(&config)?;
        let linker = sandbox::linker(&engine)?;

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
