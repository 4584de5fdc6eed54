//! Each measurement of the benchmark: it sets up what it needs (a private `redis-server`, a
//! `wasmjob worker` process, built guests), measures, and adds its rows to the report.

use crate::Options;
use crate::report::Report;
use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wasmjob::executor::{Attempt, AttemptControl, Executor, ExecutorConfig};
use wasmjob::manifest::{Digest, FileEntry, Manifest, ManifestPath};
use wasmjob::spec::JobSpec;
use wasmjob::storage::{JobId, JobStatus, RedisConfig, RedisStore, SubmitterStore};
use wasmjob_test_support::{RedisServer, guest, wat};

/// The no-op task: a WASI command that returns at once.
pub(crate) const NOOP: &str = r#"(module (func (export "_start")))"#;

/// A task that writes the wall-clock time at which it started (nanoseconds since the Unix
/// epoch, 8 bytes little-endian) as its result: how long it took to start is measured by the
/// guest's clock, not by polling.
const STAMP: &str = r#"(module
  (import "wasi_snapshot_preview1" "clock_time_get"
    (func $now (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $now (i32.const 0) (i64.const 1) (i32.const 16)))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 32))))
  FILLER)"#;

/// The machine's cores: the slots of every worker the benchmark starts.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The directory of this benchmark's binary, where `scripts/bench` also built `wasmjob` and the
/// native `pi`.
fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target/release"))
}

pub(crate) fn wasmjob_bin() -> anyhow::Result<PathBuf> {
    let path = bin_dir().join("wasmjob");
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: run scripts/bench, which builds it",
        path.display()
    );
    Ok(path)
}

/// A job of `module` (as `task.wasm`, its only file) over `range`.
pub(crate) fn job(module: &[u8], range: &str) -> JobSpec {
    let mut manifest = Manifest::new();
    let script = ManifestPath::new("task.wasm").expect("a valid path");
    manifest
        .insert_file(
            script.clone(),
            FileEntry {
                sha256: Digest::of(module),
                size: module.len() as u64,
            },
        )
        .expect("one file");
    let mut spec = JobSpec::new("bench", manifest, script, range.parse().expect("a range"));
    spec.limits.lifetime = Duration::from_secs(60);
    spec
}

/// Submits a job and uploads its module if the queue lacks it.
pub(crate) async fn submit(
    store: &RedisStore,
    spec: &JobSpec,
    module: &[u8],
) -> anyhow::Result<JobId> {
    let submitted = store.submit(spec).await?;
    for path in &submitted.missing {
        store.upload(submitted.id, path, module).await?;
    }
    Ok(submitted.id)
}

async fn wait_done(store: &RedisStore, job: JobId, poll: Duration) -> anyhow::Result<()> {
    let status = status_when_done(store, job, poll, Duration::from_secs(1800), |_| {}).await?;
    anyhow::ensure!(status.is_done(), "job {job} did not finish in 30 minutes");
    Ok(())
}

