//! `wasmjob submit`: sends a job to the Redis queue, uploading the files the queue lacks.

use super::Global;
use super::job_args::JobArgs;
use super::summary::Summary;
use super::watch::{self, Watched};
use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use wasmjob::manifest::LocalManifest;
use wasmjob::spec::JobSpec;
use wasmjob::storage::{JobId, Submitted, SubmitterStore};

/// `wasmjob submit MODULE.wasm --range R [...] [--wait]`
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The task module: a WASI preview-1 command (`wasm32-wasip1`).
    pub module: PathBuf,

    #[command(flatten)]
    pub job: JobArgs,

    /// Wait for the job to finish, with a progress bar, then print its summary; exit 1 if any
    /// task failed.
    #[arg(long)]
    pub wait: bool,

    /// How long the upload of the job's files may take: should this submit die before it is
    /// done, the workers remove the job and what arrived of its files after this.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub upload_timeout: std::time::Duration,
}

pub async fn submit(args: SubmitArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let (local, mut spec) = args.job.build(&args.module)?;
    spec.upload_timeout = args.upload_timeout;
    let store = global.connect().await?;
    let started = Instant::now();
    let job = submit_job(&store, &local, &spec).await?;
    if !args.wait {
        if global.json {
            println!("{}", serde_json::json!({ "job": job.to_string() }));
        } else {
            println!("{job}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("submitted job {job}; waiting for it to finish (Ctrl-C stops waiting, not the job)");
    match watch::until_done(&store, job).await? {
        Watched::Done(status) => {
            let summary = Summary::gather(&store, &status, started.elapsed()).await?;
            summary.print(global.json);
            Ok(summary.exit_code())
        }
        Watched::Interrupted => {
            eprintln!("stopped waiting; job {job} goes on (wasmjob status {job})");
            Ok(ExitCode::from(130))
        }
    }
}

/// Submits the spec and uploads the bytes of every file the store does not hold yet, showing
/// the bytes sent when there are many.
pub async fn submit_job(
    store: &impl SubmitterStore,
    local: &LocalManifest,
    spec: &JobSpec,
) -> anyhow::Result<JobId> {
    let submitted = store.submit(spec).await?;
    if let Err(e) = upload_missing(store, local, spec, &submitted).await {
        // A job whose files never arrive would wait forever; take it back.
        let _ = store.delete(submitted.id).await;
        // Said last, after what went wrong: the withdrawal is the consequence, not the cause.
        return Err(anyhow::anyhow!("{e:#}; the job was withdrawn"));
    }
    Ok(submitted.id)
}

async fn upload_missing(
    store: &impl SubmitterStore,
    local: &LocalManifest,
    spec: &JobSpec,
    submitted: &Submitted,
) -> anyhow::Result<()> {
    let total: u64 = submitted
        .missing
        .iter()
        .filter_map(|path| spec.manifest.file(path))
        .map(|entry| entry.size)
        .sum();
    let bar = ProgressBar::new(total);
    if total >= 16 << 20 {
        bar.set_style(
            ProgressStyle::with_template("uploading {bar:40} {bytes}/{total_bytes} {msg}")
                .expect("a valid template"),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    for path in &submitted.missing {
        let host = &local.sources[path];
        bar.set_message(path.to_string());
        let bytes = tokio::fs::read(host)
            .await
            .with_context(|| format!("cannot read {}", host.display()))?;
        let before = bar.position();
        store
            .upload_with_progress(submitted.id, path, &bytes, &|sent| {
                bar.set_position(before + sent)
            })
            .await
            .with_context(|| {
                format!(
                    "cannot upload {} as {path} for job {}",
                    host.display(),
                    submitted.id
                )
            })?;
    }
    bar.finish_and_clear();
    Ok(())
}
