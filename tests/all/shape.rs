//! What a job's size must not cost everyone else: a big finished job is deleted without
//! stalling Redis for the workers and submitters of other jobs.

use crate::common::{connect, spec_with};
use std::time::{Duration, Instant};
use ulid::Ulid;
use wasmjob::storage::{
    JobId, Report, StorageError, SubmitterStore, Verdict, WorkerId, WorkerStore,
};
use wasmjob_test_support::RedisServer;

/// Runs a job of `values` no-op values to the end through the library, in big claims, without
/// a worker: what a finished job leaves in Redis, made quickly.
async fn finished_job(
    store: &impl WorkerStore,
    submitter: &impl SubmitterStore,
    values: u64,
) -> JobId {
    let module = b"module bytes";
    let spec = spec_with(module, &[], &format!("1..={values}"));
    let submitted = submitter.submit(&spec).await.unwrap();
    for path in &submitted.missing {
        submitter.upload(submitted.id, path, module).await.unwrap();
    }
    let worker = WorkerId {
        app: "shape".into(),
        hostname: "test".into(),
        instance: Ulid::new(),
    };
    while let Some(claim) = store.claim(&worker, 20_000, &[], None).await.unwrap() {
        let reports: Vec<Report> = claim
            .leases
            .into_iter()
            .map(|lease| Report {
                lease,
                verdict: Verdict::Success { result: Vec::new() },
                log: Vec::new(),
            })
            .collect();
        store.report(&reports).await.unwrap();
    }
    let status = submitter.status(submitted.id).await.unwrap();
    assert_eq!(status.succeeded.len(), values, "{status:?}");
    submitted.id
}

#[tokio::test]
async fn deleting_a_finished_job_of_a_million_values_does_not_stall_redis() {
    let server = RedisServer::start();
    let store = connect(&server).await;
    let job = finished_job(&store, &store, 1_000_000).await;

    // Another client pings all along, as a worker's heartbeat of another job would.
    let client = redis::Client::open(server.url()).unwrap();
    let mut pinger = client.get_multiplexed_async_connection().await.unwrap();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let pings = tokio::spawn(async move {
        let mut slowest = Duration::ZERO;
        let mut count = 0u32;
        while stopped.try_recv().is_err() || count < 20 {
            let sent = Instant::now();
            let _: String = redis::cmd("PING").query_async(&mut pinger).await.unwrap();
            slowest = slowest.max(sent.elapsed());
            count += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        (slowest, count)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    store.delete(job).await.unwrap();
    stop.send(()).unwrap();
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
