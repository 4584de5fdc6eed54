//! The submitter's read and delete commands: `status`, `info`, `output`, `list`, `describe`,
//! `delete`.

use super::Global;
use super::escape::printable;
use super::summary::{TaskLine, ranges, write_task_lines};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::process::ExitCode;
use wasmjob::range::RangeSet;
use wasmjob::spec::Priority;
use wasmjob::storage::{
    JobId, JobStatus, Millis, STATUS_PAGE, SubmitterStore, TaskInfo, TaskState,
};

/// `wasmjob status JOB [--state STATE [--from V] [--limit N]]`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The job's id, as `submit` printed it.
    pub job: JobId,
    /// List the values in this state, a page at a time, rather than a summary of every state.
    #[arg(long, value_enum)]
    pub state: Option<StateArg>,
    /// With --state: start the page at the interval holding this value, or the next one.
    #[arg(long, default_value_t = 0, requires = "state")]
    pub from: u64,
    /// With --state: at most this many intervals.
    #[arg(long, default_value_t = STATUS_PAGE as u32, requires = "state",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
}

/// A task state, as `status --state` names it.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StateArg {
    Pending,
    Active,
    Succeeded,
    Failed,
    Quarantined,
}

impl From<StateArg> for TaskState {
    fn from(state: StateArg) -> TaskState {
        match state {
            StateArg::Pending => TaskState::Pending,
            StateArg::Active => TaskState::Active,
            StateArg::Succeeded => TaskState::Succeeded,
            StateArg::Failed => TaskState::Failed,
            StateArg::Quarantined => TaskState::Quarantined,
        }
    }
}

/// The five states, in the order `status` prints them.
const STATES: [TaskState; 5] = [
    TaskState::Pending,
    TaskState::Active,
    TaskState::Succeeded,
    TaskState::Failed,
    TaskState::Quarantined,
];

