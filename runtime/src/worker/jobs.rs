//! The jobs a worker knows: each prepared once on this host (its files downloaded and checked
//! into the blob cache, its tree built, its module compiled) and shared by its tasks, and
//! forgotten once it has had no lease in hand for a reap interval.
//!
//! A preparation that fails says why in a [`PrepareError`], which decides what becomes of the
//! task: a fault of this host or of the store hands it back untried (no retry used), a
//! stored file whose bytes are wrong is dropped and the job waits for it, and a job that can
//! never run on any host fails. Running a prepared job is the attempt's (`attempt.rs`); the
//! cache's layout on disk is `crate::cache`'s.

use crate::cache::{BlobCache, CacheError, JobTree};
use crate::executor::{Executor, InvalidModule, TaskModule};
use crate::manifest::{ContentMismatch, Digest, ManifestPath};
use crate::spec::JobSpec;
use crate::storage::{JobId, WorkerStore, with_causes};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// A job made ready to run on this host: its tree on disk and its compiled module. Jobs with
/// the same manifest and script share one, and the tree goes with the last of them.
pub(super) struct PreparedJob {
    /// The job's files, laid out as its manifest says.
    pub(super) tree: JobTree,
    /// Its module, or why it is not a module this host can run (the job's own fault).
    pub(super) module: Result<TaskModule, InvalidModule>,
}

/// Why a job could not be prepared on this host.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum PrepareError {
    /// This host or the store failed it (the store unreachable, a stored file missing, the
    /// cache directory unwritable): nothing about the job is wrong, so its task goes back
    /// untried and the job is held back here.
    #[error(transparent)]
    HostFault(Arc<CacheError>),
    /// A stored file's bytes are not what the manifest names. The bad copy is dropped and the
    /// job waits, held back, for the next submit of the file to upload it again.
    #[error(
        "the stored copy of {path} was damaged ({mismatch}) and is dropped: the job waits for \
         the file, which the next submit of it uploads"
    )]
    Damaged {
        /// The file's manifest path.
        path: String,
        /// What was expected and what came.
        mismatch: ContentMismatch,
    },
    /// The job's script is not a file of its manifest: no host can ever run it.
    #[error("the script {0} is not in the manifest")]
    ScriptMissing(ManifestPath),
}

impl From<CacheError> for PrepareError {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::HashMismatch { path, mismatch } => PrepareError::Damaged { path, mismatch },
            e => PrepareError::HostFault(Arc::new(e)),
        }
    }
}

/// What a preparation depends on: a job's manifest and script. Jobs that agree on both share
/// their preparation.
fn preparation_key(spec: &JobSpec) -> Digest {
    let what = serde_json::to_vec(&(&spec.manifest, &spec.script))
        .expect("a manifest and a path always serialize");
    Digest::of(&what)
}

/// A job's preparation, done by the first of its tasks and awaited by the others.
type Preparation = OnceCell<Result<Arc<PreparedJob>, PrepareError>>;

/// A job this worker knows.
#[derive(Default)]
struct KnownJob {
    /// Its claims with leases in hand: while any is, the job's tree stays.
    claims: usize,
    /// Since when it has had none; a job idle for a reap interval is forgotten.
    idle_since: Option<Instant>,
    /// Its preparation, shared by its tasks.
    preparation: Arc<Preparation>,
}

/// The registry of known jobs and their preparations.
pub(super) struct Jobs {
    cache: BlobCache,
    /// How long a job with no lease in hand stays known.
    idle_for: Duration,
    /// Each job is prepared once, its tasks waiting on the same cell, and forgotten (letting go
    /// of its preparation) once idle: a job's leases run out between claims all the time.
    known: Mutex<HashMap<JobId, KnownJob>>,
    /// The preparations of the known jobs, by [`preparation_key`], for a job to take up the
    /// one another job with the same manifest and script made: its tree is not built again.
    preparations: Mutex<HashMap<Digest, Weak<PreparedJob>>>,
}

