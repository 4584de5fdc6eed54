//! `wasmjob run`: a whole job in this process, on the embedded queue.
//!
//! It is the same path a distributed job takes (submit, upload, claim, run, report), with the
//! memory backend in place of Redis and one worker in this process.

use super::job_args::JobArgs;
use super::submit::submit_job;
use super::summary::{self, Summary};
use super::watch::{self, Watched};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use wasmjob::executor::{Executor, ExecutorConfig};
use wasmjob::storage::{MemoryStore, SubmitterStore};
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

    let store = Arc::new(MemoryStore::new());
    let job = submit_job(store.as_ref(), &local, &spec).await?;

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
    config.grace = std::time::Duration::ZERO;
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
    if let Some(path) = &args.output {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        summary::write_task_lines(store.as_ref(), job, &spec.range, &mut out)
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
