//! The worker: claims tasks from a store, runs them on the executor, heartbeats while they run
//! and reports how they ended.
//!
//! A worker has a fixed number of slots. It claims tasks of one job at a time: one per free
//! slot while tasks are long, and, once recent attempts show them short, ahead of its slots
//! (about 20 ms of work per slot), so that one claim serves hundreds of short tasks.
//! Each leased task runs in its own tokio task next to a heartbeat that renews the lease from the
//! claim on, carries the guest's progress and cancels the attempt when the store says to stop;
//! it waits for a slot, runs, and queues its report. One reporter delivers the queued reports
//! together. The worker prepares each job once (download and verify the manifest into the blob
//! cache, compile the module) and shares that among the job's tasks, until the job has had no
//! lease in hand for a reap interval. It reaps expired leases periodically, whoever's they are.
//!
//! On shutdown it claims nothing more, hands back at once the leases still waiting for a slot,
//! lets running attempts finish within the grace period, then stops the rest and hands them
//! back too, and delivers every report before it returns.
//!
//! It works with any [`WorkerStore`]; it never touches a wasmtime `Store` (that is the
//! executor's).

use crate::cache::{BlobCache, CacheError, JobTree};
use crate::executor::{
    Attempt, AttemptControl, AttemptReport, Executor, ExecutorError, InvalidModule, TaskLimits,
    TaskModule,
};
use crate::limits::Ceilings;
use crate::manifest::Digest;
use crate::spec::JobSpec;
use crate::storage::{
    Ack, Claim, Heartbeat, JobId, Lease, Report, StorageError, TaskId, Verdict, WorkerId,
    WorkerStore,
};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{OnceCell, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use wasmjob_host_api::{Ending, Outcome};

/// How a worker behaves; the defaults suit a worker host.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How many tasks run at once.
    pub slots: usize,
    /// The application name reported with each task (`--app`).
    pub app: String,
    /// The host name reported with each task.
    pub hostname: String,
    /// Where manifest files and job trees are cached.
    pub cache_dir: PathBuf,
    /// How long the store's leases last between heartbeats (the store's setting, repeated here
    /// so that the worker knows when to fence itself).
    pub lease_ttl: Duration,
    /// How often a running task's lease is renewed. Must be well below the lease time.
    pub heartbeat_interval: Duration,
    /// How often this worker reaps expired leases.
    pub reap_interval: Duration,
    /// How long one wait for work lasts before the worker looks around again (reaping).
    pub idle_wait: Duration,
    /// On shutdown, how long running attempts may take to finish before they are stopped and
    /// handed back.
    pub grace: Duration,
    /// The most this worker accepts of each job limit; it claims no job above them.
    pub ceilings: Ceilings,
}

impl WorkerConfig {
    /// A configuration with the defaults, caching under `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        WorkerConfig {
            slots: num_cpus::get(),
            app: "wasmjob".into(),
            hostname: hostname(),
            cache_dir: cache_dir.into(),
            lease_ttl: crate::storage::DEFAULT_LEASE_TTL,
            heartbeat_interval: Duration::from_secs(5),
            reap_interval: Duration::from_secs(5),
            idle_wait: Duration::from_secs(1),
            grace: Duration::from_secs(30),
            ceilings: Ceilings::default(),
        }
    }
}

/// Waits between retries against a store that is away: 250 ms, doubling up to 5 s.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Duration::from_millis(250),
        }
    }
}

impl Backoff {
    async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Duration::from_secs(5));
    }

    fn reset(&mut self) {
        *self = Backoff::default();
    }
}

/// How long a job is first held back after its tasks could not be prepared on this host; each
/// fault after a back-off ran out doubles it, up to [`HOLD_MOST`].
const HOLD_FIRST: Duration = Duration::from_secs(1);

/// The longest a job is held back before this host tries its tasks again.
const HOLD_MOST: Duration = Duration::from_secs(300);

