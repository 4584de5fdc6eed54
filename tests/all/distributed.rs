//! The distributed queue end to end: a private `redis-server`, real `wasmjob worker` processes,
//! and the submitter's commands, checked the way a user would check them.

use crate::common::{
    FAST_WORKER, PATIENCE, Wasmjob, WorkerProcess, connect, data_file, eventually, submit,
    wait_done, workspace_file,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;
use wasmjob::manifest::{ManifestBuilder, ManifestPath};
use wasmjob::range::RangeSet;
use wasmjob::spec::JobSpec;
use wasmjob::storage::{JobId, SubmitterStore, TaskState};
use wasmjob_test_support::{RedisServer, free_port, guest};

fn json(run: &crate::common::Ran) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

#[tokio::test]
async fn two_workers_finish_a_thousand_tasks_submitted_with_wait() {
    let server = RedisServer::start();
    let url = server.url();
    let _a = WorkerProcess::start(&url, "host-a", &["--app", "e2e", "--slots", "2"]);
    let _b = WorkerProcess::start(&url, "host-b", &["--app", "e2e", "--slots", "2"]);

    let run = Wasmjob::new()
        .redis(&url)
        .arg("submit")
        .arg(guest("hello"))
        .args(["--range", "1..=1000", "--wait"])
        .run();
    run.assert_exit(0);
    assert!(
        run.stdout.contains("succeeded      1000  1..=1000"),
        "{}",
        run.stdout
    );

    let list = json(&Wasmjob::new().redis(&url).args(["list", "--json"]).run());
    let job: JobId = list[0]["id"].as_str().unwrap().parse().unwrap();
    let status = json(
        &Wasmjob::new()
            .redis(&url)
            .args(["status", "--json", &job.to_string()])
            .run(),
    );
    assert_eq!(status["succeeded"], "1..=1000");
    assert_eq!(status["pending"], "");

    let output = Wasmjob::new()
        .redis(&url)
        .args(["output", &job.to_string(), "--format", "jsonl"])
        .run();
    output.assert_exit(0);
    let lines: Vec<Value> = output
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1000);
    for (line, value) in lines.iter().zip(1..) {
        assert_eq!(
            line["result"],
            format!("hello from task {value} (attempt 1)\n")
        );
    }

    // Both workers took part.
    let store = connect(&server).await;
    let mut by_host = BTreeMap::<String, u32>::new();
    for value in 1..=1000 {
        let info = store.info(job, value).await.unwrap();
        let worker = info.worker.expect("a worker is recorded");
        assert_eq!(worker.app, "e2e");
        *by_host.entry(worker.hostname).or_default() += 1;
    }
    assert_eq!(by_host.len(), 2, "{by_host:?}");

    let info = Wasmjob::new()
        .redis(&url)
        .args(["info", &job.to_string(), "7"])
        .run();
    info.assert_exit(0);
    assert!(info.stdout.contains("succeeded"), "{}", info.stdout);
    assert!(
        info.stdout.contains("worker     e2e on host-"),
        "{}",
        info.stdout
    );
    let raw = Wasmjob::new()
        .redis(&url)
        .args(["output", &job.to_string(), "7"])
        .run();
    assert_eq!(raw.stdout, "hello from task 7 (attempt 1)\n");
}

#[tokio::test]
async fn a_later_high_priority_job_overtakes() {
    let server = RedisServer::start();
    let store = connect(&server).await;
    let _worker = WorkerProcess::start(&server.url(), "solo", &["--slots", "1"]);
    let slow = [
        "--range",
        "1..=40",
        "--meta",
        "do=sleep:100",
        "--priority",
        "background",
    ];
    let background = submit(&server, "behave", &slow);
    eventually("the background job to start", PATIENCE, || async {
        !store.status(background).await.unwrap().succeeded.is_empty()
    })
    .await;

    let urgent = submit(
        &server,
        "behave",
        &["--range", "1..=3", "--priority", "high"],
    );
    wait_done(&store, urgent).await;
    let status = store.status(background).await.unwrap();
    assert!(
        !status.pending.is_empty(),
        "the urgent job did not overtake: background finished first ({:?})",
        status.succeeded
    );
    wait_done(&store, background).await;
}

