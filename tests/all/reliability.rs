//! Never lose a task: workers and Redis killed, stopped and restarted by pid, with short lease
//! timings. Each scenario ends by checking the queue's invariants.

use crate::common::{FAST_WORKER, Wasmjob, WorkerProcess, eventually, signal};
use std::time::Duration;
use wasmjob::storage::{
    JobId, RedisConfig, RedisStore, SubmitterStore, TaskState, WorkerId, WorkerStore,
};
use wasmjob_test_support::{RedisServer, guest};

const PATIENCE: Duration = Duration::from_secs(60);

async fn connect(server: &RedisServer) -> RedisStore {
    RedisStore::connect(&RedisConfig::new(server.url()))
        .await
        .unwrap()
}

fn submit(server: &RedisServer, args: &[&str]) -> JobId {
    let run = Wasmjob::new()
        .redis(&server.url())
        .arg("submit")
        .arg(guest("behave"))
        .args(args)
        .run();
    run.assert_exit(0);
    run.stdout.trim().parse().unwrap()
}

async fn wait_done(store: &RedisStore, job: JobId) {
    eventually("the job to finish", PATIENCE, || async {
        store.status(job).await.unwrap().is_done()
    })
    .await;
}

/// Every value is in exactly one state; a value has a result only if it succeeded; every
/// attempt is accounted for as the one that finished, a failure or a lost lease.
async fn check_invariants(store: &RedisStore, job: JobId) {
    let spec = store.describe(job).await.unwrap();
    let status = store.status(job).await.unwrap();
    let sets = [
        &status.pending,
        &status.active,
        &status.succeeded,
        &status.failed,
        &status.quarantined,
    ];
    assert_eq!(
        status.total(),
        spec.range.len(),
        "states overlap or miss values: {status:?}"
    );
    for value in spec.range.values() {
        assert_eq!(
            sets.iter().filter(|s| s.contains(value)).count(),
            1,
            "value {value}"
        );
        let info = store.info(job, value).await.unwrap();
        assert_eq!(
            info.result.is_some(),
            info.state == Some(TaskState::Succeeded),
            "value {value}"
        );
        assert!(
            info.attempts <= 1 + info.failures + info.lost,
            "value {value}: {} attempts, {} failures, {} lost",
            info.attempts,
            info.failures,
            info.lost
        );
        assert!(info.failures <= spec.max_retries + 1, "value {value}");
    }
}

#[tokio::test]
async fn a_killed_workers_task_is_finished_by_another_after_its_lease() {
    let server = RedisServer::start();
    let store = connect(&server).await;
    let doomed = WorkerProcess::start(&server.url(), "doomed", FAST_WORKER);
    let job = submit(
        &server,
        &["--range", "1", "--meta", "do=sleep_first:60000;echo"],
    );
    eventually("the task to start", PATIENCE, || async {
        store.info(job, 1).await.unwrap().state == Some(TaskState::Active)
    })
    .await;
    signal(doomed.pid(), "KILL");

    let _rescuer = WorkerProcess::start(&server.url(), "rescuer", FAST_WORKER);
    wait_done(&store, job).await;
    let info = store.info(job, 1).await.unwrap();
    assert_eq!(info.state, Some(TaskState::Succeeded));
    assert_eq!((info.attempts, info.failures, info.lost), (2, 0, 1));
    assert_eq!(info.worker.unwrap().hostname, "rescuer");
    assert_eq!(info.result.as_deref(), Some(&b"1\n"[..]));
    check_invariants(&store, job).await;
}