/// The jobs whose tasks this worker's host could not prepare or start (a stored file missing or
/// damaged, a cache or scratch directory it cannot write): it claims none of their tasks until
/// their back-off runs out, so that a fault of this host neither spins nor charges the tasks.
#[derive(Default)]
struct HostFaults(Mutex<HashMap<JobId, HeldBack>>);

struct HeldBack {
    until: Instant,
    delay: Duration,
}

impl HostFaults {
    /// The jobs to pass over now. A job whose back-off ran out long ago (it finished, or runs
    /// elsewhere) is forgotten, so that the map does not grow with every job ever held back.
    fn held(&self) -> Vec<JobId> {
        let now = Instant::now();
        let mut faults = self.0.lock().unwrap_or_else(|e| e.into_inner());
        faults.retain(|_, held| held.until + HOLD_MOST > now);
        faults
            .iter()
            .filter(|(_, held)| held.until > now)
            .map(|(job, _)| *job)
            .collect()
    }

    fn holds(&self, job: JobId) -> bool {
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

    /// An attempt of the job ran on this host: whether it had been held back.
    fn clear(&self, job: JobId) -> bool {
        let mut faults = self.0.lock().unwrap_or_else(|e| e.into_inner());
        faults.remove(&job).is_some()
    }
}

/// This machine's host name, or `localhost` if it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

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

/// How much work, at the recent attempts' pace, a worker claims per slot ahead of running it.
const PREFETCH_WORK: Duration = Duration::from_millis(20);

/// The most leases per slot a worker holds at once.
const MAX_PREFETCH: usize = 256;

/// The most reports delivered in one call.
const MAX_REPORT_BATCH: usize = 512;

/// How long a busy worker's reporter waits for more reports before it delivers what it has.
const REPORT_WINDOW: Duration = Duration::from_millis(20);

/// Counts one lease in hand while it lives.
struct InHand(Arc<AtomicUsize>);

impl InHand {
    fn count(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        InHand(Arc::clone(counter))
    }
}

impl Drop for InHand {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What decides whether a task waiting for a slot may run, watched by every such task.
#[derive(Debug, Clone, Copy, Default)]
struct Admission {
    /// Shutdown has begun: leases waiting for a slot are handed back at once.
    draining: bool,
    /// How many leases in hand are to run alone (their values are on their last chance). While
    /// any is, nothing more is claimed and the other leases waiting for a slot are handed back,
    /// so that if such a task kills this process no other task is lost with it.
    alone: usize,
}

impl Admission {
    /// Whether a task (`alone` when its lease says so) may take its slots.
    fn admits(&self, alone: bool) -> bool {
        !self.draining && (alone || self.alone == 0)
    }
}

/// Counts one lease to run alone in the [`Admission`] while it lives.
struct Alone(Arc<watch::Sender<Admission>>);

impl Alone {
    fn count(admission: &Arc<watch::Sender<Admission>>) -> Self {
        admission.send_modify(|a| a.alone += 1);
        Alone(Arc::clone(admission))
    }
}

impl Drop for Alone {
    fn drop(&mut self) {
        self.0.send_modify(|a| a.alone -= 1);
    }
}

/// A job made ready to run on this host: its tree on disk and its compiled module. Jobs with
/// the same manifest and script share one, and the tree goes with the last of them.
struct PreparedJob {
    tree: JobTree,
    module: Result<TaskModule, InvalidModule>,
}

/// What a preparation depends on: a job's manifest and script. Jobs that agree on both share
/// their preparation.
fn preparation_key(spec: &JobSpec) -> Digest {
    let what = serde_json::to_vec(&(&spec.manifest, &spec.script))
        .expect("a manifest and a path always serialize");
    Digest::of(&what)
}

/// A job's preparation, done by the first of its tasks; the error is the reason its tasks fail.
type Preparation = OnceCell<Result<Arc<PreparedJob>, String>>;

/// A job this worker has prepared.
#[derive(Default)]
struct KnownJob {
    /// Its claims with leases in hand: while any is, the job's tree stays.
    claims: usize,
    /// Since when it has had none; a job idle for a reap interval is forgotten.
    idle_since: Option<Instant>,
    /// Its preparation, shared by its tasks.
    preparation: Arc<Preparation>,
}

/// A worker over a store `S`. Run it with [`Worker::run`].
pub struct Worker<S> {
    store: Arc<S>,
    executor: Arc<Executor>,
    cache: BlobCache,
    config: WorkerConfig,
    id: WorkerId,
    /// The jobs this worker prepared. Each is prepared once, its tasks waiting on the same
    /// cell, and forgotten (letting go of its preparation) once it has had no lease in hand for
    /// a reap interval: a job's leases run out between claims all the time.
    known_jobs: Mutex<HashMap<JobId, KnownJob>>,
    /// The preparations of the known jobs, by [`preparation_key`], for a job to take up the
    /// one another job with the same manifest and script made: its tree is not built again.
    preparations: Mutex<HashMap<Digest, Weak<PreparedJob>>>,
    /// The controls of running attempts, to stop them at shutdown.
    running: Mutex<HashMap<TaskId, Arc<AttemptControl>>>,
    /// Set once shutdown has passed its grace period: stopped attempts are requeued.
    stopping: AtomicBool,
    /// Whether tasks waiting for a slot may run: none once shutdown begins, and only the one to
    /// run alone while such a lease is in hand.
    admission: Arc<watch::Sender<Admission>>,
    /// Finished attempts' reports, for the reporter to deliver in batches.
    report_sender: mpsc::UnboundedSender<Report>,
    /// The reporter's end of that queue, taken when the worker runs.
    report_queue: Mutex<Option<mpsc::UnboundedReceiver<Report>>>,
    /// The recent attempts' average duration in microseconds (0 before the first).
    recent_attempt_micros: AtomicU64,
    /// Leases claimed whose reports are not yet queued.
    leases_in_hand: Arc<AtomicUsize>,
    /// The jobs held back for a fault of this host.
    host_faults: HostFaults,
    attempts: AtomicU64,
    requeued: AtomicU64,
    refused: AtomicU64,
}

impl<S: WorkerStore + 'static> Worker<S> {
    /// A worker over `store`, running guests on `executor`.
    pub fn new(
        store: Arc<S>,
        executor: Arc<Executor>,
        config: WorkerConfig,
    ) -> Result<Self, WorkerError> {
        let cache = BlobCache::open(&config.cache_dir)?;
        let (report_sender, report_queue) = mpsc::unbounded_channel();
        let id = WorkerId {
            app: config.app.clone(),
            hostname: config.hostname.clone(),
            instance: ulid::Ulid::new(),
        };
        Ok(Worker {
            store,
            executor,
            cache,
            config,
            id,
            known_jobs: Mutex::default(),
            preparations: Mutex::default(),
            running: Mutex::default(),
            stopping: AtomicBool::new(false),
            admission: Arc::default(),
            report_sender,
            report_queue: Mutex::new(Some(report_queue)),
            recent_attempt_micros: AtomicU64::new(0),
            leases_in_hand: Arc::default(),
            host_faults: HostFaults::default(),
            attempts: AtomicU64::new(0),
            requeued: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Who this worker is, as the store records it.
    pub fn id(&self) -> &WorkerId {
        &self.id
    }

    /// Claims and runs tasks until `shutdown` completes, then drains gracefully. A worker runs
    /// once.
    pub async fn run(
        self: Arc<Self>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<WorkerStats, WorkerError> {
        let slots = Arc::new(Semaphore::new(self.config.slots.max(1)));
        let mut tasks = JoinSet::new();
        let (finish_reports, finished) = tokio::sync::oneshot::channel();
        let queue = self
            .report_queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .expect("a worker runs once");
        let reporter = tokio::spawn(Arc::clone(&self).deliver_reports(queue, finished));
        let mut last_reap = Instant::now();
        let mut backoff = Backoff::default();
        tokio::pin!(shutdown);
        // Registered before the first claim, so that it claims only what fits its ceilings.
        loop {
            match self.store.register(&self.id, &self.config.ceilings).await {
                Ok(()) => break,
                Err(e) if e.is_retryable() => {
                    tracing::warn!("cannot register with the queue, retrying: {e}");
                    tokio::select! {
                        () = backoff.wait() => {}
                        () = &mut shutdown => return Ok(self.stats()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        backoff.reset();

        let outcome = loop {
            // Finished tasks are collected as we go so the set does not grow without bound.
            while tasks.try_join_next().is_some() {}
            if last_reap.elapsed() >= self.config.reap_interval {
                last_reap = Instant::now();
                match self.store.check().await {
                    Ok(()) => {}
                    Err(e @ StorageError::DataLost { .. }) => tracing::error!("{e}"),
                    Err(e) => tracing::warn!("cannot check the queue: {e}"),
                }
                self.forget_idle_jobs();
                if let Err(e) = self.store.register(&self.id, &self.config.ceilings).await {
                    tracing::warn!("cannot renew this worker's registration: {e}");
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
                    Err(e) if e.is_retryable() => tracing::warn!("reaping failed: {e}"),
                    Err(e) => break Err(e.into()),
                }
            }

            // Leases in hand (running or waiting for a slot) stay within the slots times the
            // prefetch: short tasks are claimed many at a time, long ones one per free slot.
            // Refilled once half are done, so that claims stay large.
            let capacity = self.config.slots.max(1) * self.prefetch();
            let full = tasks.len() >= capacity || tasks.len() > 1 && tasks.len() * 2 > capacity;
            if full || self.admission.borrow().alone > 0 {
                tokio::select! {
                    _ = tasks.join_next() => continue,
                    () = &mut shutdown => break Ok(()),
                }
            }
            let wanted = capacity - tasks.len();

            // A claim is never dropped half-way: its script may already have run in Redis, and
            // the leases it took would be lost. One under way when shutdown comes is let finish
            // (within `idle_wait`), and its leases go back untried in `drain`.
            let held = self.host_faults.held();
            let claim = self
                .store
                .next_avoiding(&self.id, wanted, self.config.idle_wait, &held);
            tokio::pin!(claim);
            let (claimed, stopping) = tokio::select! {
                claimed = &mut claim => (claimed, false),
                () = &mut shutdown => (claim.await, true),
            };
            if claimed.is_ok() {
                backoff.reset();
            }
            let claim = match claimed {
                Ok(Some(claim)) => claim,
                Ok(None) if stopping => break Ok(()),
                Ok(None) => continue,
                Err(e) if stopping && e.is_retryable() => break Ok(()),
                Err(e) if e.is_retryable() => {
                    tracing::warn!("claiming failed, retrying: {e}");
                    backoff.wait().await;
                    continue;
                }
                Err(e) => break Err(e.into()),
            };
            let claimed_at = Instant::now();
            let Claim { spec, job, leases } = claim;
            // One hold for the whole claim, released when its last task is done.
            let held = Arc::new(Arc::clone(&self).hold_job(job));
            for lease in leases {
                // Counted before the next look at the queue, which it stops.
                let alone = lease.alone.then(|| Alone::count(&self.admission));
                let worker = Arc::clone(&self);
                let spec = Arc::clone(&spec);
                let slots = Arc::clone(&slots);
                let held = Arc::clone(&held);
                tasks.spawn(async move {
                    worker.run_task(job, &spec, lease, claimed_at, &slots).await;
                    drop((held, alone));
                });
            }
            if stopping {
                break Ok(());
            }
        };

        self.drain(tasks).await;
        // Every report is queued by now; the reporter delivers them all, then stops.
        let _ = finish_reports.send(());
        if reporter.await.is_err() {
            tracing::error!(
                "the reporter panicked; undelivered tasks come back when their leases expire"
            );
        }
        if let Err(e) = self.store.unregister(&self.id).await {
            tracing::warn!("cannot withdraw this worker's registration: {e}");
        }
        outcome.map(|()| self.stats())
    }

    /// What this worker has done so far.
    pub fn stats(&self) -> WorkerStats {
        WorkerStats {
            attempts: self.attempts.load(Ordering::Relaxed),
            requeued: self.requeued.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    /// Lets running tasks finish within the grace period, then stops and requeues the rest.
    async fn drain(&self, mut tasks: JoinSet<()>) {
        // Leases still waiting for a slot go back at once.
        self.admission.send_modify(|a| a.draining = true);
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
            self.stopping.store(true, Ordering::SeqCst);
            let running: Vec<_> = self
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned()
                .collect();
            tracing::info!(
                stopping = running.len(),
                "grace period over: stopping and requeueing"
            );
            for control in running {
                control.cancel();
            }
            while tasks.join_next().await.is_some() {}
        }
    }

    /// Runs one leased task to a report: prepares its job, runs the attempt, and renews the
    /// lease from the claim on, all the while.
    async fn run_task(
        &self,
        job: JobId,
        spec: &JobSpec,
        lease: Lease,
        claimed_at: Instant,
        slots: &Semaphore,
    ) {
        let in_hand = InHand::count(&self.leases_in_hand);
        let control = Arc::new(AttemptControl::default());
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(lease.task, Arc::clone(&control));
        // Registered before looking: either `drain` sees this control or this sees `stopping`.
        if self.stopping.load(Ordering::SeqCst) {
            control.cancel();
        }
        let lease_lost = AtomicBool::new(false);
        let work = async {
            let mut admission = self.admission.subscribe();
            // A task to run alone takes every slot; the others give way to it.
            let alone = lease.alone;
            let permits = if alone { self.config.slots.max(1) } else { 1 };
            let turned_away = |admission: &Admission| !admission.admits(alone);
            let _slots = tokio::select! {
                slots = slots.acquire_many(permits as u32) => {
                    slots.expect("the semaphore is never closed")
                }
                _ = admission.wait_for(turned_away) => {
                    return Some((Verdict::Untried, Vec::new()));
                }
            };
            if turned_away(&admission.borrow()) || self.host_faults.holds(job) {
                return Some((Verdict::Untried, Vec::new()));
            }
            let prepared = match self.prepare(job, spec).await {
                Ok(prepared) => prepared,
                Err(reason) => {
                    self.hold_back(job, &reason).await;
                    return Some((Verdict::Untried, Vec::new()));
                }
            };
            match &prepared.module {
                Err(invalid) => Some((
                    Verdict::Fatal {
                        reason: Ending::from(invalid.clone()).to_string(),
                    },
                    Vec::new(),
                )),
                Ok(module) => {
                    let ran = self.attempt(job, spec, &lease, &prepared, module, &control);
                    let ran = ran.await;
                    abort_failpoint(lease.value);
                    match ran {
                        Ok(report) => {
                            if self.host_faults.clear(job) {
                                tracing::info!(%job, "this host can run the job's tasks again");
                            }
                            self.verdict(job, &lease, report, &lease_lost)
                        }
                        Err(host_fault) => {
                            self.hold_back(job, &host_fault.to_string()).await;
                            Some((Verdict::Untried, Vec::new()))
                        }
                    }
                }
            }
        };
        let verdict_and_log = tokio::select! {
            outcome = work => outcome,
            () = self.keep_alive(&lease, claimed_at, &control, &lease_lost) => {
                unreachable!("the heartbeat loop never ends by itself")
            }
        };
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&lease.task);
        let Some((verdict, log)) = verdict_and_log else {
            return;
        };
        if matches!(verdict, Verdict::Requeue | Verdict::Untried) {
            self.requeued.fetch_add(1, Ordering::Relaxed);
        } else {
            self.attempts.fetch_add(1, Ordering::Relaxed);
        }
        let report = Report {
            lease,
            verdict,
            log,
        };
        // Uncounted first, so that the reporter never waits for this task's own report.
        drop(in_hand);
        // Delivered by the reporter, together with whatever else finished meanwhile.
        if self.report_sender.send(report).is_err() {
            tracing::error!(%job, "the reporter is gone; the lease will expire and the task be run again");
        }
    }

    /// Delivers reports as they come, each time all that have queued up meanwhile in one call
    /// (a group commit: one report when the worker is idle, many under load), until `finish`
    /// and an empty queue.
    async fn deliver_reports(
        self: Arc<Self>,
        mut queue: mpsc::UnboundedReceiver<Report>,
        mut finish: tokio::sync::oneshot::Receiver<()>,
    ) {
        loop {
            let first = tokio::select! {
                biased;
                report = queue.recv() => match report {
                    Some(report) => report,
                    None => return,
                },
                _ = &mut finish => {
                    let mut rest = Vec::new();
                    while let Ok(report) = queue.try_recv() {
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
                if let Ok(report) = queue.try_recv() {
                    batch.push(report);
                    continue;
                }
                if self.leases_in_hand.load(Ordering::SeqCst) == 0 {
                    break;
                }
                match tokio::time::timeout_at(until, queue.recv()).await {
                    Ok(Some(report)) => batch.push(report),
                    Ok(None) | Err(_) => break,
                }
            }
            self.deliver(&batch).await;
        }
    }

    /// Delivers one batch of reports, retrying while their leases may still be current; after
    /// that the tasks come back through the reaper anyway.
    async fn deliver(&self, reports: &[Report]) {
        let give_up = Instant::now() + self.config.lease_ttl;
        let mut backoff = Backoff::default();
        loop {
            match self.store.report(reports).await {
                Ok(acks) => {
                    for (report, ack) in reports.iter().zip(acks) {
                        if ack != Ack::Applied {
                            self.refused.fetch_add(1, Ordering::Relaxed);
                            let lease = &report.lease;
                            tracing::warn!(job = %lease.job, value = lease.value, task = %lease.task, ?ack, "report refused: the attempt is no longer current");
                        }
                    }
                    return;
                }
                Err(e) if e.is_retryable() && Instant::now() < give_up => {
                    tracing::warn!(reports = reports.len(), "cannot report yet, retrying: {e}");
                    backoff.wait().await;
                }
                Err(e) => {
                    tracing::error!(
                        reports = reports.len(),
                        "cannot report; the leases will expire and the tasks be run again: {e}"
                    );
                    return;
                }
            }
        }
    }

    /// How many leases per slot to hold: enough for about [`PREFETCH_WORK`] of work at the
    /// recent attempts' pace, one for slow tasks, at most [`MAX_PREFETCH`].
    fn prefetch(&self) -> usize {
        let average = self.recent_attempt_micros.load(Ordering::Relaxed);
        if average == 0 {
            return 1;
        }
        (PREFETCH_WORK.as_micros() as u64 / average).clamp(1, MAX_PREFETCH as u64) as usize
    }

    /// Folds an attempt's duration into the recent average (a moving average weighting the
    /// newest by 1/8).
    fn record_duration(&self, duration: Duration) {
        let micros = (duration.as_micros() as u64).max(1);
        let _ =
            self.recent_attempt_micros
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                    Some(if old == 0 {
                        micros
                    } else {
                        (old * 7 + micros) / 8
                    })
                });
    }

    /// Runs the attempt on the executor.
    async fn attempt(
        &self,
        job: JobId,
        spec: &JobSpec,
        lease: &Lease,
        prepared: &PreparedJob,
        module: &TaskModule,
        control: &Arc<AttemptControl>,
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
            limits: TaskLimits::of(spec),
        };
        self.executor.run(module, &attempt, control).await
    }

    /// What to report for an attempt that ran. `None` when there is nothing to report: the
    /// lease was lost or the job deleted while it ran.
    fn verdict(
        &self,
        job: JobId,
        lease: &Lease,
        report: AttemptReport,
        lease_lost: &AtomicBool,
    ) -> Option<(Verdict, Vec<u8>)> {
        self.record_duration(report.duration);
        if report.ending == Ending::Cancelled {
            if lease_lost.load(Ordering::SeqCst) {
                tracing::warn!(%job, value = lease.value, "stopped: the lease is no longer ours or the job was deleted");
                return None;
            }
            if self.stopping.load(Ordering::SeqCst) {
                return Some((Verdict::Requeue, Vec::new()));
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

    /// Renews the lease every heartbeat interval with the latest progress, and cancels the
    /// attempt when the store says to stop. When the lease cannot be renewed (the store is
    /// away), it stops the attempt itself before the lease can expire: past that point another
    /// worker may be running the same task (self-fencing). Never returns on its own.
    async fn keep_alive(
        &self,
        lease: &Lease,
        claimed_at: Instant,
        control: &AttemptControl,
        lease_lost: &AtomicBool,
    ) {
        let interval = self.config.heartbeat_interval;
        // The lease runs at least until this instant plus the lease time: the store set its
        // deadline after we asked.
        let mut renewed = claimed_at;
        let mut ticks = tokio::time::interval(interval);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let sent = Instant::now();
            let progress = control.take_progress();
            let heartbeat = self.store.heartbeat(lease, progress.as_deref());
            match tokio::time::timeout(interval, heartbeat).await {
                Ok(Ok(Heartbeat::Continue { .. })) => renewed = sent,
                Ok(Ok(Heartbeat::Stop)) => {
                    lease_lost.store(true, Ordering::SeqCst);
                    control.cancel();
                }
                Ok(Err(e)) => {
                    tracing::warn!(job = %lease.job, value = lease.value, "heartbeat failed: {e}")
                }
                Err(_) => {
                    tracing::warn!(job = %lease.job, value = lease.value, "heartbeat timed out")
                }
            }
            if !control.is_cancelled() && renewed.elapsed() + interval >= self.config.lease_ttl {
                tracing::error!(
                    job = %lease.job,
                    value = lease.value,
                    "cannot renew the lease: stopping the task before the lease expires (self-fencing)"
                );
                lease_lost.store(true, Ordering::SeqCst);
                control.cancel();
            }
        }
    }

    /// Counts a claim of `job` in hand until the returned guard drops.
    fn hold_job(self: Arc<Self>, job: JobId) -> HeldJob<S> {
        {
            let mut jobs = self.known_jobs.lock().unwrap_or_else(|e| e.into_inner());
            let held = jobs.entry(job).or_default();
            held.claims += 1;
            held.idle_since = None;
        }
        HeldJob { worker: self, job }
    }

    /// Forgets the jobs that have had no lease in hand for a reap interval, and removes their
    /// trees: a long-lived worker keeps only the jobs it is working on.
    fn forget_idle_jobs(&self) {
        // A forgotten job lets go of its preparation; the last job to let go of one removes
        // its tree.
        self.known_jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, held| {
                held.idle_since
                    .is_none_or(|since| since.elapsed() < self.config.reap_interval)
            });
        self.preparations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, prepared| prepared.strong_count() > 0);
    }

    /// Holds the job back for a fault of this host: logged, and noted for `status`, once per
    /// back-off step.
    async fn hold_back(&self, job: JobId, reason: &str) {
        let Some(delay) = self.host_faults.fault(job) else {
            return;
        };
        tracing::warn!(%job, ?delay, "cannot run the job's tasks on this host, holding it back: {reason}");
        let note = format!(
            "{} cannot run its tasks: {reason}; trying again in {}",
            self.id.hostname,
            humantime::format_duration(delay)
        );
        if let Err(e) = self.store.hold_back(job, &note).await {
            tracing::warn!(%job, "cannot note why the job is held back: {e}");
        }
    }

    /// Downloads the job's manifest into the cache and compiles its module, once per job held
    /// in hand.
    async fn prepare(&self, job: JobId, spec: &JobSpec) -> Result<Arc<PreparedJob>, String> {
        let cell = Arc::clone(
            &self
                .known_jobs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&job)
                .expect("a task holds its job while it prepares it")
                .preparation,
        );
        let prepared = cell
            .get_or_init(|| async {
                let key = preparation_key(spec);
                let shared = self
                    .preparations
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&key)
                    .and_then(Weak::upgrade);
                if let Some(prepared) = shared {
                    return Ok(prepared);
                }
                let store = &self.store;
                let tree = self
                    .cache
                    .job_tree(&spec.manifest, |digest| async move {
                        store.download(&digest).await
                    })
                    .await;
                let tree = match tree {
                    Ok(tree) => tree,
                    Err(CacheError::HashMismatch { path, mismatch }) => {
                        if let Err(e) = store.drop_damaged(&mismatch.expected).await {
                            tracing::warn!(%job, "cannot drop the damaged copy of {path}: {e}");
                        }
                        return Err(format!(
                            "the stored copy of {path} was damaged ({mismatch}) and is dropped: \
                             the job waits for the file, which the next submit of it uploads"
                        ));
                    }
                    Err(e) => return Err(e.to_string()),
                };
                let script = spec
                    .manifest
                    .file(&spec.script)
                    .ok_or_else(|| format!("the script {} is not in the manifest", spec.script))?;
                // A module this worker compiled for another job is not read again.
                let module = match self.executor.module_of(&script.sha256) {
                    Some(module) => module,
                    None => {
                        let wasm = self
                            .cache
                            .blob(spec.script.as_str(), script, || async {
                                Err::<Vec<u8>, _>("the module is not in the cache")
                            })
                            .await
                            .map_err(|e| e.to_string())?;
                        self.executor.compile_within_budget(wasm).await
                    }
                };
                let prepared = Arc::new(PreparedJob { tree, module });
                self.preparations
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, Arc::downgrade(&prepared));
                Ok(prepared)
            })
            .await
            .clone();
        if prepared.is_err() {
            // A failed preparation (a download that broke off) is tried afresh by the next task.
            if let Some(held) = self
                .known_jobs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&job)
                && Arc::ptr_eq(&held.preparation, &cell)
            {
                held.preparation = Arc::default();
            }
        }
        prepared
    }
}

/// A claim's hold on its job (see [`Worker::hold_job`]).
struct HeldJob<S> {
    worker: Arc<Worker<S>>,
    job: JobId,
}

impl<S> Drop for HeldJob<S> {
    fn drop(&mut self) {
        let mut jobs = self
            .worker
            .known_jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Some(held) = jobs.get_mut(&self.job) else {
            return;
        };
        held.claims -= 1;
        if held.claims == 0 {
            held.idle_since = Some(Instant::now());
        }
    }
}

/// The environment variable of the test-only failpoint: a worker that has run an attempt of
/// this value aborts before reporting it, as if the task had crashed the whole host.
pub const ABORT_FAILPOINT: &str = "WASMJOB_TEST_ABORT_ON_VALUE";

/// Aborts the process when the failpoint names `value`; the fault-injection tests use it to
/// show that a value which keeps killing workers is quarantined.
fn abort_failpoint(value: u64) {
    static TARGET: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let target = TARGET.get_or_init(|| std::env::var(ABORT_FAILPOINT).ok()?.parse().ok());
    if *target == Some(value) {
        tracing::error!(value, "{ABORT_FAILPOINT} names this value: aborting");
        std::process::abort();
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
