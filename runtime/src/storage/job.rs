//! A job as its submitter sees it: what a submit gives back ([`Submitted`]), its values by
//! state ([`JobStatus`], [`TaskState`]), everything known about one value ([`TaskInfo`]), and the
//! check every backend makes of an upload against the job's manifest.
//!
//! The leases and reports behind those states are `lease`'s; the trait that returns these
//! records is [`SubmitterStore`](super::SubmitterStore) in `storage`.

use super::{JobId, Millis, StorageError, TaskId, WorkerId};
use crate::manifest::{FileEntry, ManifestPath};
use crate::range::RangeSet;
use crate::spec::{JobSpec, Priority};
use serde::{Deserialize, Serialize};
use std::fmt;

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

/// How many intervals of each state a [`JobStatus`] holds at most; the rest of a fragmented
/// job's values are read a page at a time with [`SubmitterStore::ranges`](super::SubmitterStore::ranges),
/// so that no status of a 10^7-value job is one huge reply.
pub const STATUS_PAGE: usize = 1000;

/// How many values a job has in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    /// Waiting to be claimed.
    pub pending: u64,
    /// Being run.
    pub active: u64,
    /// Done with a result.
    pub succeeded: u64,
    /// Done without one.
    pub failed: u64,
    /// Set aside after too many lost attempts.
    pub quarantined: u64,
}

impl StateCounts {
    /// How many values are in `state`.
    pub fn of(&self, state: TaskState) -> u64 {
        match state {
            TaskState::Pending => self.pending,
            TaskState::Active => self.active,
            TaskState::Succeeded => self.succeeded,
            TaskState::Failed => self.failed,
            TaskState::Quarantined => self.quarantined,
        }
    }

    /// How many values there are in all.
    pub fn total(&self) -> u64 {
        self.pending + self.active + self.succeeded + self.failed + self.quarantined
    }
}

/// A job's state as ranges of values.
///
/// Each state's ranges are its first [`STATUS_PAGE`] intervals, which is all of them unless
/// the job is fragmented: [`counts`](Self::counts) is always whole, and
/// [`is_whole`](Self::is_whole) tells whether a state's ranges are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job.
    pub id: JobId,
    /// Its name.
    pub name: String,
    /// Its priority.
    pub priority: Priority,
    /// How many values are in each state.
    pub counts: StateCounts,
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
    /// Why the job was set aside, when its spec or state could not be read: it runs no more.
    pub set_aside: Option<String>,
    /// Why its tasks wait, when a worker's host could not prepare them (a stored file missing
    /// or damaged, a cache or scratch directory that cannot be written).
    pub held_back: Option<String>,
}

impl JobStatus {
    /// Whether every value of the job is succeeded, failed or quarantined.
    pub fn is_done(&self) -> bool {
        self.counts.pending == 0 && self.counts.active == 0
    }

    /// How many values the job has in all.
    pub fn total(&self) -> u64 {
        self.counts.total()
    }

    /// The ranges of `state` this status holds (see [`is_whole`](Self::is_whole)).
    pub fn ranges(&self, state: TaskState) -> &RangeSet {
        match state {
            TaskState::Pending => &self.pending,
            TaskState::Active => &self.active,
            TaskState::Succeeded => &self.succeeded,
            TaskState::Failed => &self.failed,
            TaskState::Quarantined => &self.quarantined,
        }
    }

    /// Whether the ranges of `state` are every value in it, not only the first page.
    pub fn is_whole(&self, state: TaskState) -> bool {
        self.ranges(state).len() == self.counts.of(state)
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

/// Checks an upload against the job's manifest; the file's entry when the bytes are its content.
pub(super) fn check_upload(
    job: JobId,
    spec: &JobSpec,
    path: &ManifestPath,
    bytes: &[u8],
) -> Result<FileEntry, StorageError> {
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
