//! The sandbox of one attempt: the state its `Store` holds ([`TaskState`]), the linker that
//! gives a guest WASI preview 1 and the `wasmjob_v1` imports, the WASI context built exactly as
//! the guest contract in `wasmjob-host-api` says (nothing inherited from the host), and the
//! [`TaskLimiter`] that holds its memory and tables to the attempt's limits; and the scratch
//! directory each attempt gets, with the executor's spares of them.
//!
//! The checks behind the state are left to their own files: the scratch quota and the checked
//! WASI calls to `quota`, the output caps to `output`, the host imports to `imports`. Making the
//! store and running the guest in it are the executor's.

use super::engine::MAX_TABLES;
use super::output::{LogPipe, ResultPipe};
use super::quota::{self, Quota};
use super::{Attempt, AttemptControl, Executor, ExecutorError, imports};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use wasmjob_host_api::{JOB_DIR, SCRATCH_DIR, env};
use wasmtime::{Engine, Linker, ResourceLimiter};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// The most random bytes one `random_get` may ask for, unless the guest's memory limit is lower.
const MAX_RANDOM_BYTES: u64 = 64 << 20;

/// How many emptied scratch directories an executor keeps for reuse.
const MAX_SPARE_SCRATCH_DIRS: usize = 64;

/// The state of one attempt's store.
pub(crate) struct TaskState {
    pub(super) wasi: WasiP1Ctx,
    pub(super) limiter: TaskLimiter,
    pub(super) quota: Quota,
    pub(super) control: Arc<AttemptControl>,
    pub(super) deadline: Instant,
}

/// A linker for attempts' stores: WASI preview 1 in wasmtime's async style, with the scratch
/// quota's checked calls and the `wasmjob_v1` imports.
pub(super) fn linker(engine: &Engine) -> Result<Linker<TaskState>, ExecutorError> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut TaskState| &mut state.wasi)
        .and_then(|()| quota::add_to_linker(&mut linker))
        .and_then(|()| imports::add_to_linker(&mut linker))
        .map_err(|e| ExecutorError::Engine(e.to_string()))?;
    Ok(linker)
}

/// Builds the attempt's WASI context: nothing inherited from the host, only what the contract
/// names.
pub(super) fn wasi_context(
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

impl Executor {
    /// An empty scratch directory: a spare one, or a new one.
    pub(super) fn scratch_dir(&self) -> Result<tempfile::TempDir, ExecutorError> {
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
    pub(super) fn return_scratch_dir(&self, scratch: tempfile::TempDir, touched: bool) {
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
}

/// Enforces an attempt's memory and table limits, and remembers whether it refused the guest,
/// so that a failure that follows is reported as the memory limit rather than as its symptom.
pub(super) struct TaskLimiter {
    memory: usize,
    table_elements: usize,
    pub(super) refused: bool,
}

impl TaskLimiter {
    pub(super) fn new(memory: u64, table_elements: u32) -> Self {
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
