//! A job's life on the submitter's side: submitting it (its keys, its place in the indexes, its
//! use of each stored file, in as few round trips as possible), uploading the files the server
//! lacks until the job becomes claimable, and deleting it with every file no other job uses.
//!
//! A file's bytes travel in `blob`; the admission check against the live workers is the
//! registry's and the storage interface's; the reaper's removal of an abandoned upload is
//! `report`'s.

use super::queue::job_score;
use super::scripts::{self, SCRIPTS};
use super::{RedisStore, wire};
use crate::manifest::{Digest, ManifestPath};
use crate::spec::JobSpec;
use crate::storage::{JobId, Millis, StorageError, Submitted};
use redis::Script;
use std::collections::{BTreeMap, BTreeSet};

/// Accepts a job; it runs once every file it lists as missing is uploaded.
pub(super) async fn submit(store: &RedisStore, spec: &JobSpec) -> Result<Submitted, StorageError> {
    spec.validate()?;
    crate::storage::admit(spec, &store.live_workers().await?)?;
    let job = JobId::generate();
    // The job becomes a user of each of its contents first, so that none is removed under
    // it from here on; the answers say which the server lacks: only those need uploading.
    let mut by_digest: BTreeMap<Digest, Vec<&ManifestPath>> = BTreeMap::new();
    for (path, entry) in spec.manifest.files() {
        by_digest.entry(entry.sha256).or_default().push(path);
    }
    let present: Vec<bool> = store
        .on_blobs(&SCRIPTS.blob_use, job, by_digest.keys())
        .await?;
    let missing: Vec<ManifestPath> = by_digest
        .values()
        .zip(present)
        .filter(|(_, present)| !present)
        .flat_map(|(paths, _)| paths.iter().map(|p| (*p).clone()))
        .collect();

    let json = wire::to_json("a job spec", spec)?;
    let pending = wire::format_set(&spec.range);
    let max_retries = spec.max_retries.to_string();
    let max_lost = spec.max_lost.to_string();
    let max_concurrency = spec.max_concurrency.unwrap_or(0).to_string();
    let priority = spec.priority.0.to_string();
    let limits = spec.limits.to_counts();
    let values = spec.range.len().to_string();
    let mut args: Vec<&[u8]> = vec![
        json.as_bytes(),
        pending.as_bytes(),
        max_retries.as_bytes(),
        max_lost.as_bytes(),
        max_concurrency.as_bytes(),
        priority.as_bytes(),
        spec.name.as_bytes(),
        limits.as_bytes(),
        values.as_bytes(),
    ];
    args.extend(missing.iter().map(|p| p.as_str().as_bytes()));
    // The job's keys, then its place in the index and, when nothing is missing, in the
    // queue: one round trip. Commands run in order, so no worker sees the job before its
    // keys; if the script fails, the entries after it name a job that does not exist, which
    // listings skip and claims remove.
    let keys = store.keys.job(job);
    let mut pipe = redis::pipe();
    pipe.cmd("EVAL")
        .arg(scripts::SUBMIT.as_str())
        .arg(keys.len())
        .arg(&keys)
        .arg(&args);
    pipe.cmd("ZADD")
        .arg(store.keys.jobs())
        .arg(job_score(spec.priority))
        .arg(job.to_string())
        .ignore();
    if missing.is_empty() {
        store.add_enqueue(&mut pipe, job, spec.priority);
    } else {
        // On this host's clock, a timeout's worth ahead: an hour is far above any skew.
        let deadline = crate::storage::now_millis() + spec.upload_timeout.as_millis() as u64;
        pipe.cmd("ZADD")
            .arg(store.keys.uploading())
            .arg(deadline)
            .arg(job.to_string())
            .ignore();
    }
    // Should this fail, the job stays among its files' users: its answer may have been
    // lost with the connection after the job was created, and a file is never to be
    // removed from under a job. The files are merely kept.
    let (_submitted_at,): (Millis,) = pipe
        .query_async(&mut store.con.clone())
        .await
        .map_err(|e| store.error(e))?;
    Ok(Submitted { id: job, missing })
}

