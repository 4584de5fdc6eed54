//! The reporter: delivers finished attempts' reports to the store in batches, a group commit.
//!
//! Attempts queue their reports as they end; one reporter per worker delivers, each time, all
//! that queued up meanwhile in one call: one report when the worker is idle, hundreds under
//! load. A batch the store cannot take yet is retried while its leases may still be current;
//! after that the tasks come back through the reaper anyway. What goes into a report is the
//! attempt's (`attempt.rs`).

use super::Counts;
use super::admission::Admission;
use super::pacing::Backoff;
use crate::storage::{Ack, Report, WorkerStore, with_causes};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The most reports delivered in one call.
const MAX_REPORT_BATCH: usize = 512;

/// How long a busy worker's reporter waits for more reports before it delivers what it has.
const REPORT_WINDOW: Duration = Duration::from_millis(20);

/// The delivering end of a worker's report queue.
pub(super) struct Reporter<S> {
    /// Where reports go.
    pub(super) store: Arc<S>,
    /// The reports queued by finished attempts.
    pub(super) queue: mpsc::UnboundedReceiver<Report>,
    /// Whose leases in hand say more reports are on the way.
    pub(super) admission: Arc<Admission>,
    /// How long a batch is retried: the lease time, after which its leases are gone anyway.
    pub(super) retry_for: Duration,
    /// Where refused reports are counted.
    pub(super) counts: Arc<Counts>,
}

impl<S: WorkerStore> Reporter<S> {
    /// Delivers reports as they come until `finish` and an empty queue.
    pub(super) async fn run(mut self, mut finish: oneshot::Receiver<()>) {
        loop {
            let first = tokio::select! {
                biased;
                report = self.queue.recv() => match report {
                    Some(report) => report,
                    None => return,
                },
                _ = &mut finish => {
                    let mut rest = Vec::new();
                    while let Ok(report) = self.queue.try_recv() {
                        rest.push(report);
                    }
                    if !rest.is_empty() {
                        self.deliver(&rest).await;
                    }
                    return;
                }
            };
            // While other leases are in hand their reports are on the way: wait for them a
            // little, so that a busy worker reports hundreds at once. An idle one reports at
            // once.
            let mut batch = vec![first];
            let until = tokio::time::Instant::now() + REPORT_WINDOW;
            while batch.len() < MAX_REPORT_BATCH {
                if let Ok(report) = self.queue.try_recv() {
                    batch.push(report);
                    continue;
                }
                if self.admission.leases_in_hand() == 0 {
                    break;
                }
                match tokio::time::timeout_at(until, self.queue.recv()).await {
                    Ok(Some(report)) => batch.push(report),
                    Ok(None) | Err(_) => break,
                }
            }
            self.deliver(&batch).await;
        }
    }

    /// Delivers one batch of reports, retrying while their leases may still be current.
    async fn deliver(&self, reports: &[Report]) {
        let give_up = Instant::now() + self.retry_for;
        let mut backoff = Backoff::default();
        loop {
            match self.store.report(reports).await {
                Ok(acks) => {
                    for (report, ack) in reports.iter().zip(acks) {
                        if ack != Ack::Applied {
                            self.counts.refused.fetch_add(1, Ordering::Relaxed);
                            let lease = &report.lease;
                            tracing::warn!(job = %lease.job, value = lease.value, task = %lease.task, ?ack, "report refused: the attempt is no longer current");
                        }
                    }
                    return;
                }
                Err(e) if e.is_retryable() && Instant::now() < give_up => {
                    tracing::warn!(
                        reports = reports.len(),
                        "cannot report yet, retrying: {}",
                        with_causes(&e)
                    );
                    backoff.wait().await;
                }
                Err(e) => {
                    tracing::error!(
                        reports = reports.len(),
                        "cannot report; the leases will expire and the tasks be run again: {}",
                        with_causes(&e)
                    );
                    return;
                }
            }
        }
    }
}
