//! The embedded backend: the whole queue in one process's memory.
//!
//! It serves `wasmjob run` and fast tests. It keeps every rule of the storage interface (leases
//! fenced by task id, interval-set ranges, runnable only once uploaded) so that the conformance
//! suite holds it to the same cases as the distributed backend. Nothing is persisted.

use super::{
    Ack, Claim, Heartbeat, JobId, JobStatus, Lease, Millis, Reaped, RegisteredWorker, Report,
    StorageError, Submitted, SubmitterStore, TaskId, TaskInfo, TaskState, Verdict, WORKER_TTL,
    WorkerId, WorkerStore, now_millis, on_last_chance,
};
use crate::limits::Limits;
use crate::manifest::{Digest, ManifestPath};
use crate::range::RangeSet;
use crate::spec::{JobSpec, Priority};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// The last error of a task whose lease expired.
pub(super) const LEASE_EXPIRED: &str = "lease expired: the worker died or stopped reporting";

/// The in-memory queue. Cheap to share behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    /// Bumped whenever a claim may have become possible, so that idle workers wake at once.
    work: watch::Sender<u64>,
    lease_ttl: Duration,
}

#[derive(Debug, Default)]
struct State {
    jobs: HashMap<JobId, JobRecord>,
    /// Claim order: highest priority first, then the oldest job (ULIDs sort by time).
    queue: BTreeSet<(Reverse<Priority>, JobId)>,
    blobs: HashMap<Digest, Arc<Vec<u8>>>,
    /// Registered workers by instance.
    workers: HashMap<ulid::Ulid, RegisteredWorker>,
}

#[derive(Debug)]
struct JobRecord {
    spec: Arc<JobSpec>,
    submitted_at: Millis,
    /// Manifest files not uploaded yet; the job is runnable when this is empty.
    missing: BTreeSet<ManifestPath>,
    pending: RangeSet,
    succeeded: RangeSet,
    failed: RangeSet,
    quarantined: RangeSet,
    active: BTreeMap<u64, Lease>,
    /// Per-value records, created at a value's first claim: submitting costs nothing per value.
    tasks: HashMap<u64, TaskRecord>,
    /// Why a worker holds the job back, until one of its tasks succeeds.
    held_back: Option<String>,
}

#[derive(Debug, Default)]
struct TaskRecord {
    attempts: u32,
    failures: u32,
    lost: u32,
    worker: Option<WorkerId>,
    task_id: Option<TaskId>,
    started_at: Option<Millis>,
    finished_at: Option<Millis>,
    last_error: Option<String>,
    progress: Option<Vec<u8>>,
    result: Option<Vec<u8>>,
    log: Option<Vec<u8>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty queue with the default lease time.
    pub fn new() -> Self {
        Self::with_lease_ttl(super::DEFAULT_LEASE_TTL)
    }

