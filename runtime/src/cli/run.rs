//! `wasmjob run`: a whole job in this process, on the embedded queue.
//!
//! It is the same path a distributed job takes (submit, upload, claim, run, report), with the
//! memory backend in place of Redis and one worker in this process.

use super::job_args::JobArgs;
use super::summary::{self, Summary};
use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmjob::executor::{Executor, ExecutorConfig};
use wasmjob::storage::{JobStatus, MemoryStore, SubmitterStore};
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

/// How often the progress bar is refreshed from the queue.
const POLL: Duration = Duration::from_millis(100);

/// Runs the job and prints its summary.
pub async fn run(args: RunArgs, json: bool) -> anyhow::Result<ExitCode> {
    let (local, spec) = args.job.build(&args.module)?;
    let started = Instant::now();

    let store = Arc::new(MemoryStore::new());
    let submitted = store.submit(&spec).await?;
    for path in &submitted.missing {
        let host = &local.sources[path];
        let bytes = tokio::fs::read(host)
            .await
            .with_context(|| format!("cannot read {}", host.display()))?;
        store.upload(submitted.id, path, &bytes).await?;
    }

    let work_dir = tempfile::Builder::new()
        .prefix("wasmjob-run-")
        .tempdir()
        .context("cannot create a working directory")?;
    let executor = Arc::new(Executor::new(ExecutorConfig {
        scratch_root: Some(work_dir.path().to_path_buf()),
        ..ExecutorConfig::default()
    })?);
    let mut config = WorkerConfig::new(work_dir.path().join("cache"));
    config.app = "wasmjob-run".into();
    if let Some(slots) = args.slots {
        anyhow::ensure!(slots > 0, "--slots must be at least 1");
        config.slots = slots;
    }
    let worker = Arc::new(Worker::new(Arc::clone(&store), executor, config)?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));

    let bar = progress_bar(spec.range.len());
    let mut interrupted = false;
    let status = loop {
        let status = store.status(submitted.id).await?;
        update(&bar, &status);
        if status.is_done() {
            break status;
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = tokio::signal::ctrl_c() => {
                interrupted = true;
                bar.println("interrupted: stopping running tasks");
                break status;
            }
        }
    };
    bar.finish_and_clear();
    let _ = stop.send(());
    worker.await.context("the worker panicked")??;
    let status = if interrupted {
        store.status(submitted.id).await?
    } else {
        status
    };

    let summary = Summary::gather(store.as_ref(), &status, started.elapsed()).await?;
    if let Some(path) = &args.output {
        summary::write_jsonl(store.as_ref(), &status, &spec.range, path).await?;
    }
    summary.print(json);
    Ok(if interrupted {
        ExitCode::from(130)
    } else {
        summary.exit_code()
    })
}

fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} done, {msg} [{elapsed_precise}, eta {eta}]",
        )
        .expect("a valid template"),
    );
    bar
}

fn update(bar: &ProgressBar, status: &JobStatus) {
    bar.set_position(status.succeeded.len() + status.failed.len());
    bar.set_message(format!(
        "{} running, {} failed",
        status.active.len(),
        status.failed.len()
    ));
}