/// Reads the job's status every `poll` until it is done or `budget` has passed, showing each
/// to `seen`; the last one.
pub(crate) async fn status_when_done(
    store: &RedisStore,
    job: JobId,
    poll: Duration,
    budget: Duration,
    mut seen: impl FnMut(&JobStatus),
) -> anyhow::Result<JobStatus> {
    let give_up = Instant::now() + budget;
    loop {
        let status = store.status(job).await?;
        seen(&status);
        if status.is_done() || Instant::now() >= give_up {
            return Ok(status);
        }
        tokio::time::sleep(poll).await;
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The `p`-th percentile (0-100) of sorted durations.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[index]
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Tasks per second.
pub(crate) fn rate(tasks: u64, took: Duration) -> f64 {
    tasks as f64 / took.as_secs_f64()
}

/// A `wasmjob worker` process with its own cache directory, killed when dropped.
pub(crate) struct WorkerProcess {
    child: Child,
}

impl WorkerProcess {
    /// Starts a worker of `slots` slots on the queue at `redis`, caching modules in `cache`.
    fn start(redis: &str, cache: &Path, slots: usize) -> anyhow::Result<Self> {
        let child = Command::new(wasmjob_bin()?)
            .env("WASMJOB_REDIS", redis)
            .env_remove("WASMJOB_LOG")
            .args([
                "worker",
                "--hostname",
                "bench",
                "--slots",
                &slots.to_string(),
            ])
            .arg("--cache-dir")
            .arg(cache)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting wasmjob worker")?;
        Ok(WorkerProcess { child })
    }

    /// Stops it with SIGTERM and waits, so that it unregisters.
    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A store on `server`'s queue.
async fn connect(server: &RedisServer) -> anyhow::Result<RedisStore> {
    Ok(RedisStore::connect(&RedisConfig::new(server.url())).await?)
}

/// Waits until `count` workers are registered with the queue.
async fn workers_ready(store: &RedisStore, count: usize) -> anyhow::Result<()> {
    let give_up = Instant::now() + Duration::from_secs(30);
    while store.workers().await?.len() < count {
        anyhow::ensure!(Instant::now() < give_up, "the worker did not register");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// A fresh `redis-server` with one `wasmjob worker` process of [`cores`] slots registered on
/// it. Dropped, the worker is killed and the server stopped.
pub(crate) struct Queue {
    /// A store on the server, as a submitter's.
    pub(crate) store: RedisStore,
    /// The worker.
    pub(crate) worker: WorkerProcess,
    /// The server.
    pub(crate) server: RedisServer,
    // Dropped last: the worker's module cache.
    _cache: tempfile::TempDir,
}

impl Queue {
    /// Starts the server and the worker and waits until the worker has registered.
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let server = RedisServer::start();
        let cache = tempfile::tempdir()?;
        let worker = WorkerProcess::start(&server.url(), cache.path(), cores())?;
        let store = connect(&server).await?;
        workers_ready(&store, 1).await?;
        Ok(Queue {
            store,
            worker,
            server,
            _cache: cache,
        })
    }
}

/// Redis's own account of its work: commands served and CPU seconds used.
pub(crate) fn redis_work(server: &RedisServer) -> (u64, f64) {
    let calls = server
        .info("commandstats")
        .lines()
        .filter_map(|line| {
            let rest = line.split_once(":calls=")?.1;
            rest.split(',').next()?.parse::<u64>().ok()
        })
        .sum();
    let cpu = server.info_field("cpu", "used_cpu_sys") + server.info_field("cpu", "used_cpu_user");
    (calls, cpu)
}

/// Per-task host overhead (item 3 of the issue): one attempt of the no-op guest through the
/// executor, with the module compiled once (warm) and compiled for every task (cold).
pub async fn host_overhead(options: &Options, report: &mut Report) -> anyhow::Result<()> {
    // Set up as a worker's: instances pooled for its slots.
    let executor = Executor::new(ExecutorConfig {
        pooled_instances: 2 * cores() as u32 + 2,
        ..ExecutorConfig::default()
    })?;
    let noop = wat(NOOP);
    let job_dir = tempfile::tempdir()?;
    let metadata = BTreeMap::new();
    let spec = job(&noop, "1");
    let attempt = |value| Attempt {
        job_id: "01JD3Q4G7TZ9N8V2K5X6Y1R0AB",
        job_name: "bench",
        task_id: "01JD3Q4G7TZ9N8V2K5X6Y1R0AC",
        value,
        attempt: 1,
        script: "task.wasm",
        metadata: &metadata,
        job_dir: job_dir.path(),
        workdir: ".",
        limits: spec.limits,
    };
    let control = Arc::new(AttemptControl::default());
    let module = executor.compile(&noop)?;
    let warm_runs = if options.quick { 1_000 } else { 20_000 };
    let mut warm = Vec::with_capacity(warm_runs);
    for value in 0..warm_runs as u64 {
        let started = Instant::now();
        let ran = executor.run(&module, &attempt(value), &control).await?;
        warm.push(started.elapsed());
        anyhow::ensure!(ran.outcome.is_final(), "the no-op guest failed: {ran:?}");
    }
    let cold_runs = if options.quick { 10 } else { 100 };
    let mut cold = Vec::with_capacity(cold_runs);
    for value in 0..cold_runs as u64 {
        let started = Instant::now();
        let module = executor.compile(&noop)?;
        executor.run(&module, &attempt(value), &control).await?;
        cold.push(started.elapsed());
    }
    warm.sort();
    cold.sort();
    let warm_median = percentile(&warm, 50.0);
    report.row(
        "per-task host overhead, no-op WAT guest, warm (median / p99)",
        format!(
            "{} / {}",
            micros(warm_median),
            micros(percentile(&warm, 99.0))
        ),
        format!(
            "cold, compiled per task: {} / {}",
            micros(percentile(&cold, 50.0)),
            micros(percentile(&cold, 99.0))
        ),
        "≤ 20 µs median",
        Some(warm_median <= Duration::from_micros(20)),
    );
    Ok(())
}

/// Embedded throughput (`wasmjob run`) against a process spawned per task.
pub fn embedded_throughput(options: &Options, report: &mut Report) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let module = dir.path().join("noop.wat");
    std::fs::write(&module, NOOP)?;
    let tasks = options.tasks;
    let started = Instant::now();
    let run = Command::new(wasmjob_bin()?)
        .arg("run")
        .arg(&module)
        .args(["--range", &format!("1..={tasks}"), "--json"])
        .stderr(Stdio::null())
        .output()?;
    let took = started.elapsed();
    anyhow::ensure!(run.status.success(), "wasmjob run failed: {run:?}");
    let embedded = rate(tasks, took);

    let spawns = if options.quick { 500 } else { 5_000 };
    let per_thread = spawns / cores() as u64;
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..cores() {
            scope.spawn(|| {
                for _ in 0..per_thread {
                    let _ = Command::new("true").status();
                }
            });
        }
    });
    let spawned = rate(per_thread * cores() as u64, started.elapsed());
    report.row(
        &format!("embedded no-op throughput, `wasmjob run` of {tasks} tasks"),
        format!("{embedded:.0} tasks/s"),
        format!(
            "process per task (`true`, {} at once): {spawned:.0}/s, {:.0}×",
            cores(),
            embedded / spawned
        ),
        "≥ 20× process per task",
        Some(embedded >= 20.0 * spawned),
    );
    Ok(())
}

/// What a no-op job through Redis cost.
#[derive(Debug, Clone, Copy)]
pub struct RedisFigures {
    pub tasks_per_s: f64,
    pub commands_per_task: f64,
    pub cpu_us_per_task: f64,
}

/// No-op throughput through Redis with one worker process, and Redis's work per task.
pub async fn redis_throughput(
    options: &Options,
    report: &mut Report,
) -> anyhow::Result<RedisFigures> {
    let Queue {
        store,
        worker,
        server,
        _cache,
    } = Queue::start().await?;
    let noop = wat(NOOP);
    let tasks = options.tasks;
    let (calls_before, cpu_before) = redis_work(&server);
    let started = Instant::now();
    let id = submit(&store, &job(&noop, &format!("1..={tasks}")), &noop).await?;
    wait_done(&store, id, Duration::from_millis(200)).await?;
    let took = started.elapsed();
    let (calls_after, cpu_after) = redis_work(&server);
    let status = store.status(id).await?;
    anyhow::ensure!(
        status.succeeded.len() == tasks,
        "not every task succeeded: {status:?}"
    );
    worker.stop();
    let figures = RedisFigures {
        tasks_per_s: rate(tasks, took),
        commands_per_task: (calls_after - calls_before) as f64 / tasks as f64,
        cpu_us_per_task: (cpu_after - cpu_before) * 1e6 / tasks as f64,
    };
    report.row(
        &format!(
            "no-op throughput through Redis, {tasks} tasks, one worker of {} slots",
            cores()
        ),
        format!("{:.0} tasks/s", figures.tasks_per_s),
        String::new(),
        "≥ 3× BullMQ and apalis (see peers)",
        None,
    );
    report.row(
        "Redis commands per task",
        format!("{:.3}", figures.commands_per_task),
        String::new(),
        "≤ 0.1",
        Some(figures.commands_per_task <= 0.1),
    );
    report.row(
        "Redis CPU per task",
        format!("{:.2} µs", figures.cpu_us_per_task),
        String::new(),
        "≤ 1/20 of BullMQ's (see peers)",
        None,
    );
    Ok(figures)
}

/// How long after `submitted_ns` the stamp guest of `job` started, from its result.
async fn started_after(
    store: &RedisStore,
    job: JobId,
    submitted_ns: u128,
) -> anyhow::Result<Duration> {
    let info = store.info(job, 1).await?;
    let result = info.result.context("the stamp task has no result")?;
    let stamp: [u8; 8] = result
        .as_slice()
        .try_into()
        .with_context(|| format!("the stamp task wrote {} bytes", result.len()))?;
    let started_ns = u64::from_le_bytes(stamp) as u128;
    Ok(Duration::from_nanos(
        started_ns.saturating_sub(submitted_ns) as u64,
    ))
}

/// The stamp guest, padded with `filler_functions` functions that only make it bigger.
fn stamp_module(filler_functions: usize) -> Vec<u8> {
    let mut filler = String::new();
    for f in 0..filler_functions {
        filler.push_str(&format!(
            "(func $f{f} (param i32) (result i32) (local.get 0)"
        ));
        for k in 0..100 {
            filler.push_str(&format!(" (i32.const {}) (i32.xor)", 100_000 + f * 100 + k));
        }
        filler.push(')');
    }
    wat(&STAMP.replace("FILLER", &filler))
}

/// Submit-to-start latency of a one-task job on an idle worker.
pub async fn latency(options: &Options, report: &mut Report) -> anyhow::Result<()> {
    // Every part named: one left to `..` would be dropped, and stopped, here.
    let Queue {
        store,
        worker,
        server: _server,
        _cache,
    } = Queue::start().await?;
    let module = stamp_module(0);
    // Kept until the end, so that the module stays stored as it does while any job uses it,
    // and each job measured is submitted without an upload.
    let keeper = submit(&store, &job(&module, "1"), &module).await?;
    let samples = if options.quick { 50 } else { 500 };
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples + 5 {
        let submitted = now_ns();
        let id = submit(&store, &job(&module, "1"), &module).await?;
        wait_done(&store, id, Duration::from_millis(1)).await?;
        // The first few warm the worker's caches (the module is compiled once).
        if i >= 5 {
            latencies.push(started_after(&store, id, submitted).await?);
        }
        store.delete(id).await?;
        // An idle worker: let it go back to waiting.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    store.delete(keeper).await?;
    worker.stop();
    latencies.sort();
    let (p50, p99) = (percentile(&latencies, 50.0), percentile(&latencies, 99.0));
    report.row(
        "one-task job on an idle worker: submit to guest start (p50 / p99)",
        format!("{} / {}", millis(p50), millis(p99)),
        String::new(),
        "p50 ≤ 1 ms, p99 ≤ 5 ms",
        Some(p50 <= Duration::from_millis(1) && p99 <= Duration::from_millis(5)),
    );
    Ok(())
}

/// Scale: submitting and reading the status of a job of 10,000,000 values.
pub async fn scale(report: &mut Report) -> anyhow::Result<()> {
    let server = RedisServer::start();
    let store = connect(&server).await?;
    let noop = wat(NOOP);
    // The module is stored beforehand by another job, as it is for every job after the first
    // that uses it.
    submit(&store, &job(&noop, "1"), &noop).await?;
    let huge = job(&noop, "1..=10000000");
    let memory_before = server.info_field("memory", "used_memory");
    let started = Instant::now();
    let submitted = store.submit(&huge).await?;
    let submit_took = started.elapsed();
    anyhow::ensure!(submitted.missing.is_empty(), "the module was not stored");
    let added = server.info_field("memory", "used_memory") - memory_before;
    let started = Instant::now();
    let status = store.status(submitted.id).await?;
    let status_took = started.elapsed();
    anyhow::ensure!(status.pending.len() == 10_000_000, "{status:?}");
    report.row(
        "submit a 10,000,000-value job",
        millis(submit_took),
        format!("status read in {}", millis(status_took)),
        "≤ 10 ms",
        Some(submit_took <= Duration::from_millis(10)),
    );
    report.row(
        "Redis memory added by that job (INFO used_memory)",
        format!("{:.1} KiB", added / 1024.0),
        String::new(),
        "≤ 64 KiB",
        Some(added <= 64.0 * 1024.0),
    );
    Ok(())
}

/// Cold start (item 6): the first task of a fresh worker on a ~1 MB module, with and without
/// the compiled module already in its disk cache; and loading against compiling.
pub async fn cold_start(options: &Options, report: &mut Report) -> anyhow::Result<()> {
    let module = stamp_module(if options.quick { 400 } else { 2_000 });
    let server = RedisServer::start();
    let store = connect(&server).await?;
    let cache = tempfile::tempdir()?;
    let mut first_task = Vec::new();
    for _ in ["cold", "warm"] {
        let worker = WorkerProcess::start(&server.url(), cache.path(), cores())?;
        workers_ready(&store, 1).await?;
        let submitted = now_ns();
        let id = submit(&store, &job(&module, "1"), &module).await?;
        wait_done(&store, id, Duration::from_millis(1)).await?;
        first_task.push(started_after(&store, id, submitted).await?);
        // SIGTERM: it unregisters before it exits, so the next one is the only one.
        worker.stop();
    }
    report.row(
        &format!(
            "first task of a fresh worker, {} KB module: warm disk cache",
            module.len() / 1000
        ),
        millis(first_task[1]),
        format!("cold cache (compiles): {}", millis(first_task[0])),
        "≤ 20 ms warm",
        Some(first_task[1] <= Duration::from_millis(20)),
    );

    let dir = tempfile::tempdir()?;
    let executor = || {
        Executor::new(ExecutorConfig {
            module_cache_dir: Some(dir.path().to_path_buf()),
            ..ExecutorConfig::default()
        })
        .map(Arc::new)
    };
    let compiling = executor()?;
    let started = Instant::now();
    compiling.compile_within_budget(module.clone()).await?;
    let compile = started.elapsed();
    let loading = executor()?;
    let started = Instant::now();
    loading.compile_within_budget(module.clone()).await?;
    let load = started.elapsed();
    if loading.module_stats().loaded != 1 {
        bail!("the module was not loaded from the disk cache");
    }
    report.row(
        "load a cached compiled module vs compile it",
        millis(load),
        format!(
            "compile: {}, {:.0}× slower",
            millis(compile),
            compile.as_secs_f64() / load.as_secs_f64()
        ),
        "load ≤ 1/500 of compile",
        Some(load.as_secs_f64() * 500.0 <= compile.as_secs_f64()),
    );
    Ok(())
}

/// CPU-bound work (item 4): the `pi` example under wasmjob against the same code built
/// natively, and what epoch interruption costs it.
pub fn cpu_bound(options: &Options, report: &mut Report) -> anyhow::Result<()> {
    let native = bin_dir().join("pi");
    anyhow::ensure!(
        native.is_file(),
        "{} is missing: run scripts/bench",
        native.display()
    );
    let (values, samples) = if options.quick {
        (2u64, 2_000_000u64)
    } else {
        (8, 20_000_000)
    };
    let samples_meta = samples.to_string();

    let started = Instant::now();
    for value in 1..=values {
        let ran = Command::new(&native)
            .arg("pi")
            .arg(value.to_string())
            .envs(contract_env(value, &samples_meta))
            .stdout(Stdio::null())
            .status()?;
        anyhow::ensure!(ran.success(), "native pi failed");
    }
    let native_took = started.elapsed();

    let pi = guest("pi");
    let run_wasm = |range: &str| -> anyhow::Result<Duration> {
        let started = Instant::now();
        let ran = Command::new(wasmjob_bin()?)
            .arg("run")
            .arg(&pi)
            .args(["--range", range, "--slots", "1", "--meta"])
            .arg(format!("samples={samples}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        anyhow::ensure!(ran.success(), "wasmjob run pi failed");
        Ok(started.elapsed())
    };
    // Once first, so that the module is compiled and cached and the comparison is of the work.
    run_wasm("1")?;
    let wasm_took = run_wasm(&format!("1..={values}"))?;
    let ratio = wasm_took.as_secs_f64() / native_took.as_secs_f64();
    report.row(
        &format!("CPU-bound `pi`, {values} tasks of {samples} samples, one at a time"),
        format!("{:.2} s", wasm_took.as_secs_f64()),
        format!(
            "native: {:.2} s, wasm is {ratio:.2}× native",
            native_took.as_secs_f64()
        ),
        "≤ 1.3× native",
        Some(ratio <= 1.3),
    );

    let wasm = std::fs::read(&pi)?;
    let with_epochs = pi_in_wasmtime(&wasm, true, &samples_meta)?;
    let without = pi_in_wasmtime(&wasm, false, &samples_meta)?;
    let cost = with_epochs.as_secs_f64() / without.as_secs_f64() - 1.0;
    report.row(
        "epoch interruption's cost on `pi` (one task, best of 3)",
        format!("{:+.1}%", cost * 100.0),
        format!("{} with, {} without", millis(with_epochs), millis(without)),
        "≤ 5%",
        Some(cost <= 0.05),
    );
    Ok(())
}

/// The contract's environment for a task of `value` of the `pi` job.
fn contract_env(value: u64, samples: &str) -> Vec<(String, String)> {
    [
        ("WASMJOB_JOB_ID", "01JD3Q4G7TZ9N8V2K5X6Y1R0AB".to_owned()),
        ("WASMJOB_JOB_NAME", "pi".to_owned()),
        ("WASMJOB_TASK_ID", "01JD3Q4G7TZ9N8V2K5X6Y1R0AC".to_owned()),
        ("WASMJOB_TASK_VALUE", value.to_string()),
        ("WASMJOB_ATTEMPT", "1".to_owned()),
        ("WASMJOB_JOB_DIR", "/job".to_owned()),
        ("WASMJOB_SCRATCH_DIR", "/scratch".to_owned()),
        ("WASMJOB_META_samples", samples.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Runs `pi` for value 1 directly on wasmtime (and nothing else of wasmjob), three times; the
/// best time. With `epochs`, as the executor ships it: async, yielding to tokio at every epoch
/// tick, under a lifetime that can fire; without, a plain synchronous call.
fn pi_in_wasmtime(wasm: &[u8], epochs: bool, samples: &str) -> anyhow::Result<Duration> {
    use wasmtime::{Config, Engine, Linker, Module, Store, UpdateDeadline};
    use wasmtime_wasi::WasiCtxBuilder;
    use wasmtime_wasi::p1::WasiP1Ctx;

    let mut config = Config::new();
    config.epoch_interruption(epochs);
    let engine = Engine::new(&config)?;
    let module = Module::new(&engine, wasm)?;
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    if epochs {
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |cx| cx)?;
    } else {
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |cx| cx)?;
    }
    linker.func_wrap("wasmjob_v1", "progress", |_: i32, _: i32| 0i32)?;
    linker.func_wrap("wasmjob_v1", "cancelled", || 0i32)?;
    linker.func_wrap("wasmjob_v1", "time_left_ms", || i64::MAX)?;
    let ticker = {
        let engine = engine.clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
                engine.increment_epoch();
            }
        });
        (stop, thread)
    };
    // Its own runtime on its own thread: the benchmark's runtime is already running this.
    let runtime = epochs
        .then(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
        })
        .transpose()?;
    let exited = |ran: Result<(), wasmtime::Error>| match ran {
        Err(e)
            if e.downcast_ref::<wasmtime_wasi::I32Exit>()
                .is_none_or(|exit| exit.0 != 0) =>
        {
            bail!("pi failed under wasmtime: {e:#}")
        }
        _ => Ok(()),
    };
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let mut builder = WasiCtxBuilder::new();
        builder.args(&["pi.wasm", "1"]);
        for (key, value) in contract_env(1, samples) {
            builder.env(key, value);
        }
        let mut store = Store::new(&engine, builder.build_p1());
        let took = match &runtime {
            Some(runtime) => std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
                        store.set_epoch_deadline(1);
                        runtime.block_on(async {
                            let instance = linker.instantiate_async(&mut store, &module).await?;
                            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                            let started = Instant::now();
                            let lifetime = Duration::from_secs(600);
                            let ran =
                                tokio::time::timeout(lifetime, start.call_async(&mut store, ()))
                                    .await
                                    .map_err(|_| anyhow::anyhow!("pi ran out of its lifetime"))?;
                            exited(ran)?;
                            anyhow::Ok(started.elapsed())
                        })
                    })
                    .join()
                    .expect("the timed thread does not panic")
            })?,
            None => {
                let instance = linker.instantiate(&mut store, &module)?;
                let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                let started = Instant::now();
                exited(start.call(&mut store, ()))?;
                started.elapsed()
            }
        };
        best = best.min(took);
    }
    ticker.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = ticker.1.join();
    Ok(best)
}

