//! The life of one leased task: it waits for a slot, has its job prepared, runs its attempt on
//! the executor while a heartbeat keeps the lease alive, and turns how the attempt ended into
//! the verdict it queues for the reporter.
//!
//! An attempt stopped early is stopped for a reason, handed to its [`TaskControl`] with the
//! stop: the lease was lost or the job deleted (nothing to report), it could not be renewed in time
//! (self-fencing, nothing to report), or shutdown's grace ran out (handed back). What the guest
//! does and how it is stopped is the executor's; which leases may run now is admission's.

use super::Shared;
use super::admission::Claimed;
use super::jobs::{PrepareError, PreparedJob};
use crate::executor::{Attempt, AttemptControl, AttemptReport, ExecutorError, TaskModule};
use crate::spec::JobSpec;
use crate::storage::{Heartbeat, JobId, Lease, Report, TaskId, Verdict, WorkerStore, with_causes};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use wasmjob_host_api::{Ending, Outcome};

/// Why an attempt was stopped before it ended by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StopReason {
    /// The store no longer holds the lease: it expired, and another worker may run the task
    /// now. Nothing is reported.
    LeaseLost,
    /// The job was deleted while the attempt ran. Nothing is reported.
    JobGone,
    /// The lease could not be renewed in time, the store being away: the attempt is stopped
    /// before the lease can expire, since past that another worker may run the same task
    /// (self-fencing). Nothing is reported.
    Fenced,
    /// Shutdown's grace period ran out: the task is handed back to be run again.
    Shutdown,
}

/// An attempt's control, with why it was stopped once it is.
#[derive(Debug, Default)]
pub(super) struct TaskControl {
    attempt: Arc<AttemptControl>,
    stopped: OnceLock<StopReason>,
}

impl TaskControl {
    /// Stops the attempt for `why`; the first reason given is the one that counts.
    fn stop(&self, why: StopReason) {
        if self.stopped.set(why).is_ok() {
            self.attempt.cancel();
        }
    }

    /// Why the attempt was stopped, if it was.
    fn stopped(&self) -> Option<StopReason> {
        self.stopped.get().copied()
    }
}

/// The controls of a worker's tasks in hand, so that shutdown can stop them all.
#[derive(Debug, Default)]
pub(super) struct Running(Mutex<RunningTasks>);

#[derive(Debug, Default)]
struct RunningTasks {
    controls: HashMap<TaskId, Arc<TaskControl>>,
    /// Set by [`Running::stop_all`]: a task entering after it is stopped at once.
    stopped: Option<StopReason>,
}

impl Running {
    fn lock(&self) -> std::sync::MutexGuard<'_, RunningTasks> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The control of a task entering.
    fn enter(&self, task: TaskId) -> Arc<TaskControl> {
        let control = Arc::new(TaskControl::default());
        let mut running = self.lock();
        if let Some(why) = running.stopped {
            control.stop(why);
        }
        running.controls.insert(task, Arc::clone(&control));
        control
    }

    fn leave(&self, task: TaskId) {
        self.lock().controls.remove(&task);
    }

    /// Stops every task in hand, and any that enters after, for `why`; how many were in hand.
    pub(super) fn stop_all(&self, why: StopReason) -> usize {
        let mut running = self.lock();
        running.stopped = Some(why);
        for control in running.controls.values() {
            control.stop(why);
        }
        running.controls.len()
    }
}

/// What a task hands back when it did not run: no attempt counted.
fn untried() -> Option<(Verdict, Vec<u8>)> {
    Some((Verdict::Untried, Vec::new()))
}

