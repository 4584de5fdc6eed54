//! The queue's storage interface, and its backends.
//!
//! The interface is split by who calls it: [`SubmitterStore`] is the submitter's side (submit,
//! upload, status, info, list, describe, delete) and [`WorkerStore`] the worker's side (claim the
//! next tasks, wait for work, download, report outcomes, heartbeat, reap). Every backend implements both, and one
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
//!
//! # Layout
//!
//! This file holds the two traits and the registry of workers that both sides read; the records
//! they carry each have their room:
//! - `ids`: job, task and worker ids, and the storage's clock;
//! - `job`: what a submitter gets back: a submit's answer, a job's status, a task's info;
//! - `lease`: what a worker and the store exchange: leases, claims, reports, heartbeats;
//! - `wake`: the wake-ups an idle worker waits on, and the mark that keeps it from missing one;
//! - `error`: every way an operation can fail;
//! - `memory` and `redis`: the two backends.

mod error;
mod ids;
mod job;
mod lease;
mod memory;
mod redis;
mod wake;

pub use self::error::{StorageError, with_causes};
pub use self::ids::{JobId, Millis, TaskId, WorkerId, now_millis};
pub use self::job::{JobStatus, STATUS_PAGE, StateCounts, Submitted, TaskInfo, TaskState};
pub use self::lease::{
    Ack, Claim, DEFAULT_LEASE_TTL, Heartbeat, Lease, Reaped, Report, Verdict, on_last_chance,
};
pub use self::memory::MemoryStore;
pub use self::redis::{DEFAULT_PREFIX, DEFAULT_URL, RedisConfig, RedisStore, redact_url};
pub use self::wake::WakeMark;

use self::job::check_upload;
use crate::limits::{Limits, OverCeilings};
use crate::manifest::{Digest, ManifestPath};
use crate::range::RangeSet;
use crate::spec::{JobSpec, Priority};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::Duration;

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

    /// One page of the job's values in `state`: up to `limit` intervals that end at or after
    /// `from`, ascending (the first may start before it). A status holds the first page of
    /// each state; this reads the rest of a fragmented job's.
    fn ranges(
        &self,
        job: JobId,
        state: TaskState,
        from: u64,
        limit: usize,
    ) -> impl Future<Output = Result<RangeSet, StorageError>> + Send;

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

    /// Where this store's wake-ups stand now. Take it before a claim: after a claim that found
    /// nothing, [`wait_for_work`](Self::wait_for_work) from it returns for any wake-up since,
    /// so work that appeared while the claim looked is not missed. The first call may start
    /// listening for wake-ups (the Redis store subscribes); later ones cost no round trip.
    fn wake_mark(&self) -> impl Future<Output = Result<WakeMark, StorageError>> + Send;

    /// Claims up to `max` pending tasks of the highest-priority runnable job (the oldest job
    /// within a priority) that fits the ceilings `worker` registered, within that job's max
    /// concurrency, passing over the jobs in `avoid` (those the worker holds back for a fault of
    /// its own host). `hint`, the job named by the wake-up that ended the last wait
    /// ([`WakeMark::job`]), may be tried first: it spares a look at the queue.
    ///
    /// It takes what is runnable now and never waits: `None` means there was nothing. It is not
    /// cancel-safe: once under way it may have taken leases, which a dropped claim would lose
    /// until they expire, so let it finish and wait with [`wait_for_work`](Self::wait_for_work).
    fn claim(
        &self,
        worker: &WorkerId,
        max: usize,
        avoid: &[JobId],
        hint: Option<JobId>,
    ) -> impl Future<Output = Result<Option<Claim>, StorageError>> + Send;

    /// Waits until something may be claimable: a wake-up after `mark` (at once if one came
    /// already), whose mark it returns, or `None` once `timeout` has passed without one. A
    /// wake-up is a reason to claim, not a promise that the claim finds work.
    ///
    /// Cancel-safe: it takes nothing and changes nothing, so it may be dropped at any point (at
    /// a shutdown, say) and a later wait from the same mark sees every wake-up since.
    fn wait_for_work(
        &self,
        mark: WakeMark,
        timeout: Duration,
    ) -> impl Future<Output = Result<Option<WakeMark>, StorageError>> + Send;

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
