//! Jobs whose spec or state was written into Redis by hand, as a hostile submitter could: each
//! is set aside with its reason, shown in `status` and `list`, and the jobs behind it run.

use crate::common::{PATIENCE, Wasmjob, WorkerProcess, connect, eventually, forge_job, submit};
use wasmjob::range::RangeSet;
use wasmjob::storage::{JobId, RedisStore, StorageError, SubmitterStore};
use wasmjob_test_support::RedisServer;

/// A job of three echo tasks, and its spec as stored: the model the forgeries are made from.
async fn canary(server: &RedisServer) -> (JobId, serde_json::Value) {
    let job = submit(server, "behave", &["--range", "1..=3", "--meta", "do=echo"]);
    let store = connect(server).await;
    let spec = serde_json::to_value(store.describe(job).await.unwrap()).unwrap();
    (job, spec)
}

/// Runs a worker until the canary is done, with Redis answering all the while, and returns
/// the store to look at the forged jobs with.
async fn canary_finishes(server: &RedisServer, canary: JobId) -> RedisStore {
    let store = connect(server).await;
    let _worker = WorkerProcess::start(&server.url(), "host", &[]);
    eventually("the canary to finish", PATIENCE, || async {
        assert_eq!(
            server.command(&["PING"]),
            "+PONG",
            "Redis stopped answering"
        );
        store.status(canary).await.unwrap().is_done()
    })
    .await;
    assert_eq!(
        store.status(canary).await.unwrap().succeeded,
        RangeSet::from_interval(1, 3)
    );
    store
}

/// Checks that `job` is set aside, off the queue, for a reason that says `why` (or one of the
/// `|`-separated alternatives in it).
async fn assert_set_aside(server: &RedisServer, store: &RedisStore, job: JobId, why: &str) {
    let status = store.status(job).await.unwrap();
    let reason = status.set_aside.clone().unwrap_or_default();
    assert!(
        why.split('|').any(|why| reason.contains(why)),
        "job {job}: {why:?} not in {status:?}"
    );
    assert!(status.is_done(), "{status:?}");
    assert_eq!(
        server.command(&["ZSCORE", "wasmjob:queue", &job.to_string()]),
        "$-1",
        "job {job} is still queued"
    );
}

#[tokio::test]
async fn malformed_states_are_set_aside_and_the_jobs_behind_them_run() {
    let server = RedisServer::start();
    let (canary_job, spec) = canary(&server).await;
    let spec = spec.to_string();
    let cases = [
        // Counting up to these would never end: Lua's doubles stop at 2^53.
        (
            "pending",
            "9007199254740993 9007199254741000",
            "not a whole number",
        ),
        ("pending", "1e300 1e300", "not a whole number"),
        ("pending", "-4 2", "not a whole number"),
        ("pending", "5 1", "ends before it starts"),
        ("pending", "1 2 5", "not an interval"),
        // Which is read first depends on how many values the worker claims at once: the two
        // intervals together, or the first alone, whose values run past the job's range.
        ("pending", "1 5,3 7", "out of order|outside its range"),
        ("failed", "x", "failed set"),
        ("max_concurrency", "lots", "max_concurrency"),
        ("max_retries", "", "max_retries"),
    ];
    let forged: Vec<(JobId, &str)> = cases
        .iter()
        .map(|(field, value, why)| (forge_job(&server, &spec, &[(field, value)]), *why))
        .collect();
    let not_a_hash = forge_job(&server, &spec, &[]);
    let state = format!("wasmjob:job:{{{not_a_hash}}}:state");
    server.command(&["DEL", &state]);
    server.command(&["SET", &state, "garbage"]);

    let store = canary_finishes(&server, canary_job).await;
    for (job, why) in forged {
        assert_set_aside(&server, &store, job, why).await;
    }
    assert_set_aside(&server, &store, not_a_hash, "not a hash").await;

    let list = Wasmjob::new().redis(&server.url()).arg("list").run();
    list.assert_exit(0);
    assert_eq!(
        list.stdout.matches("set aside").count(),
        10,
        "{}",
        list.stdout
    );
}

#[tokio::test]
async fn unrunnable_specs_fail_their_job_once_and_the_jobs_behind_them_run() {
    let server = RedisServer::start();
    let (canary_job, spec) = canary(&server).await;
    let with = |path: &str, value: serde_json::Value| {
        let mut spec = spec.clone();
        *spec.pointer_mut(path).unwrap() = value;
        spec.to_string()
    };
    let module = spec["script"].as_str().unwrap().to_owned();
    let renamed = |name: &str| {
        let mut spec = spec.clone();
        let files = spec.pointer_mut("/manifest/files").unwrap();
        let entry = files.as_object_mut().unwrap().remove(&module).unwrap();
        files[name] = entry;
        spec["script"] = name.into();
        spec.to_string()
    };
    let cases = [
        (renamed("../escape.wasm"), "does not parse"),
        (renamed("/etc/task.wasm"), "does not parse"),
        (renamed("nul\0.wasm"), "does not parse"),
        (with("/range", "lots".into()), "does not parse"),
        (with("/max_retries", "three".into()), "does not parse"),
        ("{".to_owned(), "does not parse"),
        // Readable, but no worker anywhere could run it.
        (with("/workdir", "nowhere".into()), "invalid"),
    ];
    let forged: Vec<(JobId, &str)> = cases
        .iter()
        .map(|(spec, why)| (forge_job(&server, spec, &[]), *why))
        .collect();

    let store = canary_finishes(&server, canary_job).await;
    for &(job, why) in &forged {
        assert_set_aside(&server, &store, job, why).await;
        // Its state could be read: every value it had is failed, none left to claim.
        let status = store.status(job).await.unwrap();
        assert_eq!(status.failed, RangeSet::from_interval(1, 3), "{status:?}");
    }
    // What the user sees of one: the reason, in `status`.
    let (job, _) = forged[forged.len() - 1];
    let status = Wasmjob::new()
        .redis(&server.url())
        .args(["status", &job.to_string()])
        .run();
    status.assert_exit(0);
    assert!(
        status
            .stdout
            .contains("set aside, runs no more: its spec is invalid"),
        "{}",
        status.stdout
    );
    assert!(matches!(
        store.describe(job).await,
        Err(StorageError::SetAside { .. })
    ));
}