impl<S: WorkerStore + 'static> Shared<S> {
    /// Runs one leased task to a queued report: waits for its slots, prepares its job, runs the
    /// attempt, and renews the lease from the claim on, all the while.
    pub(super) async fn run_task(
        &self,
        job: JobId,
        spec: &JobSpec,
        lease: Lease,
        claimed: &Claimed,
        claimed_at: Instant,
    ) {
        let in_hand = self.admission.in_hand();
        let control = self.running.enter(lease.task);
        let work = async {
            let Some(_slots) = self.admission.admit(claimed).await else {
                return untried();
            };
            if self.faults.holds(job) {
                return untried();
            }
            let prepared = self
                .jobs
                .prepare(job, spec, self.store.as_ref(), &self.executor)
                .await;
            let prepared = match prepared {
                Ok(prepared) => prepared,
                Err(e @ PrepareError::ScriptMissing(_)) => {
                    return Some((
                        Verdict::Fatal {
                            reason: e.to_string(),
                        },
                        Vec::new(),
                    ));
                }
                Err(e @ (PrepareError::HostFault(_) | PrepareError::Damaged { .. })) => {
                    self.hold_back(job, &with_causes(&e)).await;
                    return untried();
                }
            };
            let module = match &prepared.module {
                Ok(module) => module,
                Err(invalid) => {
                    let reason = Ending::from(invalid.clone()).to_string();
                    return Some((Verdict::Fatal { reason }, Vec::new()));
                }
            };
            let ran = self
                .attempt(job, spec, &lease, &prepared, module, &control)
                .await;
            failpoint::abort_on(lease.value);
            match ran {
                Ok(report) => {
                    self.faults.clear(job);
                    self.verdict(job, &lease, report, &control)
                }
                Err(host_fault) => {
                    self.hold_back(job, &with_causes(&host_fault)).await;
                    untried()
                }
            }
        };
        let verdict_and_log = tokio::select! {
            outcome = work => outcome,
            () = self.keep_alive(&lease, claimed_at, &control) => {
                unreachable!("the heartbeat loop never ends by itself")
            }
        };
        self.running.leave(lease.task);
        let Some((verdict, log)) = verdict_and_log else {
            return;
        };
        let counted = match verdict {
            Verdict::Requeue | Verdict::Untried => &self.counts.requeued,
            _ => &self.counts.attempts,
        };
        counted.fetch_add(1, Ordering::Relaxed);
        let report = Report {
            lease,
            verdict,
            log,
        };
        // Uncounted first, so that the reporter never waits for this task's own report.
        drop(in_hand);
        // Delivered by the reporter, together with whatever else finished meanwhile.
        if self.reports.send(report).is_err() {
            tracing::error!(%job, "the reporter is gone; the lease will expire and the task be run again");
        }
    }

    /// Holds the job back on this host for a fault of the host's own.
    async fn hold_back(&self, job: JobId, reason: &str) {
        let store = self.store.as_ref();
        self.faults
            .hold_back(store, &self.id.hostname, job, reason)
            .await;
    }

    /// Runs the attempt on the executor.
    async fn attempt(
        &self,
        job: JobId,
        spec: &JobSpec,
        lease: &Lease,
        prepared: &PreparedJob,
        module: &TaskModule,
        control: &TaskControl,
    ) -> Result<AttemptReport, ExecutorError> {
        let job_id = job.to_string();
        let task_id = lease.task.to_string();
        let attempt = Attempt {
            job_id: &job_id,
            job_name: &spec.name,
            task_id: &task_id,
            value: lease.value,
            attempt: lease.attempt,
            script: spec.script.as_str(),
            metadata: &spec.metadata,
            job_dir: prepared.tree.path(),
            workdir: spec.workdir.as_str(),
            limits: spec.limits,
        };
        self.executor.run(module, &attempt, &control.attempt).await
    }

    /// What to report for an attempt that ran. `None` when there is nothing to report: the
    /// lease is no longer this worker's.
    fn verdict(
        &self,
        job: JobId,
        lease: &Lease,
        report: AttemptReport,
        control: &TaskControl,
    ) -> Option<(Verdict, Vec<u8>)> {
        self.pace.record(report.duration);
        if report.ending == Ending::Cancelled {
            match control.stopped() {
                Some(StopReason::LeaseLost) => {
                    tracing::warn!(%job, value = lease.value, "stopped: the lease is no longer ours");
                    return None;
                }
                Some(StopReason::JobGone) => {
                    tracing::info!(%job, value = lease.value, "stopped: the job was deleted");
                    return None;
                }
                Some(StopReason::Fenced) => return None,
                Some(StopReason::Shutdown) => return Some((Verdict::Requeue, Vec::new())),
                None => {}
            }
        }
        tracing::info!(
            %job,
            value = lease.value,
            attempt = lease.attempt,
            outcome = %report.ending,
            ms = report.duration.as_millis() as u64,
            "task finished"
        );
        let verdict = match report.outcome {
            Outcome::Success => Verdict::Success {
                result: report.result,
            },
            Outcome::Error(reason) => Verdict::Error {
                reason: with_last_log_line(reason, &report.ending, &report.log),
            },
            Outcome::Fatal(reason) => Verdict::Fatal {
                reason: with_last_log_line(reason, &report.ending, &report.log),
            },
            _ => Verdict::Error {
                reason: report.ending.to_string(),
            },
        };
        Some((verdict, report.log))
    }

    /// Renews the lease every heartbeat interval with the latest progress, and stops the
    /// attempt when the store says to, or before the lease can expire when it cannot be
    /// renewed. Never returns on its own.
    async fn keep_alive(&self, lease: &Lease, claimed_at: Instant, control: &TaskControl) {
        let interval = self.config.heartbeat_interval;
        let lease_ttl = self.store.lease_ttl();
        // The lease runs at least until this instant plus the lease time: the store set its
        // deadline after we asked.
        let mut renewed = claimed_at;
        let mut ticks = tokio::time::interval(interval);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let sent = Instant::now();
            let progress = control.attempt.take_progress();
            let heartbeat = self.store.heartbeat(lease, progress.as_deref());
            match tokio::time::timeout(interval, heartbeat).await {
                Ok(Ok(Heartbeat::Continue { .. })) => renewed = sent,
                Ok(Ok(Heartbeat::Stop)) => control.stop(StopReason::LeaseLost),
                Ok(Ok(Heartbeat::JobGone)) => control.stop(StopReason::JobGone),
                Ok(Err(e)) => {
                    tracing::warn!(job = %lease.job, value = lease.value, "heartbeat failed: {}", with_causes(&e))
                }
                Err(_) => {
                    tracing::warn!(job = %lease.job, value = lease.value, "heartbeat timed out")
                }
            }
            if control.stopped().is_none() && renewed.elapsed() + interval >= lease_ttl {
                tracing::error!(
                    job = %lease.job,
                    value = lease.value,
                    "cannot renew the lease: stopping the task before the lease expires (self-fencing)"
                );
                control.stop(StopReason::Fenced);
            }
        }
    }
}