pub async fn status(args: StatusArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let store = global.connect().await?;
    if let Some(state) = args.state {
        return state_page(&store, &args, state.into(), global.json).await;
    }
    let status = store.status(args.job).await?;
    if global.json {
        println!("{}", serde_json::to_string(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "job {} ({}), priority {}, submitted {}",
        status.id,
        printable(&status.name),
        status.priority,
        timestamp(status.submitted_at)
    );
    for state in STATES {
        let set = status.ranges(state);
        let label = state.to_string();
        println!(
            "  {label:<11} {:>7}  {}",
            status.counts.of(state),
            ranges(set)
        );
    }
    for state in STATES.into_iter().filter(|&s| !status.is_whole(s)) {
        println!(
            "  ({state} shows its first {} ranges: `wasmjob status {} --state {state}` lists them all, a page at a time)",
            status.ranges(state).interval_count(),
            status.id
        );
    }
    if let Some(reason) = &status.set_aside {
        println!("  set aside, runs no more: {}", printable(reason));
    } else if let Some(note) = status.held_back.as_ref().filter(|_| !status.is_done()) {
        println!("  held back: {}", printable(note));
    } else if status.missing_files > 0 {
        println!(
            "  waiting for {} file(s) to be uploaded",
            status.missing_files
        );
    } else if status.is_done() {
        println!("  done");
    }
    Ok(ExitCode::SUCCESS)
}

/// `status --state`: one page of a state's ranges, one range per line, and where the next
/// page starts (on stderr, or as `next` in the JSON).
async fn state_page(
    store: &impl SubmitterStore,
    args: &StatusArgs,
    state: TaskState,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let limit = args.limit as usize;
    let page = store.ranges(args.job, state, args.from, limit).await?;
    let next = page
        .last()
        .filter(|_| page.interval_count() == limit)
        .map(|last| last + 1);
    if json {
        let reply = serde_json::json!({ "state": state, "ranges": page, "next": next });
        println!("{reply}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    for (start, end) in page.intervals() {
        writeln!(out, "{}", RangeSet::from_interval(start, end))?;
    }
    out.flush()?;
    if let Some(next) = next {
        eprintln!(
            "more: wasmjob status {} --state {state} --from {next}",
            args.job
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `wasmjob info JOB VALUE`
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The job's id.
    pub job: JobId,
    /// The task value.
    pub value: u64,
}

pub async fn info(args: InfoArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let store = global.connect().await?;
    let info = store.info(args.job, args.value).await?;
    if global.json {
        println!("{}", serde_json::to_string(&InfoJson::from(&info))?);
        return Ok(ExitCode::SUCCESS);
    }
    let state = info.state.map_or("unknown".into(), |s| s.to_string());
    println!("job {} value {}: {state}", args.job, info.value);
    println!(
        "  attempts   {} ({} failed, {} lost)",
        info.attempts, info.failures, info.lost
    );
    if let Some(worker) = &info.worker {
        println!(
            "  worker     {} on {} ({})",
            printable(&worker.app),
            printable(&worker.hostname),
            worker.instance
        );
    }
    if let Some(task) = info.task_id {
        println!("  task id    {task}");
    }
    for (label, at) in [
        ("started", info.started_at),
        ("deadline", info.deadline),
        ("finished", info.finished_at),
    ] {
        if let Some(at) = at {
            println!("  {label:<10} {}", timestamp(at));
        }
    }
    if let Some(error) = &info.last_error {
        println!("  last error {}", printable(error));
    }
    if info.state == Some(TaskState::Pending)
        && let Some(note) = store.status(args.job).await?.held_back
    {
        println!("  waiting    held back: {}", printable(&note));
    }
    if let Some(progress) = &info.progress {
        println!(
            "  progress   {}",
            printable(&String::from_utf8_lossy(progress))
        );
    }
    if let Some(result) = &info.result {
        println!(
            "  result     {} bytes (wasmjob output {} {})",
            result.len(),
            args.job,
            info.value
        );
    }
    if let Some(log) = info.log.as_ref().filter(|log| !log.is_empty()) {
        println!("  log (tail):");
        let log = String::from_utf8_lossy(log);
        let lines: Vec<&str> = log.lines().collect();
        for line in &lines[lines.len().saturating_sub(20)..] {
            println!("    {}", printable(line));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Task info as JSON, bytes as text.
#[derive(serde::Serialize)]
struct InfoJson<'a> {
    #[serde(flatten)]
    line: TaskLine,
    failures: u32,
    lost: u32,
    worker: &'a Option<wasmjob::storage::WorkerId>,
    task_id: Option<String>,
    started_at: Option<Millis>,
    deadline: Option<Millis>,
    finished_at: Option<Millis>,
    last_error: &'a Option<String>,
    progress: Option<String>,
}

impl<'a> From<&'a TaskInfo> for InfoJson<'a> {
    fn from(info: &'a TaskInfo) -> Self {
        InfoJson {
            line: TaskLine::from(info.clone()),
            failures: info.failures,
            lost: info.lost,
            worker: &info.worker,
            task_id: info.task_id.map(|id| id.to_string()),
            started_at: info.started_at,
            deadline: info.deadline,
            finished_at: info.finished_at,
            last_error: &info.last_error,
            progress: info
                .progress
                .as_ref()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
        }
    }
}

/// How `output` prints results.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    /// The results' bytes as the tasks wrote them, in value order.
    Raw,
    /// One JSON line per value: value, outcome, attempts, result, log, error.
    Jsonl,
}

/// `wasmjob output JOB [VALUE] [--format raw|jsonl]`
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// The job's id.
    pub job: JobId,
    /// One value; every value of the job if left out.
    pub value: Option<u64>,
    /// How to print.
    #[arg(long, value_enum, default_value_t = OutputFormat::Raw)]
    pub format: OutputFormat,
}

pub async fn output(args: OutputArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let store = global.connect().await?;
    let values = match args.value {
        Some(value) => RangeSet::from_interval(value, value),
        None => store.describe(args.job).await?.range,
    };
    let format = if global.json {
        OutputFormat::Jsonl
    } else {
        args.format
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match format {
        OutputFormat::Jsonl => write_task_lines(&store, args.job, &values, &mut out).await?,
        OutputFormat::Raw => {
            for value in values.values() {
                let info = store.info(args.job, value).await?;
                out.write_all(info.result.as_deref().unwrap_or_default())?;
            }
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `wasmjob list [--priority P]`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only the jobs of this priority.
    #[arg(long)]
    pub priority: Option<Priority>,
}

pub async fn list(args: ListArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let store = global.connect().await?;
    let jobs = match args.priority {
        Some(priority) => store.list_by_priority(priority).await?,
        None => store.list().await?,
    };
    if global.json {
        println!("{}", serde_json::to_string(&jobs)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<26}  {:<20}  {:>10}  {:>10}  {:>8}  {:>10}  {:>8}  state",
        "job", "name", "priority", "total", "active", "succeeded", "failed"
    );
    for job in &jobs {
        println!(
            "{:<26}  {:<20}  {:>10}  {:>10}  {:>8}  {:>10}  {:>8}  {}",
            job.id,
            truncate(&printable(&job.name), 20),
            job.priority.to_string(),
            job.total(),
            job.counts.active,
            job.counts.succeeded,
            job.counts.failed,
            state(job)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn state(job: &JobStatus) -> &'static str {
    if job.set_aside.is_some() {
        "set aside"
    } else if job.held_back.is_some() && !job.is_done() {
        "held back"
    } else if job.missing_files > 0 {
        "uploading"
    } else if job.is_done() {
        "done"
    } else if job.counts.active == 0 {
        "queued"
    } else {
        "running"
    }
}

fn truncate(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        text.to_owned()
    } else {
        text.chars().take(chars - 1).chain(['…']).collect()
    }
}

/// `wasmjob describe JOB`
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The job's id.
    pub job: JobId,
}

pub async fn describe(args: DescribeArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let store = global.connect().await?;
    let spec = store.describe(args.job).await?;
    if global.json {
        println!("{}", serde_json::to_string(&spec)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&spec)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `wasmjob delete JOB`
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The job's id.
    pub job: JobId,
}

pub async fn delete(args: DeleteArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let store = global.connect().await?;
    store.delete(args.job).await?;
    if global.json {
        println!("{}", serde_json::json!({ "deleted": args.job.to_string() }));
    } else {
        println!(
            "deleted job {}; its running tasks stop at their next heartbeat",
            args.job
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A time as UTC, to the second.
fn timestamp(millis: Millis) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis);
    humantime::format_rfc3339_seconds(time).to_string()
}
