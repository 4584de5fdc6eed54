//! The worker: claims tasks from a store, runs them on the executor, heartbeats while they run
//! and reports how they ended.
//!
//! This file holds the claim loop and the shutdown drain; each other concept has its room:
//!
//! - `config`: [`WorkerConfig`] and its defaults;
//! - `pacing`: how many leases to claim ahead of the slots, and the back-off against a store
//!   that is away;
//! - `admission`: the slots, the values that run alone, the leases in hand;
//! - `jobs`: the jobs this worker knows, each prepared once on this host (files, tree,
//!   module), with the typed reason a preparation failed;
//! - `faults`: the jobs held back for a fault of this host;
//! - `attempt`: the life of one leased task, from its slot to its verdict, and why an attempt
//!   was stopped;
//! - `reporter`: delivering reports in batches.
//!
//! A worker claims tasks of one job at a time: one per free slot while tasks are long, and,
//! once recent attempts show them short, ahead of its slots, so that one claim serves hundreds
//! of short tasks. A claim never waits; when it finds nothing the worker waits for a wake-up
//! from the store, up to the idle wait. It reaps expired leases periodically, whoever's they
//! are. On shutdown it claims nothing more (a claim under way is let finish: its leases are
//! already taken; a wait for work is dropped, so an idle worker stops at once), hands back at
//! once the leases still waiting for a slot, lets running attempts finish within the grace
//! period, then stops the rest and hands them back too, and delivers every report before it
//! returns.
//!
//! It works with any [`WorkerStore`]; it never touches a wasmtime `Store` (that is the
//! executor's).

mod admission;
mod attempt;
mod config;
mod faults;
mod jobs;
mod pacing;
mod reporter;

#[cfg(feature = "failpoints")]
pub use self::attempt::failpoint::ABORT_FAILPOINT;
pub use self::config::{WorkerConfig, hostname};

use self::admission::Admission;
use self::attempt::{Running, StopReason};
use self::faults::HostFaults;
use self::jobs::Jobs;
use self::pacing::{Backoff, Pace};
use self::reporter::Reporter;
use crate::cache::{BlobCache, CacheError};
use crate::executor::Executor;
use crate::storage::{Claim, Report, StorageError, WorkerId, WorkerStore, with_causes};
use futures_util::FutureExt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// A failure that stops the worker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The store refused a request in a way retrying cannot fix.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The cache directory is unusable.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Whether the worker goes on after `e` from a claim or a reap: a passing fault of the store,
/// or data of one job it cannot read (the store sets such a job aside; the others still run).
/// What concerns the whole queue (a bad URL or prefix, a server that lost its data) stops it.
fn passes(e: &StorageError) -> bool {
    e.is_retryable() || matches!(e, StorageError::Corrupt { .. })
}

/// Counts of what a worker did, for its exit log and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Attempts run to an outcome and reported.
    pub attempts: u64,
    /// Attempts handed back to the queue unrun or stopped (shutdown, host faults).
    pub requeued: u64,
    /// Reports the store refused because the lease was no longer current.
    pub refused: u64,
}

/// The running counts behind [`WorkerStats`].
#[derive(Debug, Default)]
struct Counts {
    attempts: AtomicU64,
    requeued: AtomicU64,
    refused: AtomicU64,
}

