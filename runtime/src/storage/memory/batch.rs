//! The claimed batches of a job: what the embedded queue remembers of values that keep no
//! record of their own.
//!
//! Most values of a big job say nothing: claimed once, succeeded, empty result and empty log.
//! A record per such value (its worker, task id and times) is what made `wasmjob run` of
//! 2,000,000 no-op values peak at 2.3 GB. Instead, first-attempt claims are recorded as runs of
//! consecutive values: a worker's claims that continue its last run within [`SPAN`] of that
//! run's first claim extend it, so a no-op job keeps one run per [`SPAN`] of running time,
//! whatever its size. A run answers, for each of its values:
//!
//! - the worker;
//! - the task id, derived, not stored: the run's base ULID plus `(value - start) << 40` (see
//!   [`Batch::task_id`]);
//! - `started`: when the run's first claim was made (at most [`SPAN`] before the value's own);
//! - `finished`: when the run's last value finished. A value whose success comes more than
//!   [`SPAN`] after the run's latest finish is not absorbed ([`Batches::finish`] says no), so one
//!   slow task does not stretch its fast neighbours' times: it gets a record of its own.
//!
//! So a value's attempt lies within `[started, finished]` of its run, within [`SPAN`] or so of
//! its own times. Values whose first attempt did not end in a plain success keep a record of
//! their own (`state`'s `TaskRecord`), which takes precedence over the run that still covers
//! them.

use crate::storage::{Millis, TaskId, WorkerId};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How long after a run's first claim later claims may still extend it, and how much later
/// than its latest finish a success may be absorbed: the precision of the times `info` gives
/// for values without a record of their own. At 25,000 no-op tasks/s it makes 10 runs a second.
pub(super) const SPAN: Millis = 100;

/// By how many bits a value's offset in its run is shifted before it is added to the run's
/// base task id: ULIDs made in the same millisecond by the process's monotonic generator differ
/// from each other in their low bits only, by far less than 2^40, so no derived id can equal
/// one of them, nor another run's.
const OFFSET_SHIFT: u32 = 40;

/// One run of consecutive values claimed on their first attempt by one worker.
#[derive(Debug)]
pub(super) struct Batch {
    /// The last value of the run (its first is its key in [`Batches`]).
    end: u64,
    pub(super) worker: Arc<WorkerId>,
    /// The task id of the run's first value.
    base: TaskId,
    /// When the run's first claim was made.
    pub(super) started: Millis,
    /// When its latest value finished; `None` while none has.
    pub(super) finished: Option<Millis>,
}

impl Batch {
    /// The task id of `value` in the run that starts at `start`.
    fn task_id(&self, start: u64, value: u64) -> TaskId {
        let offset = u128::from(value - start) << OFFSET_SHIFT;
        TaskId(ulid::Ulid(self.base.0.0.wrapping_add(offset)))
    }
}

/// What a run says of one of its values.
#[derive(Debug)]
pub(super) struct BatchEntry<'a> {
    pub(super) batch: &'a Batch,
    pub(super) task_id: TaskId,
}

/// A job's runs by their first value. Runs never overlap: a value is claimed on its first
/// attempt once.
#[derive(Debug, Default)]
pub(super) struct Batches {
    runs: BTreeMap<u64, Batch>,
}

impl Batches {
    /// Records the first-attempt claim of `value` by `worker` at `now`, extending the run that
    /// ends just before it when that is the same worker's and young enough. Returns the lease's
    /// task id and the worker's shared id.
    pub(super) fn claim(
        &mut self,
        value: u64,
        worker: &WorkerId,
        now: Millis,
    ) -> (TaskId, Arc<WorkerId>) {
        if let Some((&start, run)) = self.runs.range_mut(..value).next_back()
            && run.end + 1 == value
            && now <= run.started + SPAN
            && *run.worker == *worker
        {
            run.end = value;
            return (run.task_id(start, value), Arc::clone(&run.worker));
        }
        let worker = Arc::new(worker.clone());
        let base = TaskId::generate();
        self.runs.insert(
            value,
            Batch {
                end: value,
                worker: Arc::clone(&worker),
                base,
                started: now,
                finished: None,
            },
        );
        (base, worker)
    }

    /// Records the plain success of `value` at `now`; false when the run cannot speak for it
    /// (no run covers it, or it finished more than [`SPAN`] after the run's latest finish) and
    /// the value needs a record of its own.
    pub(super) fn finish(&mut self, value: u64, now: Millis) -> bool {
        let Some((_, run)) = self.runs.range_mut(..=value).next_back() else {
            return false;
        };
        if run.end < value || run.finished.is_some_and(|f| now > f + SPAN) {
            return false;
        }
        run.finished = Some(run.finished.map_or(now, |f| f.max(now)));
        true
    }

    /// The run that covers `value`, if any.
    pub(super) fn get(&self, value: u64) -> Option<BatchEntry<'_>> {
        let (&start, batch) = self.runs.range(..=value).next_back()?;
        (batch.end >= value).then(|| BatchEntry {
            batch,
            task_id: batch.task_id(start, value),
        })
    }

    /// How many runs there are.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(app: &str) -> WorkerId {
        WorkerId {
            app: app.into(),
            hostname: "host".into(),
            instance: ulid::Ulid::nil(),
        }
    }

    #[test]
    fn claims_of_one_worker_within_the_span_make_one_run() {
        let mut batches = Batches::default();
        let a = worker("a");
        let ids: Vec<TaskId> = (1..=1000)
            .map(|v| batches.claim(v, &a, 5_000 + v / 100).0)
            .collect();
        assert_eq!(batches.len(), 1);
        for v in 1..=1000 {
            assert!(batches.finish(v, 5_050));
        }
        let entry = batches.get(500).expect("covered");
        assert_eq!(entry.task_id, ids[499]);
        assert_eq!(
            (entry.batch.started, entry.batch.finished),
            (5_000, Some(5_050))
        );
        let unique: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        assert!(batches.get(1001).is_none());
        assert!(batches.get(0).is_none());
    }

    #[test]
    fn another_worker_a_gap_or_an_old_run_starts_a_new_run() {
        let mut batches = Batches::default();
        let (a, b) = (worker("a"), worker("b"));
        batches.claim(1, &a, 0);
        batches.claim(2, &b, 0);
        batches.claim(4, &b, 0);
        batches.claim(5, &b, SPAN + 1);
        assert_eq!(batches.len(), 4);
        assert_eq!(*batches.get(2).expect("covered").batch.worker, b);
        assert!(batches.get(3).is_none());
    }

    #[test]
    fn a_late_success_is_not_absorbed() {
        let mut batches = Batches::default();
        let a = worker("a");
        batches.claim(1, &a, 0);
        batches.claim(2, &a, 0);
        assert!(batches.finish(2, 10));
        assert!(!batches.finish(1, 10 + SPAN + 1));
        assert_eq!(batches.get(1).expect("covered").batch.finished, Some(10));
        assert!(!batches.finish(3, 10));
    }

    #[test]
    fn derived_ids_differ_from_ids_made_next() {
        let mut batches = Batches::default();
        let a = worker("a");
        let first = batches.claim(1, &a, 0).0;
        let second = batches.claim(2, &a, 0).0;
        let later: Vec<TaskId> = (0..1000).map(|_| TaskId::generate()).collect();
        assert!(first < second);
        assert!(!later.contains(&first) && !later.contains(&second));
    }
}
