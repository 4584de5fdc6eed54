//! The worker registry: the workers that announced themselves and the ceilings each accepts,
//! stamped with Redis's clock. This store also keeps the ceilings its own workers registered,
//! which their claims apply, and a view of the live workers at most [`WORKERS_FRESH`] old, which
//! every submit's admission check reads.
//!
//! The admission check itself is the storage interface's (`storage::admit`); a record's JSON is
//! `wire`'s.

use super::scripts::SCRIPTS;
use super::{RedisStore, wire};
use crate::limits::Limits;
use crate::storage::{RegisteredWorker, StorageError, WORKER_TTL, WorkerId};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a read of the live workers serves submits' admission checks.
const WORKERS_FRESH: Duration = Duration::from_secs(1);

/// What this store keeps of the registry.
#[derive(Default)]
pub(super) struct Registered {
    /// The ceilings each worker of this process registered, by instance: its claims skip jobs
    /// above them.
    ceilings: Mutex<HashMap<ulid::Ulid, Limits>>,
    /// The live workers as last read, and when.
    live: Mutex<Option<(Instant, Vec<RegisteredWorker>)>>,
}

impl Registered {
    /// The ceilings `worker` registered through this store, if it did.
    pub(super) fn ceilings_of(&self, worker: &WorkerId) -> Option<Limits> {
        self.ceilings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&worker.instance)
            .copied()
    }

    /// Drops the view of the live workers, so that the next submit reads them afresh.
    fn stale(&self) {
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Announces `worker`, or renews its announcement.
pub(super) async fn register(
    store: &RedisStore,
    worker: &WorkerId,
    ceilings: &Limits,
) -> Result<(), StorageError> {
    let record = wire::worker_record(worker, ceilings)?;
    let instance = worker.instance.to_string();
    let args: [&[u8]; 2] = [instance.as_bytes(), record.as_bytes()];
    store
        .run_on::<i64, _>(&SCRIPTS.register, store.keys.workers(), &args)
        .await?;
    store
        .registry
        .ceilings
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(worker.instance, *ceilings);
    store.registry.stale();
    // A worker with other ceilings may be able to claim what others could not.
    store
        .query::<i64>(redis::cmd("PUBLISH").arg(store.keys.wake()).arg("worker"))
        .await
        .map(drop)
}

/// Withdraws `worker`'s announcement.
pub(super) async fn unregister(store: &RedisStore, worker: &WorkerId) -> Result<(), StorageError> {
    store.registry.stale();
    store
        .query::<i64>(
            redis::cmd("HDEL")
                .arg(store.keys.workers())
                .arg(worker.instance.to_string()),
        )
        .await
        .map(drop)
}

/// The workers that registered within [`WORKER_TTL`], oldest registration first.
pub(super) async fn workers(store: &RedisStore) -> Result<Vec<RegisteredWorker>, StorageError> {
    let ttl = WORKER_TTL.as_millis().to_string();
    let entries: Vec<String> = store
        .run_on(&SCRIPTS.workers, store.keys.workers(), &[ttl.as_bytes()])
        .await?;
    let mut workers = entries
        .iter()
        .map(|entry| wire::worker_entry(entry))
        .collect::<Result<Vec<_>, _>>()?;
    workers.sort_by_key(|w| (w.seen_at, w.worker.instance));
    Ok(workers)
}

impl RedisStore {
    /// The live workers, as read at most [`WORKERS_FRESH`] ago: the admission check of every
    /// submit needs them, and a second-old view of workers that register every few seconds is
    /// as good as a new one.
    pub(super) async fn live_workers(&self) -> Result<Vec<RegisteredWorker>, StorageError> {
        if let Some((read, workers)) =
            &*self.registry.live.lock().unwrap_or_else(|e| e.into_inner())
            && read.elapsed() < WORKERS_FRESH
        {
            return Ok(workers.clone());
        }
        let workers = workers(self).await?;
        *self.registry.live.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), workers.clone()));
        Ok(workers)
    }
}