#[tokio::test]
async fn max_concurrency_holds_across_workers() {
    let server = RedisServer::start();
    let url = server.url();
    let _a = WorkerProcess::start(&url, "host-a", &["--slots", "3"]);
    let _b = WorkerProcess::start(&url, "host-b", &["--slots", "3"]);
    let run = Wasmjob::new()
        .redis(&url)
        .arg("submit")
        .arg(guest("behave"))
        .args([
            "--range",
            "1..=12",
            "--max-concurrency",
            "2",
            "--wait",
            "--json",
        ])
        .args(["--meta", "do=now;sleep:300;now"])
        .run();
    run.assert_exit(0);
    let job = json(&run)["job"].as_str().unwrap().to_owned();
    let output = Wasmjob::new()
        .redis(&url)
        .args(["output", &job, "--format", "jsonl"])
        .run();

    // Each guest reported when it started and ended; count how many ran at once.
    let mut events = Vec::new();
    for line in output.stdout.lines() {
        let line: Value = serde_json::from_str(line).unwrap();
        let times: Vec<u64> = line["result"]
            .as_str()
            .unwrap()
            .lines()
            .map(|t| t.parse().unwrap())
            .collect();
        events.push((times[0], 1i32));
        events.push((times[1], -1i32));
    }
    assert_eq!(events.len(), 24);
    // Ends sort before starts at the same millisecond: touching is not overlapping.
    events.sort();
    let (mut running, mut most) = (0, 0);
    for (_, change) in events {
        running += change;
        most = most.max(running);
    }
    assert_eq!(
        most, 2,
        "at most two tasks at once, and two did run together"
    );
}

#[tokio::test]
async fn errors_are_retried_until_failed_and_fatal_is_never_retried() {
    let server = RedisServer::start();
    let _worker = WorkerProcess::start(&server.url(), "host", &[]);
    let run = Wasmjob::new()
        .redis(&server.url())
        .arg("submit")
        .arg(guest("flaky"))
        .args(["--range", "1..=3", "--max-retries", "2", "--wait"])
        .args(["--meta", "fail_attempts=9", "--meta", "fatal_values=3"])
        .run();
    run.assert_exit(1);
    assert!(
        run.stdout.contains("failed            3  1..=3"),
        "{}",
        run.stdout
    );

    let store = connect(&server).await;
    let job = store.list().await.unwrap()[0].id;
    let retried = store.info(job, 1).await.unwrap();
    assert_eq!(retried.state, Some(TaskState::Failed));
    assert_eq!((retried.attempts, retried.failures), (3, 3));
    assert!(
        retried
            .last_error
            .unwrap()
            .contains("transient failure on attempt 3")
    );
    let fatal = store.info(job, 3).await.unwrap();
    assert_eq!((fatal.attempts, fatal.failures), (1, 1));
    assert!(
        fatal
            .last_error
            .unwrap()
            .starts_with("fatal (exit code 100)")
    );
}

#[tokio::test]
async fn a_graceful_stop_hands_running_tasks_back_at_once() {
    let server = RedisServer::start();
    let store = connect(&server).await;
    // A lease of a minute: the task must come back long before it could expire.
    let mut first = WorkerProcess::start(
        &server.url(),
        "first",
        &["--grace", "500ms", "--lease", "60s"],
    );
    let job = submit(
        &server,
        "behave",
        &["--range", "1", "--meta", "do=sleep_first:60000;echo"],
    );
    eventually("the task to start", PATIENCE, || async {
        store.info(job, 1).await.unwrap().state == Some(TaskState::Active)
    })
    .await;

    first.terminate();
    let exit = first
        .wait(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("the worker did not stop within its grace:\n{}", first.log()));
    assert!(exit.success(), "{exit:?}\n{}", first.log());
    let info = store.info(job, 1).await.unwrap();
    assert_eq!(
        info.state,
        Some(TaskState::Pending),
        "handed back, not left to expire"
    );
    assert_eq!((info.attempts, info.failures), (1, 0));

    let _second = WorkerProcess::start(&server.url(), "second", &[]);
    wait_done(&store, job).await;
    let info = store.info(job, 1).await.unwrap();
    assert_eq!(info.state, Some(TaskState::Succeeded));
    assert_eq!(info.worker.unwrap().hostname, "second");
}

