//! `apalis-peer`: the apalis + apalis-redis contestant in wasmjob's peer benchmark (`bench/peers/`).
//! Protocol: `apalis-peer --redis URL --tasks N --concurrency C` prints `ready`, waits for `go` on
//! stdin, enqueues N no-op jobs, waits for all N acks in Redis, then prints one JSON line and exits 0.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_redis::{Client, Config, RedisStorage};
use futures::StreamExt as _;
use redis::AsyncCommands as _;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::{oneshot, Notify};

/// Reported as-is; Cargo.toml pins `apalis-redis = "=1.0.0"` so the two cannot drift apart.
const APALIS_REDIS_VERSION: &str = "1.0.0";

const QUEUE: &str = "bench";

/// apalis-redis 1.0.0 gives every pushed job a run_at of "now", so `batch_push.lua` files it in
/// the scheduled set and publishes no wake-up: an idle worker only looks again when a poll
/// strategy or its 30 s heartbeat wakes it. This bounds the delay before the first fetch, at one
/// fetch script per interval while idle (apalis-core's own examples poll every 200 ms to 1 s).
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// `fetch_next.lua` moves every due scheduled job to the active list with one `unpack()`, which
/// Redis's Lua fails on from about 8 000 values ("too many results to unpack"), and the worker
/// dies. So 8 000 jobs must never become due between two fetches: one `push_bulk` of all N
/// kills the worker for N >= 8 000, while chunks this size, pushed back to back, leave room for
/// the busy worker's fetches between them.
const PUSH_CHUNK: usize = 1_000;

/// The job's payload only has to be a real serde type so apalis-redis encodes it as usual.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    index: u64,
}

async fn noop(_job: Job) -> Result<(), BoxDynError> {
    Ok(())
}

struct Args {
    redis: String,
    tasks: u64,
    concurrency: usize,
}