/// Adds the guest's last line of stderr to an exit-code reason, where a task usually says why
/// it gave up.
fn with_last_log_line(reason: String, ending: &Ending, log: &[u8]) -> String {
    if !matches!(ending, Ending::Exited(_)) {
        return reason;
    }
    let log = String::from_utf8_lossy(log);
    match log
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty())
    {
        Some(line) => format!("{reason}: {line}"),
        None => reason,
    }
}

/// The fault-injection tests' failpoint, built only with the `failpoints` feature (which only
/// the tests enable).
#[cfg(feature = "failpoints")]
pub(super) mod failpoint {
    /// The environment variable of the failpoint: a worker that has run an attempt of this
    /// value aborts before reporting it, as if the task had crashed the whole host.
    pub const ABORT_FAILPOINT: &str = "WASMJOB_TEST_ABORT_ON_VALUE";

    /// Aborts the process when the failpoint names `value`.
    pub(in crate::worker) fn abort_on(value: u64) {
        static TARGET: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
        let target = TARGET.get_or_init(|| std::env::var(ABORT_FAILPOINT).ok()?.parse().ok());
        if *target == Some(value) {
            tracing::error!(value, "{ABORT_FAILPOINT} names this value: aborting");
            std::process::abort();
        }
    }
}

/// Without the `failpoints` feature there is nothing to inject.
#[cfg(not(feature = "failpoints"))]
mod failpoint {
    pub(in crate::worker) fn abort_on(_value: u64) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> TaskId {
        TaskId(ulid::Ulid::from_parts(1, 2))
    }

    #[test]
    fn the_first_reason_to_stop_is_the_one_that_counts() {
        let control = TaskControl::default();
        assert_eq!(control.stopped(), None);
        control.stop(StopReason::LeaseLost);
        control.stop(StopReason::Shutdown);
        assert_eq!(control.stopped(), Some(StopReason::LeaseLost));
        assert!(control.attempt.is_cancelled());
    }

    #[test]
    fn a_task_entering_after_shutdown_stopped_them_all_is_stopped_at_once() {
        let running = Running::default();
        let before = running.enter(task());
        assert_eq!(running.stop_all(StopReason::Shutdown), 1);
        assert_eq!(before.stopped(), Some(StopReason::Shutdown));
        let after = running.enter(TaskId(ulid::Ulid::from_parts(1, 3)));
        assert_eq!(after.stopped(), Some(StopReason::Shutdown));
    }

    #[test]
    fn an_exit_code_reason_carries_the_last_line_the_guest_wrote() {
        let exited = Ending::Exited(3);
        assert_eq!(
            with_last_log_line("exit code 3".into(), &exited, b"working\nno input file\n\n"),
            "exit code 3: no input file"
        );
        assert_eq!(
            with_last_log_line("exit code 3".into(), &exited, b""),
            "exit code 3"
        );
        let trapped = Ending::Trapped("unreachable".into());
        assert_eq!(
            with_last_log_line("trap".into(), &trapped, b"last words"),
            "trap"
        );
    }
}
