//! What a job's size and shape must not cost: a big finished job is deleted without stalling
//! Redis for the workers and submitters of other jobs, and a claim and a report on a job whose
//! sets are fragmented into 10^5 intervals do no more work than on one of 10.

use crate::common::{Wasmjob, connect, spec_with};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use ulid::Ulid;
use wasmjob::range::RangeSet;
use wasmjob::storage::{
    JobId, Report, StorageError, SubmitterStore, Verdict, WorkerId, WorkerStore,
};
use wasmjob_test_support::RedisServer;

/// A runnable job of the values `range`, submitted and uploaded through the library.
async fn runnable_job(submitter: &impl SubmitterStore, range: &str) -> JobId {
    let module = b"module bytes";
    let spec = spec_with(module, &[], range);
    let submitted = submitter.submit(&spec).await.unwrap();
    for path in &submitted.missing {
        submitter.upload(submitted.id, path, module).await.unwrap();
    }
    submitted.id
}

fn worker() -> WorkerId {
    WorkerId {
        app: "shape".into(),
        hostname: "test".into(),
        instance: Ulid::new(),
    }
}

/// Claims up to `max` values and reports them at once, the odd ones fatal when `odd_fail`, the
/// rest succeeded, as a worker would without running anything. Returns how many it claimed.
async fn claim_and_report(store: &impl WorkerStore, max: usize, odd_fail: bool) -> usize {
    let Some(claim) = store.claim(&worker(), max, &[], None).await.unwrap() else {
        return 0;
    };
    let reports: Vec<Report> = claim
        .leases
        .into_iter()
        .map(|lease| Report {
            verdict: if odd_fail && lease.value % 2 == 1 {
                Verdict::Fatal {
                    reason: "odd".into(),
                }
            } else {
                Verdict::Success { result: Vec::new() }
            },
            lease,
            log: Vec::new(),
        })
        .collect();
    store.report(&reports).await.unwrap();
    reports.len()
}

/// Runs a job of `values` no-op values to the end through the library, in big claims, without
/// a worker: what a finished job leaves in Redis, made quickly.
async fn finished_job(
    store: &impl WorkerStore,
    submitter: &impl SubmitterStore,
    values: u64,
) -> JobId {
    let job = runnable_job(submitter, &format!("1..={values}")).await;
    while claim_and_report(store, 20_000, false).await > 0 {}
    let status = submitter.status(job).await.unwrap();
    assert_eq!(status.counts.succeeded, values, "{status:?}");
    job
}

/// Every command the server runs, scripts' own included, as `MONITOR` shows them, from when it
/// starts until the server runs `ECHO` of [`Monitor::END`].
struct Monitor(std::thread::JoinHandle<Vec<String>>);

impl Monitor {
    const END: &str = "wasmjob-monitor-end";

    fn start(server: &RedisServer) -> Monitor {
        use std::io::{BufRead, BufReader, Write};
        let stream = std::net::TcpStream::connect(("127.0.0.1", server.port())).unwrap();
        (&stream).write_all(b"MONITOR\r\n").unwrap();
        let mut lines = BufReader::new(stream).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "+OK");
        Monitor(std::thread::spawn(move || {
            lines
                .map(Result::unwrap)
                .take_while(|line| !line.contains(Monitor::END))
                .collect()
        }))
    }

    /// The commands seen, each without its time and client: `"NAME" "arg" ...`.
    fn stop(self, server: &RedisServer) -> Vec<String> {
        server.command(&["ECHO", Monitor::END]);
        let lines = self.0.join().unwrap();
        lines
            .iter()
            .filter_map(|line| Some(line.split_once("] ")?.1.to_owned()))
            .collect()
    }
}

/// How much work the commands are: how many of each ran, and the bytes of their arguments in
/// all (what a command that rewrote a whole set would give away).
#[derive(Debug)]
struct Work {
    calls: BTreeMap<String, u64>,
    argument_bytes: usize,
}

impl Work {
    fn of(commands: &[String]) -> Work {
        let mut calls = BTreeMap::new();
        for command in commands {
            let name = command.split('"').nth(1).unwrap_or_default().to_lowercase();
            *calls.entry(name).or_default() += 1;
        }
        Work {
            calls,
            argument_bytes: commands.iter().map(String::len).sum(),
        }
    }
}

/// The work of one claim of 100 values and one report of them on a job of `fragmented` values
/// whose odd ones failed (`fragmented / 2` intervals in each of its succeeded and failed sets),
/// when the 100 claimed are the first of its values still pending.
async fn work_of_a_claim_and_report(fragmented: u64) -> Work {
    let server = RedisServer::start();
    let store = connect(&server).await;
    let job = runnable_job(&store, &format!("0..{}", fragmented + 1000)).await;
    let mut left = fragmented as usize;
    while left > 0 {
        left -= claim_and_report(&store, left.min(30_000), true).await;
    }
    let status = store.status(job).await.unwrap();
    assert_eq!(status.counts.failed, fragmented / 2, "{:?}", status.counts);
    let monitor = Monitor::start(&server);
    assert_eq!(claim_and_report(&store, 100, true).await, 100);
    let work = Work::of(&monitor.stop(&server));
    let status = store.status(job).await.unwrap();
    assert_eq!(status.counts.succeeded, (fragmented + 100) / 2);
    work
}