#[tokio::test]
async fn deleting_a_running_job_stops_its_tasks() {
    let server = RedisServer::start();
    let url = server.url();
    let store = connect(&server).await;
    let worker = WorkerProcess::start(&url, "host", &[FAST_WORKER, &["--slots", "2"]].concat());
    let job = submit(
        &server,
        "behave",
        &["--range", "1..=2", "--meta", "do=sleep:600000"],
    );
    eventually("both tasks to run", PATIENCE, || async {
        store.status(job).await.unwrap().active.len() == 2
    })
    .await;

    let deleted = Wasmjob::new()
        .redis(&url)
        .args(["delete", &job.to_string()])
        .run();
    deleted.assert_exit(0);
    eventually("the worker to stop both tasks", PATIENCE, || async {
        worker.log().matches("stopped: the job was deleted").count() == 2
    })
    .await;
    let status = Wasmjob::new()
        .redis(&url)
        .args(["status", &job.to_string()])
        .run();
    assert_eq!(status.code, Some(2));
    assert!(
        status.stderr.contains(&format!("unknown job {job}")),
        "{}",
        status.stderr
    );

    // The freed slots serve the next job.
    let next = Wasmjob::new()
        .redis(&url)
        .arg("submit")
        .arg(guest("hello"))
        .args(["--range", "1..=4", "--wait"])
        .run();
    next.assert_exit(0);
}

