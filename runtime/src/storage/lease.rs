//! What a worker and the store exchange: the [`Lease`] on one attempt and the [`Claim`] that
//! hands out a batch of them, the [`Verdict`] a worker gives in a [`Report`] and the [`Ack`] it
//! gets back, the answer to a [`Heartbeat`], and what a reaper pass did ([`Reaped`]).
//!
//! How a backend keeps and fences leases is its own; the trait that carries these records is
//! [`WorkerStore`](super::WorkerStore) in `storage`.

use super::{JobId, Millis, TaskId};
use crate::spec::JobSpec;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// How long a lease lasts without a heartbeat, unless the store is set otherwise; workers ask
/// their store ([`WorkerStore::lease_ttl`](super::WorkerStore::lease_ttl)) rather than assume it.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

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
    /// Stop the attempt: the lease is no longer current (it expired and the task may be running
    /// elsewhere).
    Stop,
    /// Stop the attempt: the job was deleted.
    JobGone,
}

/// What a reaper pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaped {
    /// Expired leases whose tasks went back to pending.
    pub requeued: u64,
    /// Expired leases whose tasks reached their max lost and were quarantined.
    pub quarantined: u64,
}
