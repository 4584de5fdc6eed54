//! The queue's storage interface, and its backends.
//!
//! The interface is split by who calls it: [`SubmitterStore`] is the submitter's side (submit,
//! upload, status, info, list, describe, delete) and [`WorkerStore`] the worker's side (claim the
//! next tasks, download, report outcomes, heartbeat, reap). Every backend implements both, and one
//! conformance suite runs the same cases against each.
//!
//! The rules every backend keeps:
//! - a job becomes runnable only when every file of its manifest has been uploaded;
//! - a claimed task is a [`Lease`] whose [`TaskId`] is fresh per attempt; every report and
//!   heartbeat carries it and is refused once that attempt is no longer the current one, so a
//!   worker that wakes late cannot overwrite a newer attempt;
//! - value ranges are interval sets: submitting a job costs the same whatever its size;
//! - an error is retried while the task has retries left; a fatal outcome never is; a requeue
//!   puts the task back without counting a failure, and an untried task without counting an
//!   attempt either;
//! - workers register the ceilings ([`Limits`]) they accept: a worker claims only jobs within its own,
//!   and a submit that no live worker would accept is refused ([`StorageError::OverCeilings`]).
//!
//! What is *not* here: running guests (the executor), the worker's scheduling (the worker), and
//! the on-disk blob cache of a worker host.

mod error;
mod memory;
mod redis;

pub use self::error::{StorageError, with_causes};
pub use self::memory::MemoryStore;
pub use self::redis::{DEFAULT_PREFIX, DEFAULT_URL, RedisConfig, RedisStore, redact_url};

use crate::limits::{Limits, OverCeilings};
use crate::manifest::{Digest, ManifestPath};
use crate::range::RangeSet;
use crate::spec::{JobSpec, Priority};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use ulid::Ulid;

/// A job's id: a ULID, so ids sort by submission time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub Ulid);

/// The id of one attempt of a task: a ULID, fresh per attempt, the lease's fencing token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub Ulid);

macro_rules! ulid_id {
    ($id:ident, $what:literal) => {
        impl $id {
            /// A new id, unique and later than every id made before it in this process.
            pub fn generate() -> Self {
                $id(monotonic_ulid())
            }
        }

        impl fmt::Display for $id {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $id {
            type Err = StorageError;

            fn from_str(s: &str) -> Result<Self, StorageError> {
                Ulid::from_string(s.trim())
                    .map($id)
                    .map_err(|_| StorageError::InvalidId {
                        what: $what,
                        input: s.to_owned(),
                    })
            }
        }
    };
}

/// A ULID later than every one made before it in this process, even within one millisecond,
/// so that jobs submitted in a burst keep their order.
fn monotonic_ulid() -> Ulid {
    static GENERATOR: std::sync::Mutex<Option<ulid::Generator>> = std::sync::Mutex::new(None);
    let mut generator = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    generator
        .get_or_insert_with(ulid::Generator::new)
        .generate()
        .unwrap_or_else(|_| Ulid::new())
}

ulid_id!(JobId, "job id");
ulid_id!(TaskId, "task id");

/// Milliseconds since the Unix epoch, on the storage's clock.
pub type Millis = u64;

/// Now, in [`Millis`], from this host's clock.
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// Who runs a task: the worker process, as reported in task info.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkerId {
    /// The application name the worker was started with (`--app`).
    pub app: String,
    /// The worker host's name.
    pub hostname: String,
    /// Unique per worker process, so a restarted worker is a new worker.
    pub instance: Ulid,
}

/// How long a lease lasts without a heartbeat, unless the store is set otherwise; workers ask
/// their store ([`WorkerStore::lease_ttl`]) rather than assume it.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

/// How long a worker counts as live after it last registered. Workers renew their
/// registration at every reap interval, well within it.
pub const WORKER_TTL: Duration = Duration::from_secs(60);

/// A worker as the queue knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredWorker {
    /// Who it is.
    pub worker: WorkerId,
    /// The most it accepts of each job limit.
    pub ceilings: Limits,
    /// When it last registered, on the store's clock.
    pub seen_at: Millis,
}