#[tokio::test]
async fn a_job_is_held_back_until_its_last_file_is_uploaded() {
    let server = RedisServer::start();
    let store = connect(&server).await;
    let _worker = WorkerProcess::start(&server.url(), "host", &[]);
    let data = workspace_file("examples/wordcount/data");
    let script = ManifestPath::new("wordcount.wasm").unwrap();
    let local = ManifestBuilder::new()
        .add_file(guest("wordcount"), script.clone())
        .add_dir(&data, ManifestPath::new("data").unwrap())
        .build()
        .unwrap();
    let spec = JobSpec::new(
        "held",
        local.manifest.clone(),
        script.clone(),
        "0..=2".parse().unwrap(),
    );
    let submitted = store.submit(&spec).await.unwrap();
    assert_eq!(submitted.missing.len(), 4);
    for path in &submitted.missing[..3] {
        let bytes = std::fs::read(&local.sources[path]).unwrap();
        store.upload(submitted.id, path, &bytes).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = store.status(submitted.id).await.unwrap();
    assert_eq!(status.missing_files, 1);
    assert_eq!(
        status.pending,
        RangeSet::from_interval(0, 2),
        "nothing ran before the last file"
    );

    let last = &submitted.missing[3];
    store
        .upload(
            submitted.id,
            last,
            &std::fs::read(&local.sources[last]).unwrap(),
        )
        .await
        .unwrap();
    wait_done(&store, submitted.id).await;
    assert_eq!(
        store.status(submitted.id).await.unwrap().succeeded,
        RangeSet::from_interval(0, 2)
    );
}

#[tokio::test]
async fn a_damaged_stored_file_is_dropped_and_its_job_waits_for_the_next_submit() {
    let server = RedisServer::start();
    let store = connect(&server).await;
    let job = submit(
        &server,
        "hello",
        &["--range", "1..=2", "--max-retries", "0"],
    );
    let digest = store
        .describe(job)
        .await
        .unwrap()
        .manifest
        .files()
        .next()
        .unwrap()
        .1
        .sha256;
    let key = format!("wasmjob:blob:{{{digest}}}");
    assert_eq!(server.command(&["SET", &key, "tampered"]), "+OK");

    let _worker = WorkerProcess::start(&server.url(), "host", &[]);
    eventually("the damaged copy to be dropped", PATIENCE, || async {
        server.command(&["EXISTS", &key]) == ":0"
    })
    .await;
    let status = store.status(job).await.unwrap();
    let note = status.held_back.clone().unwrap_or_default();
    assert!(note.contains("hello.wasm was damaged"), "{status:?}");
    assert_eq!(status.pending.len() + status.active.len(), 2, "{status:?}");
    assert_eq!(store.info(job, 1).await.unwrap().failures, 0);
    let shown = Wasmjob::new()
        .redis(&server.url())
        .args(["status", &job.to_string()])
        .run();
    assert!(
        shown
            .stdout
            .contains("held back: host cannot run its tasks"),
        "{}",
        shown.stdout
    );

    // The next submit of the file uploads it again, and the waiting job runs.
    let again = submit(&server, "hello", &["--range", "1"]);
    wait_done(&store, job).await;
    wait_done(&store, again).await;
    let status = store.status(job).await.unwrap();
    assert_eq!(
        status.succeeded,
        RangeSet::from_interval(1, 2),
        "{status:?}"
    );
    assert_eq!(status.held_back, None, "the note goes once a task ran");
    assert_eq!(store.info(job, 1).await.unwrap().attempts, 1);
}

#[tokio::test]
async fn a_ten_million_value_job_costs_one_interval() {
    let server = RedisServer::start();
    let url = server.url();
    let mut redis = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let used_memory = |redis: &mut redis::Connection| -> i64 {
        let info: String = redis::cmd("INFO").arg("memory").query(redis).unwrap();
        let line = info
            .lines()
            .find(|l| l.starts_with("used_memory:"))
            .unwrap();
        line["used_memory:".len()..].trim().parse().unwrap()
    };
    // The module is stored by the first submission; the second measures the job alone.
    submit(&server, "hello", &["--range", "1"]);
    let before = used_memory(&mut redis);
    let job = submit(&server, "hello", &["--range", "0..10000000"]);
    let added = used_memory(&mut redis) - before;
    assert!(
        added < 64 << 10,
        "a 10,000,000-value job added {added} bytes to Redis"
    );

    let status = json(
        &Wasmjob::new()
            .redis(&url)
            .args(["status", "--json", &job.to_string()])
            .run(),
    );
    assert_eq!(status["pending"], "0..=9999999");
}

#[test]
fn unknown_jobs_unreachable_servers_and_bad_ranges_get_one_clear_line() {
    let server = RedisServer::start();
    let url = server.url();
    let nobody = format!("redis://127.0.0.1:{}", free_port());
    let cases: &[(&str, &[&str], &str)] = &[
        (
            &url,
            &["status", "01JD3Q4G7TZ9N8V2K5X6Y1R0AB"],
            "unknown job 01JD3Q4G7TZ9N8V2K5X6Y1R0AB",
        ),
        (
            &url,
            &["info", "01JD3Q4G7TZ9N8V2K5X6Y1R0AB", "3"],
            "unknown job",
        ),
        (
            &url,
            &["delete", "01JD3Q4G7TZ9N8V2K5X6Y1R0AB"],
            "unknown job",
        ),
        (&url, &["status", "not-a-job"], "not-a-job"),
        (&nobody, &["list"], &format!("cannot reach {nobody}")),
        (&nobody, &["worker"], "cannot reach"),
    ];
    for (redis, args, says) in cases {
        let run = Wasmjob::new().redis(redis).args(*args).run();
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(says),
            "{args:?} does not say {says:?}: {}",
            run.stderr
        );
    }
    let hello = guest("hello");
    let run = Wasmjob::new()
        .redis(&url)
        .arg("submit")
        .arg(&hello)
        .args(["--range", "5..1"])
        .run();
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("5..1"), "{}", run.stderr);
}

#[tokio::test]
async fn workers_sharing_a_cache_directory_keep_their_job_trees_apart() {
    let server = RedisServer::start();
    let store = connect(&server).await;
    let cache = tempfile::tempdir().unwrap();
    let slots = ["--slots", "2", "--reap-interval", "500ms"];
    let first = WorkerProcess::start_in_cache(&server.url(), "first", cache.path(), &slots);
    let _second = WorkerProcess::start_in_cache(&server.url(), "second", cache.path(), &slots);
    let (_files, data) = data_file("shared tree\n");
    let job = submit(
        &server,
        "behave",
        &[
            "--range",
            "1..=200",
            "--file",
            &data,
            "--meta",
            "do=sleep:20;read:data.txt",
        ],
    );
    // Both have built a tree of the job before one of them leaves.
    eventually("both workers to finish tasks", PATIENCE, || async {
        let mut hosts = BTreeSet::new();
        for value in store.status(job).await.unwrap().succeeded.values() {
            let info = store.info(job, value).await.unwrap();
            hosts.extend(info.worker.map(|worker| worker.hostname));
        }
        hosts.len() == 2
    })
    .await;
    // The first worker leaves; the second goes on reading its own tree of the same job.
    first.terminate();
    wait_done(&store, job).await;

    let status = store.status(job).await.unwrap();
    assert_eq!(status.succeeded.len(), 200, "{status:?}");
    let output = Wasmjob::new()
        .redis(&server.url())
        .args(["output", &job.to_string()])
        .run();
    output.assert_exit(0);
    assert_eq!(output.stdout, "shared tree\n".repeat(200));
    // A finished job's tree is removed once it has been idle for a reap interval, not when
    // the worker stops.
    eventually(
        "the finished job's tree to be removed",
        PATIENCE,
        || async { job_trees(cache.path()) == 0 },
    )
    .await;
}