#[tokio::test]
async fn a_worker_stopped_past_its_lease_cannot_overwrite_the_newer_attempt() {
    let server = RedisServer::start();
    let store = connect(&server).await;
    let sleeper = WorkerProcess::start(&server.url(), "sleeper", FAST_WORKER);
    // The first attempt prints its mark after a while; later attempts print theirs at once.
    let job = submit(
        &server,
        &[
            "--range",
            "1",
            "--meta",
            "do=sleep_first:4000;print:attempt-1-or-later",
        ],
    );
    eventually("the task to start", PATIENCE, || async {
        store.info(job, 1).await.unwrap().state == Some(TaskState::Active)
    })
    .await;
    signal(sleeper.pid(), "STOP");

    let awake = WorkerProcess::start(&server.url(), "awake", FAST_WORKER);
    wait_done(&store, job).await;
    let done = store.info(job, 1).await.unwrap();
    assert_eq!(done.worker.as_ref().unwrap().hostname, "awake");
    assert_eq!((done.attempts, done.lost), (2, 1));
    drop(awake);

    signal(sleeper.pid(), "CONT");
    eventually(
        "the woken worker to stop or be refused",
        PATIENCE,
        || async {
            let log = sleeper.log();
            log.contains("self-fencing")
                || log.contains("the lease is no longer ours")
                || log.contains("report refused")
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = store.info(job, 1).await.unwrap();
    assert_eq!(
        after.worker, done.worker,
        "the newer attempt's result stands"
    );
    assert_eq!(after.task_id, done.task_id);
    assert_eq!(after.finished_at, done.finished_at);
    check_invariants(&store, job).await;
}

#[tokio::test]
async fn sigterm_lets_a_running_task_finish_within_the_grace_period() {
    let server = RedisServer::start();
    let store = connect(&server).await;
    let mut worker = WorkerProcess::start(&server.url(), "host", &["--grace", "30s"]);
    let job = submit(&server, &["--range", "1", "--meta", "do=sleep:1500;echo"]);
    eventually("the task to start", PATIENCE, || async {
        store.info(job, 1).await.unwrap().state == Some(TaskState::Active)
    })
    .await;
    worker.terminate();
    let exit = worker
        .wait(Duration::from_secs(20))
        .expect("the worker stops once the task is done");
    assert!(exit.success());
    let info = store.info(job, 1).await.unwrap();
    assert_eq!(
        info.state,
        Some(TaskState::Succeeded),
        "finished, not abandoned"
    );
    assert_eq!(info.attempts, 1);
    check_invariants(&store, job).await;
}

#[tokio::test]
async fn every_lease_of_killed_workers_is_recovered_by_one_new_worker() {
    let server = RedisServer::start();
    let store = connect(&server).await;
    let a = WorkerProcess::start(
        &server.url(),
        "a",
        &[FAST_WORKER, &["--slots", "2"]].concat(),
    );
    let b = WorkerProcess::start(
        &server.url(),
        "b",
        &[FAST_WORKER, &["--slots", "2"]].concat(),
    );
    let job = submit(
        &server,
        &["--range", "1..=4", "--meta", "do=sleep_first:60000;echo"],
    );
    eventually("all four tasks to run", PATIENCE, || async {
        store.status(job).await.unwrap().active.len() == 4
    })
    .await;
    signal(a.pid(), "KILL");
    signal(b.pid(), "KILL");

    let _c = WorkerProcess::start(
        &server.url(),
        "c",
        &[FAST_WORKER, &["--slots", "4"]].concat(),
    );
    wait_done(&store, job).await;
    for value in 1..=4 {
        let info = store.info(job, value).await.unwrap();
        assert_eq!(info.state, Some(TaskState::Succeeded), "value {value}");
        assert_eq!((info.attempts, info.lost), (2, 1), "value {value}");
    }
    check_invariants(&store, job).await;
}

#[tokio::test]
async fn concurrent_reapers_reclaim_each_expired_lease_exactly_once() {
    let server = RedisServer::start();
    let mut config = RedisConfig::new(server.url());
    config.lease_ttl = Duration::from_millis(300);
    let claimer = RedisStore::connect(&config).await.unwrap();
    let job = submit(&server, &["--range", "1..=400", "--max-lost", "5"]);
    let worker = WorkerId {
        app: "test".into(),
        hostname: "claimer".into(),
        instance: ulid::Ulid::new(),
    };
    let mut claimed = 0;
    while let Some(claim) = claimer.next(&worker, 50, Duration::ZERO).await.unwrap() {
        claimed += claim.leases.len();
    }
    assert_eq!(claimed, 400);
    tokio::time::sleep(Duration::from_millis(600)).await;

    let mut reapers = Vec::new();
    for _ in 0..4 {
        reapers.push(RedisStore::connect(&config).await.unwrap());
    }
    let counts = futures_util::future::join_all(reapers.iter().map(|r| r.reap())).await;
    let requeued: u64 = counts.into_iter().map(|c| c.unwrap().requeued).sum();
    assert_eq!(requeued, 400, "every expired lease reaped exactly once");
    let status = claimer.status(job).await.unwrap();
    assert_eq!(status.pending.len(), 400);
    for value in [1, 200, 400] {
        assert_eq!(claimer.info(job, value).await.unwrap().lost, 1);
    }
    check_invariants(&claimer, job).await;
}

#[tokio::test]
async fn a_redis_that_can_evict_keys_is_refused() {
    let server = RedisServer::start_with(&["--save", "", "--maxmemory-policy", "allkeys-lru"]);
    for args in [&["worker"][..], &["list"][..]] {
        let run = Wasmjob::new().redis(&server.url()).args(args).run();
        assert_eq!(run.code, Some(2), "{args:?}");
        assert!(
            run.stderr.contains("maxmemory-policy is allkeys-lru"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("noeviction"), "{}", run.stderr);
    }
}

#[tokio::test]
async fn a_redis_that_restarts_empty_is_reported() {
    let mut server = RedisServer::start();
    let worker = WorkerProcess::start(&server.url(), "host", FAST_WORKER);
    eventually("the worker to connect", PATIENCE, || async {
        worker.log().contains("worker started")
    })
    .await;
    server.restart();
    eventually("the worker to report the loss", PATIENCE, || async {
        worker.log().contains("lost its data")
    })
    .await;
    // It goes on serving the new, empty queue.
    let run = Wasmjob::new()
        .redis(&server.url())
        .arg("submit")
        .arg(guest("hello"))
        .args(["--range", "1..=3", "--wait"])
        .run();
    run.assert_exit(0);
}