/// Refuses a job that none of the live workers would accept. With no live worker there is
/// nobody to judge, and the job waits for one.
fn admit(spec: &JobSpec, live: &[RegisteredWorker]) -> Result<(), StorageError> {
    let mut closest: Option<OverCeilings> = None;
    for worker in live {
        match spec.limits.within(&worker.ceilings) {
            Ok(()) => return Ok(()),
            Err(over) => {
                if closest
                    .as_ref()
                    .is_none_or(|c| over.excesses.len() < c.excesses.len())
                {
                    closest = Some(over);
                }
            }
        }
    }
    match closest {
        Some(over) => Err(StorageError::OverCeilings(over)),
        None => Ok(()),
    }
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Waiting to be claimed.
    Pending,
    /// Claimed by a worker, under a lease.
    Active,
    /// Done, with a result.
    Succeeded,
    /// Done for good without a result: fatal, or out of retries.
    Failed,
    /// Set aside: its attempts were lost (their workers died or went silent) as many times as
    /// the job's max lost allows. Not tried again.
    Quarantined,
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskState::Pending => "pending",
            TaskState::Active => "active",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Quarantined => "quarantined",
        })
    }
}

/// What submitting a job gives back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    /// The new job's id.
    pub id: JobId,
    /// The manifest files whose bytes the store does not have yet and that must be uploaded
    /// before the job can run. Files it already holds (from another job) are not listed.
    pub missing: Vec<ManifestPath>,
}

/// A job's state as ranges of values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job.
    pub id: JobId,
    /// Its name.
    pub name: String,
    /// Its priority.
    pub priority: Priority,
    /// Values waiting to be claimed.
    pub pending: RangeSet,
    /// Values being run.
    pub active: RangeSet,
    /// Values done with a result.
    pub succeeded: RangeSet,
    /// Values done without one.
    pub failed: RangeSet,
    /// Values set aside after too many lost attempts.
    pub quarantined: RangeSet,
    /// How many manifest files still have to be uploaded before the job can run.
    pub missing_files: usize,
    /// When the job was submitted.
    pub submitted_at: Millis,
    /// Why the job was set aside, when its spec or state could not be read: it runs no more,
    /// and its values show in no state.
    pub set_aside: Option<String>,
    /// Why its tasks wait, when a worker's host could not prepare them (a stored file missing
    /// or damaged, a cache or scratch directory that cannot be written).
    pub held_back: Option<String>,
}

impl JobStatus {
    /// Whether every value of the job is succeeded, failed or quarantined.
    pub fn is_done(&self) -> bool {
        self.pending.is_empty() && self.active.is_empty()
    }

    /// How many values the job has in all.
    pub fn total(&self) -> u64 {
        self.pending.len()
            + self.active.len()
            + self.succeeded.len()
            + self.failed.len()
            + self.quarantined.len()
    }
}

/// Everything known about one task value.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TaskInfo {
    /// The value.
    pub value: u64,
    /// Where it stands (`None` only in a default-constructed info).
    pub state: Option<TaskState>,
    /// How many times it was claimed.
    pub attempts: u32,
    /// How many attempts failed: errors and fatal outcomes reported by a worker.
    pub failures: u32,
    /// How many attempts were lost: their lease expired before any outcome was reported.
    pub lost: u32,
    /// The worker of the current or last attempt.
    pub worker: Option<WorkerId>,
    /// The current or last attempt's task id.
    pub task_id: Option<TaskId>,
    /// When the current or last attempt started.
    pub started_at: Option<Millis>,
    /// When the current lease ends unless renewed (active tasks only).
    pub deadline: Option<Millis>,
    /// When the task reached its final state.
    pub finished_at: Option<Millis>,
    /// The reason of the last failed attempt.
    pub last_error: Option<String>,
    /// The latest progress the guest reported.
    pub progress: Option<Vec<u8>>,
    /// The result (stdout) of the successful attempt.
    pub result: Option<Vec<u8>>,
    /// The log (tail of stderr) of the last finished attempt.
    pub log: Option<Vec<u8>>,
}

/// A claimed task: the right, until `deadline`, to run one attempt and report its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The job.
    pub job: JobId,
    /// This attempt's id; every report must carry it.
    pub task: TaskId,
    /// The task value.
    pub value: u64,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// Whether the task is to run alone: one more lost attempt would quarantine its value (see
    /// [`on_last_chance`]). The claim gives it by itself and the worker runs it with no other
    /// task beside it, so that if it is what kills workers it takes no other value down with it.
    pub alone: bool,
    /// When the lease ends unless a heartbeat renews it.
    pub deadline: Millis,
}

