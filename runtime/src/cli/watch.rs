//! Watching a job until it is done: a progress bar on stderr, refreshed from the queue.

use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;
use wasmjob::storage::{JobId, JobStatus, SubmitterStore};

/// How often the progress bar is refreshed from the queue.
const POLL: Duration = Duration::from_millis(100);

/// How watching ended.
pub enum Watched {
    /// Every value is succeeded or failed.
    Done(Box<JobStatus>),
    /// Ctrl-C came first.
    Interrupted,
}

/// Shows the job's progress until it is done or Ctrl-C is pressed.
pub async fn until_done(store: &impl SubmitterStore, job: JobId) -> anyhow::Result<Watched> {
    let mut bar: Option<ProgressBar> = None;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let status = store.status(job).await?;
        let bar = bar.get_or_insert_with(|| progress_bar(status.total()));
        bar.set_position(
            status.counts.succeeded + status.counts.failed + status.counts.quarantined,
        );
        bar.set_message(format!(
            "{} running, {} failed",
            status.counts.active, status.counts.failed
        ));
        if status.is_done() {
            bar.finish_and_clear();
            return Ok(Watched::Done(Box::new(status)));
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = &mut ctrl_c => {
                bar.finish_and_clear();
                return Ok(Watched::Interrupted);
            }
        }
    }
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
