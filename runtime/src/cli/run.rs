//! `wasmjob run`: a whole job in this process, on the embedded queue.
//!
//! It is the same path a distributed job takes (submit, upload, claim, run, report), with the
//! memory backend in place of Redis and one worker in this process. `--output` is written while
//! the job runs, in value order, a page at a time as values become final, so that neither the
//! lines nor a pass over every value wait for the end.

use super::job_args::JobArgs;
use super::submit::submit_job;
use super::summary::{self, Summary};
use super::watch::{self, Watched};
use anyhow::Context;
use clap::Args;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmjob::executor::{Executor, ExecutorConfig};
use wasmjob::range::{MAX_VALUE, RangeSet};
use wasmjob::storage::{JobId, MemoryStore, SubmitterStore};
use wasmjob::worker::{Worker, WorkerConfig};

/// `wasmjob run MODULE.wasm --range R [...]`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The task module: a WASI preview-1 command (`wasm32-wasip1`).
    pub module: PathBuf,

    #[command(flatten)]
    pub job: JobArgs,

    /// How many tasks run at once (default: the number of cores).
    #[arg(long)]
    pub slots: Option<usize>,

    /// Write one JSON line per task value to this file: value, outcome, attempts, result, log,
    /// error.
    #[arg(long, value_name = "FILE.jsonl")]
    pub output: Option<PathBuf>,
}

/// Runs the job and prints its summary.
pub async fn run(args: RunArgs, json: bool) -> anyhow::Result<ExitCode> {
    let (local, spec) = args.job.build(&args.module)?;
    let started = Instant::now();
    // Made before the job runs, so that a path that cannot be written is said at once.
    let output = match &args.output {
        Some(path) => Some(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => None,
    };

    let store = Arc::new(MemoryStore::new());
    let job = submit_job(store.as_ref(), &local, &spec).await?;
    let writing = output.map(|file| OutputWriter::start(Arc::clone(&store), job, file));

    let work_dir = tempfile::Builder::new()
        .prefix("wasmjob-run-")
        .tempdir()
        .context("cannot create a working directory")?;
    // Compiled modules are kept between runs when the cache directory can be made; without
    // it every run compiles afresh, nothing else changes.
    let modules = super::default_cache_dir().join("modules");
    let mut config = WorkerConfig::new(work_dir.path().join("cache"));
    config.app = "wasmjob-run".into();
    // Ctrl-C means stop now: running tasks are not waited for.
    config.grace = Duration::ZERO;
    if let Some(slots) = args.slots {
        anyhow::ensure!(slots > 0, "--slots must be at least 1");
        config.slots = slots;
    }
    let executor = Arc::new(Executor::new(ExecutorConfig {
        scratch_root: Some(work_dir.path().to_path_buf()),
        module_cache_dir: std::fs::create_dir_all(&modules).is_ok().then_some(modules),
        pooled_instances: super::worker::pool_size(config.slots),
        ..ExecutorConfig::default()
    })?);
    let worker = Worker::new(Arc::clone(&store), executor, config)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));

    let watched = watch::until_done(store.as_ref(), job).await;
    let _ = stop.send(());
    worker.await.context("the worker panicked")??;
    let (status, interrupted) = match watched? {
        Watched::Done(status) => (*status, false),
        // The worker handed back what it was running; report the job as it stands now.
        Watched::Interrupted => (store.status(job).await?, true),
    };

    let summary = Summary::gather(store.as_ref(), &status, started.elapsed()).await?;
    if let (Some(writing), Some(path)) = (writing, &args.output) {
        writing
            .finish(store.as_ref(), job, &spec.range)
            .await
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    summary.print(json);
    Ok(if interrupted {
        ExitCode::from(130)
    } else {
        summary.exit_code()
    })
}

/// How many lines of `--output` are read from the queue at once.
const OUTPUT_PAGE: usize = 4096;

/// How long the writer of `--output` waits when the next value is not final yet.
const OUTPUT_POLL: Duration = Duration::from_millis(50);

/// The lines of `--output` so far, and what is left of them.
type Written = (BufWriter<File>, u64);

/// Writes the lines of `--output` while the job runs: a thread that writes, in value order,
/// each page of values that became final, until told the job has ended.
struct OutputWriter {
    /// Set when the job has ended, or when the run gave up on it: the thread then writes what
    /// is final and stops, so that no error path leaves it polling.
    ended: Arc<AtomicBool>,
    thread: Option<tokio::task::JoinHandle<anyhow::Result<Written>>>,
}

impl Drop for OutputWriter {
    fn drop(&mut self) {
        self.ended.store(true, Ordering::Release);
    }
}

impl OutputWriter {
    /// Starts writing the lines of `job` to `file`.
    fn start(store: Arc<MemoryStore>, job: JobId, file: File) -> Self {
        let ended = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&ended);
        // Its own thread: the writes and the queue's lock are blocking, the worker is not.
        let thread = tokio::task::spawn_blocking(move || {
            let mut out = BufWriter::new(file);
            let mut next = 0;
            loop {
                // Read before the page, so that the page read after the job ended is the last.
                let ended = seen.load(Ordering::Acquire);
                let page = store.finished_infos(job, next, OUTPUT_PAGE)?;
                let full = page.len() == OUTPUT_PAGE;
                for info in page {
                    next = info.value + 1;
                    summary::write_task_line(info, &mut out)?;
                }
                if !full {
                    if ended {
                        return Ok((out, next));
                    }
                    std::thread::sleep(OUTPUT_POLL);
                }
            }
        });
        OutputWriter {
            ended,
            thread: Some(thread),
        }
    }

    /// Once the job has ended (done, or stopped with values unfinished): writes what is left,
    /// whatever state it is in, as `wasmjob output` would.
    async fn finish(
        mut self,
        store: &MemoryStore,
        job: JobId,
        range: &RangeSet,
    ) -> anyhow::Result<()> {
        self.ended.store(true, Ordering::Release);
        let thread = self.thread.take().expect("finished once, by value");
        let (mut out, next) = thread.await.context("the output writer panicked")??;
        let rest = match next {
            0 => range.clone(),
            next if next > MAX_VALUE => RangeSet::new(),
            next => range.intersection(&RangeSet::from_interval(next, MAX_VALUE)),
        };
        summary::write_task_lines(store, job, &rest, &mut out).await
    }
}