/// Whether a value with `lost` lost attempts is on its last chance: lost before, and one more
/// loss reaches the job's `max_lost`. Such a value runs alone. Earlier losses are most often a
/// worker's own death (a crash, a preemption) that took every task it held: those values run as
/// usual, and a long task does not keep a whole worker to itself for a loss it did not cause.
pub fn on_last_chance(lost: u32, max_lost: u32) -> bool {
    lost > 0 && lost + 1 >= max_lost
}

/// Tasks of one job claimed together.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The job's spec, as submitted.
    pub spec: Arc<JobSpec>,
    /// The job.
    pub job: JobId,
    /// One lease per claimed value.
    pub leases: Vec<Lease>,
}

/// The outcome a worker reports for a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The task succeeded; its result.
    Success {
        /// The guest's stdout.
        result: Vec<u8>,
    },
    /// The attempt failed; retry while retries are left.
    Error {
        /// Why.
        reason: String,
    },
    /// The task failed for good.
    Fatal {
        /// Why.
        reason: String,
    },
    /// The attempt was stopped or could not run (the worker is stopping, say): back to pending,
    /// no failure counted. It counts as an attempt: it may have run for a while.
    Requeue,
    /// The attempt never started: the lease waited for a slot while the worker began to stop,
    /// or gave way to a task that runs alone. Back to pending as if it had not been claimed:
    /// neither a failure nor an attempt is counted, so the attempts of a value are the times it
    /// ran.
    Untried,
}

/// One report: the lease it is about, the verdict and the attempt's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The lease of the attempt.
    pub lease: Lease,
    /// What became of it.
    pub verdict: Verdict,
    /// The tail of its stderr (empty for a requeue or an untried task).
    pub log: Vec<u8>,
}

/// What the store did with one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ack {
    /// Applied.
    Applied,
    /// Refused: the lease is no longer current (it expired and the task was claimed again, or
    /// this report was already applied).
    StaleLease,
    /// Refused: the job no longer exists.
    UnknownJob,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Heartbeat {
    /// The lease is renewed until the given time; go on.
    Continue {
        /// The new deadline.
        deadline: Millis,
    },
    /// Stop the attempt: the lease is no longer current or the job was deleted.
    Stop,
}

/// What a reaper pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaped {
    /// Expired leases whose tasks went back to pending.
    pub requeued: u64,
    /// Expired leases whose tasks reached their max lost and were quarantined.
    pub quarantined: u64,
}

/// Checks an upload against the job's manifest; the file's entry when the bytes are its content.
fn check_upload(
    job: JobId,
    spec: &JobSpec,
    path: &ManifestPath,
    bytes: &[u8],
) -> Result<crate::manifest::FileEntry, StorageError> {
    let entry = spec
        .manifest
        .file(path)
        .ok_or_else(|| StorageError::NotInManifest {
            job,
            path: path.clone(),
        })?;
    entry
        .verify(bytes)
        .map_err(|mismatch| StorageError::HashMismatch {
            path: path.clone(),
            mismatch,
        })?;
    Ok(*entry)
}

/// The submitter's side of the queue.
pub trait SubmitterStore: Send + Sync {
    /// Accepts a job; it runs once every file listed in [`Submitted::missing`] is uploaded.
    fn submit(
        &self,
        spec: &JobSpec,
    ) -> impl Future<Output = Result<Submitted, StorageError>> + Send;

    /// Stores the bytes of one manifest file after checking them against the manifest.
    fn upload(
        &self,
        job: JobId,
        path: &ManifestPath,
        bytes: &[u8],
    ) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Like [`upload`](Self::upload), telling `progress` the bytes sent so far as they go.
    fn upload_with_progress(
        &self,
        job: JobId,
        path: &ManifestPath,
        bytes: &[u8],
        progress: &(dyn Fn(u64) + Sync),
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        async move {
            self.upload(job, path, bytes).await?;
            progress(bytes.len() as u64);
            Ok(())
        }
    }

