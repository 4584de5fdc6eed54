//! The embedded queue's state, all behind the store's one lock: the jobs in claim order, each
//! job's values by state and its per-value records, the stored files, and the registered
//! workers; and how an attempt of a value ends (lost or failed), which both the reports and the
//! reaper apply.
//!
//! Taking the lock and waking idle workers is the store's (`memory`); the operations that read
//! and change this state are `submitter`'s and `worker`'s.

use crate::manifest::{Digest, ManifestPath};
use crate::range::RangeSet;
use crate::spec::{JobSpec, Priority};
use crate::storage::{
    JobId, JobStatus, Lease, Millis, RegisteredWorker, STATUS_PAGE, StateCounts, TaskId, TaskState,
    WorkerId,
};
use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// The last error of a task whose lease expired.
pub(super) const LEASE_EXPIRED: &str = "lease expired: the worker died or stopped reporting";

/// Everything the store's lock guards.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) jobs: HashMap<JobId, JobRecord>,
    /// Claim order: highest priority first, then the oldest job (ULIDs sort by time).
    pub(super) queue: BTreeSet<(Reverse<Priority>, JobId)>,
    pub(super) blobs: HashMap<Digest, Arc<Vec<u8>>>,
    /// Registered workers by instance.
    pub(super) workers: HashMap<ulid::Ulid, RegisteredWorker>,
}

/// One job: its spec, its values by state, and the records of the values claimed so far.
#[derive(Debug)]
pub(super) struct JobRecord {
    pub(super) spec: Arc<JobSpec>,
    pub(super) submitted_at: Millis,
    /// Manifest files not uploaded yet; the job is runnable when this is empty.
    pub(super) missing: BTreeSet<ManifestPath>,
    pub(super) pending: RangeSet,
    pub(super) succeeded: RangeSet,
    pub(super) failed: RangeSet,
    pub(super) quarantined: RangeSet,
    pub(super) active: BTreeMap<u64, Lease>,
    /// Per-value records, created at a value's first claim: submitting costs nothing per value.
    pub(super) tasks: HashMap<u64, TaskRecord>,
    /// Why a worker holds the job back, until one of its tasks succeeds.
    pub(super) held_back: Option<String>,
}

/// What is known of one value, from its first claim on.
#[derive(Debug, Default)]
pub(super) struct TaskRecord {
    pub(super) attempts: u32,
    pub(super) failures: u32,
    pub(super) lost: u32,
    pub(super) worker: Option<WorkerId>,
    pub(super) task_id: Option<TaskId>,
    pub(super) started_at: Option<Millis>,
    pub(super) finished_at: Option<Millis>,
    pub(super) last_error: Option<String>,
    pub(super) progress: Option<Vec<u8>>,
    pub(super) result: Option<Vec<u8>>,
    pub(super) log: Option<Vec<u8>>,
}

impl JobRecord {
    /// The job's values by state, as a submitter reads them: every count, and the first page
    /// of each state's ranges.
    pub(super) fn status(&self, id: JobId) -> JobStatus {
        let active = self.active_values();
        let page = |set: &RangeSet| set.page(0, STATUS_PAGE);
        JobStatus {
            id,
            name: self.spec.name.clone(),
            priority: self.spec.priority,
            counts: StateCounts {
                pending: self.pending.len(),
                active: active.len(),
                succeeded: self.succeeded.len(),
                failed: self.failed.len(),
                quarantined: self.quarantined.len(),
            },
            pending: page(&self.pending),
            active: page(&active),
            succeeded: page(&self.succeeded),
            failed: page(&self.failed),
            quarantined: page(&self.quarantined),
            missing_files: self.missing.len(),
            submitted_at: self.submitted_at,
            // Jobs held in memory are typed: none is ever unreadable.
            set_aside: None,
            held_back: self.held_back.clone(),
        }
    }

    /// The values in `state`, in full: the sets kept for it, or the leased values.
    pub(super) fn values_in(&self, state: TaskState) -> Cow<'_, RangeSet> {
        match state {
            TaskState::Pending => Cow::Borrowed(&self.pending),
            TaskState::Active => Cow::Owned(self.active_values()),
            TaskState::Succeeded => Cow::Borrowed(&self.succeeded),
            TaskState::Failed => Cow::Borrowed(&self.failed),
            TaskState::Quarantined => Cow::Borrowed(&self.quarantined),
        }
    }

    /// The leased values, as a set: no more of them than the workers' slots.
    fn active_values(&self) -> RangeSet {
        self.active.keys().copied().collect()
    }

    /// Counts a lost attempt of `value` (its lease expired): back to pending, or quarantined at
    /// the job's max lost. Returns whether the task went back to pending.
    pub(super) fn lose_attempt(&mut self, value: u64, now: Millis) -> bool {
        let max_lost = self.spec.max_lost;
        let task = self.tasks.entry(value).or_default();
        task.lost += 1;
        task.last_error = Some(LEASE_EXPIRED.to_owned());
        if task.lost >= max_lost {
            task.finished_at = Some(now);
            self.quarantined.insert(value);
            false
        } else {
            self.pending.insert(value);
            true
        }
    }

    /// Ends the attempt of `value` as a failure: back to pending while retries are left.
    /// Returns whether the task went back to pending.
    pub(super) fn fail_attempt(
        &mut self,
        value: u64,
        reason: String,
        fatal: bool,
        now: Millis,
    ) -> bool {
        let max_retries = self.spec.max_retries;
        let task = self.tasks.entry(value).or_default();
        task.failures += 1;
        task.last_error = Some(reason);
        if fatal || task.failures > max_retries {
            task.finished_at = Some(now);
            self.failed.insert(value);
            false
        } else {
            self.pending.insert(value);
            true
        }
    }
}