impl Counts {
    fn stats(&self) -> WorkerStats {
        WorkerStats {
            attempts: self.attempts.load(Ordering::Relaxed),
            requeued: self.requeued.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

/// A worker over a store `S`, made with [`Worker::new`] and run once with [`Worker::run`].
pub struct Worker<S> {
    shared: Arc<Shared<S>>,
    /// The reporter's end of the report queue, handed to it when the worker runs.
    reports: mpsc::UnboundedReceiver<Report>,
}

/// What the claim loop and every task of a worker share.
struct Shared<S> {
    store: Arc<S>,
    executor: Arc<Executor>,
    config: WorkerConfig,
    id: WorkerId,
    jobs: Arc<Jobs>,
    admission: Arc<Admission>,
    running: Running,
    faults: HostFaults,
    pace: Pace,
    /// Where finished attempts queue their reports for the reporter.
    reports: mpsc::UnboundedSender<Report>,
    counts: Arc<Counts>,
}

impl<S: WorkerStore + 'static> Worker<S> {
    /// A worker over `store`, running guests on `executor`.
    pub fn new(
        store: Arc<S>,
        executor: Arc<Executor>,
        config: WorkerConfig,
    ) -> Result<Self, WorkerError> {
        let cache = BlobCache::open(&config.cache_dir)?;
        let (sender, reports) = mpsc::unbounded_channel();
        let id = WorkerId {
            app: config.app.clone(),
            hostname: config.hostname.clone(),
            instance: ulid::Ulid::new(),
        };
        let shared = Shared {
            store,
            executor,
            jobs: Arc::new(Jobs::new(cache, config.reap_interval)),
            admission: Arc::new(Admission::new(config.slots)),
            config,
            id,
            running: Running::default(),
            faults: HostFaults::default(),
            pace: Pace::default(),
            reports: sender,
            counts: Arc::default(),
        };
        Ok(Worker {
            shared: Arc::new(shared),
            reports,
        })
    }

    /// Who this worker is, as the store records it.
    pub fn id(&self) -> &WorkerId {
        &self.shared.id
    }

    /// Claims and runs tasks until `shutdown` completes, then drains gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<WorkerStats, WorkerError> {
        let Worker { shared, reports } = self;
        let (finish_reports, finished) = oneshot::channel();
        let reporter = Reporter {
            store: Arc::clone(&shared.store),
            queue: reports,
            admission: Arc::clone(&shared.admission),
            retry_for: shared.store.lease_ttl(),
            counts: Arc::clone(&shared.counts),
        };
        let reporter = tokio::spawn(reporter.run(finished));
        let mut tasks = JoinSet::new();
        let outcome = shared.claim_until(shutdown, &mut tasks).await;
        shared.drain(tasks).await;
        // Every report is queued by now; the reporter delivers them all, then stops.
        let _ = finish_reports.send(());
        if reporter.await.is_err() {
            tracing::error!(
                "the reporter panicked; undelivered tasks come back when their leases expire"
            );
        }
        if let Err(e) = shared.store.unregister(&shared.id).await {
            tracing::warn!(
                "cannot withdraw this worker's registration: {}",
                with_causes(&e)
            );
        }
        outcome.map(|()| shared.counts.stats())
    }
}

impl<S: WorkerStore + 'static> Shared<S> {
    /// Registers, then claims tasks into `tasks` until `shutdown` completes or the store fails
    /// in a way retrying cannot fix; reaps on the way.
    async fn claim_until(
        self: &Arc<Self>,
        shutdown: impl Future<Output = ()>,
        tasks: &mut JoinSet<()>,
    ) -> Result<(), WorkerError> {
        let mut last_reap = Instant::now();
        let mut backoff = Backoff::default();
        tokio::pin!(shutdown);
        // Registered before the first claim, so that it claims only what fits its ceilings.
        loop {
            match self.store.register(&self.id, &self.config.ceilings).await {
                Ok(()) => break,
                Err(e) if e.is_retryable() => {
                    tracing::warn!(
                        "cannot register with the queue, retrying: {}",
                        with_causes(&e)
                    );
                    tokio::select! {
                        () = backoff.wait() => {}
                        () = &mut shutdown => return Ok(()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        backoff.reset();

        // The job named by the wake-up that ended the last wait, tried first by the next claim.
        let mut hint = None;
        loop {
            // Finished tasks are collected as we go so the set does not grow without bound.
            while tasks.try_join_next().is_some() {}
            // A stop is seen here between claims, and in every wait below.
            if (&mut shutdown).now_or_never().is_some() {
                return Ok(());
            }
            if last_reap.elapsed() >= self.config.reap_interval {
                last_reap = Instant::now();
                self.look_around().await?;
            }

            // Leases in hand (running or waiting for a slot) stay within the slots times the
            // prefetch: short tasks are claimed many at a time, long ones one per free slot.
            // Refilled once half are done, so that claims stay large.
            let capacity = self.admission.slots() * self.pace.prefetch();
            let full = tasks.len() >= capacity || tasks.len() > 1 && tasks.len() * 2 > capacity;
            if full || self.admission.holds_one_alone() {
                tokio::select! {
                    _ = tasks.join_next() => continue,
                    () = &mut shutdown => return Ok(()),
                }
            }
            let wanted = capacity - tasks.len();

            // A claim is never dropped half-way: its script may already have run in Redis, and
            // the leases it took would be lost. It never waits either, so it is not raced against
            // shutdown: the wait for work after a claim that found nothing is, since dropping
            // that loses nothing. The mark is taken first, so that work appearing while the
            // claim looks ends the wait at once.
            let held = self.faults.held();
            let claimed = async {
                let mark = self.store.wake_mark().await?;
                let claim = self.store.claim(&self.id, wanted, &held, hint).await?;
                Ok::<_, StorageError>((mark, claim))
            }
            .await;
            hint = None;
            let waited = match claimed {
                Ok((_, Some(claim))) => {
                    backoff.reset();
                    self.spawn_tasks(claim, tasks);
                    continue;
                }
                Ok((mark, None)) => {
                    backoff.reset();
                    tokio::select! {
                        woken = self.store.wait_for_work(mark, self.config.idle_wait) => woken,
                        () = &mut shutdown => return Ok(()),
                    }
                }
                Err(e) => Err(e),
            };
            match waited {
                Ok(woken) => hint = woken.and_then(|mark| mark.job()),
                Err(e) if passes(&e) => {
                    tracing::warn!("claiming failed, retrying: {}", with_causes(&e));
                    tokio::select! {
                        () = backoff.wait() => {}
                        () = &mut shutdown => return Ok(()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// What a worker does every reap interval besides claiming: checks that the store still
    /// holds its data, forgets idle jobs, renews its registration and reaps expired leases.
    async fn look_around(&self) -> Result<(), WorkerError> {
        match self.store.check().await {
            Ok(()) => {}
            Err(e @ StorageError::DataLost { .. }) => tracing::error!("{}", with_causes(&e)),
            Err(e) => tracing::warn!("cannot check the queue: {}", with_causes(&e)),
        }
        self.jobs.forget_idle();
        if let Err(e) = self.store.register(&self.id, &self.config.ceilings).await {
            tracing::warn!(
                "cannot renew this worker's registration: {}",
                with_causes(&e)
            );
        }
        match self.store.reap().await {
            Ok(reaped) if reaped.requeued + reaped.quarantined > 0 => {
                tracing::info!(
                    requeued = reaped.requeued,
                    quarantined = reaped.quarantined,
                    "reaped expired leases"
                );
            }
            Ok(_) => {}
            Err(e) if passes(&e) => tracing::warn!("reaping failed: {}", with_causes(&e)),
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Starts one task per lease of the claim.
    fn spawn_tasks(self: &Arc<Self>, claim: Claim, tasks: &mut JoinSet<()>) {
        let claimed_at = Instant::now();
        let Claim { spec, job, leases } = claim;
        // One hold for the whole claim, released when its last task is done.
        let held = Arc::new(self.jobs.hold(job));
        for lease in leases {
            let claimed = self.admission.claimed(lease.alone);
            let shared = Arc::clone(self);
            let spec = Arc::clone(&spec);
            let held = Arc::clone(&held);
            tasks.spawn(async move {
                shared
                    .run_task(job, &spec, lease, &claimed, claimed_at)
                    .await;
                drop((held, claimed));
            });
        }
    }

    /// Lets running tasks finish within the grace period, then stops and requeues the rest.
    async fn drain(&self, mut tasks: JoinSet<()>) {
        // Leases still waiting for a slot go back at once.
        self.admission.drain();
        while tasks.try_join_next().is_some() {}
        if tasks.is_empty() {
            return;
        }
        tracing::info!(running = tasks.len(), grace = ?self.config.grace, "shutting down: letting running tasks finish");
        let graceful = tokio::time::timeout(self.config.grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if graceful.is_err() {
            let stopping = self.running.stop_all(StopReason::Shutdown);
            tracing::info!(stopping, "grace period over: stopping and requeueing");
            while tasks.join_next().await.is_some() {}
        }
    }
}
