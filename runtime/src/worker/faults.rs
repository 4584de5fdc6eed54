//! Host faults: the jobs this worker's host cannot prepare or start now, held back with a
//! back-off so that a fault of this host neither spins nor charges the tasks.
//!
//! A stored file missing or damaged, a cache or scratch directory this host cannot write: the
//! task goes back untried and the job is passed over by this worker's claims until its back-off
//! runs out (1 s, doubling up to 5 minutes), logged and noted in the store once per step. Which
//! failures count as host faults is decided where they happen (the job registry and the
//! attempt); this room only keeps the back-offs.

use crate::storage::{JobId, WorkerStore, with_causes};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a job is first held back after its tasks could not be prepared on this host; each
/// fault after a back-off ran out doubles it, up to [`HOLD_MOST`].
const HOLD_FIRST: Duration = Duration::from_secs(1);

/// The longest a job is held back before this host tries its tasks again.
const HOLD_MOST: Duration = Duration::from_secs(300);

/// The jobs held back on this host, each with its back-off.
#[derive(Debug, Default)]
pub(super) struct HostFaults(Mutex<HashMap<JobId, HeldBack>>);

#[derive(Debug)]
struct HeldBack {
    until: Instant,
    delay: Duration,
}

impl HostFaults {
    /// The jobs to pass over now. A job whose back-off ran out long ago (it finished, or runs
    /// elsewhere) is forgotten, so that the map does not grow with every job ever held back.
    pub(super) fn held(&self) -> Vec<JobId> {
        let now = Instant::now();
        let mut faults = self.0.lock().unwrap_or_else(|e| e.into_inner());
        faults.retain(|_, held| held.until + HOLD_MOST > now);
        faults
            .iter()
            .filter(|(_, held)| held.until > now)
            .map(|(job, _)| *job)
            .collect()
    }

    /// Whether the job is held back now.
    pub(super) fn holds(&self, job: JobId) -> bool {
        let faults = self.0.lock().unwrap_or_else(|e| e.into_inner());
        faults
            .get(&job)
            .is_some_and(|held| held.until > Instant::now())
    }

    /// Counts a fault: the new back-off when it starts a step, `None` when the job is held back
    /// already (its other tasks in hand failing too).
    fn fault(&self, job: JobId) -> Option<Duration> {
        let now = Instant::now();
        let mut faults = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let delay = match faults.get(&job) {
            Some(held) if held.until > now => return None,
            Some(held) => (held.delay * 2).min(HOLD_MOST),
            None => HOLD_FIRST,
        };
        faults.insert(
            job,
            HeldBack {
                until: now + delay,
                delay,
            },
        );
        Some(delay)
    }

    /// Holds the job back for a fault of this host (`hostname`): logged, and noted in `store`
    /// for `status`, once per back-off step.
    pub(super) async fn hold_back<S: WorkerStore>(
        &self,
        store: &S,
        hostname: &str,
        job: JobId,
        reason: &str,
    ) {
        let Some(delay) = self.fault(job) else {
            return;
        };
        tracing::warn!(%job, ?delay, "cannot run the job's tasks on this host, holding it back: {reason}");
        let note = format!(
            "{hostname} cannot run its tasks: {reason}; trying again in {}",
            humantime::format_duration(delay)
        );
        if let Err(e) = store.hold_back(job, &note).await {
            tracing::warn!(%job, "cannot note why the job is held back: {}", with_causes(&e));
        }
    }

    /// An attempt of the job ran on this host: the hold, if any, is over.
    pub(super) fn clear(&self, job: JobId) {
        let mut faults = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if faults.remove(&job).is_some() {
            tracing::info!(%job, "this host can run the job's tasks again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> JobId {
        JobId(ulid::Ulid::from_parts(1, 2))
    }

    #[test]
    fn a_fault_holds_the_job_back_once_per_step() {
        let faults = HostFaults::default();
        assert!(!faults.holds(job()));
        assert_eq!(faults.fault(job()), Some(HOLD_FIRST));
        assert_eq!(
            faults.fault(job()),
            None,
            "its other tasks fail within the step"
        );
        assert!(faults.holds(job()));
        assert_eq!(faults.held(), [job()]);
        faults.clear(job());
        assert!(!faults.holds(job()));
        assert!(faults.held().is_empty());
    }
}
