//! The embedded queue's worker side: registering, claiming tasks (the first queued job with
//! tasks to give that fits the worker's ceilings, within its max concurrency, a value on its last
//! chance alone), waiting for work, reports, heartbeats, and the reaper.
//!
//! How an attempt ends in a job's record is `state`'s; the wake-ups are the store's (`memory`).

use super::MemoryStore;
use super::state::{ActiveTask, JobRecord};
use crate::limits::Limits;
use crate::manifest::Digest;
use crate::storage::{
    Ack, Claim, Heartbeat, JobId, Lease, Millis, Reaped, RegisteredWorker, Report, StorageError,
    TaskId, Verdict, WakeMark, WorkerId, WorkerStore, now_millis, on_last_chance,
};
use std::sync::Arc;
use std::time::Duration;

impl MemoryStore {
    /// Claims up to `max` tasks of the first queued job, passing over those in `avoid`, that has
    /// tasks to give and fits the ceilings `worker` registered; `None` when no job has.
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
            let deadline = self.lease_deadline(now);
            let leases = values
                .into_iter()
                .map(|value| {
                    // A value with a record keeps it up to date; one without is claimed for the
                    // first time, and its batch gives its task id.
                    let (task, attempt, lost, worker) = match job.tasks.get_mut(&value) {
                        Some(task) => {
                            task.attempts += 1;
                            let id = TaskId::generate();
                            task.worker = Some(worker.clone());
                            task.task_id = Some(id);
                            task.started_at = Some(now);
                            task.progress = None;
                            (id, task.attempts, task.lost, Arc::new(worker.clone()))
                        }
                        None => {
                            let (id, worker) = job.batches.claim(value, worker, now);
                            (id, 1, 0, worker)
                        }
                    };
                    let lease = Lease {
                        job: *id,
                        task,
                        value,
                        attempt,
                        alone: on_last_chance(lost, max_lost),
                        deadline,
                    };
                    let active = ActiveTask {
                        lease: lease.clone(),
                        worker,
                        started: now,
                        progress: None,
                    };
                    job.active.insert(value, active);
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

    async fn wake_mark(&self) -> Result<WakeMark, StorageError> {
        Ok(self.work.mark())
    }

    async fn claim(
        &self,
        worker: &WorkerId,
        max: usize,
        avoid: &[JobId],
        // Every claim looks at the whole queue in memory: a hint would spare nothing.
        _hint: Option<JobId>,
    ) -> Result<Option<Claim>, StorageError> {
        if max == 0 {
            return Ok(None);
        }
        Ok(self.try_claim(worker, max, avoid))
    }

    async fn wait_for_work(
        &self,
        mark: WakeMark,
        timeout: Duration,
    ) -> Result<Option<WakeMark>, StorageError> {
        Ok(self.work.wait_past(mark, timeout).await)
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
                    Some(current) if current.lease.task == lease.task => {}
                    _ => return Ack::StaleLease,
                }
                let ended = job.active.remove(&lease.value).expect("looked up above");
                end_attempt(job, ended, report, now);
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
            return Ok(Heartbeat::JobGone);
        };
        let Some(current) = job.active.get_mut(&lease.value) else {
            return Ok(Heartbeat::Stop);
        };
        if current.lease.task != lease.task {
            return Ok(Heartbeat::Stop);
        }
        current.lease.deadline = self.lease_deadline(now);
        let deadline = current.lease.deadline;
        if let Some(progress) = progress {
            current.progress = Some(progress.to_vec());
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
                .filter(|active| active.lease.deadline < now)
                .map(|active| active.lease.value)
                .collect();
            for value in expired {
                let ended = job.active.remove(&value).expect("listed above");
                if job.lose_attempt(ended, now) {
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

/// Applies `report` of the attempt `ended` to its job at `now`. A first attempt that succeeded
/// with nothing to say is left to its batch; every other outcome goes into the value's record.
fn end_attempt(job: &mut JobRecord, ended: ActiveTask, report: &Report, now: Millis) {
    let value = ended.lease.value;
    if let Verdict::Success { result } = &report.verdict {
        job.held_back = None;
        job.succeeded.insert(value);
        let plain = result.is_empty()
            && report.log.is_empty()
            && ended.progress.is_none()
            && !job.tasks.contains_key(&value);
        if plain && job.batches.finish(value, now) {
            return;
        }
        let task = job.record_of(ended);
        task.log = Some(report.log.clone());
        task.result = Some(result.clone());
        task.finished_at = Some(now);
        return;
    }
    let task = job.record_of(ended);
    if !matches!(report.verdict, Verdict::Requeue | Verdict::Untried) {
        task.log = Some(report.log.clone());
    }
    match &report.verdict {
        Verdict::Success { .. } => unreachable!("handled above"),
        Verdict::Error { reason } => {
            job.fail_attempt(value, reason.clone(), false, now);
        }
        Verdict::Fatal { reason } => {
            job.fail_attempt(value, reason.clone(), true, now);
        }
        Verdict::Requeue => {
            job.pending.insert(value);
        }
        Verdict::Untried => {
            // As if it had not been claimed: the next claim has its number again.
            task.attempts = task.attempts.saturating_sub(1);
            job.pending.insert(value);
        }
    }
}
