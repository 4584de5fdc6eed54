//! The scripts' replies read as Rust values, and the values written the way the scripts read
//! them: leases, task records, interval sets, the replies of claim, status, info, report and
//! reap, and the registry's worker entries.
//!
//! Pure functions, no I/O: every shape, well-formed or not, is tested here without a server
//! (`wire/tests.rs`). A reply that cannot be read is [`StorageError::Corrupt`], except where the
//! script's own answer means something else (a job that is gone, or set aside). Sending the
//! scripts, and what to do with a reply once read, is left to the operations' files.

#[cfg(test)]
mod tests;

use crate::limits::Limits;
use crate::range::RangeSet;
use crate::spec::Priority;
use crate::storage::{
    Ack, Heartbeat, JobId, JobStatus, Lease, Millis, Reaped, RegisteredWorker, STATUS_PAGE,
    StateCounts, StorageError, TaskId, TaskInfo, TaskState, Verdict, WorkerId,
};
use serde::{Deserialize, Serialize};

/// How many fields each lease of a claim reply has: value, task id, attempt, alone, deadline.
const LEASE_FIELDS: usize = 5;

/// A lease of a claim reply, from its fields `[value, task id, attempt, alone, deadline]`.
pub(super) fn lease(job: JobId, fields: &[String]) -> Result<Lease, StorageError> {
    let [value, task, attempt, alone, deadline] = fields else {
        return Err(StorageError::corrupt("a lease of the wrong length"));
    };
    Ok(Lease {
        job,
        task: task
            .parse()
            .map_err(|e| StorageError::corrupt_because("a lease's task id", e))?,
        value: value
            .parse()
            .map_err(|_| StorageError::corrupt("a lease value"))?,
        attempt: attempt
            .parse()
            .map_err(|_| StorageError::corrupt("a lease attempt"))?,
        alone: alone == "1",
        deadline: deadline
            .parse()
            .map_err(|_| StorageError::corrupt("a lease deadline"))?,
    })
}

/// What the claim script answered (see `lua/claim.lua`).
#[derive(Debug)]
pub(super) enum ClaimReply<'a> {
    /// Leases taken, with the job's spec when it was asked for (else empty).
    Leases {
        /// The spec as stored (JSON), or `""`.
        spec: &'a str,
        /// The leases, in the order the script took them.
        leases: Vec<Lease>,
    },
    /// The job has nothing more to give (`done`), or no longer exists (`gone`).
    Finished,
    /// The job cannot be read and was set aside; the script's reason, if it gave one.
    Unreadable(Option<&'a str>),
    /// Nothing for this worker now: full, empty, waiting for files, above its ceilings.
    Nothing,
}

/// Reads a claim reply: `{'ok', spec, value, task id, attempt, alone, deadline, ...}`,
/// `{'corrupt', reason}`, or one word.
pub(super) fn claim_reply(job: JobId, reply: &[String]) -> Result<ClaimReply<'_>, StorageError> {
    Ok(match reply.first().map(String::as_str) {
        Some("ok") => {
            let Some((spec, leases)) = reply[1..].split_first() else {
                return Err(StorageError::corrupt("a claim reply without its spec"));
            };
            let leases = leases
                .chunks(LEASE_FIELDS)
                .map(|fields| lease(job, fields))
                .collect::<Result<_, _>>()?;
            ClaimReply::Leases { spec, leases }
        }
        Some("done" | "gone") => ClaimReply::Finished,
        Some("corrupt") => ClaimReply::Unreadable(reply.get(1).map(String::as_str)),
        _ => ClaimReply::Nothing,
    })
}

