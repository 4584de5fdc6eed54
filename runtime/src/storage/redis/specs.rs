//! Job specs read from the server once and kept: a spec never changes once submitted, and every
//! claim, upload and info needs the job's. A spec read is checked as a submit checks it, so one
//! written into Redis by hand sets its job aside instead of reaching a worker.
//!
//! Writing a spec is the submit's business (`submit`); setting a job aside is the claim's.

use super::RedisStore;
use crate::spec::JobSpec;
use crate::storage::{JobId, StorageError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// How many job specs a store keeps read.
const MAX_CACHED_SPECS: usize = 1024;

/// The specs this store has read, at most [`MAX_CACHED_SPECS`] of them.
#[derive(Default)]
pub(super) struct SpecCache(Mutex<HashMap<JobId, Arc<JobSpec>>>);

impl SpecCache {
    fn lock(&self) -> MutexGuard<'_, HashMap<JobId, Arc<JobSpec>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The job's spec if this store has read it before.
    pub(super) fn get(&self, job: JobId) -> Option<Arc<JobSpec>> {
        self.lock().get(&job).cloned()
    }

    fn keep(&self, job: JobId, spec: Arc<JobSpec>) {
        let mut specs = self.lock();
        // A long-lived worker sees job after job: the cache is bounded, and a spec dropped
        // from it costs one read the next time.
        if specs.len() >= MAX_CACHED_SPECS {
            specs.clear();
        }
        specs.insert(job, spec);
    }

    /// Forgets the job's spec: the job is gone, or set aside.
    pub(super) fn forget(&self, job: JobId) {
        self.lock().remove(&job);
    }

    /// Forgets every spec: the server lost its data.
    pub(super) fn clear(&self) {
        self.lock().clear();
    }
}

impl RedisStore {
    /// The job's spec, from the local cache or the server.
    pub(super) async fn spec(&self, job: JobId) -> Result<Arc<JobSpec>, StorageError> {
        if let Some(spec) = self.specs.get(job) {
            return Ok(spec);
        }
        let json: Option<String> = self
            .query(redis::cmd("GET").arg(self.keys.spec(job)))
            .await?;
        self.remember_spec(job, &json.ok_or(StorageError::UnknownJob(job))?)
    }

    /// Parses a job's stored spec, checks it as a submit would, and keeps it.
    pub(super) fn remember_spec(
        &self,
        job: JobId,
        json: &str,
    ) -> Result<Arc<JobSpec>, StorageError> {
        let set_aside = |reason| StorageError::SetAside { job, reason };
        let spec: JobSpec = serde_json::from_str(json)
            .map_err(|e| set_aside(format!("its spec does not parse: {e}")))?;
        // Only a spec written into Redis by hand gets here unchecked; no worker could run it.
        spec.validate()
            .map_err(|e| set_aside(format!("its spec is invalid: {e}")))?;
        let spec = Arc::new(spec);
        self.specs.keep(job, Arc::clone(&spec));
        Ok(spec)
    }
}
