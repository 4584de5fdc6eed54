//! The queue proper: the index of the jobs that may have tasks to claim, highest priority first
//! and then oldest first, and the wake-up published when a job joins it.
//!
//! Which job joins or leaves it, and when, is decided by the operations (a submit or the last
//! upload adds a job; a claim, report, reap or delete that finds it finished takes it out);
//! listening for the wake-ups is `wake`'s.

use super::RedisStore;
use crate::spec::Priority;
use crate::storage::{JobId, StorageError};

/// A job's score in both job indexes (`jobs` and `queue`): minus its priority, so that a
/// higher priority sorts first and ids, oldest first, break ties.
pub(super) fn job_score(priority: Priority) -> i64 {
    -i64::from(priority.0)
}

impl RedisStore {
    /// Makes a job whose files are all stored claimable, and wakes idle workers.
    pub(super) async fn enqueue(&self, job: JobId, priority: Priority) -> Result<(), StorageError> {
        let mut pipe = redis::pipe();
        self.add_enqueue(&mut pipe, job, priority);
        self.query_pipe(&pipe).await
    }

    /// Adds what makes a job claimable to a pipeline: its place in the queue and a wake-up.
    pub(super) fn add_enqueue(&self, pipe: &mut redis::Pipeline, job: JobId, priority: Priority) {
        pipe.cmd("ZADD")
            .arg(self.keys.queue())
            .arg(job_score(priority))
            .arg(job.to_string())
            .ignore();
        // Naming the job lets an idle worker claim from it without looking at the queue first.
        pipe.cmd("PUBLISH")
            .arg(self.keys.wake())
            .arg(job.to_string())
            .ignore();
    }

    /// Takes a job out of the queue: it has nothing more to give, or it is gone.
    pub(super) async fn dequeue(&self, job: JobId) -> Result<(), StorageError> {
        self.query::<i64>(
            redis::cmd("ZREM")
                .arg(self.keys.queue())
                .arg(job.to_string()),
        )
        .await
        .map(drop)
    }

    /// The job an index entry names; `None`, with the entry removed from `index`, when it names
    /// none: written by something else, it would be in the way of every pass over the index.
    pub(super) async fn job_of_entry(
        &self,
        index: String,
        entry: &str,
    ) -> Result<Option<JobId>, StorageError> {
        if let Ok(job) = entry.parse::<JobId>() {
            return Ok(Some(job));
        }
        self.query::<()>(redis::cmd("ZREM").arg(index).arg(entry))
            .await?;
        Ok(None)
    }
}