    /// An empty queue whose leases last `lease_ttl` between heartbeats.
    pub fn with_lease_ttl(lease_ttl: Duration) -> Self {
        MemoryStore {
            state: Mutex::default(),
            work: watch::Sender::new(0),
            lease_ttl,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation below completes before it can panic, so a poisoned state is consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake_workers(&self) {
        self.work.send_modify(|generation| *generation += 1);
    }

    fn lease_deadline(&self, now: Millis) -> Millis {
        now + self.lease_ttl.as_millis() as Millis
    }

    fn try_claim(&self, worker: &WorkerId, max: usize, avoid: &[JobId]) -> Option<Claim> {
        let mut state = self.lock();
        let now = now_millis();
        let state = &mut *state;
        let ceilings = state.workers.get(&worker.instance).map(|w| w.ceilings);
        for (_, id) in &state.queue {
            if avoid.contains(id) {
                continue;
            }
            let job = state.jobs.get_mut(id).expect("queued jobs exist");
            if !job.missing.is_empty() || job.pending.is_empty() {
                continue;
            }
            if ceilings.is_some_and(|c| job.spec.limits.within(&c).is_err()) {
                continue;
            }
            let room = match job.spec.max_concurrency {
                Some(cap) => (cap as usize).saturating_sub(job.active.len()),
                None => max,
            };
            let take = max.min(room);
            if take == 0 {
                continue;
            }
            let taken: Vec<u64> = job.pending.take_first(take as u64).values().collect();
            // A value on its last chance is claimed alone (see the Redis claim script).
            let max_lost = job.spec.max_lost;
            let alone = |value: &u64| {
                job.tasks
                    .get(value)
                    .is_some_and(|t| on_last_chance(t.lost, max_lost))
            };
            let values: Vec<u64> = match taken.iter().position(alone) {
                Some(_) if taken.len() == 1 => taken,
                Some(0) => {
                    for &value in &taken[1..] {
                        job.pending.insert(value);
                    }
                    taken[..1].to_vec()
                }
                Some(_) => {
                    let (lost, fresh): (Vec<u64>, Vec<u64>) = taken.into_iter().partition(alone);
                    for value in lost {
                        job.pending.insert(value);
                    }
                    fresh
                }
                None => taken,
            };
            let leases = values
                .into_iter()
                .map(|value| {
                    let task = job.tasks.entry(value).or_default();
                    task.attempts += 1;
                    let lease = Lease {
                        job: *id,
                        task: TaskId::generate(),
                        value,
                        attempt: task.attempts,
                        alone: on_last_chance(task.lost, max_lost),
                        deadline: self.lease_deadline(now),
                    };
                    task.worker = Some(worker.clone());
                    task.task_id = Some(lease.task);
                    task.started_at = Some(now);
                    task.progress = None;
                    job.active.insert(value, lease.clone());
                    lease
                })
                .collect();
            return Some(Claim {
                spec: Arc::clone(&job.spec),
                job: *id,
                leases,
            });
        }
        None
    }
}

impl JobRecord {
    fn status(&self, id: JobId) -> JobStatus {
        let mut active = RangeSet::new();
        for &value in self.active.keys() {
            active.insert(value);
        }
        JobStatus {
            id,
            name: self.spec.name.clone(),
            priority: self.spec.priority,
            pending: self.pending.clone(),
            active,
            succeeded: self.succeeded.clone(),
            failed: self.failed.clone(),
            quarantined: self.quarantined.clone(),
            missing_files: self.missing.len(),
            submitted_at: self.submitted_at,
            // Jobs held in memory are typed: none is ever unreadable.
            set_aside: None,
            held_back: self.held_back.clone(),
        }
    }

    /// Counts a lost attempt of `value` (its lease expired): back to pending, or quarantined at
    /// the job's max lost. Returns whether the task went back to pending.
    fn lose_attempt(&mut self, value: u64, now: Millis) -> bool {
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
    fn fail_attempt(&mut self, value: u64, reason: String, fatal: bool, now: Millis) -> bool {
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

fn unknown(job: JobId) -> StorageError {
    StorageError::UnknownJob(job)
}

impl SubmitterStore for MemoryStore {
    async fn submit(&self, spec: &JobSpec) -> Result<Submitted, StorageError> {
        spec.validate()?;
        super::admit(spec, &self.workers().await?)?;
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
        let entry = super::check_upload(job, &record.spec, path, bytes)?;
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

    async fn info(&self, job: JobId, value: u64) -> Result<TaskInfo, StorageError> {
        let state = self.lock();
        let record = state.jobs.get(&job).ok_or_else(|| unknown(job))?;
        if !record.spec.range.contains(value) {
            return Err(StorageError::UnknownValue { job, value });
        }
        let lease = record.active.get(&value);
        let state = if lease.is_some() {
            TaskState::Active
        } else if record.succeeded.contains(value) {
            TaskState::Succeeded
        } else if record.failed.contains(value) {
            TaskState::Failed
        } else if record.quarantined.contains(value) {
            TaskState::Quarantined
        } else {
            TaskState::Pending
        };
        let mut info = TaskInfo {
            value,
            state: Some(state),
            deadline: lease.map(|l| l.deadline),
            ..TaskInfo::default()
        };
        if let Some(task) = record.tasks.get(&value) {
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
        }
        Ok(info)
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

impl WorkerStore for MemoryStore {
    fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    async fn register(&self, worker: &WorkerId, ceilings: &Limits) -> Result<(), StorageError> {
        let registered = RegisteredWorker {
            worker: worker.clone(),
            ceilings: *ceilings,
            seen_at: now_millis(),
        };
        self.lock().workers.insert(worker.instance, registered);
        // A worker with other ceilings may be able to claim what others could not.
        self.wake_workers();
        Ok(())
    }

    async fn unregister(&self, worker: &WorkerId) -> Result<(), StorageError> {
        self.lock().workers.remove(&worker.instance);
        Ok(())
    }

    async fn next_avoiding(
        &self,
        worker: &WorkerId,
        max: usize,
        wait: Duration,
        avoid: &[JobId],
    ) -> Result<Option<Claim>, StorageError> {
        // Subscribed before looking, so work that appears in between still wakes us.
        let mut work = self.work.subscribe();
        let give_up = tokio::time::Instant::now() + wait;
        loop {
            if max == 0 {
                return Ok(None);
            }
            if let Some(claim) = self.try_claim(worker, max, avoid) {
                return Ok(Some(claim));
            }
            if tokio::time::timeout_at(give_up, work.changed())
                .await
                .is_err()
            {
                return Ok(None);
            }
        }
    }

    async fn hold_back(&self, job: JobId, note: &str) -> Result<(), StorageError> {
        if let Some(record) = self.lock().jobs.get_mut(&job) {
            record.held_back = Some(note.to_owned());
        }
        Ok(())
    }

    async fn drop_damaged(&self, digest: &Digest) -> Result<(), StorageError> {
        self.lock().blobs.remove(digest);
        Ok(())
    }

    async fn download(&self, digest: &Digest) -> Result<Vec<u8>, StorageError> {
        let state = self.lock();
        let blob = state
            .blobs
            .get(digest)
            .ok_or(StorageError::UnknownBlob(*digest))?;
        Ok(blob.to_vec())
    }

    async fn report(&self, reports: &[Report]) -> Result<Vec<Ack>, StorageError> {
        let now = now_millis();
        let mut state = self.lock();
        let acks = reports
            .iter()
            .map(|report| {
                let lease = &report.lease;
                let Some(job) = state.jobs.get_mut(&lease.job) else {
                    return Ack::UnknownJob;
                };
                match job.active.get(&lease.value) {
                    Some(current) if current.task == lease.task => {}
                    _ => return Ack::StaleLease,
                }
                job.active.remove(&lease.value);
                let task = job.tasks.entry(lease.value).or_default();
                if !matches!(report.verdict, Verdict::Requeue | Verdict::Untried) {
                    task.log = Some(report.log.clone());
                }
                match &report.verdict {
                    Verdict::Success { result } => {
                        job.held_back = None;
                        task.result = Some(result.clone());
                        task.finished_at = Some(now);
                        job.succeeded.insert(lease.value);
                    }
                    Verdict::Error { reason } => {
                        job.fail_attempt(lease.value, reason.clone(), false, now);
                    }
                    Verdict::Fatal { reason } => {
                        job.fail_attempt(lease.value, reason.clone(), true, now);
                    }
                    Verdict::Requeue => {
                        job.pending.insert(lease.value);
                    }
                    Verdict::Untried => {
                        // As if it had not been claimed: the next claim has its number again.
                        task.attempts = task.attempts.saturating_sub(1);
                        job.pending.insert(lease.value);
                    }
                }
                Ack::Applied
            })
            .collect();
        drop(state);
        // A retry, a requeue or a freed concurrency slot may let a waiting worker claim.
        self.wake_workers();
        Ok(acks)
    }

    async fn heartbeat(
        &self,
        lease: &Lease,
        progress: Option<&[u8]>,
    ) -> Result<Heartbeat, StorageError> {
        let now = now_millis();
        let mut state = self.lock();
        let Some(job) = state.jobs.get_mut(&lease.job) else {
            return Ok(Heartbeat::Stop);
        };
        let Some(current) = job.active.get_mut(&lease.value) else {
            return Ok(Heartbeat::Stop);
        };
        if current.task != lease.task {
            return Ok(Heartbeat::Stop);
        }
        current.deadline = self.lease_deadline(now);
        let deadline = current.deadline;
        if let Some(progress) = progress {
            job.tasks.entry(lease.value).or_default().progress = Some(progress.to_vec());
        }
        Ok(Heartbeat::Continue { deadline })
    }

    async fn check(&self) -> Result<(), StorageError> {
        // The queue lives and dies with this process: it cannot lose its data under us.
        Ok(())
    }

    async fn reap(&self) -> Result<Reaped, StorageError> {
        let now = now_millis();
        let mut reaped = Reaped::default();
        let mut state = self.lock();
        for job in state.jobs.values_mut() {
            let expired: Vec<u64> = job
                .active
                .values()
                .filter(|lease| lease.deadline < now)
                .map(|lease| lease.value)
                .collect();
            for value in expired {
                job.active.remove(&value);
                if job.lose_attempt(value, now) {
                    reaped.requeued += 1;
                } else {
                    reaped.quarantined += 1;
                }
            }
        }
        drop(state);
        if reaped.requeued > 0 {
            self.wake_workers();
        }
        Ok(reaped)
    }
}
