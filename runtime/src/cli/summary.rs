//! What a finished (or stopped) job looks like to its user: the summary printed at the end and
//! the per-task JSON lines of `--output`.

use super::escape::printable;
use serde::Serialize;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;
use wasmjob::range::RangeSet;
use wasmjob::storage::{JobId, JobStatus, SubmitterStore, TaskInfo, TaskState};

/// How many failed values the summary names one by one; `--output` has them all.
const LISTED_FAILURES: usize = 20;

/// A job's outcome, ready to print.
#[derive(Debug, Serialize)]
pub struct Summary {
    job: String,
    name: String,
    total: u64,
    succeeded: u64,
    failed: u64,
    quarantined: u64,
    unfinished: u64,
    succeeded_values: RangeSet,
    failed_values: RangeSet,
    quarantined_values: RangeSet,
    /// The first failed values with their reasons.
    failures: Vec<Failure>,
    seconds: f64,
}

#[derive(Debug, Serialize)]
struct Failure {
    value: u64,
    attempts: u32,
    reason: String,
}

impl Summary {
    /// Reads the reasons of the first failed values from the store.
    pub async fn gather(
        store: &impl SubmitterStore,
        status: &JobStatus,
        elapsed: Duration,
    ) -> anyhow::Result<Summary> {
        let mut failures = Vec::new();
        let not_succeeded = status.failed.union(&status.quarantined);
        for value in not_succeeded.values().take(LISTED_FAILURES) {
            let info = store.info(status.id, value).await?;
            failures.push(Failure {
                value,
                attempts: info.attempts,
                reason: info.last_error.unwrap_or_else(|| "unknown".into()),
            });
        }
        Ok(Summary {
            job: status.id.to_string(),
            name: status.name.clone(),
            total: status.total(),
            succeeded: status.counts.succeeded,
            failed: status.counts.failed,
            quarantined: status.counts.quarantined,
            unfinished: status.counts.pending + status.counts.active,
            succeeded_values: status.succeeded.clone(),
            failed_values: status.failed.clone(),
            quarantined_values: status.quarantined.clone(),
            failures,
            seconds: elapsed.as_secs_f64(),
        })
    }

    /// 0 when every task succeeded, 1 otherwise.
    pub fn exit_code(&self) -> ExitCode {
        if self.failed == 0 && self.quarantined == 0 && self.unfinished == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    /// Prints the summary to stdout, as text or as one JSON object.
    pub fn print(&self, json: bool) {
        if json {
            println!(
                "{}",
                serde_json::to_string(self).expect("a summary serializes")
            );
            return;
        }
        let rate = self.total as f64 / self.seconds.max(1e-9);
        println!(
            "job {} ({}): {} tasks in {:.2}s ({rate:.0} tasks/s)",
            self.job,
            printable(&self.name),
            self.total,
            self.seconds
        );
        println!(
            "  succeeded  {:>8}  {}",
            self.succeeded,
            ranges(&self.succeeded_values)
        );
        println!(
            "  failed     {:>8}  {}",
            self.failed,
            ranges(&self.failed_values)
        );
        if self.quarantined > 0 {
            println!(
                "  quarantined {:>7}  {}",
                self.quarantined,
                ranges(&self.quarantined_values)
            );
        }
        if self.unfinished > 0 {
            println!("  unfinished {:>8}", self.unfinished);
        }
        for failure in &self.failures {
            let tries = if failure.attempts == 1 {
                "attempt"
            } else {
                "attempts"
            };
            println!(
                "  value {}: {} ({} {tries})",
                failure.value,
                printable(&failure.reason),
                failure.attempts
            );
        }
        let unlisted = self.failed + self.quarantined - self.failures.len() as u64;
        if unlisted > 0 {
            println!("  … and {unlisted} more failed or quarantined values (see --output)");
        }
    }
}

/// A range set for a summary line: `-` when empty, elided when very long.
pub fn ranges(set: &RangeSet) -> String {
    if set.is_empty() {
        return "-".into();
    }
    let text = set.to_string();
    if text.len() <= 100 {
        return text;
    }
    let cut = text[..100].rfind(',').unwrap_or(100);
    format!("{},… ({} ranges)", &text[..cut], set.interval_count())
}

/// One line of `--output`.
#[derive(Debug, Serialize)]
pub struct TaskLine {
    value: u64,
    outcome: Option<TaskState>,
    attempts: u32,
    result: Option<String>,
    /// Set, in hex, instead of `result` when the result is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    result_hex: Option<String>,
    log: Option<String>,
    error: Option<String>,
}

impl From<TaskInfo> for TaskLine {
    fn from(info: TaskInfo) -> Self {
        let (result, result_hex) = match info.result {
            Some(bytes) => match String::from_utf8(bytes) {
                Ok(text) => (Some(text), None),
                Err(e) => (None, Some(hex(e.as_bytes()))),
            },
            None => (None, None),
        };
        TaskLine {
            value: info.value,
            outcome: info.state,
            attempts: info.attempts,
            result,
            result_hex,
            log: info
                .log
                .map(|log| String::from_utf8_lossy(&log).into_owned()),
            error: match info.state {
                Some(TaskState::Failed | TaskState::Quarantined) => info.last_error,
                _ => None,
            },
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes one JSON line per value of `values`: value, outcome, attempts, result, log, error.
pub async fn write_task_lines(
    store: &impl SubmitterStore,
    job: JobId,
    values: &RangeSet,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    for value in values.values() {
        write_task_line(store.info(job, value).await?, out)?;
    }
    out.flush()?;
    Ok(())
}

/// Writes the JSON line of one task: what [`write_task_lines`] writes per value.
pub fn write_task_line(info: TaskInfo, out: &mut impl Write) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, &TaskLine::from(info))?;
    out.write_all(b"\n")?;
    Ok(())
}