#[tokio::test]
async fn a_claim_and_a_report_on_a_job_of_100_000_intervals_do_what_they_do_on_one_of_10() {
    let small = work_of_a_claim_and_report(20).await;
    let large = work_of_a_claim_and_report(200_000).await;
    assert!(
        small.calls.get("zrange").is_some_and(|&calls| calls > 50),
        "the interval sets were not touched: {small:?}"
    );
    assert_eq!(
        large.calls, small.calls,
        "by command: 10^5 intervals against 10"
    );
    // The values have more digits in the larger job; nothing else may grow.
    assert!(
        large.argument_bytes < small.argument_bytes * 11 / 10,
        "{} bytes of arguments against {}",
        large.argument_bytes,
        small.argument_bytes
    );
}

#[tokio::test]
async fn deleting_a_finished_job_of_a_million_values_does_not_stall_redis() {
    let server = RedisServer::start();
    let store = connect(&server).await;
    let job = finished_job(&store, &store, 1_000_000).await;

    // Another client pings all along, as a worker's heartbeat of another job would.
    let client = redis::Client::open(server.url()).unwrap();
    let mut pinger = client.get_multiplexed_async_connection().await.unwrap();
    let deleted = Arc::new(AtomicBool::new(false));
    let pings = tokio::spawn({
        let deleted = deleted.clone();
        async move {
            let mut slowest = Duration::ZERO;
            let mut count = 0u32;
            // At least 20 pings, however quickly the delete returns.
            while !deleted.load(Ordering::Relaxed) || count < 20 {
                let sent = Instant::now();
                let _: String = redis::cmd("PING").query_async(&mut pinger).await.unwrap();
                slowest = slowest.max(sent.elapsed());
                count += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (slowest, count)
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    store.delete(job).await.unwrap();
    deleted.store(true, Ordering::Relaxed);
    let (slowest, count) = pings.await.unwrap();

    assert!(matches!(
        store.status(job).await,
        Err(StorageError::UnknownJob(_))
    ));
    assert!(
        slowest < Duration::from_millis(50),
        "a PING waited {slowest:?} while the job was deleted ({count} pings)"
    );
}

/// What a user reads of a job of 5,000 values whose odd ones failed: `status` counts every state
/// and says how to list a state whose ranges it cannot show whole, and `status --state` lists
/// them a page at a time, each page saying where the next one starts.
#[tokio::test]
async fn the_status_of_a_fragmented_job_is_read_in_pages() {
    let server = RedisServer::start();
    let store = connect(&server).await;
    let job = runnable_job(&store, "0..5000").await;
    while claim_and_report(&store, 5000, true).await > 0 {}
    let wasmjob = || Wasmjob::new().redis(&server.url());

    let status = wasmjob().args(["status", &job.to_string()]).run();
    status.assert_exit(0);
    for line in ["succeeded      2500", "failed         2500"] {
        assert!(
            status.stdout.contains(line),
            "{line:?} in {}",
            status.stdout
        );
    }
    let hint = format!("`wasmjob status {job} --state failed` lists them all");
    assert!(status.stdout.contains(&hint), "{}", status.stdout);

    let mut failed = RangeSet::new();
    let mut from = "0".to_owned();
    let mut pages = 0;
    loop {
        let page = wasmjob()
            .args(["status", &job.to_string(), "--state", "failed"])
            .args(["--limit", "1000", "--from", &from])
            .run();
        page.assert_exit(0);
        pages += 1;
        for line in page.stdout.lines() {
            failed = failed.union(&line.parse().unwrap());
        }
        let Some(next) = page.stderr.lines().find_map(|l| l.split("--from ").nth(1)) else {
            break;
        };
        from = next.trim().to_owned();
    }
    let odd: RangeSet = (0..5000).filter(|v| v % 2 == 1).collect();
    assert_eq!(failed, odd);
    assert_eq!(pages, 3);

    let json = wasmjob()
        .args(["--json", "status", &job.to_string(), "--state", "succeeded"])
        .args(["--limit", "2", "--from", "3"])
        .run();
    json.assert_exit(0);
    let page: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(page["ranges"], "4,6");
    assert_eq!(page["next"], 7);
}

/// Redis's `used_memory`, in bytes.
fn used_memory(server: &RedisServer) -> u64 {
    let info = server.info("memory");
    let line = info
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .expect("INFO memory gives used_memory");
    line.trim().parse().unwrap()
}

/// A finished job of 200,000 no-op values, claimed and reported 500 at a time as a worker of a
/// few slots would: what it leaves in Redis follows its runs, not its values (it was 314 bytes
/// per value when every value kept a record, a result and a log).
#[tokio::test]
async fn a_finished_no_op_job_keeps_under_16_bytes_a_value_in_redis() {
    const VALUES: u64 = 200_000;
    let server = RedisServer::start();
    let store = connect(&server).await;
    let before = used_memory(&server);
    let job = runnable_job(&store, &format!("1..={VALUES}")).await;
    while claim_and_report(&store, 500, false).await > 0 {}
    let status = store.status(job).await.unwrap();
    assert_eq!(status.counts.succeeded, VALUES, "{:?}", status.counts);
    let per_value = used_memory(&server).saturating_sub(before) as f64 / VALUES as f64;
    assert!(per_value <= 16.0, "{per_value:.1} bytes per value");
    // Every value still answers for itself.
    let info = store.info(job, 177_777).await.unwrap();
    assert_eq!((info.attempts, info.result.as_deref()), (1, Some(&b""[..])));
    assert!(info.worker.is_some() && info.task_id.is_some(), "{info:?}");
}
