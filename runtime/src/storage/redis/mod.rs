//! The distributed backend: the queue in Redis, shared by submitters and workers on any host.
//!
//! Every state change is one Lua script (see `scripts`), atomic, judged on Redis's clock. A
//! job's values are interval sets, so a job of 10,000,000 values costs one short string to
//! submit. Manifest files are blobs keyed by sha256, stored once and shared between jobs, and
//! removed with the last job that uses them; uploads are checked against the manifest before a
//! byte is sent and downloads are checked by the worker's cache. Idle workers wait on a pub/sub
//! channel that scripts publish to when work appears, so a new job starts at once.
//!
//! Key layout: see `keys`. The layout keeps every per-job script within one cluster slot; this
//! client speaks to a single Redis server.

mod blob;
mod keys;
mod scripts;

use super::{
    Ack, Claim, Heartbeat, JobId, JobStatus, Lease, Millis, Reaped, RegisteredWorker, Report,
    StorageError, Submitted, SubmitterStore, TaskId, TaskInfo, TaskState, Verdict, WORKER_TTL,
    WorkerId, WorkerStore,
};
use crate::limits::{CappedLimits, Ceilings};
use crate::manifest::{Digest, ManifestPath};
use crate::range::RangeSet;
use crate::spec::{JobSpec, Priority};
use futures_util::StreamExt;
use keys::Keys;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use scripts::SCRIPTS;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OnceCell, watch};

/// The Redis URL used when none is given.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// The key prefix used when none is given.
pub const DEFAULT_PREFIX: &str = "wasmjob";

/// How long a read of the live workers serves submits' admission checks.
const WORKERS_FRESH: Duration = Duration::from_secs(1);

/// How many job specs a store keeps read.
const MAX_CACHED_SPECS: usize = 1024;

/// How many queued jobs one claim looks at before waiting for work.
const CLAIM_CANDIDATES: isize = 32;

/// How to reach the queue.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// The server, e.g. `redis://127.0.0.1:6379`.
    pub url: String,
    /// The prefix of every key, so that several queues can share one server.
    pub prefix: String,
    /// How long a lease lasts between heartbeats.
    pub lease_ttl: Duration,
    /// How long connecting, and each reply, may take before the server counts as unreachable.
    pub timeout: Duration,
}

impl RedisConfig {
    /// The defaults, for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            prefix: DEFAULT_PREFIX.into(),
            lease_ttl: super::DEFAULT_LEASE_TTL,
            timeout: Duration::from_secs(5),
        }
    }
}

/// The queue in Redis. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct RedisStore {
    url: String,
    client: redis::Client,
    con: ConnectionManager,
    keys: Keys,
    lease_ttl: Duration,
    /// Specs never change once submitted, so each is read once (while it stays in this
    /// bounded cache).
    specs: Mutex<HashMap<JobId, Arc<JobSpec>>>,
    /// The marker of the server's data this store knows (see [`Keys::instance`]).
    instance: Mutex<String>,
    /// Started by the first claim: the wake-ups published on the wake channel.
    wake: OnceCell<WakeListener>,
    /// The ceilings each worker of this process registered, by instance: its claims skip jobs
    /// above them.
    ceilings: Mutex<HashMap<ulid::Ulid, Ceilings>>,
    /// The live workers as last read, and when.
    live: Mutex<Option<(std::time::Instant, Vec<RegisteredWorker>)>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// Forwards the wake channel to the store's claims: every message is a change, and its value
