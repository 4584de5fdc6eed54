//! How leases end, and what a worker says while it holds them: reports of finished attempts (in
//! batches, one script per job), heartbeats, the note that holds a job back, and the reaper that
//! returns expired leases and removes the jobs whose files never all arrived.
//!
//! Taking leases is `claim`'s; reading the scripts' replies is `wire`'s; a job's files' users
//! are `submit`'s.

use super::scripts::SCRIPTS;
use super::{RedisStore, wire};
use crate::manifest::ManifestPath;
use crate::spec::JobSpec;
use crate::storage::{Ack, Heartbeat, JobId, Lease, Reaped, Report, StorageError};
use std::collections::BTreeMap;

/// How many overdue jobs one reap looks at; the rest wait for the next, longest overdue first.
const REAP_BATCH: usize = 1000;

/// Applies finished attempts' outcomes, one script call per job; one ack per report, in order.
pub(super) async fn report(
    store: &RedisStore,
    reports: &[Report],
) -> Result<Vec<Ack>, StorageError> {
    let mut acks = vec![Ack::UnknownJob; reports.len()];
    let mut by_job: BTreeMap<JobId, Vec<usize>> = BTreeMap::new();
    for (i, report) in reports.iter().enumerate() {
        by_job.entry(report.lease.job).or_default().push(i);
    }
    let channel = store.keys.wake();
    for (job, indexes) in by_job {
        let fields: Vec<(String, String)> = indexes
            .iter()
            .map(|&i| {
                (
                    reports[i].lease.value.to_string(),
                    reports[i].lease.task.to_string(),
                )
            })
            .collect();
        let mut args: Vec<&[u8]> = vec![channel.as_bytes()];
        for (&i, (value, task)) in indexes.iter().zip(&fields) {
            let report = &reports[i];
            let (verdict, payload) = wire::verdict(&report.verdict);
            args.extend([
                value.as_bytes(),
                task.as_bytes(),
                verdict.as_bytes(),
                payload,
                &report.log,
            ]);
        }
        let reply: Vec<String> = store
            .run_on(&SCRIPTS.report, store.keys.leasing(job), &args)
            .await?;
        let (done, job_acks) = wire::report_reply(&reply, indexes.len())?;
        for (&i, ack) in indexes.iter().zip(job_acks) {
            acks[i] = ack;
        }
        if done {
            store.dequeue(job).await?;
        }
    }
    Ok(acks)
}

/// Renews a lease for the store's lease time and records the latest progress, if any.
pub(super) async fn heartbeat(
    store: &RedisStore,
    lease: &Lease,
    progress: Option<&[u8]>,
) -> Result<Heartbeat, StorageError> {
    let value = lease.value.to_string();
    let task = lease.task.to_string();
    let ttl = store.lease_ttl.as_millis().to_string();
    let mut args: Vec<&[u8]> = vec![value.as_bytes(), task.as_bytes(), ttl.as_bytes()];
    args.extend(progress);
    let deadline: i64 = store.run(&SCRIPTS.heartbeat, lease.job, &args).await?;
    Ok(wire::heartbeat(deadline))
}

/// Records why a worker's host cannot run the job's tasks for now (see `lua/hold_back.lua`).
pub(super) async fn hold_back(
    store: &RedisStore,
    job: JobId,
    note: &str,
) -> Result<(), StorageError> {
    store
        .run::<i64>(&SCRIPTS.hold_back, job, &[note.as_bytes()])
        .await
        .map(drop)
}

/// Returns the tasks of expired leases to pending (or quarantines them), job by job, then
/// removes the jobs whose uploads were abandoned.
pub(super) async fn reap(store: &RedisStore) -> Result<Reaped, StorageError> {
    let due = REAP_BATCH.to_string();
    let ids: Vec<String> = store
        .run_on(&SCRIPTS.due, store.keys.leased(), &[due.as_bytes()])
        .await?;
    let channel = store.keys.wake();
    let mut reaped = Reaped::default();
    for id in ids {
        let Some(job) = store.job_of_entry(store.keys.leased(), &id).await? else {
            continue;
        };
        let args: [&[u8]; 2] = [channel.as_bytes(), id.as_bytes()];
        let counts: Vec<u64> = match store
            .run_on(&SCRIPTS.reap, store.keys.leasing(job), &args)
            .await
        {
            Ok(counts) => counts,
            Err(e @ StorageError::Unreachable { .. }) => return Err(e),
            // One job's fault is no reason to leave the others' expired leases.
            Err(e) => {
                // As a field, so that the log shows the error's sources too.
                let error: &(dyn std::error::Error + 'static) = &e;
                tracing::warn!(%job, error, "cannot reap this job's leases");
                continue;
            }
        };
        let (job_reaped, done) = wire::reaped(&counts)?;
        reaped.requeued += job_reaped.requeued;
        reaped.quarantined += job_reaped.quarantined;
        if done {
            store.dequeue(job).await?;
        }
    }
    remove_abandoned_uploads(store).await?;
    Ok(reaped)
}

/// Removes the jobs past their upload deadline with files still missing, with the chunks
/// that arrived of those files, and counts them in the `abandoned_uploads` statistic.
async fn remove_abandoned_uploads(store: &RedisStore) -> Result<(), StorageError> {
    let due = REAP_BATCH.to_string();
    let ids: Vec<String> = store
        .run_on(&SCRIPTS.due, store.keys.uploading(), &[due.as_bytes()])
        .await?;
    for id in ids {
        // Whatever happens to the job, it is looked at once.
        store
            .query::<()>(redis::cmd("ZREM").arg(store.keys.uploading()).arg(&id))
            .await?;
        let Ok(job) = id.parse::<JobId>() else {
            continue;
        };
        let removed: Vec<String> = store.run(&SCRIPTS.abandon, job, &[]).await?;
        let Some((spec, missing)) = removed.split_first() else {
            continue;
        };
        tracing::warn!(%job, missing = missing.len(), "removed a job whose files were never all uploaded");
        store.specs.forget(job);
        let mut pipe = redis::pipe();
        pipe.cmd("ZREM").arg(store.keys.jobs()).arg(&id).ignore();
        pipe.cmd("HINCRBY")
            .arg(store.keys.stats())
            .arg("abandoned_uploads")
            .arg(1)
            .ignore();
        let Ok(spec) = serde_json::from_str::<JobSpec>(spec) else {
            store.query_pipe(&pipe).await?;
            continue;
        };
        for path in missing {
            let entry = ManifestPath::new(path)
                .ok()
                .and_then(|p| spec.manifest.file(&p));
            if let Some(entry) = entry {
                pipe.cmd("DEL")
                    .arg(store.keys.blob_upload(&entry.sha256, job))
                    .ignore();
            }
        }
        store.query_pipe(&pipe).await?;
        store.release_files(job, &spec).await;
    }
    Ok(())
}

impl RedisStore {
    /// How many jobs were removed because their files never all arrived by their upload
    /// deadline (their submitter died or gave up).
    pub async fn abandoned_uploads(&self) -> Result<u64, StorageError> {
        let count: Option<u64> = self
            .query(
                redis::cmd("HGET")
                    .arg(self.keys.stats())
                    .arg("abandoned_uploads"),
            )
            .await?;
        Ok(count.unwrap_or(0))
    }
}
