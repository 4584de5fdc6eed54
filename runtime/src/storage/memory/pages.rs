//! The task infos of many values of one job under one lock: how `wasmjob run --output` streams
//! its lines while the job runs, in value order, without a call per value.
//!
//! What one value's info says is `state`'s; this only walks the job's range.

use super::MemoryStore;
use crate::range::{MAX_VALUE, RangeSet};
use crate::storage::{JobId, StorageError, TaskInfo, TaskState};

impl MemoryStore {
    /// The infos of the job's values from `from` on, in ascending order, up to `limit` of
    /// them, stopping before the first value that is not final yet (pending or active): the
    /// next page of what will not change any more. Fewer than `limit` means the page reached
    /// such a value or the end of the range.
    pub fn finished_infos(
        &self,
        job: JobId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<TaskInfo>, StorageError> {
        let state = self.lock();
        let record = state.jobs.get(&job).ok_or(StorageError::UnknownJob(job))?;
        let mut infos = Vec::new();
        if from > MAX_VALUE {
            return Ok(infos);
        }
        // Each interval of the page holds at least one value, so `limit` of them are enough;
        // its first may start before `from`, and is cut there rather than walked.
        let values = record
            .spec
            .range
            .page(from, limit)
            .intersection(&RangeSet::from_interval(from, MAX_VALUE));
        for value in values.values().take(limit) {
            if matches!(
                record.state_of(value),
                TaskState::Pending | TaskState::Active
            ) {
                break;
            }
            infos.push(record.info(value));
        }
        Ok(infos)
    }
}