/// Stores the bytes of one manifest file after checking them against the manifest, telling
/// `progress` the bytes sent so far; the last file missing makes the job claimable.
pub(super) async fn upload(
    store: &RedisStore,
    job: JobId,
    path: &ManifestPath,
    bytes: &[u8],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), StorageError> {
    // Every step is safe to repeat, so a connection that breaks is no reason to give up
    // a transfer that may have taken minutes.
    let spec = store.retrying(|| store.spec(job)).await?;
    let entry = crate::storage::check_upload(job, &spec, path, bytes)?;
    store
        .store_blob(job, &entry.sha256, bytes, progress)
        .await?;
    // Every path with this content is satisfied by the one blob.
    let paths: Vec<&[u8]> = spec
        .manifest
        .files()
        .filter(|(_, e)| e.sha256 == entry.sha256)
        .map(|(p, _)| p.as_str().as_bytes())
        .collect();
    let remaining: i64 = store
        .retrying(|| store.run(&SCRIPTS.uploaded, job, &paths))
        .await?;
    if remaining < 0 {
        store.specs.forget(job);
        return Err(StorageError::UnknownJob(job));
    }
    if remaining == 0 {
        store.retrying(|| store.enqueue(job, spec.priority)).await?;
        let uploading = redis::cmd("ZREM")
            .arg(store.keys.uploading())
            .arg(job.to_string())
            .to_owned();
        store.query_retrying::<()>(&uploading).await?;
    }
    Ok(())
}

/// Removes the job and everything about its tasks, then lets go of its files.
pub(super) async fn delete(store: &RedisStore, job: JobId) -> Result<(), StorageError> {
    let spec: Option<String> = store.run(&SCRIPTS.delete, job, &[]).await?;
    store.specs.forget(job);
    store.dequeue(job).await?;
    // Out of the index of jobs, and of the uploads awaited: a job withdrawn by its
    // submitter leaves nothing for the reaper to find.
    for index in [store.keys.jobs(), store.keys.uploading()] {
        store
            .query::<i64>(redis::cmd("ZREM").arg(index).arg(job.to_string()))
            .await?;
    }
    let spec = spec.ok_or(StorageError::UnknownJob(job))?;
    if let Ok(spec) = serde_json::from_str::<JobSpec>(&spec) {
        store.release_files(job, &spec).await;
    }
    Ok(())
}

impl RedisStore {
    /// Takes `job` off the users of each of its files; a file's bytes go with its last user.
    /// The job is gone by then, so this is best effort: should it fail, the files are merely
    /// kept.
    pub(super) async fn release_files(&self, job: JobId, spec: &JobSpec) {
        let digests: BTreeSet<Digest> = spec.manifest.files().map(|(_, e)| e.sha256).collect();
        let _ = self
            .on_blobs::<Vec<i64>>(&SCRIPTS.blob_release, job, digests.iter())
            .await;
    }

    /// Runs a blob script (`blob_use` or `blob_release`) on each of `digests` for `job`, in one
    /// round trip; one answer per digest. The script is loaded at the head of the pipeline, so
    /// its body is sent once, not once per file.
    async fn on_blobs<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        job: JobId,
        digests: impl Iterator<Item = &Digest>,
    ) -> Result<T, StorageError> {
        let job = job.to_string();
        let mut pipe = redis::pipe();
        pipe.load_script(script).ignore();
        for digest in digests {
            pipe.invoke_script(
                script
                    .key(self.keys.blob(digest))
                    .key(self.keys.blob_users(digest))
                    .arg(&job),
            );
        }
        pipe.query_async(&mut self.con.clone())
            .await
            .map_err(|e| self.error(e))
    }
}
