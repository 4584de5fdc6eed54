//! The embedded backend: the whole queue in one process's memory.
//!
//! It serves `wasmjob run` and fast tests. It keeps every rule of the storage interface (leases
//! fenced by task id, interval-set ranges, runnable only once uploaded) so that the conformance
//! suite holds it to the same cases as the distributed backend. Nothing is persisted.
//!
//! # Layout
//!
//! This file holds the store: its state behind one lock, the wake-ups idle workers wait on, and
//! the lease time. The rest is split by who calls it:
//! - `state`: the jobs, values, files and workers the lock guards, how an attempt ends, and
//!   what `info` answers;
//! - `batch`: the runs of values claimed together, which answer for the values that keep no
//!   record of their own;
//! - `submitter`: the submitter's side (submit, upload, the reads, delete);
//! - `worker`: the worker's side (registering, claiming, reports, heartbeats, the reaper);
//! - `pages`: the task infos of many values under one lock, for `wasmjob run --output`.

mod batch;
mod pages;
mod state;
mod submitter;
mod worker;

use self::state::State;
use super::Millis;
use super::wake::Wakeups;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The in-memory queue. Cheap to share behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    /// Raised whenever a claim may have become possible, so that idle workers wake at once.
    work: Wakeups,
    lease_ttl: Duration,
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
            work: Wakeups::default(),
            lease_ttl,
        }
    }

    /// The state, for one operation.
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation below completes before it can panic, so a poisoned state is consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells idle workers that a claim may have become possible.
    fn wake_workers(&self) {
        self.work.wake(None);
    }

    /// When a lease taken or renewed at `now` ends.
    fn lease_deadline(&self, now: Millis) -> Millis {
        now + self.lease_ttl.as_millis() as Millis
    }
}