/// How many job trees the workers using the cache directory `cache` have built and not removed.
fn job_trees(cache: &Path) -> usize {
    let instances = std::fs::read_dir(cache.join("jobs")).unwrap().flatten();
    instances
        .filter(|instance| instance.path().is_dir())
        .map(|instance| std::fs::read_dir(instance.path()).unwrap().count())
        .sum()
}

#[tokio::test]
async fn jobs_with_the_same_files_share_one_tree() {
    let server = RedisServer::start();
    let store = connect(&server).await;
    let cache = tempfile::tempdir().unwrap();
    // Jobs are forgotten (and their trees removed) only after a reap interval idle.
    let slots = ["--slots", "2", "--reap-interval", "60s"];
    let _worker = WorkerProcess::start_in_cache(&server.url(), "host", cache.path(), &slots);
    let (_files, file) = data_file("one tree\n");
    let args = [
        "--range",
        "1..=2",
        "--file",
        &file,
        "--meta",
        "do=read:data.txt;sleep:200",
    ];
    let jobs = [
        submit(&server, "behave", &args),
        submit(&server, "behave", &args),
    ];
    for job in jobs {
        wait_done(&store, job).await;
        let info = store.info(job, 2).await.unwrap();
        assert_eq!(info.result.as_deref(), Some(&b"one tree\n"[..]));
    }
    // The first job built the tree; the second, with the same files, ran in it.
    assert_eq!(job_trees(cache.path()), 1);
}

/// Client commands Redis has served per task, over the first 1,000 one-task jobs a worker runs
/// while `queued` of them wait: what a task costs the queue.
async fn commands_per_task_with(queued: u64) -> f64 {
    use futures_util::StreamExt;
    const MEASURED: u64 = 1_000;
    let server = RedisServer::start();
    let store = connect(&server).await;
    let module = wasmjob_test_support::guest_bytes("hello");
    let spec = crate::common::spec_with(&module, &[], "1");
    let first = store.submit(&spec).await.unwrap();
    store
        .upload(first.id, &ManifestPath::new("task.wasm").unwrap(), &module)
        .await
        .unwrap();
    // The module is stored now: every further job is claimable as it is submitted.
    futures_util::stream::iter(1..queued)
        .map(|_| store.submit(&spec))
        .buffer_unordered(64)
        .for_each(|submitted| async {
            submitted.unwrap();
        })
        .await;
    let commands = || server.info_field("stats", "total_commands_processed");
    let before = commands();
    // Reaping often, so that the measurement sees many reaps.
    let args = ["--slots", "2", "--reap-interval", "100ms"];
    let _worker = WorkerProcess::start(&server.url(), "host", &args);
    let queue_len = || server.command(&["ZCARD", "wasmjob:queue"]);
    eventually("a thousand jobs to finish", PATIENCE, || async {
        queue_len()[1..].parse::<u64>().unwrap() <= queued - MEASURED
    })
    .await;
    (commands() - before) / MEASURED as f64
}

#[tokio::test]
async fn a_task_costs_the_queue_the_same_with_a_hundred_thousand_jobs_waiting() {
    let few = commands_per_task_with(2_000).await;
    let many = commands_per_task_with(100_000).await;
    assert!(
        many <= 2.0 * few,
        "{many:.1} commands per task with 100,000 jobs queued, {few:.1} with 2,000"
    );
}
