//! The embedded queue's state, all behind the store's one lock: the jobs in claim order, each
//! job's values by state, its leases, its claimed batches and the records of the values worth
//! one, the stored files, and the registered workers; how an attempt of a value ends (lost or
//! failed), which both the reports and the reaper apply; and what `info` answers of a value.
//!
//! Memory follows the intervals and the values that say something, not the job's size: a
//! value keeps a [`TaskRecord`] of its own only once it has more than one attempt, a failure,
//! a loss, a non-empty result or log, or progress. A value claimed once that succeeded with
//! nothing to say is answered for by its claimed batch (`batch`).
//!
//! Taking the lock and waking idle workers is the store's (`memory`); the operations that read
//! and change this state are `submitter`'s and `worker`'s.

use super::batch::Batches;
use crate::manifest::{Digest, ManifestPath};
use crate::range::RangeSet;
use crate::spec::{JobSpec, Priority};
use crate::storage::{
    JobId, JobStatus, Lease, Millis, RegisteredWorker, STATUS_PAGE, StateCounts, TaskId, TaskInfo,
    TaskState, WorkerId,
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

/// One job: its spec, its values by state, its leases, and what is known of the values claimed
/// so far.
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
    /// The leased values: no more of them than the workers' slots.
    pub(super) active: BTreeMap<u64, ActiveTask>,
    /// The records of the values that say something (see the module docs); submitting, and
    /// running a value that succeeds at once with nothing to say, cost nothing per value.
    pub(super) tasks: HashMap<u64, TaskRecord>,
    /// First-attempt claims, by runs of values: the worker, task id and times of the values
    /// without a record.
    pub(super) batches: Batches,
    /// Why a worker holds the job back, until one of its tasks succeeds.
    pub(super) held_back: Option<String>,
}

/// One leased value: its lease, and what its attempt has said so far.
#[derive(Debug)]
pub(super) struct ActiveTask {
    pub(super) lease: Lease,
    pub(super) worker: Arc<WorkerId>,
    pub(super) started: Millis,
    /// The latest progress of this attempt; kept in the value's record when it ends.
    pub(super) progress: Option<Vec<u8>>,
}

/// What is known of one value that says something (see the module docs): made at the end of
/// its first attempt that was not a plain success, or at its claim when it has one already.
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

    /// The leased values, as a set.
    fn active_values(&self) -> RangeSet {
        self.active.keys().copied().collect()
    }

    /// The record of the value whose attempt `ended` is ending, made from that attempt when
    /// the value has none yet; the attempt's progress goes into it.
    pub(super) fn record_of(&mut self, ended: ActiveTask) -> &mut TaskRecord {
        let task = self
            .tasks
            .entry(ended.lease.value)
            .or_insert_with(|| TaskRecord {
                attempts: ended.lease.attempt,
                worker: Some(WorkerId::clone(&ended.worker)),
                task_id: Some(ended.lease.task),
                started_at: Some(ended.started),
                ..TaskRecord::default()
            });
        if ended.progress.is_some() {
            task.progress = ended.progress;
        }
        task
    }

    /// Counts a lost attempt (its lease expired): back to pending, or quarantined at the job's
    /// max lost. Returns whether the task went back to pending.
    pub(super) fn lose_attempt(&mut self, ended: ActiveTask, now: Millis) -> bool {
        let max_lost = self.spec.max_lost;
        let value = ended.lease.value;
        let task = self.record_of(ended);
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
        let task = self
            .tasks
            .get_mut(&value)
            .expect("the report made its record");
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

    /// The state of `value`, one of the job's.
    pub(super) fn state_of(&self, value: u64) -> TaskState {
        if self.active.contains_key(&value) {
            TaskState::Active
        } else if self.succeeded.contains(value) {
            TaskState::Succeeded
        } else if self.failed.contains(value) {
            TaskState::Failed
        } else if self.quarantined.contains(value) {
            TaskState::Quarantined
        } else {
            TaskState::Pending
        }
    }

    /// Everything known of `value`, one of the job's: from its record when it has one, else
    /// from its lease while it runs, else from its claimed batch once it succeeded.
    pub(super) fn info(&self, value: u64) -> TaskInfo {
        let state = self.state_of(value);
        let active = self.active.get(&value);
        let mut info = TaskInfo {
            value,
            state: Some(state),
            deadline: active.map(|a| a.lease.deadline),
            ..TaskInfo::default()
        };
        if let Some(task) = self.tasks.get(&value) {
            info.attempts = task.attempts;
            info.failures = task.failures;
            info.lost = task.lost;
            info.worker = task.worker.clone();
            info.task_id = task.task_id;
            info.started_at = task.started_at;
            info.finished_at = task.finished_at;
            info.last_error = task.last_error.clone();
            info.progress = task.progress.clone();
            info.result = task.result.clone();
            info.log = task.log.clone();
            if let Some(active) = active {
                info.progress = active.progress.clone();
            }
        } else if let Some(active) = active {
            info.attempts = active.lease.attempt;
            info.worker = Some(WorkerId::clone(&active.worker));
            info.task_id = Some(active.lease.task);
            info.started_at = Some(active.started);
            info.progress = active.progress.clone();
        } else if state == TaskState::Succeeded
            && let Some(entry) = self.batches.get(value)
        {
            // A plain success: one attempt, an empty result and an empty log.
            info.attempts = 1;
            info.worker = Some(WorkerId::clone(&entry.batch.worker));
            info.task_id = Some(entry.task_id);
            info.started_at = Some(entry.batch.started);
            info.finished_at = entry.batch.finished;
            info.result = Some(Vec::new());
            info.log = Some(Vec::new());
        }
        info
    }
}
