//! The distributed backend: the queue in Redis, shared by submitters and workers on any host.
//!
//! Every state change is one Lua script (see `scripts`), atomic, judged on Redis's clock. A
//! job's values are interval sets, so a job of 10,000,000 values costs one short string to
//! submit. Manifest files are blobs keyed by sha256, stored once and shared between jobs, and
//! removed with the last job that uses them; uploads are checked against the manifest before a
//! byte is sent and downloads are checked by the worker's cache. Idle workers wait on a pub/sub
//! channel that scripts publish to when work appears, so a new job starts at once.
//!
//! Key layout: see `keys`. The layout keeps every per-job script within one cluster slot; this
//! client speaks to a single Redis server.
//!
//! # Layout
//!
//! This file holds the store and its configuration, and implements the storage traits by
//! handing each operation to the file of its concept:
//! - `connection`: connecting, sending commands and scripts, and what a Redis error means;
//! - `keys`: every key name, and the order of a job's keys; `scripts` and `lua/`: the scripts;
//! - `wire`: the scripts' replies read as Rust values (pure, tested without a server);
//! - `specs`: job specs read once and kept; `queue`: the index of claimable jobs;
//! - `wake`: the wake-ups idle workers wait on; `claim`: claiming tasks, which never waits;
//! - `report`: reports, heartbeats, holding back, and the reaper;
//! - `submit`: submitting, uploading and deleting jobs; `blob`: a file's bytes, in chunks;
//! - `reads`: status, info, listings, describe; `registry`: the live workers and their
//!   ceilings; `instance`: the marker that tells a server that lost its data.

mod blob;
mod claim;
mod connection;
mod instance;
mod keys;
mod queue;
mod reads;
mod registry;
mod report;
mod scripts;
mod specs;
mod submit;
mod wake;
mod wire;

pub use connection::redact_url;

use super::{
    Ack, Claim, Heartbeat, JobId, JobStatus, Lease, Reaped, RegisteredWorker, Report, StorageError,
    Submitted, SubmitterStore, TaskInfo, TaskState, WakeMark, WorkerId, WorkerStore,
};
use crate::limits::Limits;
use crate::manifest::{Digest, ManifestPath};
use crate::range::RangeSet;
use crate::spec::{JobSpec, Priority};
use keys::Keys;
use redis::aio::ConnectionManager;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The Redis URL used when none is given.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// The key prefix used when none is given.
pub const DEFAULT_PREFIX: &str = "wasmjob";

/// How to reach the queue.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// The server, e.g. `redis://127.0.0.1:6379`.
    pub url: String,
    /// The prefix of every key, so that several queues can share one server.
    pub prefix: String,
    /// How long a lease lasts between heartbeats.
    pub lease_ttl: Duration,
    /// How long connecting, and each reply, may take before the server counts as unreachable.
    pub timeout: Duration,
}

impl RedisConfig {
    /// The defaults, for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            prefix: DEFAULT_PREFIX.into(),
            lease_ttl: super::DEFAULT_LEASE_TTL,
            timeout: Duration::from_secs(5),
        }
    }
}

/// The queue in Redis. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct RedisStore {
    /// The server's URL without its password, for messages.
    url: String,
    client: redis::Client,
    con: ConnectionManager,
    keys: Keys,
    lease_ttl: Duration,
    /// Specs never change once submitted, so each is read once (while it stays in this
    /// bounded cache).
    specs: specs::SpecCache,
    /// The marker of the server's data this store knows.
    instance: instance::Marker,
    /// Started by the first wake mark or wait: the wake-ups published on the wake channel.
    wake: OnceCell<wake::WakeListener>,
    /// The ceilings this process's workers registered, and the live workers as last read.
    registry: registry::Registered,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl SubmitterStore for RedisStore {
    async fn submit(&self, spec: &JobSpec) -> Result<Submitted, StorageError> {
        submit::submit(self, spec).await
    }

    async fn upload(
        &self,
        job: JobId,
        path: &ManifestPath,
        bytes: &[u8],
    ) -> Result<(), StorageError> {
        submit::upload(self, job, path, bytes, &|_| {}).await
    }

    async fn upload_with_progress(
        &self,
        job: JobId,
        path: &ManifestPath,
        bytes: &[u8],
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), StorageError> {
        submit::upload(self, job, path, bytes, progress).await
    }

    async fn status(&self, job: JobId) -> Result<JobStatus, StorageError> {
        reads::status(self, job).await
    }

    async fn ranges(
        &self,
        job: JobId,
        state: TaskState,
        from: u64,
        limit: usize,
    ) -> Result<RangeSet, StorageError> {
        reads::ranges(self, job, state, from, limit).await
    }

    async fn info(&self, job: JobId, value: u64) -> Result<TaskInfo, StorageError> {
        reads::info(self, job, value).await
    }

    async fn list(&self) -> Result<Vec<JobStatus>, StorageError> {
        reads::list(self).await
    }

    async fn list_by_priority(&self, priority: Priority) -> Result<Vec<JobStatus>, StorageError> {
        reads::list_by_priority(self, priority).await
    }

    async fn describe(&self, job: JobId) -> Result<JobSpec, StorageError> {
        reads::describe(self, job).await
    }

    async fn workers(&self) -> Result<Vec<RegisteredWorker>, StorageError> {
        registry::workers(self).await
    }

    async fn delete(&self, job: JobId) -> Result<(), StorageError> {
        submit::delete(self, job).await
    }
}

impl WorkerStore for RedisStore {
    fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    async fn register(&self, worker: &WorkerId, ceilings: &Limits) -> Result<(), StorageError> {
        registry::register(self, worker, ceilings).await
    }

    async fn unregister(&self, worker: &WorkerId) -> Result<(), StorageError> {
        registry::unregister(self, worker).await
    }

    async fn wake_mark(&self) -> Result<WakeMark, StorageError> {
        wake::mark(self).await
    }

    async fn claim(
        &self,
        worker: &WorkerId,
        max: usize,
        avoid: &[JobId],
        hint: Option<JobId>,
    ) -> Result<Option<Claim>, StorageError> {
        claim::claim(self, worker, max, avoid, hint).await
    }

    async fn wait_for_work(
        &self,
        mark: WakeMark,
        timeout: Duration,
    ) -> Result<Option<WakeMark>, StorageError> {
        wake::wait(self, mark, timeout).await
    }

    async fn hold_back(&self, job: JobId, note: &str) -> Result<(), StorageError> {
        report::hold_back(self, job, note).await
    }

    async fn drop_damaged(&self, digest: &Digest) -> Result<(), StorageError> {
        self.drop_blob(digest).await
    }

    async fn download(&self, digest: &Digest) -> Result<Vec<u8>, StorageError> {
        self.fetch_blob(digest).await
    }

    async fn report(&self, reports: &[Report]) -> Result<Vec<Ack>, StorageError> {
        report::report(self, reports).await
    }

    async fn heartbeat(
        &self,
        lease: &Lease,
        progress: Option<&[u8]>,
    ) -> Result<Heartbeat, StorageError> {
        report::heartbeat(self, lease, progress).await
    }

    async fn check(&self) -> Result<(), StorageError> {
        instance::check(self).await
    }

    async fn reap(&self) -> Result<Reaped, StorageError> {
        report::reap(self).await
    }
}