impl Jobs {
    /// A registry preparing into `cache`, forgetting jobs idle for `idle_for`.
    pub(super) fn new(cache: BlobCache, idle_for: Duration) -> Self {
        Jobs {
            cache,
            idle_for,
            known: Mutex::default(),
            preparations: Mutex::default(),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, KnownJob>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a claim of `job` in hand until the returned guard drops.
    pub(super) fn hold(self: &Arc<Self>, job: JobId) -> HeldJob {
        let mut known = self.known();
        let held = known.entry(job).or_default();
        held.claims += 1;
        held.idle_since = None;
        HeldJob {
            jobs: Arc::clone(self),
            job,
        }
    }

    /// Forgets the jobs that have had no lease in hand for the idle time, and removes their
    /// trees: a long-lived worker keeps only the jobs it is working on.
    pub(super) fn forget_idle(&self) {
        // A forgotten job lets go of its preparation; the last job to let go of one removes
        // its tree.
        self.known().retain(|_, held| {
            held.idle_since
                .is_none_or(|since| since.elapsed() < self.idle_for)
        });
        self.preparations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, prepared| prepared.strong_count() > 0);
    }

    /// The job prepared: its manifest downloaded into the cache and its module compiled, once
    /// per job held in hand. A failed preparation is tried afresh by the job's next task.
    pub(super) async fn prepare<S: WorkerStore>(
        &self,
        job: JobId,
        spec: &JobSpec,
        store: &S,
        executor: &Arc<Executor>,
    ) -> Result<Arc<PreparedJob>, PrepareError> {
        let cell = Arc::clone(
            &self
                .known()
                .get(&job)
                .expect("a task holds its job while it prepares it")
                .preparation,
        );
        let prepared = cell
            .get_or_init(|| self.prepare_afresh(job, spec, store, executor))
            .await
            .clone();
        if prepared.is_err()
            && let Some(held) = self.known().get_mut(&job)
            && Arc::ptr_eq(&held.preparation, &cell)
        {
            held.preparation = Arc::default();
        }
        prepared
    }

    /// Prepares the job, or takes up the preparation of another job with the same files.
    async fn prepare_afresh<S: WorkerStore>(
        &self,
        job: JobId,
        spec: &JobSpec,
        store: &S,
        executor: &Arc<Executor>,
    ) -> Result<Arc<PreparedJob>, PrepareError> {
        let key = preparation_key(spec);
        let shared = self
            .preparations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .and_then(Weak::upgrade);
        if let Some(prepared) = shared {
            return Ok(prepared);
        }
        let script = spec
            .manifest
            .file(&spec.script)
            .ok_or_else(|| PrepareError::ScriptMissing(spec.script.clone()))?;
        let tree = self
            .cache
            .job_tree(&spec.manifest, |digest| async move {
                store.download(&digest).await
            })
            .await
            .map_err(PrepareError::from);
        if let Err(PrepareError::Damaged { path, mismatch }) = &tree
            && let Err(e) = store.drop_damaged(&mismatch.expected).await
        {
            tracing::warn!(%job, "cannot drop the damaged copy of {path}: {}", with_causes(&e));
        }
        let tree = tree?;
        // A module this worker compiled for another job is not read again.
        let module = match executor.module_of(&script.sha256) {
            Some(module) => module,
            None => {
                let wasm = self
                    .cache
                    .blob(spec.script.as_str(), script, || async {
                        Err::<Vec<u8>, _>("the module is not in the cache")
                    })
                    .await?;
                executor.compile_within_budget(wasm).await
            }
        };
        let prepared = Arc::new(PreparedJob { tree, module });
        self.preparations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, Arc::downgrade(&prepared));
        Ok(prepared)
    }
}

/// A claim's hold on its job (see [`Jobs::hold`]).
pub(super) struct HeldJob {
    jobs: Arc<Jobs>,
    job: JobId,
}

impl Drop for HeldJob {
    fn drop(&mut self) {
        let mut known = self.jobs.known();
        let Some(held) = known.get_mut(&self.job) else {
            return;
        };
        held.claims -= 1;
        if held.claims == 0 {
            held.idle_since = Some(Instant::now());
        }
    }
}