/// Reads an interval set as the scripts write it: `"s1 e1 s2 e2 ..."`.
pub(super) fn parse_set(text: &str) -> Result<RangeSet, StorageError> {
    let numbers = text
        .split_ascii_whitespace()
        .map(|n| {
            n.parse::<u64>()
                .map_err(|_| StorageError::corrupt("an interval set"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if numbers.len() % 2 != 0 || numbers.iter().any(|&n| n > crate::range::MAX_VALUE) {
        return Err(StorageError::corrupt("an interval set"));
    }
    Ok(RangeSet::from_intervals(
        numbers.chunks(2).map(|p| (p[0], p[1])),
    ))
}

/// Writes an interval set as the scripts read it.
pub(super) fn format_set(set: &RangeSet) -> String {
    let mut text = String::new();
    for (start, end) in set.intervals() {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&format!("{start} {end}"));
    }
    text
}

/// Reads a status reply (see `lua/status.lua`); a reply too short to be one means the job does
/// not exist.
pub(super) fn status(job: JobId, reply: &[String]) -> Result<JobStatus, StorageError> {
    let [
        corrupt_reason,
        pending_count,
        succeeded_count,
        failed_count,
        quarantined_count,
        missing,
        submitted_at,
        name,
        priority,
        held_back,
        pending,
        succeeded,
        failed,
        quarantined,
        active @ ..,
    ] = reply
    else {
        return Err(StorageError::UnknownJob(job));
    };
    let corrupt = StorageError::corrupt;
    let active = active_values(active)?;
    let count = |text: &String| {
        text.parse::<u64>()
            .map_err(|_| corrupt("a count of values"))
    };
    Ok(JobStatus {
        id: job,
        name: name.clone(),
        priority: Priority(priority.parse().map_err(|_| corrupt("a priority"))?),
        counts: StateCounts {
            pending: count(pending_count)?,
            active: active.len(),
            succeeded: count(succeeded_count)?,
            failed: count(failed_count)?,
            quarantined: count(quarantined_count)?,
        },
        pending: parse_set(pending)?,
        active: active.page(0, STATUS_PAGE),
        succeeded: parse_set(succeeded)?,
        failed: parse_set(failed)?,
        quarantined: parse_set(quarantined)?,
        missing_files: missing.parse().map_err(|_| corrupt("a missing count"))?,
        submitted_at: submitted_at
            .parse()
            .map_err(|_| corrupt("a submission time"))?,
        set_aside: (!corrupt_reason.is_empty()).then(|| corrupt_reason.clone()),
        held_back: (!held_back.is_empty()).then(|| held_back.clone()),
    })
}

/// The active values of a reply, one per field.
fn active_values(fields: &[String]) -> Result<RangeSet, StorageError> {
    fields
        .iter()
        .map(|value| {
            value
                .parse::<u64>()
                .ok()
                .filter(|&v| v <= crate::range::MAX_VALUE)
                .ok_or_else(|| StorageError::corrupt("an active value"))
        })
        .collect()
}

/// Reads a ranges reply (see `lua/ranges.lua`): the page of a state, from `from`, of at most
/// `limit` intervals.
pub(super) fn ranges(
    job: JobId,
    from: u64,
    limit: usize,
    reply: &[String],
) -> Result<RangeSet, StorageError> {
    match reply {
        [] => Err(StorageError::UnknownJob(job)),
        [kind, page] if kind == "page" => parse_set(page),
        [kind, values @ ..] if kind == "active" => Ok(active_values(values)?.page(from, limit)),
        [kind, reason] if kind == "corrupt" => Err(StorageError::SetAside {
            job,
            reason: reason.clone(),
        }),
        _ => Err(StorageError::corrupt("a ranges reply")),
    }
}

/// The `N` space-separated fields of a record the scripts keep, or `Corrupt` naming `what`.
fn fields<'a, const N: usize>(text: &'a [u8], what: &str) -> Result<[&'a str; N], StorageError> {
    let corrupt = || StorageError::corrupt(what);
    let text = std::str::from_utf8(text).map_err(|_| corrupt())?;
    let parts: Vec<&str> = text.split(' ').collect();
    <[&str; N]>::try_from(parts).map_err(|_| corrupt())
}

/// A task's record as the scripts keep it once an attempt has ended: `"<attempts> <failures>
/// <lost> <started ms> <finished ms> <task id> <worker instance>"`, `-` where there is none.
#[derive(Debug, Default, PartialEq)]
struct TaskRecord {
    attempts: u32,
    failures: u32,
    lost: u32,
    started_at: Option<Millis>,
    finished_at: Option<Millis>,
    task_id: Option<TaskId>,
}

impl TaskRecord {
    fn parse(text: &[u8]) -> Result<Self, StorageError> {
        let what = "a task record";
        let [attempts, failures, lost, started, finished, task, _worker] = fields(text, what)?;
        let count = |n: &str| n.parse().map_err(|_| StorageError::corrupt(what));
        Ok(TaskRecord {
            attempts: count(attempts)?,
            failures: count(failures)?,
            lost: count(lost)?,
            started_at: started.parse().ok(),
            finished_at: finished.parse().ok(),
            task_id: task.parse().ok(),
        })
    }
}

/// The current attempt of an active value, as its lease holds it: `"<task id> <attempt>
/// <deadline ms> <started ms> <worker instance>"`.
#[derive(Debug, PartialEq)]
struct ActiveLease {
    task_id: Option<TaskId>,
    attempt: u32,
    deadline: Option<Millis>,
    started_at: Option<Millis>,
}

impl ActiveLease {
    fn parse(text: &[u8]) -> Result<Self, StorageError> {
        let [task, attempt, deadline, started, _worker] = fields(text, "a lease")?;
        Ok(ActiveLease {
            task_id: task.parse().ok(),
            attempt: attempt
                .parse()
                .map_err(|_| StorageError::corrupt("a lease"))?,
            deadline: deadline.parse().ok(),
            started_at: started.parse().ok(),
        })
    }
}

/// Reads an info reply (see `lua/info.lua`): `[]` when the job does not exist, `[corrupt,
/// reason]` when it is set aside, else the value's state, record, lease, result, log, progress,
/// last error and worker.
pub(super) fn info(
    job: JobId,
    value: u64,
    reply: Vec<Option<Vec<u8>>>,
) -> Result<TaskInfo, StorageError> {
    let [
        state,
        record,
        lease,
        result,
        log,
        progress,
        last_error,
        worker,
    ] = <[_; 8]>::try_from(reply).map_err(|reply| match &reply[..] {
        [] => StorageError::UnknownJob(job),
        [Some(state), Some(reason)] if state == b"corrupt" => StorageError::SetAside {
            job,
            reason: String::from_utf8_lossy(reason).into_owned(),
        },
        _ => StorageError::corrupt("task info"),
    })?;
    let state = match state.as_deref() {
        Some(b"active") => TaskState::Active,
        Some(b"succeeded") => TaskState::Succeeded,
        Some(b"failed") => TaskState::Failed,
        Some(b"quarantined") => TaskState::Quarantined,
        _ => TaskState::Pending,
    };
    let record = match record {
        Some(text) => TaskRecord::parse(&text)?,
        None => TaskRecord::default(),
    };
    let lease = lease.map(|text| ActiveLease::parse(&text)).transpose()?;
    let worker = match worker {
        Some(json) => Some(
            serde_json::from_slice(&json)
                .map_err(|e| StorageError::corrupt_because("a worker", e))?,
        ),
        None => None,
    };
    let mut info = TaskInfo {
        value,
        state: Some(state),
        attempts: record.attempts,
        failures: record.failures,
        lost: record.lost,
        worker,
        task_id: record.task_id,
        started_at: record.started_at,
        deadline: None,
        finished_at: record.finished_at,
        last_error: last_error.map(|e| String::from_utf8_lossy(&e).into_owned()),
        progress,
        result,
        log,
    };
    // An attempt under way is newer than the record of the ones that ended.
    if let Some(lease) = lease {
        info.attempts = lease.attempt;
        info.task_id = lease.task_id;
        info.started_at = lease.started_at;
        info.deadline = lease.deadline;
        info.finished_at = None;
    }
    Ok(info)
}

/// A verdict as the report script takes it: its word and its payload.
pub(super) fn verdict(verdict: &Verdict) -> (&'static str, &[u8]) {
    match verdict {
        Verdict::Success { result } => ("success", result),
        Verdict::Error { reason } => ("error", reason.as_bytes()),
        Verdict::Fatal { reason } => ("fatal", reason.as_bytes()),
        Verdict::Requeue => ("requeue", b""),
        Verdict::Untried => ("untried", b""),
    }
}

/// Reads the report script's reply for `count` reports of one job: whether the job is done, and
/// one ack per report (a report the reply says nothing of counts as refused for an unknown job).
pub(super) fn report_reply(
    reply: &[String],
    count: usize,
) -> Result<(bool, Vec<Ack>), StorageError> {
    let (done, answers) = reply
        .split_first()
        .ok_or_else(|| StorageError::corrupt("an empty report reply"))?;
    let mut acks = vec![Ack::UnknownJob; count];
    for (ack, answer) in acks.iter_mut().zip(answers) {
        *ack = match answer.as_str() {
            "applied" => Ack::Applied,
            "stale" => Ack::StaleLease,
            _ => Ack::UnknownJob,
        };
    }
    Ok((done == "1", acks))
}

/// Reads the heartbeat script's reply: the new deadline, -2 when the job is gone, or another
/// negative number when the lease is no longer current.
pub(super) fn heartbeat(deadline: i64) -> Heartbeat {
    match u64::try_from(deadline) {
        Ok(deadline) => Heartbeat::Continue { deadline },
        Err(_) if deadline == -2 => Heartbeat::JobGone,
        Err(_) => Heartbeat::Stop,
    }
}

/// Reads the reap script's reply `[requeued, quarantined, done]`: what it did, and whether the
/// job is done.
pub(super) fn reaped(counts: &[u64]) -> Result<(Reaped, bool), StorageError> {
    let [requeued, quarantined, done] = counts[..] else {
        return Err(StorageError::corrupt("a reap reply"));
    };
    Ok((
        Reaped {
            requeued,
            quarantined,
        },
        done == 1,
    ))
}

/// What the registry keeps of a worker, as JSON, after the time it was seen.
#[derive(Serialize, Deserialize)]
struct WorkerRecord {
    worker: WorkerId,
    ceilings: Limits,
}

/// A worker and its ceilings as the register script stores them.
pub(super) fn worker_record(worker: &WorkerId, ceilings: &Limits) -> Result<String, StorageError> {
    to_json(
        "a worker record",
        &WorkerRecord {
            worker: worker.clone(),
            ceilings: *ceilings,
        },
    )
}

/// Reads one of the workers script's entries: `"<seen ms> <worker record>"`.
pub(super) fn worker_entry(entry: &str) -> Result<RegisteredWorker, StorageError> {
    let (seen_at, record) = entry
        .split_once(' ')
        .ok_or_else(|| StorageError::corrupt("a worker entry"))?;
    let record: WorkerRecord = serde_json::from_str(record)
        .map_err(|e| StorageError::corrupt_because("a worker record", e))?;
    Ok(RegisteredWorker {
        worker: record.worker,
        ceilings: record.ceilings,
        seen_at: seen_at
            .parse()
            .map_err(|_| StorageError::corrupt("a worker's time"))?,
    })
}

/// `value` as JSON, to be stored or given to a script; `what` names it should that fail.
pub(super) fn to_json(what: &str, value: &impl Serialize) -> Result<String, StorageError> {
    serde_json::to_string(value)
        .map_err(|e| StorageError::corrupt_because(format!("{what} that JSON cannot hold"), e))
}
