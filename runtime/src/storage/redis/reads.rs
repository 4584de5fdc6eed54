//! The submitter's reads: a job's status and the pages of its states, one value's info, the listings of jobs, and a job's
//! spec. Each is one script or command and changes nothing, but a status that finds its job
//! gone forgets its spec.
//!
//! Reading the replies is `wire`'s; the cached specs are `specs`'s.

use super::queue::job_score;
use super::scripts::SCRIPTS;
use super::{RedisStore, wire};
use crate::range::RangeSet;
use crate::spec::{JobSpec, Priority};
use crate::storage::{JobId, JobStatus, STATUS_PAGE, StorageError, TaskInfo, TaskState};

/// The job's values by state.
pub(super) async fn status(store: &RedisStore, job: JobId) -> Result<JobStatus, StorageError> {
    let limit = STATUS_PAGE.to_string();
    let reply: Vec<String> = store.run(&SCRIPTS.status, job, &[limit.as_bytes()]).await?;
    let status = wire::status(job, &reply);
    if let Err(StorageError::UnknownJob(_)) = status {
        store.specs.forget(job);
    }
    status
}

/// One page of the job's values in `state`.
pub(super) async fn ranges(
    store: &RedisStore,
    job: JobId,
    state: TaskState,
    from: u64,
    limit: usize,
) -> Result<RangeSet, StorageError> {
    let (state_name, from_text, limit_text) =
        (state.to_string(), from.to_string(), limit.to_string());
    let args = [
        state_name.as_bytes(),
        from_text.as_bytes(),
        limit_text.as_bytes(),
    ];
    let reply: Vec<String> = store.run(&SCRIPTS.ranges, job, &args).await?;
    wire::ranges(job, from, limit, &reply)
}

/// Everything known about one value of the job.
pub(super) async fn info(
    store: &RedisStore,
    job: JobId,
    value: u64,
) -> Result<TaskInfo, StorageError> {
    let spec = store.spec(job).await?;
    if !spec.range.contains(value) {
        return Err(StorageError::UnknownValue { job, value });
    }
    let field = value.to_string();
    let reply: Vec<Option<Vec<u8>>> = store.run(&SCRIPTS.info, job, &[field.as_bytes()]).await?;
    wire::info(job, value, reply)
}

/// Every job, highest priority first, then oldest first.
pub(super) async fn list(store: &RedisStore) -> Result<Vec<JobStatus>, StorageError> {
    let ids: Vec<String> = store
        .query(redis::cmd("ZRANGE").arg(store.keys.jobs()).arg(0).arg(-1))
        .await?;
    statuses(store, ids).await
}

/// The jobs of one priority, oldest first.
pub(super) async fn list_by_priority(
    store: &RedisStore,
    priority: Priority,
) -> Result<Vec<JobStatus>, StorageError> {
    let score = job_score(priority);
    let ids: Vec<String> = store
        .query(
            redis::cmd("ZRANGEBYSCORE")
                .arg(store.keys.jobs())
                .arg(score)
                .arg(score),
        )
        .await?;
    statuses(store, ids).await
}

/// The job's spec as submitted.
pub(super) async fn describe(store: &RedisStore, job: JobId) -> Result<JobSpec, StorageError> {
    Ok(JobSpec::clone(&*store.spec(job).await?))
}

/// The status of each job listed, skipping entries that name no job (any more).
async fn statuses(store: &RedisStore, ids: Vec<String>) -> Result<Vec<JobStatus>, StorageError> {
    let mut statuses = Vec::with_capacity(ids.len());
    for id in ids {
        let Ok(job) = id.parse::<JobId>() else {
            continue;
        };
        match status(store, job).await {
            Ok(status) => statuses.push(status),
            // Deleted between the listing and now.
            Err(StorageError::UnknownJob(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(statuses)
}