    /// The job's values by state.
    fn status(&self, job: JobId) -> impl Future<Output = Result<JobStatus, StorageError>> + Send;

    /// Everything known about one value of the job.
    fn info(
        &self,
        job: JobId,
        value: u64,
    ) -> impl Future<Output = Result<TaskInfo, StorageError>> + Send;

    /// Every job, highest priority first, then oldest first.
    fn list(&self) -> impl Future<Output = Result<Vec<JobStatus>, StorageError>> + Send;

    /// The jobs of one priority, oldest first.
    fn list_by_priority(
        &self,
        priority: Priority,
    ) -> impl Future<Output = Result<Vec<JobStatus>, StorageError>> + Send;

    /// The job's spec as submitted.
    fn describe(&self, job: JobId) -> impl Future<Output = Result<JobSpec, StorageError>> + Send;

    /// Removes the job and everything about its tasks, and the stored bytes of each of its
    /// files that no other job uses. Workers running its tasks are told to stop at their next
    /// heartbeat.
    fn delete(&self, job: JobId) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// The workers that registered within [`WORKER_TTL`], oldest registration first.
    fn workers(&self) -> impl Future<Output = Result<Vec<RegisteredWorker>, StorageError>> + Send;
}

/// The worker's side of the queue.
pub trait WorkerStore: Send + Sync {
    /// How long a lease lasts without a heartbeat: the store's setting, which a worker asks for
    /// rather than keeping a copy (it heartbeats well within it, and retries a report no longer).
    fn lease_ttl(&self) -> Duration;

    /// Announces the worker and the ceilings it accepts, or renews the announcement. Call it
    /// before the first claim and then well within every [`WORKER_TTL`].
    fn register(
        &self,
        worker: &WorkerId,
        ceilings: &Limits,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Withdraws the worker's announcement, on a graceful stop.
    fn unregister(
        &self,
        worker: &WorkerId,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Claims up to `max` pending tasks of the highest-priority runnable job (the oldest job
    /// within a priority) that fits the ceilings `worker` registered, within that job's max
    /// concurrency. Waits up to `wait` for work when there is none; `None` means there was none
    /// by then.
    fn next(
        &self,
        worker: &WorkerId,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Option<Claim>, StorageError>> + Send {
        self.next_avoiding(worker, max, wait, &[])
    }

    /// Like [`next`](Self::next), passing over the jobs in `avoid`: those the worker holds back
    /// for a fault of its own host.
    fn next_avoiding(
        &self,
        worker: &WorkerId,
        max: usize,
        wait: Duration,
        avoid: &[JobId],
    ) -> impl Future<Output = Result<Option<Claim>, StorageError>> + Send;

    /// Records, for `status`, why a worker cannot run the job's tasks for now (its host cannot
    /// prepare them); the note goes once a task of the job succeeds.
    fn hold_back(
        &self,
        job: JobId,
        note: &str,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Drops a stored file whose bytes do not hash to its digest, so that the next submit of a
    /// job with this file uploads it again.
    fn drop_damaged(
        &self,
        digest: &Digest,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// The bytes of a stored manifest file, checked against their digest.
    fn download(
        &self,
        digest: &Digest,
    ) -> impl Future<Output = Result<Vec<u8>, StorageError>> + Send;

    /// Applies finished attempts' outcomes, as one batch; one [`Ack`] per report, in order. A
    /// report that appears twice is applied once (the second is stale).
    fn report(
        &self,
        reports: &[Report],
    ) -> impl Future<Output = Result<Vec<Ack>, StorageError>> + Send;

    /// Renews a lease and records the latest progress, if any.
    fn heartbeat(
        &self,
        lease: &Lease,
        progress: Option<&[u8]>,
    ) -> impl Future<Output = Result<Heartbeat, StorageError>> + Send;

    /// Checks that the backend still holds the queue this store connected to, failing with
    /// [`StorageError::DataLost`] once after it lost its data.
    fn check(&self) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Returns the tasks of expired leases to pending, counting a lost attempt (not a failure),
    /// or quarantines them once they reach the job's max lost. Any worker may run it; each
    /// expired lease is reaped exactly once.
    fn reap(&self) -> impl Future<Output = Result<Reaped, StorageError>> + Send;
}