fn parse_args() -> Result<Args, String> {
    const USAGE: &str = "usage: apalis-peer --redis URL --tasks N --concurrency C";
    let (mut redis, mut tasks, mut concurrency) = (None, None, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--redis" => redis = Some(value),
            "--tasks" => {
                tasks = Some(
                    value
                        .parse::<u64>()
                        .map_err(|e| format!("--tasks {value}: {e}"))?,
                )
            }
            "--concurrency" => {
                concurrency = Some(
                    value
                        .parse::<usize>()
                        .map_err(|e| format!("--concurrency {value}: {e}"))?,
                )
            }
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    let args = Args {
        redis: redis.ok_or(USAGE)?,
        tasks: tasks.ok_or(USAGE)?,
        concurrency: concurrency.ok_or(USAGE)?,
    };
    if args.tasks == 0 || args.concurrency == 0 {
        return Err(format!(
            "--tasks and --concurrency must be at least 1\n{USAGE}"
        ));
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apalis-peer: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxDynError> {
    let args = parse_args()?;
    let client = Client::open(args.redis.as_str())?;

    let config = Config::default()
        .queue(QUEUE)
        // A fetch happens only once the previous batch is used up, so with the default batch
        // of 10 no more than 10 jobs could ever be in flight, whatever the concurrency limit.
        .batch_size(args.concurrency)
        // The Config docs allow turning the per-task lock off for tasks shorter than a
        // heartbeat, as a no-op is. With it on (the default) every lock runs an LREM over the
        // whole active list, and 100,000 jobs took 77 s instead of about 2 s here.
        .lock_tasks(false);
    // apalis-redis publishes each task id on `tasks:<queue>:done` from inside the script that
    // writes the ack, so counting these messages counts acks in Redis, not handler returns.
    let done_set = config.done_jobs_set();
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(format!("tasks:{done_set}")).await?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let done_before: u64 = conn.scard(&done_set).await?;

    // The producer gets a connection of its own, as it would in a separate process.
    let mut producer = RedisStorage::<Job>::new(apalis_redis::connect(args.redis.as_str()).await?)
        .with_config(config.clone());
    let storage = RedisStorage::<Job>::new(apalis_redis::connect(args.redis.as_str()).await?)
        .with_config(config);

    let registered = Arc::new(Notify::new());
    let on_start = registered.clone();
    let backend = storage
        .poll_with_interval(POLL_INTERVAL)
        .after_start(move |_| {
            let on_start = on_start.clone();
            async move {
                on_start.notify_one();
                Ok(())
            }
        });
    let worker = WorkerBuilder::new(format!("apalis-peer-{}", std::process::id()))
        .backend(backend)
        .concurrency(args.concurrency)
        .build(noop);
    let (stop, stopped) = oneshot::channel::<()>();
    let mut worker = tokio::spawn(worker.run_until(async move {
        let _ = stopped.await;
        Ok::<(), std::io::Error>(())
    }));

    // after_start runs once the worker has registered itself in Redis, so from here on a
    // pushed job is fetched.
    tokio::select! {
        _ = registered.notified() => {}
        res = &mut worker => return Err(format!("worker ended before it started: {res:?}").into()),
    }
    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready")?;
    stdout.flush()?;

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        match lines.next_line().await? {
            Some(line) if line.trim() == "go" => break,
            Some(_) => continue,
            None => return Err("stdin closed before `go`".into()),
        }
    }

    let start = Instant::now();
    let first_ack = Arc::new(Notify::new());
    let worker_busy = first_ack.clone();
    let tasks = args.tasks;
    let mut push = tokio::spawn(async move {
        let jobs: Vec<Job> = (0..tasks).map(|index| Job { index }).collect();
        let mut chunks = jobs.chunks(PUSH_CHUNK);
        if let Some(chunk) = chunks.next() {
            producer.push_bulk(chunk.to_vec()).await?;
        }
        // Until the idle worker's next poll has taken the first chunk, every further chunk
        // would pile up in the scheduled set towards the unpack limit; once it is busy it
        // fetches between chunks.
        worker_busy.notified().await;
        for chunk in chunks {
            producer.push_bulk(chunk.to_vec()).await?;
        }
        Ok::<(), BoxDynError>(())
    });

    let mut messages = pubsub.on_message();
    // Kept apart and never added: messages lag behind the set, so an increment on top of a
    // SCARD result would count the same acks twice.
    let (mut messaged, mut in_set) = (0u64, 0u64);
    let mut pushed = false;
    // Pubsub is fire-and-forget; the once-a-second SCARD of the done set keeps a lost message
    // from hanging the run, at a cost of one command a second.
    let mut check = tokio::time::interval(Duration::from_secs(1));
    while messaged.max(in_set) < tasks {
        tokio::select! {
            msg = messages.next() => match msg {
                Some(_) => {
                    messaged += 1;
                    if messaged == 1 {
                        first_ack.notify_one();
                    }
                }
                None => return Err("completion subscription closed".into()),
            },
            _ = check.tick() => {
                let done: u64 = conn.scard(&done_set).await?;
                in_set = done.saturating_sub(done_before);
                if in_set > 0 {
                    first_ack.notify_one();
                }
            }
            res = &mut push, if !pushed => {
                res??;
                pushed = true;
            }
            res = &mut worker => return Err(format!("worker ended early: {res:?}").into()),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(messages);
    if !pushed {
        push.await??;
    }

    let done: u64 = conn.scard(&done_set).await?;
    let completed = done.saturating_sub(done_before);
    if completed != tasks {
        return Err(format!(
            "{completed} of {tasks} jobs in the done set after {messaged} completion messages"
        )
        .into());
    }

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .map_err(|_| "worker did not stop within 30 s")???;

    let notes = format!(
        "apalis-redis RedisStorage on a ConnectionManager, polled every {poll} ms (default \
         Config but queue \"{QUEUE}\", batch_size {c} and lock_tasks off, as its docs allow for \
         tasks shorter than a heartbeat; results persisted), {tasks} jobs enqueued from a second connection with TaskSink::push_bulk in \
         chunks of {PUSH_CHUNK} (one batch_push.lua call each; the second chunk waits for the \
         first ack, as bigger or faster pushes trip an unpack limit in fetch_next.lua), one \
         worker with .concurrency({c}), completion counted from the tasks:{done_set} message \
         its ack script publishes",
        poll = POLL_INTERVAL.as_millis(),
        c = args.concurrency,
    );
    let line = serde_json::json!({
        "version": APALIS_REDIS_VERSION,
        "seconds": seconds,
        "completed": completed,
        "notes": notes,
    });
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    Ok(())
}
