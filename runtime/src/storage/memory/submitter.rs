//! The embedded queue's submitter side: submitting a job (runnable at once when every file is
//! already stored), uploading files, the reads (status, info, listings, describe, the live
//! workers) and deleting a job with every file no other job uses.
//!
//! The admission check and the upload check are the storage interface's; the state is `state`'s.

use super::MemoryStore;
use super::batch::Batches;
use super::state::JobRecord;
use crate::manifest::ManifestPath;
use crate::range::RangeSet;
use crate::spec::{JobSpec, Priority};
use crate::storage::{
    JobId, JobStatus, Millis, RegisteredWorker, StorageError, Submitted, SubmitterStore, TaskInfo,
    TaskState, WORKER_TTL, now_millis,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

fn unknown(job: JobId) -> StorageError {
    StorageError::UnknownJob(job)
}

impl SubmitterStore for MemoryStore {
    async fn submit(&self, spec: &JobSpec) -> Result<Submitted, StorageError> {
        spec.validate()?;
        crate::storage::admit(spec, &self.workers().await?)?;
        let id = JobId::generate();
        let mut state = self.lock();
        let missing: BTreeSet<ManifestPath> = spec
            .manifest
            .files()
            .filter(|(_, entry)| !state.blobs.contains_key(&entry.sha256))
            .map(|(path, _)| path.clone())
            .collect();
        let runnable = missing.is_empty();
        state.queue.insert((Reverse(spec.priority), id));
        state.jobs.insert(
            id,
            JobRecord {
                spec: Arc::new(spec.clone()),
                submitted_at: now_millis(),
                missing: missing.clone(),
                pending: spec.range.clone(),
                succeeded: RangeSet::new(),
                failed: RangeSet::new(),
                quarantined: RangeSet::new(),
                active: BTreeMap::new(),
                tasks: HashMap::new(),
                batches: Batches::default(),
                held_back: None,
            },
        );
        drop(state);
        if runnable {
            self.wake_workers();
        }
        Ok(Submitted {
            id,
            missing: missing.into_iter().collect(),
        })
    }

    async fn upload(
        &self,
        job: JobId,
        path: &ManifestPath,
        bytes: &[u8],
    ) -> Result<(), StorageError> {
        let mut state = self.lock();
        let record = state.jobs.get(&job).ok_or_else(|| unknown(job))?;
        let entry = crate::storage::check_upload(job, &record.spec, path, bytes)?;
        let digest = entry.sha256;
        state
            .blobs
            .entry(digest)
            .or_insert_with(|| Arc::new(bytes.to_vec()));
        let record = state.jobs.get_mut(&job).expect("looked up above");
        let spec = Arc::clone(&record.spec);
        // Every path with the same content is satisfied by this one upload.
        record
            .missing
            .retain(|p| spec.manifest.file(p).is_none_or(|e| e.sha256 != digest));
        let runnable = record.missing.is_empty();
        drop(state);
        if runnable {
            self.wake_workers();
        }
        Ok(())
    }

    async fn status(&self, job: JobId) -> Result<JobStatus, StorageError> {
        let state = self.lock();
        let record = state.jobs.get(&job).ok_or_else(|| unknown(job))?;
        Ok(record.status(job))
    }

    async fn ranges(
        &self,
        job: JobId,
        state: TaskState,
        from: u64,
        limit: usize,
    ) -> Result<RangeSet, StorageError> {
        let jobs = self.lock();
        let record = jobs.jobs.get(&job).ok_or_else(|| unknown(job))?;
        Ok(record.values_in(state).page(from, limit))
    }

    async fn info(&self, job: JobId, value: u64) -> Result<TaskInfo, StorageError> {
        let state = self.lock();
        let record = state.jobs.get(&job).ok_or_else(|| unknown(job))?;
        if !record.spec.range.contains(value) {
            return Err(StorageError::UnknownValue { job, value });
        }
        Ok(record.info(value))
    }

    async fn list(&self) -> Result<Vec<JobStatus>, StorageError> {
        let state = self.lock();
        Ok(state
            .queue
            .iter()
            .map(|(_, id)| state.jobs[id].status(*id))
            .collect())
    }

    async fn list_by_priority(&self, priority: Priority) -> Result<Vec<JobStatus>, StorageError> {
        let state = self.lock();
        Ok(state
            .queue
            .iter()
            .filter(|(p, _)| p.0 == priority)
            .map(|(_, id)| state.jobs[id].status(*id))
            .collect())
    }

    async fn describe(&self, job: JobId) -> Result<JobSpec, StorageError> {
        let state = self.lock();
        let record = state.jobs.get(&job).ok_or_else(|| unknown(job))?;
        Ok(JobSpec::clone(&record.spec))
    }

    async fn delete(&self, job: JobId) -> Result<(), StorageError> {
        let mut state = self.lock();
        let record = state.jobs.remove(&job).ok_or_else(|| unknown(job))?;
        state.queue.remove(&(Reverse(record.spec.priority), job));
        // A file goes with the last job that uses it.
        for (_, entry) in record.spec.manifest.files() {
            let used = state.jobs.values().any(|other| {
                other
                    .spec
                    .manifest
                    .files()
                    .any(|(_, e)| e.sha256 == entry.sha256)
            });
            if !used {
                state.blobs.remove(&entry.sha256);
            }
        }
        Ok(())
    }

    async fn workers(&self) -> Result<Vec<RegisteredWorker>, StorageError> {
        let live_since = now_millis().saturating_sub(WORKER_TTL.as_millis() as Millis);
        let mut workers: Vec<_> = self
            .lock()
            .workers
            .values()
            .filter(|w| w.seen_at >= live_since)
            .cloned()
            .collect();
        workers.sort_by_key(|w| (w.seen_at, w.worker.instance));
        Ok(workers)
    }
}