/// is the job the latest wake-up named, when it was a job made claimable.
struct WakeListener {
    wakes: Arc<watch::Sender<Option<JobId>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WakeListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Redis error as a storage error naming the server (`url`, already redacted). The replies
/// its operator can act on (a password missing or refused, memory full, not a Redis server at
/// all) get variants of their own; an I/O failure, or any failure while `connecting`, makes
/// the server unreachable; a reply of a type the request does not expect is corrupt; the rest
/// is a failure of the backend, which may pass.
fn storage_error(url: &str, e: RedisError, connecting: bool) -> StorageError {
    let url = url.to_owned();
    // A pipeline fails as a list of its commands' errors: one refused for memory is enough.
    let has_code = |code: &str| {
        e.clone()
            .into_server_errors()
            .is_some_and(|errors| errors.iter().any(|(_, error)| error.code() == code))
    };
    if has_code("NOAUTH") {
        StorageError::AuthRequired { url }
    } else if has_code("WRONGPASS") || e.kind() == redis::ErrorKind::AuthenticationFailed {
        StorageError::AuthFailed {
            url,
            reason: e.to_string(),
        }
    } else if has_code("OOM") {
        StorageError::OutOfMemory { url }
    } else if connecting && e.kind() == redis::ErrorKind::Parse {
        StorageError::NotRedis { url }
    } else if connecting
        // Past the handshake, a reply cut off mid-way parses as garbage: the connection is
        // replaced, as for the others, and the request may be sent again.
        || e.kind() == redis::ErrorKind::Parse
        || e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
    {
        StorageError::Unreachable {
            url,
            reason: e.to_string(),
        }
    } else if e.kind() == redis::ErrorKind::UnexpectedReturnType {
        // A whole reply of the wrong type: asking again gets the same.
        StorageError::corrupt_because("a reply of a type the request does not expect", e)
    } else {
        StorageError::Backend {
            url,
            source: Box::new(e),
        }
    }
}

/// `url` with its password, if it has one, replaced by `***`: for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The last `@` ends the user information: a password with an unescaped `@` is hidden
    // whole, never shown in part.
    let rest = match rest.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => rest.to_owned(),
        },
        None => rest.to_owned(),
    };
    // `redis+unix://` URLs carry the password as a `pass=` query parameter.
    let rest = match rest.split_once('?') {
        Some((path, query)) => {
            let query: Vec<&str> = query
                .split('&')
                .map(|pair| {
                    if pair.starts_with("pass=") {
                        "pass=***"
                    } else {
                        pair
                    }
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => rest,
    };
    format!("{scheme}://{rest}")
}

/// A task's record as the scripts keep it once an attempt has ended: `"<attempts> <failures>
/// <lost> <started ms> <finished ms> <task id> <worker instance>"`, `-` where there is none.
#[derive(Debug, Default)]
struct TaskRecord {
    attempts: u32,
    failures: u32,
    lost: u32,
    started_at: Option<Millis>,
    finished_at: Option<Millis>,
    task_id: Option<TaskId>,
}

impl TaskRecord {
    fn parse(text: &[u8]) -> Result<Self, StorageError> {
        let text = std::str::from_utf8(text).map_err(|_| corrupt("a task record"))?;
        let parts: Vec<&str> = text.split(' ').collect();
        let [attempts, failures, lost, started, finished, task, _worker] = parts[..] else {
            return Err(corrupt("a task record"));
        };
        let count = |n: &str| n.parse().map_err(|_| corrupt("a task record"));
        Ok(TaskRecord {
            attempts: count(attempts)?,
            failures: count(failures)?,
            lost: count(lost)?,
            started_at: started.parse().ok(),
            finished_at: finished.parse().ok(),
            task_id: task.parse().ok(),
        })
    }
}

/// The current attempt of an active value, as its lease holds it: `"<task id> <attempt>
/// <deadline ms> <started ms> <worker instance>"`.
#[derive(Debug)]
struct ActiveLease {
    task_id: Option<TaskId>,
    attempt: u32,
    deadline: Option<Millis>,
    started_at: Option<Millis>,
}

impl ActiveLease {
    fn parse(text: &[u8]) -> Result<Self, StorageError> {
        let text = std::str::from_utf8(text).map_err(|_| corrupt("a lease"))?;
        let parts: Vec<&str> = text.split(' ').collect();
        let [task, attempt, deadline, started, _worker] = parts[..] else {
            return Err(corrupt("a lease"));
        };
        Ok(ActiveLease {
            task_id: task.parse().ok(),
            attempt: attempt.parse().map_err(|_| corrupt("a lease"))?,
            deadline: deadline.parse().ok(),
            started_at: started.parse().ok(),
        })
    }
}

impl RedisStore {
    /// Connects to the server named in `config`; fails at once, naming it, if it cannot be
    /// reached.
    pub async fn connect(config: &RedisConfig) -> Result<Self, StorageError> {
        if config.prefix.is_empty() || config.prefix.contains(['{', '}']) {
            return Err(StorageError::Config {
                reason: format!(
                    "invalid key prefix {:?}: it must be non-empty and contain no braces",
                    config.prefix
                ),
                source: None,
            });
        }
        // Messages name the server, never its password.
        let url = redact_url(&config.url);
        let client =
            redis::Client::open(config.url.as_str()).map_err(|e| StorageError::Config {
                reason: format!("invalid Redis URL {url:?}"),
                source: Some(Box::new(e)),
            })?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(2);
        let con = client
            .get_connection_manager_with_config(manager)
            .await
            .map_err(|e| storage_error(&url, e, true))?;
        let store = RedisStore {
            url,
            client,
            con,
            keys: Keys::new(&config.prefix),
            lease_ttl: config.lease_ttl,
            specs: Mutex::default(),
            instance: Mutex::default(),
            wake: OnceCell::new(),
            ceilings: Mutex::default(),
            live: Mutex::default(),
        };
        store.refuse_eviction().await?;
        let instance = store.adopt_instance().await?;
        *store.instance.lock().unwrap_or_else(|e| e.into_inner()) = instance;
        Ok(store)
    }

    /// Fails unless the server keeps every key: a server that evicts under memory pressure
    /// would silently drop jobs, leases and results.
    async fn refuse_eviction(&self) -> Result<(), StorageError> {
        let info: String = self.query(redis::cmd("INFO").arg("memory")).await?;
        let policy = info
            .lines()
            .find_map(|line| line.strip_prefix("maxmemory_policy:"))
            .map(str::trim)
            .unwrap_or("noeviction");
        if policy == "noeviction" {
            return Ok(());
        }
        Err(StorageError::UnsafeConfig {
            url: self.url.clone(),
            reason: format!(
                "its maxmemory-policy is {policy}, which lets Redis evict keys and so lose jobs \
                 and results; set `maxmemory-policy noeviction` (CONFIG SET maxmemory-policy \
                 noeviction, and in redis.conf so that it survives a restart)"
            ),
        })
    }

    /// Sets the data marker if the server has none, and returns the marker it holds.
    async fn adopt_instance(&self) -> Result<String, StorageError> {
        let key = self.keys.instance();
        let fresh = ulid::Ulid::new().to_string();
        self.query::<Option<String>>(redis::cmd("SET").arg(&key).arg(&fresh).arg("NX"))
            .await?;
        let current: Option<String> = self.query(redis::cmd("GET").arg(&key)).await?;
        Ok(current.unwrap_or(fresh))
    }

    fn error(&self, e: RedisError) -> StorageError {
        storage_error(&self.url, e, false)
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StorageError> {
        cmd.query_async(&mut self.con.clone())
            .await
            .map_err(|e| self.error(e))
    }

    /// Runs a per-job script on the job's keys.
    async fn run<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        job: JobId,
        args: &[&[u8]],
    ) -> Result<T, StorageError> {
        self.run_on(script, self.keys.job(job), args).await
    }

    /// Makes a job whose files are all stored claimable, and wakes idle workers.
    async fn enqueue(&self, job: JobId, priority: Priority) -> Result<(), StorageError> {
        let mut pipe = redis::pipe();
        self.add_enqueue(&mut pipe, job, priority);
        self.query_pipe(&pipe).await
    }

    /// Adds what makes a job claimable to a pipeline: its place in the queue and a wake-up.
    fn add_enqueue(&self, pipe: &mut redis::Pipeline, job: JobId, priority: Priority) {
        pipe.cmd("ZADD")
            .arg(self.keys.queue())
            .arg(Self::job_score(priority))
            .arg(job.to_string())
            .ignore();
        // Naming the job lets an idle worker claim from it without looking at the queue first.
        pipe.cmd("PUBLISH")
            .arg(self.keys.wake())
            .arg(job.to_string())
            .ignore();
    }

    /// Takes a job out of the queue: it has nothing more to give, or it is gone.
    async fn dequeue(&self, job: JobId) -> Result<(), StorageError> {
        self.query::<i64>(
            redis::cmd("ZREM")
                .arg(self.keys.queue())
                .arg(job.to_string()),
        )
        .await
        .map(drop)
    }

    async fn query_pipe(&self, pipe: &redis::Pipeline) -> Result<(), StorageError> {
        pipe.query_async::<()>(&mut self.con.clone())
            .await
            .map_err(|e| self.error(e))
    }

    /// The live workers, as read at most [`WORKERS_FRESH`] ago: the admission check of every
    /// submit needs them, and a second-old view of workers that register every few seconds is
    /// as good as a new one.
    async fn live_workers(&self) -> Result<Vec<RegisteredWorker>, StorageError> {
        if let Some((read, workers)) = &*self.live.lock().unwrap_or_else(|e| e.into_inner())
            && read.elapsed() < WORKERS_FRESH
        {
            return Ok(workers.clone());
        }
        let workers = self.workers().await?;
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::Instant::now(), workers.clone()));
        Ok(workers)
    }

    /// The job's spec, from the local cache or the server.
    async fn spec(&self, job: JobId) -> Result<Arc<JobSpec>, StorageError> {
        if let Some(spec) = self.cached_spec(job) {
            return Ok(spec);
        }
        let json: Option<String> = self
            .query(redis::cmd("GET").arg(self.keys.spec(job)))
            .await?;
        self.remember_spec(job, &json.ok_or(StorageError::UnknownJob(job))?)
    }

    /// The job's spec if this store has read it before.
    fn cached_spec(&self, job: JobId) -> Option<Arc<JobSpec>> {
        self.specs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&job)
            .cloned()
    }

    /// Parses a job's stored spec, checks it as a submit would, and keeps it.
    fn remember_spec(&self, job: JobId, json: &str) -> Result<Arc<JobSpec>, StorageError> {
        let set_aside = |reason| StorageError::SetAside { job, reason };
        let spec: JobSpec = serde_json::from_str(json)
            .map_err(|e| set_aside(format!("its spec does not parse: {e}")))?;
        // Only a spec written into Redis by hand gets here unchecked; no worker could run it.
        spec.validate()
            .map_err(|e| set_aside(format!("its spec is invalid: {e}")))?;
        let spec = Arc::new(spec);
        let mut specs = self.specs.lock().unwrap_or_else(|e| e.into_inner());
        // A long-lived worker sees job after job: the cache is bounded, and a spec dropped
        // from it costs one read the next time.
        if specs.len() >= MAX_CACHED_SPECS {
            specs.clear();
        }
        specs.insert(job, Arc::clone(&spec));
        Ok(spec)
    }

    fn forget(&self, job: JobId) {
        self.specs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job);
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

    /// Runs a script on the given keys: a job's, or a key of its own.
    async fn run_on<T: redis::FromRedisValue, K: redis::ToRedisArgs>(
        &self,
        script: &Script,
        keys: K,
        args: &[&[u8]],
    ) -> Result<T, StorageError> {
        let mut invocation = script.prepare_invoke();
        invocation.key(keys);
        for arg in args {
            invocation.arg(*arg);
        }
        invocation
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(|e| self.error(e))
    }

    /// Tries the queued jobs in order and claims from the first that has tasks to give and fits
    /// the worker's ceilings. A wake-up that named the job just made claimable (`hint`) has it
    /// tried first, which spares the look at the queue.
    async fn try_claim(
        &self,
        worker: &str,
        ceilings: Option<Ceilings>,
        max: usize,
        hint: Option<JobId>,
        avoid: &[JobId],
    ) -> Result<Option<Claim>, StorageError> {
        let hint = hint.filter(|job| !avoid.contains(job));
        let ceiling_limits =
            ceilings.map_or_else(String::new, |c| CappedLimits::from(&c).to_string());
        // One job whose claim fails for reasons of its own must not keep the worker from the
        // jobs behind it: its error is kept, and given only if no job had anything to give.
        let mut failed = None;
        let mut claim = async |job| match self
            .claim_from(job, worker, ceilings, &ceiling_limits, max)
            .await
        {
            Ok(claimed) => Ok(claimed),
            Err(e @ StorageError::Unreachable { .. }) => Err(e),
            Err(e) => {
                // As a field, so that the log shows the error's sources too.
                let error: &(dyn std::error::Error + 'static) = &e;
                tracing::warn!(%job, error, "cannot claim from this job, trying the next");
                failed.get_or_insert(e);
                Ok(None)
            }
        };
        if let Some(job) = hint
            && let Some(claimed) = claim(job).await?
        {
            return Ok(Some(claimed));
        }
        let candidates: Vec<String> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(self.keys.queue())
                    .arg(0)
                    .arg(CLAIM_CANDIDATES - 1),
            )
            .await?;
        for candidate in candidates {
            let Ok(job) = candidate.parse::<JobId>() else {
                // Not a job id: written by something else, and in the way of every claim.
                self.query::<()>(redis::cmd("ZREM").arg(self.keys.queue()).arg(&candidate))
                    .await?;
                continue;
            };
            // The hinted job was just tried: it has nothing to give this worker now.
            if hint == Some(job) || avoid.contains(&job) {
                continue;
            }
            if let Some(claimed) = claim(job).await? {
                return Ok(Some(claimed));
            }
        }
        failed.map_or(Ok(None), Err)
    }

    /// Claims up to `max` tasks of one job, if it has tasks to give and fits the ceilings.
    async fn claim_from(
        &self,
        job: JobId,
        worker: &str,
        ceilings: Option<Ceilings>,
        ceiling_limits: &str,
        max: usize,
    ) -> Result<Option<Claim>, StorageError> {
        // A spec in hand is checked here. Otherwise the script compares the job's stored
        // limits with the ceilings and hands the spec back with the leases: a job new to
        // this worker costs one round trip, not two.
        let cached = self.cached_spec(job);
        if let (Some(ceilings), Some(spec)) = (ceilings, &cached)
            && ceilings.check(spec).is_err()
        {
            return Ok(None);
        }
        let ttl = self.lease_ttl.as_millis().to_string();
        let want_spec = if cached.is_none() { "1" } else { "0" };
        let wanted = max.min(MAX_CLAIM).to_string();
        let task_ids = claim_task_ids().to_string();
        let id = job.to_string();
        let args: [&[u8]; 7] = [
            ttl.as_bytes(),
            worker.as_bytes(),
            ceiling_limits.as_bytes(),
            want_spec.as_bytes(),
            task_ids.as_bytes(),
            wanted.as_bytes(),
            id.as_bytes(),
        ];
        let reply: Vec<String> = self
            .run_on(&SCRIPTS.claim, self.keys.leasing(job), &args)
            .await?;
        match reply.first().map(String::as_str) {
            Some("ok") => {
                let leases = reply[2..]
                    .chunks(5)
                    .map(|lease| parse_lease(job, lease))
                    .collect::<Result<Vec<_>, _>>()?;
                let spec = match cached.map_or_else(|| self.remember_spec(job, &reply[1]), Ok) {
                    Ok(spec) => spec,
                    Err(StorageError::SetAside { reason, .. }) => {
                        self.set_aside(job, &reason).await?;
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                };
                if let Some(stray) = leases.iter().find(|l| !spec.range.contains(l.value)) {
                    let reason =
                        format!("its pending set holds {}, outside its range", stray.value);
                    self.set_aside(job, &reason).await?;
                    return Ok(None);
                }
                // The script's check and this one agree for every job that stored its
                // limits; a job that did not (submitted by an older wasmjob) is caught here
                // and handed back untouched.
                if let Some(ceilings) = ceilings
                    && ceilings.check(&spec).is_err()
                {
                    let handed_back: Vec<Report> = leases
                        .into_iter()
                        .map(|lease| Report {
                            lease,
                            verdict: Verdict::Untried,
                            log: Vec::new(),
                        })
                        .collect();
                    self.report(&handed_back).await?;
                    return Ok(None);
                }
                Ok(Some(Claim { spec, job, leases }))
            }
            Some("done" | "gone") => {
                self.dequeue(job).await?;
                Ok(None)
            }
            Some("corrupt") => {
                tracing::warn!(%job, reason = reply.get(1).map(String::as_str), "set aside a job that cannot be read");
                self.forget(job);
                self.dequeue(job).await?;
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Removes the jobs past their upload deadline with files still missing, with the chunks
    /// that arrived of those files, and counts them in the `abandoned_uploads` statistic.
    async fn remove_abandoned_uploads(&self) -> Result<(), StorageError> {
        let due = REAP_BATCH.to_string();
        let ids: Vec<String> = self
            .run_on(&SCRIPTS.due, self.keys.uploading(), &[due.as_bytes()])
            .await?;
        for id in ids {
            // Whatever happens to the job, it is looked at once.
            self.query::<()>(redis::cmd("ZREM").arg(self.keys.uploading()).arg(&id))
                .await?;
            let Ok(job) = id.parse::<JobId>() else {
                continue;
            };
            let removed: Vec<String> = self.run(&SCRIPTS.abandon, job, &[]).await?;
            let Some((spec, missing)) = removed.split_first() else {
                continue;
            };
            tracing::warn!(%job, missing = missing.len(), "removed a job whose files were never all uploaded");
            self.forget(job);
            let mut pipe = redis::pipe();
            pipe.cmd("ZREM").arg(self.keys.jobs()).arg(&id).ignore();
            pipe.cmd("HINCRBY")
                .arg(self.keys.stats())
                .arg("abandoned_uploads")
                .arg(1)
                .ignore();
            let Ok(spec) = serde_json::from_str::<JobSpec>(spec) else {
                self.query_pipe(&pipe).await?;
                continue;
            };
            for path in missing {
                let entry = ManifestPath::new(path)
                    .ok()
                    .and_then(|p| spec.manifest.file(&p));
                if let Some(entry) = entry {
                    pipe.cmd("DEL")
                        .arg(self.keys.blob_upload(&entry.sha256, job))
                        .ignore();
                }
            }
            self.query_pipe(&pipe).await?;
            let digests: BTreeSet<Digest> = spec.manifest.files().map(|(_, e)| e.sha256).collect();
            let _ = self
                .on_blobs::<Vec<i64>>(&SCRIPTS.blob_release, job, digests.iter())
                .await;
        }
        Ok(())
    }

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

    /// Sets a job aside for good (see `lua/set_aside.lua`) and takes it off the queue.
    async fn set_aside(&self, job: JobId, reason: &str) -> Result<(), StorageError> {
        tracing::warn!(%job, reason, "set aside a job that cannot be run");
        self.forget(job);
        self.run::<i64>(&SCRIPTS.set_aside, job, &[reason.as_bytes()])
            .await?;
        self.dequeue(job).await
    }

    /// A receiver that changes whenever work may have appeared. The first call subscribes to
    /// the wake channel and keeps a task listening, resubscribing after a lost connection.
    async fn wake_receiver(&self) -> Result<watch::Receiver<Option<JobId>>, StorageError> {
        let listener = self
            .wake
            .get_or_try_init(|| async {
                let channel = self.keys.wake();
                let mut pubsub = self
                    .client
                    .get_async_pubsub()
                    .await
                    .map_err(|e| self.error(e))?;
                pubsub
                    .subscribe(&channel)
                    .await
                    .map_err(|e| self.error(e))?;
                let wakes = Arc::new(watch::Sender::new(None));
                let task = tokio::spawn(listen_for_work(
                    self.client.clone(),
                    channel,
                    pubsub,
                    Arc::clone(&wakes),
                ));
                Ok::<_, StorageError>(WakeListener { wakes, task })
            })
            .await?;
        Ok(listener.wakes.subscribe())
    }

    fn job_score(priority: Priority) -> i64 {
        -i64::from(priority.0)
    }

    async fn statuses(&self, ids: Vec<String>) -> Result<Vec<JobStatus>, StorageError> {
        let mut statuses = Vec::with_capacity(ids.len());
        for id in ids {
            let Ok(job) = id.parse::<JobId>() else {
                continue;
            };
            match self.status(job).await {
                Ok(status) => statuses.push(status),
                // Deleted between the listing and now.
                Err(StorageError::UnknownJob(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(statuses)
    }
}

/// Forwards wake-ups to `wakes` until aborted; resubscribes when the connection drops.
async fn listen_for_work(
    client: redis::Client,
    channel: String,
    mut pubsub: redis::aio::PubSub,
    wakes: Arc<watch::Sender<Option<JobId>>>,
) {
    // `send_replace` marks a change even when the value is the same: every wake-up counts.
    let wake = |job| {
        wakes.send_replace(job);
    };
    loop {
        {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let job = message.get_payload::<String>().ok();
                wake(job.and_then(|job| job.parse().ok()));
            }
        }
        // Lost: wake everyone, so they look for work while we reconnect.
        wake(None);
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Ok(mut fresh) = client.get_async_pubsub().await
                && fresh.subscribe(&channel).await.is_ok()
            {
                pubsub = fresh;
                break;
            }
        }
    }
}

fn corrupt(what: &str) -> StorageError {
    StorageError::corrupt(what)
}

/// How many overdue jobs one reap looks at; the rest wait for the next, longest overdue first.
const REAP_BATCH: usize = 1000;

/// How many low bits of a claim's task-id base count its leases.
const CLAIM_ID_BITS: u32 = 15;

/// The most leases one claim gives: one per task id its base leaves room for.
const MAX_CLAIM: usize = 1 << CLAIM_ID_BITS;

/// The base of one claim's task ids: a fresh ULID whose low [`CLAIM_ID_BITS`] (its last three
/// characters) are zero. The claim script numbers its leases in them, so that a claim of
/// hundreds sends one id, not hundreds. The other 65 random bits keep bases apart, within a
/// millisecond too.
fn claim_task_ids() -> ulid::Ulid {
    ulid::Ulid(ulid::Ulid::new().0 & !((1u128 << CLAIM_ID_BITS) - 1))
}

fn parse_lease(job: JobId, fields: &[String]) -> Result<Lease, StorageError> {
    let [value, task, attempt, alone, deadline] = fields else {
        return Err(corrupt("a lease of the wrong length"));
    };
    Ok(Lease {
        job,
        task: task
            .parse()
            .map_err(|e| StorageError::corrupt_because("a lease's task id", e))?,
        value: value.parse().map_err(|_| corrupt("a lease value"))?,
        attempt: attempt.parse().map_err(|_| corrupt("a lease attempt"))?,
        alone: alone == "1",
        deadline: deadline.parse().map_err(|_| corrupt("a lease deadline"))?,
    })
}

/// Reads an interval set as the scripts write it: `"s1 e1 s2 e2 ..."`.
fn parse_set(text: &str) -> Result<RangeSet, StorageError> {
    let numbers = text
        .split_ascii_whitespace()
        .map(|n| n.parse::<u64>().map_err(|_| corrupt("an interval set")))
        .collect::<Result<Vec<_>, _>>()?;
    if numbers.len() % 2 != 0 || numbers.iter().any(|&n| n > crate::range::MAX_VALUE) {
        return Err(corrupt("an interval set"));
    }
    Ok(RangeSet::from_intervals(
        numbers.chunks(2).map(|p| (p[0], p[1])),
    ))
}

/// Writes an interval set as the scripts read it.
fn format_set(set: &RangeSet) -> String {
    let mut text = String::new();
    for (start, end) in set.intervals() {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&format!("{start} {end}"));
    }
    text
}

impl SubmitterStore for RedisStore {
    async fn submit(&self, spec: &JobSpec) -> Result<Submitted, StorageError> {
        spec.validate()?;
        super::admit(spec, &self.live_workers().await?)?;
        let job = JobId::generate();
        // The job becomes a user of each of its contents first, so that none is removed under
        // it from here on; the answers say which the server lacks: only those need uploading.
        let mut by_digest: BTreeMap<Digest, Vec<&ManifestPath>> = BTreeMap::new();
        for (path, entry) in spec.manifest.files() {
            by_digest.entry(entry.sha256).or_default().push(path);
        }
        let present: Vec<bool> = self
            .on_blobs(&SCRIPTS.blob_use, job, by_digest.keys())
            .await?;
        let missing: Vec<ManifestPath> = by_digest
            .values()
            .zip(present)
            .filter(|(_, present)| !present)
            .flat_map(|(paths, _)| paths.iter().map(|p| (*p).clone()))
            .collect();

        let json = serde_json::to_string(spec)
            .map_err(|e| StorageError::corrupt_because("a job spec that JSON cannot hold", e))?;
        let pending = format_set(&spec.range);
        let max_retries = spec.max_retries.to_string();
        let max_lost = spec.max_lost.to_string();
        let max_concurrency = spec.max_concurrency.unwrap_or(0).to_string();
        let priority = spec.priority.0.to_string();
        let limits = CappedLimits::from(spec).to_string();
        let mut args: Vec<&[u8]> = vec![
            json.as_bytes(),
            pending.as_bytes(),
            max_retries.as_bytes(),
            max_lost.as_bytes(),
            max_concurrency.as_bytes(),
            priority.as_bytes(),
            spec.name.as_bytes(),
            limits.as_bytes(),
        ];
        args.extend(missing.iter().map(|p| p.as_str().as_bytes()));
        // The job's keys, then its place in the index and, when nothing is missing, in the
        // queue: one round trip. Commands run in order, so no worker sees the job before its
        // keys; if the script fails, the entries after it name a job that does not exist, which
        // listings skip and claims remove.
        let keys = self.keys.job(job);
        let mut pipe = redis::pipe();
        pipe.cmd("EVAL")
            .arg(scripts::SUBMIT.as_str())
            .arg(keys.len())
            .arg(&keys)
            .arg(&args);
        pipe.cmd("ZADD")
            .arg(self.keys.jobs())
            .arg(Self::job_score(spec.priority))
            .arg(job.to_string())
            .ignore();
        if missing.is_empty() {
            self.add_enqueue(&mut pipe, job, spec.priority);
        } else {
            // On this host's clock, a timeout's worth ahead: an hour is far above any skew.
            let deadline = super::now_millis() + spec.upload_timeout.as_millis() as u64;
            pipe.cmd("ZADD")
                .arg(self.keys.uploading())
                .arg(deadline)
                .arg(job.to_string())
                .ignore();
        }
        // Should this fail, the job stays among its files' users: its answer may have been
        // lost with the connection after the job was created, and a file is never to be
        // removed from under a job. The files are merely kept.
        let (_submitted_at,): (Millis,) = pipe
            .query_async(&mut self.con.clone())
            .await
            .map_err(|e| self.error(e))?;
        Ok(Submitted { id: job, missing })
    }

    async fn upload(
        &self,
        job: JobId,
        path: &ManifestPath,
        bytes: &[u8],
    ) -> Result<(), StorageError> {
        self.upload_with_progress(job, path, bytes, &|_| {}).await
    }

    async fn upload_with_progress(
        &self,
        job: JobId,
        path: &ManifestPath,
        bytes: &[u8],
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), StorageError> {
        // Every step is safe to repeat, so a connection that breaks is no reason to give up
        // a transfer that may have taken minutes.
        let spec = self.retrying(|| self.spec(job)).await?;
        let entry = super::check_upload(job, &spec, path, bytes)?;
        self.store_blob(job, &entry.sha256, bytes, progress).await?;
        // Every path with this content is satisfied by the one blob.
        let paths: Vec<&[u8]> = spec
            .manifest
            .files()
            .filter(|(_, e)| e.sha256 == entry.sha256)
            .map(|(p, _)| p.as_str().as_bytes())
            .collect();
        let remaining: i64 = self
            .retrying(|| self.run(&SCRIPTS.uploaded, job, &paths))
            .await?;
        if remaining < 0 {
            self.forget(job);
            return Err(StorageError::UnknownJob(job));
        }
        if remaining == 0 {
            self.retrying(|| self.enqueue(job, spec.priority)).await?;
            let uploading = redis::cmd("ZREM")
                .arg(self.keys.uploading())
                .arg(job.to_string())
                .to_owned();
            self.query_retrying::<()>(&uploading).await?;
        }
        Ok(())
    }

    async fn status(&self, job: JobId) -> Result<JobStatus, StorageError> {
        let reply: Vec<String> = self.run(&SCRIPTS.status, job, &[]).await?;
        let [
            corrupt_reason,
            pending,
            succeeded,
            failed,
            quarantined,
            missing,
            submitted_at,
            name,
            priority,
            held_back,
            active @ ..,
        ] = reply.as_slice()
        else {
            self.forget(job);
            return Err(StorageError::UnknownJob(job));
        };
        let mut active_set = RangeSet::new();
        for value in active {
            active_set.insert(value.parse().map_err(|_| corrupt("an active value"))?);
        }
        Ok(JobStatus {
            id: job,
            name: name.clone(),
            priority: Priority(priority.parse().map_err(|_| corrupt("a priority"))?),
            pending: parse_set(pending)?,
            active: active_set,
            succeeded: parse_set(succeeded)?,
            failed: parse_set(failed)?,
            quarantined: parse_set(quarantined)?,
            missing_files: missing.parse().map_err(|_| corrupt("a missing count"))?,
            submitted_at: submitted_at
                .parse()
                .map_err(|_| corrupt("a submission time"))?,
            set_aside: (!corrupt_reason.is_empty()).then(|| corrupt_reason.clone()),
            held_back: (!held_back.is_empty()).then(|| held_back.clone()),
        })
    }

    async fn info(&self, job: JobId, value: u64) -> Result<TaskInfo, StorageError> {
        let spec = self.spec(job).await?;
        if !spec.range.contains(value) {
            return Err(StorageError::UnknownValue { job, value });
        }
        let field = value.to_string();
        let reply: Vec<Option<Vec<u8>>> = self.run(&SCRIPTS.info, job, &[field.as_bytes()]).await?;
        let [
            state,
            record,
            lease,
            result,
            log,
            progress,
            last_error,
            worker,
        ] = <[_; 8]>::try_from(reply).map_err(|reply| match &reply[..] {
            [] => StorageError::UnknownJob(job),
            [Some(state), Some(reason)] if state == b"corrupt" => StorageError::SetAside {
                job,
                reason: String::from_utf8_lossy(reason).into_owned(),
            },
            _ => corrupt("task info"),
        })?;
        let state = match state.as_deref() {
            Some(b"active") => TaskState::Active,
            Some(b"succeeded") => TaskState::Succeeded,
            Some(b"failed") => TaskState::Failed,
            Some(b"quarantined") => TaskState::Quarantined,
            _ => TaskState::Pending,
        };
        let record = match record {
            Some(text) => TaskRecord::parse(&text)?,
            None => TaskRecord::default(),
        };
        let lease = lease.map(|text| ActiveLease::parse(&text)).transpose()?;
        let worker = match worker {
            Some(json) => Some(
                serde_json::from_slice(&json)
                    .map_err(|e| StorageError::corrupt_because("a worker", e))?,
            ),
            None => None,
        };
        let mut info = TaskInfo {
            value,
            state: Some(state),
            attempts: record.attempts,
            failures: record.failures,
            lost: record.lost,
            worker,
            task_id: record.task_id,
            started_at: record.started_at,
            deadline: None,
            finished_at: record.finished_at,
            last_error: last_error.map(|e| String::from_utf8_lossy(&e).into_owned()),
            progress,
            result,
            log,
        };
        // An attempt under way is newer than the record of the ones that ended.
        if let Some(lease) = lease {
            info.attempts = lease.attempt;
            info.task_id = lease.task_id;
            info.started_at = lease.started_at;
            info.deadline = lease.deadline;
            info.finished_at = None;
        }
        Ok(info)
    }

    async fn list(&self) -> Result<Vec<JobStatus>, StorageError> {
        let ids: Vec<String> = self
            .query(redis::cmd("ZRANGE").arg(self.keys.jobs()).arg(0).arg(-1))
            .await?;
        self.statuses(ids).await
    }

    async fn list_by_priority(&self, priority: Priority) -> Result<Vec<JobStatus>, StorageError> {
        let score = Self::job_score(priority);
        let ids: Vec<String> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(self.keys.jobs())
                    .arg(score)
                    .arg(score),
            )
            .await?;
        self.statuses(ids).await
    }

    async fn describe(&self, job: JobId) -> Result<JobSpec, StorageError> {
        Ok(JobSpec::clone(&*self.spec(job).await?))
    }

    async fn workers(&self) -> Result<Vec<RegisteredWorker>, StorageError> {
        let ttl = WORKER_TTL.as_millis().to_string();
        let entries: Vec<String> = self
            .run_on(&SCRIPTS.workers, self.keys.workers(), &[ttl.as_bytes()])
            .await?;
        let mut workers = Vec::with_capacity(entries.len());
        for entry in entries {
            let (seen_at, record) = entry
                .split_once(' ')
                .ok_or_else(|| corrupt("a worker entry"))?;
            let record: WorkerRecord = serde_json::from_str(record)
                .map_err(|e| StorageError::corrupt_because("a worker record", e))?;
            workers.push(RegisteredWorker {
                worker: record.worker,
                ceilings: record.ceilings,
                seen_at: seen_at.parse().map_err(|_| corrupt("a worker's time"))?,
            });
        }
        workers.sort_by_key(|w| (w.seen_at, w.worker.instance));
        Ok(workers)
    }

    async fn delete(&self, job: JobId) -> Result<(), StorageError> {
        let spec: Option<String> = self.run(&SCRIPTS.delete, job, &[]).await?;
        self.forget(job);
        self.dequeue(job).await?;
        // Out of the index of jobs, and of the uploads awaited: a job withdrawn by its
        // submitter leaves nothing for the reaper to find.
        for index in [self.keys.jobs(), self.keys.uploading()] {
            self.query::<i64>(redis::cmd("ZREM").arg(index).arg(job.to_string()))
                .await?;
        }
        let spec = spec.ok_or(StorageError::UnknownJob(job))?;
        // The job is gone; letting go of its files is best effort: should it fail, they are
        // merely kept.
        if let Ok(spec) = serde_json::from_str::<JobSpec>(&spec) {
            let digests: BTreeSet<Digest> = spec.manifest.files().map(|(_, e)| e.sha256).collect();
            let _ = self
                .on_blobs::<Vec<i64>>(&SCRIPTS.blob_release, job, digests.iter())
                .await;
        }
        Ok(())
    }
}

#[derive(serde::Serialize, Deserialize)]
struct WorkerRecord {
    worker: WorkerId,
    ceilings: Ceilings,
}

impl WorkerStore for RedisStore {
    fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    async fn register(&self, worker: &WorkerId, ceilings: &Ceilings) -> Result<(), StorageError> {
        let record = serde_json::to_string(&WorkerRecord {
            worker: worker.clone(),
            ceilings: *ceilings,
        })
        .map_err(|e| StorageError::corrupt_because("a worker record that JSON cannot hold", e))?;
        let instance = worker.instance.to_string();
        let args: [&[u8]; 2] = [instance.as_bytes(), record.as_bytes()];
        self.run_on::<i64, _>(&SCRIPTS.register, self.keys.workers(), &args)
            .await?;
        self.ceilings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(worker.instance, *ceilings);
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) = None;
        // A worker with other ceilings may be able to claim what others could not.
        self.query::<i64>(redis::cmd("PUBLISH").arg(self.keys.wake()).arg("worker"))
            .await
            .map(drop)
    }

    async fn unregister(&self, worker: &WorkerId) -> Result<(), StorageError> {
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.query::<i64>(
            redis::cmd("HDEL")
                .arg(self.keys.workers())
                .arg(worker.instance.to_string()),
        )
        .await
        .map(drop)
    }

    async fn next_avoiding(
        &self,
        worker: &WorkerId,
        max: usize,
        wait: Duration,
        avoid: &[JobId],
    ) -> Result<Option<Claim>, StorageError> {
        if max == 0 {
            return Ok(None);
        }
        let ceilings = self
            .ceilings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&worker.instance)
            .copied();
        let worker = serde_json::to_string(worker)
            .map_err(|e| StorageError::corrupt_because("a worker that JSON cannot hold", e))?;
        // Subscribed before looking, so work that appears in between still wakes us.
        let mut work = self.wake_receiver().await?;
        let give_up = tokio::time::Instant::now() + wait;
        let mut hint = None;
        loop {
            if let Some(claim) = self.try_claim(&worker, ceilings, max, hint, avoid).await? {
                return Ok(Some(claim));
            }
            if tokio::time::timeout_at(give_up, work.changed())
                .await
                .is_err()
            {
                return Ok(None);
            }
            hint = *work.borrow_and_update();
        }
    }

    async fn hold_back(&self, job: JobId, note: &str) -> Result<(), StorageError> {
        self.run::<i64>(&SCRIPTS.hold_back, job, &[note.as_bytes()])
            .await
            .map(drop)
    }

    async fn drop_damaged(&self, digest: &Digest) -> Result<(), StorageError> {
        // A stored file is never uploaded over (a submit skips what is there), so what is
        // under the digest now is the copy found damaged.
        tracing::warn!(%digest, "dropping a damaged stored file; the next submit uploads it again");
        self.query(redis::cmd("DEL").arg(self.keys.blob(digest)))
            .await
    }

    async fn download(&self, digest: &Digest) -> Result<Vec<u8>, StorageError> {
        self.fetch_blob(digest).await
    }

    async fn report(&self, reports: &[Report]) -> Result<Vec<Ack>, StorageError> {
        let mut acks = vec![Ack::UnknownJob; reports.len()];
        let mut by_job: BTreeMap<JobId, Vec<usize>> = BTreeMap::new();
        for (i, report) in reports.iter().enumerate() {
            by_job.entry(report.lease.job).or_default().push(i);
        }
        let channel = self.keys.wake();
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
                let (verdict, payload): (&str, &[u8]) = match &report.verdict {
                    Verdict::Success { result } => ("success", result),
                    Verdict::Error { reason } => ("error", reason.as_bytes()),
                    Verdict::Fatal { reason } => ("fatal", reason.as_bytes()),
                    Verdict::Requeue => ("requeue", b""),
                    Verdict::Untried => ("untried", b""),
                };
                args.extend([
                    value.as_bytes(),
                    task.as_bytes(),
                    verdict.as_bytes(),
                    payload,
                    &report.log,
                ]);
            }
            let reply: Vec<String> = self
                .run_on(&SCRIPTS.report, self.keys.leasing(job), &args)
                .await?;
            let (done, answers) = reply
                .split_first()
                .ok_or_else(|| corrupt("an empty report reply"))?;
            for (&i, answer) in indexes.iter().zip(answers) {
                acks[i] = match answer.as_str() {
                    "applied" => Ack::Applied,
                    "stale" => Ack::StaleLease,
                    _ => Ack::UnknownJob,
                };
            }
            if done == "1" {
                self.dequeue(job).await?;
            }
        }
        Ok(acks)
    }

    async fn heartbeat(
        &self,
        lease: &Lease,
        progress: Option<&[u8]>,
    ) -> Result<Heartbeat, StorageError> {
        let value = lease.value.to_string();
        let task = lease.task.to_string();
        let ttl = self.lease_ttl.as_millis().to_string();
        let mut args: Vec<&[u8]> = vec![value.as_bytes(), task.as_bytes(), ttl.as_bytes()];
        args.extend(progress);
        let deadline: i64 = self.run(&SCRIPTS.heartbeat, lease.job, &args).await?;
        Ok(match u64::try_from(deadline) {
            Ok(deadline) => Heartbeat::Continue { deadline },
            Err(_) => Heartbeat::Stop,
        })
    }

    async fn check(&self) -> Result<(), StorageError> {
        let current: Option<String> = self
            .query(redis::cmd("GET").arg(self.keys.instance()))
            .await?;
        let known = self
            .instance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if current.as_deref() == Some(known.as_str()) {
            return Ok(());
        }
        // Report the loss once, then go on with the server as it is now.
        let adopted = self.adopt_instance().await?;
        *self.instance.lock().unwrap_or_else(|e| e.into_inner()) = adopted;
        self.specs.lock().unwrap_or_else(|e| e.into_inner()).clear();
        Err(StorageError::DataLost {
            url: self.url.clone(),
        })
    }

    async fn reap(&self) -> Result<Reaped, StorageError> {
        let due = REAP_BATCH.to_string();
        let ids: Vec<String> = self
            .run_on(&SCRIPTS.due, self.keys.leased(), &[due.as_bytes()])
            .await?;
        let channel = self.keys.wake();
        let mut reaped = Reaped::default();
        for id in ids {
            let Ok(job) = id.parse::<JobId>() else {
                self.query::<()>(redis::cmd("ZREM").arg(self.keys.leased()).arg(&id))
                    .await?;
                continue;
            };
            let args: [&[u8]; 2] = [channel.as_bytes(), id.as_bytes()];
            let counts: Vec<u64> = match self
                .run_on(&SCRIPTS.reap, self.keys.leasing(job), &args)
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
            let [requeued, quarantined, done] = counts[..] else {
                return Err(corrupt("a reap reply"));
            };
            reaped.requeued += requeued;
            reaped.quarantined += quarantined;
            if done == 1 {
                self.dequeue(job).await?;
            }
        }
        self.remove_abandoned_uploads().await?;
        Ok(reaped)
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn a_url_is_shown_without_its_password() {
        let cases = [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://:secret@host:6379", "redis://:***@host:6379"),
            (
                "redis://user:secret@host:6379/2",
                "redis://user:***@host:6379/2",
            ),
            ("redis://user@host", "redis://user@host"),
            ("rediss://:a@b@host", "rediss://:***@host"),
            (
                "redis+unix:///run/redis.sock?db=1&pass=secret",
                "redis+unix:///run/redis.sock?db=1&pass=***",
            ),
            ("not a url", "not a url"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