/// The peer queues, each against its own fresh `redis-server`, through
/// `bench/peers/run.py` (which installs them from their registries).
pub fn peers(options: &Options, report: &mut Report, wasmjob: RedisFigures) -> anyhow::Result<()> {
    let script = workspace_root().join("bench/peers/run.py");
    anyhow::ensure!(script.is_file(), "{} is missing", script.display());
    for (peer, tasks) in [
        ("bullmq", options.tasks),
        ("apalis", options.tasks),
        ("celery", (options.tasks / 5).max(1_000)),
        ("rq", (options.tasks / 20).max(500)),
    ] {
        let server = RedisServer::start();
        let out = tempfile::NamedTempFile::new()?;
        let ran = Command::new("python3")
            .arg(&script)
            .args(["--redis", &server.url(), "--tasks", &tasks.to_string()])
            .args(["--concurrency", "100", "--out"])
            .arg(out.path())
            .arg(peer)
            .current_dir(workspace_root())
            .status()?;
        let line = std::fs::read_to_string(out.path()).unwrap_or_default();
        let figures: serde_json::Value = match serde_json::from_str(line.trim()) {
            Ok(figures) if ran.success() => figures,
            _ => {
                report.note(format!(
                    "{peer}: the run failed ({ran}); see its output above"
                ));
                continue;
            }
        };
        let number = |field: &str| figures[field].as_f64().unwrap_or(f64::NAN);
        let (per_s, commands, cpu) = (
            number("tasks_per_s"),
            number("redis_commands_per_task"),
            number("redis_cpu_us_per_task"),
        );
        let version = figures["version"].as_str().unwrap_or("?");
        report.row(
            &format!("no-op throughput through Redis: wasmjob vs {peer} {version} ({tasks} tasks, concurrency 100)"),
            format!("{:.0} tasks/s", wasmjob.tasks_per_s),
            format!("{per_s:.0}/s: wasmjob is {:.1}×", wasmjob.tasks_per_s / per_s),
            if matches!(peer, "bullmq" | "apalis") { "≥ 3×" } else { "" },
            matches!(peer, "bullmq" | "apalis").then_some(wasmjob.tasks_per_s >= 3.0 * per_s),
        );
        report.row(
            &format!("Redis per task: wasmjob vs {peer}"),
            format!(
                "{:.3} commands, {:.2} µs CPU",
                wasmjob.commands_per_task, wasmjob.cpu_us_per_task
            ),
            format!("{commands:.1} commands, {cpu:.1} µs CPU"),
            if peer == "bullmq" {
                "≤ 1/20 of BullMQ's CPU"
            } else {
                ""
            },
            (peer == "bullmq").then_some(wasmjob.cpu_us_per_task * 20.0 <= cpu),
        );
        if let Some(notes) = figures["notes"].as_str() {
            report.note(format!("{peer}: {notes}"));
        }
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    wasmjob_test_support::workspace_root()
}
