//! The storage conformance suite: the same cases, run against every backend.
//!
//! Each case is a generic function over a store; `conformance!` instantiates every case as a
//! test for each backend: the embedded one, and Redis with a private `redis-server` per test.

use crate::common::spec_with;
use std::sync::Arc;
use std::time::{Duration, Instant};
use ulid::Ulid;
use wasmjob::executor::{Executor, ExecutorConfig};
use wasmjob::limits::Limits;
use wasmjob::manifest::{Digest, ManifestPath};
use wasmjob::range::RangeSet;
use wasmjob::spec::{JobSpec, Priority};
use wasmjob::storage::{
    Ack, Claim, Heartbeat, JobId, Lease, Report, STATUS_PAGE, StorageError, SubmitterStore, TaskId,
    TaskState, Verdict, WorkerId, WorkerStore, now_millis,
};
use wasmjob::worker::{Worker, WorkerConfig, WorkerStats};

/// What every backend under test is.
pub trait Store: SubmitterStore + WorkerStore {}
impl<S: SubmitterStore + WorkerStore> Store for S {}

const LONG_LEASE: Duration = Duration::from_secs(60);

fn path(p: &str) -> ManifestPath {
    ManifestPath::new(p).unwrap()
}

fn worker(name: &str) -> WorkerId {
    WorkerId {
        app: "conformance".into(),
        hostname: name.into(),
        instance: Ulid::new(),
    }
}

fn spec(range: &str) -> JobSpec {
    spec_with(b"module bytes", &[], range)
}

/// Submits a job and uploads all its files, so that it is runnable.
async fn submit_runnable(store: &impl Store, spec: &JobSpec, module: &[u8]) -> JobId {
    let submitted = store.submit(spec).await.unwrap();
    for p in &submitted.missing {
        assert_eq!(
            p.as_str(),
            "task.wasm",
            "only the module is uploaded by this helper"
        );
        store.upload(submitted.id, p, module).await.unwrap();
    }
    submitted.id
}

async fn runnable(store: &impl Store, range: &str) -> JobId {
    submit_runnable(store, &spec(range), b"module bytes").await
}

async fn claim(store: &impl Store, max: usize) -> Option<Claim> {
    store.claim(&worker("w"), max, &[], None).await.unwrap()
}

/// Claims as many as there are `values`, once per value, and checks that each claim gives just
/// the next of them, on `attempt`, with a lease that says to run it alone.
async fn claim_each_alone(store: &impl Store, values: &[u64], attempt: u32) {
    for &value in values {
        let alone = claim(store, values.len()).await.unwrap().leases;
        assert_eq!(alone.len(), 1, "{alone:?}");
        assert_eq!(
            (alone[0].value, alone[0].attempt, alone[0].alone),
            (value, attempt, true)
        );
    }
}

async fn claim_one(store: &impl Store) -> Lease {
    let claim = claim(store, 1).await.expect("a task to claim");
    assert_eq!(claim.leases.len(), 1);
    claim.leases.into_iter().next().unwrap()
}

async fn report(store: &impl Store, lease: &Lease, verdict: Verdict) -> Ack {
    let report = Report {
        lease: lease.clone(),
        verdict,
        log: b"the log".to_vec(),
    };
    store.report(&[report]).await.unwrap()[0]
}

fn error(reason: &str) -> Verdict {
    Verdict::Error {
        reason: reason.into(),
    }
}

fn set(text: &str) -> RangeSet {
    if text.is_empty() {
        RangeSet::new()
    } else {
        text.parse().unwrap()
    }
}

pub async fn a_job_runs_only_once_its_files_are_uploaded(store: &impl Store) {
    let module = b"the module";
    let data = b"some data";
    let spec = spec_with(module, &[("data/in.txt", data)], "1..=3");
    let submitted = store.submit(&spec).await.unwrap();
    let mut missing: Vec<&str> = submitted.missing.iter().map(|p| p.as_str()).collect();
    missing.sort();
    assert_eq!(missing, ["data/in.txt", "task.wasm"]);
    assert_eq!(store.status(submitted.id).await.unwrap().missing_files, 2);

    store
        .upload(submitted.id, &path("task.wasm"), module)
        .await
        .unwrap();
    assert!(
        claim(store, 1).await.is_none(),
        "runnable with a file missing"
    );
    store
        .upload(submitted.id, &path("data/in.txt"), data)
        .await
        .unwrap();
    assert_eq!(store.status(submitted.id).await.unwrap().missing_files, 0);
    let claim = claim(store, 1).await.expect("runnable once uploaded");
    assert_eq!(claim.job, submitted.id);
    assert_eq!(*claim.spec, spec);

    let digest = Digest::of(data);
    assert_eq!(store.download(&digest).await.unwrap(), data);
}

pub async fn uploads_are_verified_against_the_manifest(store: &impl Store) {
    let submitted = store.submit(&spec("1")).await.unwrap();
    let wrong = store
        .upload(submitted.id, &path("task.wasm"), b"other bytes")
        .await;
    assert!(
        matches!(wrong, Err(StorageError::HashMismatch { .. })),
        "{wrong:?}"
    );
    let message = wrong.unwrap_err().to_string();
    assert!(
        message.contains("task.wasm") && message.contains("sha256"),
        "{message}"
    );

    let stranger = store.upload(submitted.id, &path("other.txt"), b"x").await;
    assert!(
        matches!(stranger, Err(StorageError::NotInManifest { .. })),
        "{stranger:?}"
    );

    let unknown = store
        .upload(JobId::generate(), &path("task.wasm"), b"module bytes")
        .await;
    assert!(
        matches!(unknown, Err(StorageError::UnknownJob(_))),
        "{unknown:?}"
    );

    // Nothing was accepted by the bad uploads: the job still waits for its module.
    assert_eq!(store.status(submitted.id).await.unwrap().missing_files, 1);
    assert!(claim(store, 1).await.is_none());
}

pub async fn files_are_stored_once_and_shared_between_jobs(store: &impl Store) {
    runnable(store, "1").await;
    let second = store.submit(&spec("1..=2")).await.unwrap();
    assert!(second.missing.is_empty(), "{:?}", second.missing);
    assert_eq!(store.status(second.id).await.unwrap().missing_files, 0);
}

pub async fn a_file_is_removed_with_the_last_job_that_uses_it(store: &impl Store) {
    let module = b"module bytes";
    let digest = Digest::of(module);
    let first = runnable(store, "1").await;
    let second = store.submit(&spec("1..=2")).await.unwrap();
    assert!(second.missing.is_empty(), "{:?}", second.missing);

    store.delete(first).await.unwrap();
    assert_eq!(store.download(&digest).await.unwrap(), module, "still used");
    store.delete(second.id).await.unwrap();
    assert!(
        matches!(store.download(&digest).await, Err(StorageError::UnknownBlob(d)) if d == digest),
        "removed with its last user"
    );

    // A job that needs it again has it to upload, and runs once it has.
    let third = store.submit(&spec("1")).await.unwrap();
    assert_eq!(third.missing, [path("task.wasm")]);
    store
        .upload(third.id, &third.missing[0], module)
        .await
        .unwrap();
    assert_eq!(claim_one(store).await.job, third.id);
}

pub async fn a_claim_takes_a_batch_of_the_lowest_pending_values(store: &impl Store) {
    let job = runnable(store, "1..=10").await;
    let claim = claim(store, 4).await.unwrap();
    let values: Vec<u64> = claim.leases.iter().map(|l| l.value).collect();
    assert_eq!(values, [1, 2, 3, 4]);
    assert!(claim.leases.iter().all(|l| l.attempt == 1 && l.job == job));
    let ids: std::collections::HashSet<TaskId> = claim.leases.iter().map(|l| l.task).collect();
    assert_eq!(ids.len(), 4, "each lease has its own task id");

    let status = store.status(job).await.unwrap();
    assert_eq!(status.pending, set("5..=10"));
    assert_eq!(status.active, set("1..=4"));
    assert_eq!(status.total(), 10);
    assert!(!status.is_done());

    // Task ids stay distinct across claims and within big ones.
    runnable(store, "1..=2000").await;
    let mut ids = ids;
    let mut leases = 4;
    while let Some(next) = self::claim(store, 1100).await {
        leases += next.leases.len();
        ids.extend(next.leases.iter().map(|l| l.task));
    }
    assert_eq!(leases, 10 + 2000);
    assert_eq!(ids.len(), leases, "each lease has its own task id");
}

pub async fn higher_priority_runs_first_then_the_oldest_job(store: &impl Store) {
    let old = runnable(store, "1").await;
    let newer = runnable(store, "1").await;
    let mut urgent = spec("1");
    urgent.priority = Priority::HIGH;
    let urgent = submit_runnable(store, &urgent, b"module bytes").await;

    let order: Vec<JobId> = [
        claim_one(store).await,
        claim_one(store).await,
        claim_one(store).await,
    ]
    .iter()
    .map(|l| l.job)
    .collect();
    assert_eq!(order, [urgent, old, newer]);

    let listed: Vec<JobId> = store.list().await.unwrap().iter().map(|s| s.id).collect();
    assert_eq!(listed, [urgent, old, newer]);
    let default: Vec<JobId> = store
        .list_by_priority(Priority::DEFAULT)
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(default, [old, newer]);
}

pub async fn max_concurrency_caps_a_job_and_lets_others_run(store: &impl Store) {
    let mut capped = spec("1..=10");
    capped.max_concurrency = Some(2);
    capped.priority = Priority::HIGH;
    let capped = submit_runnable(store, &capped, b"module bytes").await;
    let other = runnable(store, "1..=10").await;

    let first = claim(store, 5).await.unwrap();
    assert_eq!((first.job, first.leases.len()), (capped, 2));
    let second = claim(store, 5).await.unwrap();
    assert_eq!(
        second.job, other,
        "the capped job is full; the next one runs"
    );

    assert_eq!(
        report(store, &first.leases[0], Verdict::Success { result: vec![] }).await,
        Ack::Applied
    );
    let third = claim(store, 5).await.unwrap();
    assert_eq!(
        (third.job, third.leases.len()),
        (capped, 1),
        "one slot was freed"
    );
}

pub async fn success_keeps_the_result_log_and_worker(store: &impl Store) {
    let job = runnable(store, "5").await;
    let me = worker("host-a");
    let lease = store
        .claim(&me, 1, &[], None)
        .await
        .unwrap()
        .unwrap()
        .leases
        .remove(0);
    let active = store.info(job, 5).await.unwrap();
    assert_eq!(active.state, Some(TaskState::Active));
    assert_eq!(
        active.worker.as_ref().map(|w| w.hostname.as_str()),
        Some("host-a")
    );
    assert_eq!(active.task_id, Some(lease.task));
    assert!(active.deadline.is_some());

    let ack = report(
        store,
        &lease,
        Verdict::Success {
            result: b"42\n".to_vec(),
        },
    )
    .await;
    assert_eq!(ack, Ack::Applied);
    let info = store.info(job, 5).await.unwrap();
    assert_eq!(info.state, Some(TaskState::Succeeded));
    assert_eq!(info.result.as_deref(), Some(&b"42\n"[..]));
    assert_eq!(info.log.as_deref(), Some(&b"the log"[..]));
    assert_eq!((info.attempts, info.failures), (1, 0));
    assert_eq!(info.worker, Some(me));
    assert!(info.finished_at.is_some());
    let status = store.status(job).await.unwrap();
    assert_eq!(status.succeeded, set("5"));
    assert!(status.is_done());
}

pub async fn errors_are_retried_until_retries_run_out(store: &impl Store) {
    let mut spec = spec("1");
    spec.max_retries = 2;
    let job = submit_runnable(store, &spec, b"module bytes").await;
    for attempt in 1..=3 {
        let lease = claim_one(store).await;
        assert_eq!(lease.attempt, attempt);
        assert_eq!(
            report(store, &lease, error(&format!("failure {attempt}"))).await,
            Ack::Applied
        );
    }
    assert!(claim(store, 1).await.is_none(), "no retries left");
    let info = store.info(job, 1).await.unwrap();
    assert_eq!(info.state, Some(TaskState::Failed));
    assert_eq!((info.attempts, info.failures), (3, 3));
    assert_eq!(info.last_error.as_deref(), Some("failure 3"));
    assert_eq!(store.status(job).await.unwrap().failed, set("1"));
}

pub async fn fatal_is_never_retried(store: &impl Store) {
    let job = runnable(store, "1..=2").await;
    let lease = claim_one(store).await;
    let fatal = Verdict::Fatal {
        reason: "bad input".into(),
    };
    assert_eq!(report(store, &lease, fatal).await, Ack::Applied);
    let info = store.info(job, 1).await.unwrap();
    assert_eq!(info.state, Some(TaskState::Failed));
    assert_eq!((info.attempts, info.failures), (1, 1));
    assert_eq!(info.last_error.as_deref(), Some("bad input"));
    assert_eq!(
        claim_one(store).await.value,
        2,
        "value 1 is not claimed again"
    );
}

pub async fn requeue_returns_a_task_without_counting_a_failure(store: &impl Store) {
    let job = runnable(store, "1").await;
    let lease = claim_one(store).await;
    assert_eq!(report(store, &lease, Verdict::Requeue).await, Ack::Applied);
    let info = store.info(job, 1).await.unwrap();
    assert_eq!(info.state, Some(TaskState::Pending));
    assert_eq!(info.failures, 0);
    let again = claim_one(store).await;
    assert_eq!(again.value, 1);
    assert_ne!(again.task, lease.task);
}

pub async fn an_untried_task_goes_back_as_if_never_claimed(store: &impl Store) {
    let job = runnable(store, "1").await;
    let lease = claim_one(store).await;
    assert_eq!(report(store, &lease, Verdict::Untried).await, Ack::Applied);
    let info = store.info(job, 1).await.unwrap();
    assert_eq!(info.state, Some(TaskState::Pending));
    assert_eq!((info.attempts, info.failures), (0, 0));

    // Its next claim is its first attempt again; after a failure, the second, again.
    let first = claim_one(store).await;
    assert_eq!((first.attempt, first.value), (1, 1));
    assert_ne!(first.task, lease.task);
    assert_eq!(report(store, &first, error("flaky")).await, Ack::Applied);
    let second = claim_one(store).await;
    assert_eq!(second.attempt, 2);
    assert_eq!(report(store, &second, Verdict::Untried).await, Ack::Applied);
    let info = store.info(job, 1).await.unwrap();
    assert_eq!((info.attempts, info.failures), (1, 1));
    assert_eq!(info.last_error.as_deref(), Some("flaky"));
    assert_eq!(claim_one(store).await.attempt, 2);
}

pub async fn only_a_value_on_its_last_chance_runs_alone(store: &impl Store) {
    let mut spec = spec("1..=2");
    spec.max_lost = 3;
    let job = submit_runnable(store, &spec, b"module bytes").await;
    let lose_every_lease = || async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(store.reap().await.unwrap().requeued, 2);
    };
    let first = claim(store, 2).await.unwrap().leases;
    assert!(first.iter().all(|lease| !lease.alone), "{first:?}");
    lose_every_lease().await;

    // One loss of three allowed, most often the death of a worker that held both: they are
    // claimed together again and run as usual.
    let second = claim(store, 2).await.unwrap().leases;
    assert_eq!(second.len(), 2, "{second:?}");
    assert!(
        second
            .iter()
            .all(|lease| !lease.alone && lease.attempt == 2)
    );
    lose_every_lease().await;

    // One more loss would quarantine them: each is claimed by itself, to run alone.
    claim_each_alone(store, &[1, 2], 3).await;
    assert_eq!(store.info(job, 1).await.unwrap().lost, 2);
}

pub async fn a_batch_of_reports_is_applied_in_order_with_one_ack_each(store: &impl Store) {
    let job = runnable(store, "1..=4").await;
    let leases = claim(store, 4).await.unwrap().leases;
    let success = |lease: &Lease, text: &str| Report {
        lease: lease.clone(),
        verdict: Verdict::Success {
            result: text.as_bytes().to_vec(),
        },
        log: b"log".to_vec(),
    };
    let forged = Lease {
        task: TaskId::generate(),
        ..leases[2].clone()
    };
    let batch = [
        success(&leases[0], "one"),
        success(&leases[1], "two"),
        // The same report twice in one batch: the second finds the attempt ended.
        success(&leases[1], "two again"),
        success(&forged, "forged"),
        Report {
            lease: leases[3].clone(),
            verdict: Verdict::Requeue,
            log: Vec::new(),
        },
    ];
    assert_eq!(
        store.report(&batch).await.unwrap(),
        [
            Ack::Applied,
            Ack::Applied,
            Ack::StaleLease,
            Ack::StaleLease,
            Ack::Applied
        ]
    );
    let status = store.status(job).await.unwrap();
    assert_eq!(status.succeeded, set("1..=2"));
    assert_eq!(status.active, set("3"));
    assert_eq!(status.pending, set("4"));
    let info = store.info(job, 2).await.unwrap();
    assert_eq!(info.result.as_deref(), Some(&b"two"[..]));
    assert_eq!(info.log.as_deref(), Some(&b"log"[..]));
    assert_eq!(info.attempts, 1);
    // A requeued value's next attempt has the next number.
    let again = claim(store, 4).await.unwrap().leases;
    assert_eq!(
        again
            .iter()
            .map(|l| (l.value, l.attempt))
            .collect::<Vec<_>>(),
        [(4, 2)]
    );
}

pub async fn reports_with_a_stale_task_id_are_refused(store: &impl Store) {
    let job = runnable(store, "1").await;
    let lease = claim_one(store).await;
    let forged = Lease {
        task: TaskId::generate(),
        ..lease.clone()
    };
    assert_eq!(
        report(
            store,
            &forged,
            Verdict::Success {
                result: b"forged".to_vec()
            }
        )
        .await,
        Ack::StaleLease
    );
    assert_eq!(
        store.heartbeat(&forged, None).await.unwrap(),
        Heartbeat::Stop
    );
    assert_eq!(
        store.info(job, 1).await.unwrap().state,
        Some(TaskState::Active)
    );

    assert_eq!(
        report(
            store,
            &lease,
            Verdict::Success {
                result: b"real".to_vec()
            }
        )
        .await,
        Ack::Applied
    );
    // The same report again is refused, and does not change the result.
    assert_eq!(
        report(
            store,
            &lease,
            Verdict::Success {
                result: b"again".to_vec()
            }
        )
        .await,
        Ack::StaleLease
    );
    assert_eq!(report(store, &lease, error("late")).await, Ack::StaleLease);
    let info = store.info(job, 1).await.unwrap();
    assert_eq!(info.result.as_deref(), Some(&b"real"[..]));
    assert_eq!(info.failures, 0);
}

pub async fn heartbeats_renew_the_lease_and_carry_progress(store: &impl Store) {
    let job = runnable(store, "1").await;
    let lease = claim_one(store).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let Heartbeat::Continue { deadline } = store.heartbeat(&lease, Some(b"50%")).await.unwrap()
    else {
        panic!("a current lease is renewed");
    };
    assert!(
        deadline > lease.deadline,
        "{deadline} <= {}",
        lease.deadline
    );
    let info = store.info(job, 1).await.unwrap();
    assert_eq!(info.progress.as_deref(), Some(&b"50%"[..]));
    assert_eq!(info.deadline, Some(deadline));
}

pub async fn expired_leases_are_reaped_and_their_reports_refused(store: &impl Store) {
    let mut spec = spec("1..=2");
    spec.max_retries = 0;
    spec.max_lost = 2;
    let job = submit_runnable(store, &spec, b"module bytes").await;
    let first = claim(store, 2).await.unwrap().leases;
    assert!(first.iter().all(|lease| !lease.alone), "{first:?}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let reaped = store.reap().await.unwrap();
    assert_eq!((reaped.requeued, reaped.quarantined), (2, 0));
    assert_eq!(store.reap().await.unwrap().requeued, 0, "reaped once");

    // A lost attempt is not a failure: it does not use up retries (there are none here).
    let info = store.info(job, 1).await.unwrap();
    assert_eq!(info.state, Some(TaskState::Pending));
    assert_eq!((info.failures, info.lost), (0, 1));
    assert!(info.last_error.unwrap().contains("lease expired"));
    assert_eq!(
        report(store, &first[0], Verdict::Success { result: vec![] }).await,
        Ack::StaleLease
    );
    assert_eq!(
        store.heartbeat(&first[1], None).await.unwrap(),
        Heartbeat::Stop
    );

    // With a max lost of 2, one loss puts a value on its last chance: it runs alone, so that
    // if it is what kills its worker it takes no other value down with it. A claim of two
    // takes one.
    claim_each_alone(store, &[1, 2], 2).await;

    // The second loss reaches the max lost: the values are quarantined, not retried.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let reaped = store.reap().await.unwrap();
    assert_eq!((reaped.requeued, reaped.quarantined), (0, 2));
    let status = store.status(job).await.unwrap();
    assert_eq!(status.quarantined, set("1..=2"));
    assert!(status.is_done());
    let info = store.info(job, 2).await.unwrap();
    assert_eq!(info.state, Some(TaskState::Quarantined));
    assert_eq!((info.attempts, info.failures, info.lost), (2, 0, 2));
    assert!(claim(store, 2).await.is_none());
}

/// A claim and a report of more tasks than a Lua script can pass to one command at once:
/// nothing is dropped on the way.
pub async fn a_claim_and_a_report_of_ten_thousand_tasks_lose_nothing(store: &impl Store) {
    let job = runnable(store, "1..=10000").await;
    let leases = claim(store, 10_000).await.unwrap().leases;
    assert_eq!(leases.len(), 10_000);
    let reports: Vec<Report> = leases
        .into_iter()
        .map(|lease| Report {
            lease,
            verdict: Verdict::Success { result: vec![] },
            log: vec![],
        })
        .collect();
    let acks = store.report(&reports).await.unwrap();
    assert!(acks.iter().all(|ack| *ack == Ack::Applied), "{acks:?}");
    let status = store.status(job).await.unwrap();
    assert_eq!(status.succeeded, set("1..=10000"));
    assert!(status.is_done(), "{status:?}");
}

/// Values that succeeded on their first attempt with an empty result and log (what a backend
/// may keep per batch rather than per value) still each answer `info` in full: the worker, the
/// attempt's task id and times.
pub async fn a_quiet_success_is_still_known_value_by_value(store: &impl Store) {
    let job = runnable(store, "1..=40").await;
    let claimer = worker("quiet");
    let leases = store
        .claim(&claimer, 40, &[], None)
        .await
        .unwrap()
        .unwrap()
        .leases;
    // Reported out of order, in two reports, one value with something to say.
    let (first, second): (Vec<Lease>, Vec<Lease>) =
        leases.iter().cloned().rev().partition(|l| l.value % 3 != 0);
    let before = now_millis();
    for part in [first, second] {
        let reports: Vec<Report> = part
            .into_iter()
            .map(|lease| Report {
                verdict: Verdict::Success {
                    result: if lease.value == 7 {
                        b"seven".to_vec()
                    } else {
                        vec![]
                    },
                },
                lease,
                log: vec![],
            })
            .collect();
        store.report(&reports).await.unwrap();
    }
    for lease in &leases {
        let info = store.info(job, lease.value).await.unwrap();
        let what = format!("value {}: {info:?}", lease.value);
        assert_eq!(info.state, Some(TaskState::Succeeded), "{what}");
        assert_eq!(
            (info.attempts, info.failures, info.lost),
            (1, 0, 0),
            "{what}"
        );
        assert_eq!(info.worker.as_ref(), Some(&claimer), "{what}");
        assert_eq!(info.task_id, Some(lease.task), "{what}");
        let (started, finished) = (info.started_at.unwrap(), info.finished_at.unwrap());
        assert!(started <= finished && finished + 1000 >= before, "{what}");
        let expected: &[u8] = if lease.value == 7 { b"seven" } else { b"" };
        assert_eq!(info.result.as_deref(), Some(expected), "{what}");
        assert_eq!(info.log.as_deref(), Some(&b""[..]), "{what}");
    }
}

/// A job whose every other value failed: its status counts every state whole, holds the first
/// page of each, and the pages after it read the rest, in order, without a gap.
pub async fn a_fragmented_job_s_status_is_counted_whole_and_read_in_pages(store: &impl Store) {
    let values = 2 * STATUS_PAGE as u64 + 500;
    let job = runnable(store, &format!("0..{values}")).await;
    let leases = claim(store, values as usize).await.unwrap().leases;
    let reports: Vec<Report> = leases
        .into_iter()
        .map(|lease| Report {
            verdict: if lease.value % 2 == 0 {
                Verdict::Success { result: vec![] }
            } else {
                Verdict::Fatal {
                    reason: "odd".into(),
                }
            },
            lease,
            log: vec![],
        })
        .collect();
    store.report(&reports).await.unwrap();

    let status = store.status(job).await.unwrap();
    assert!(status.is_done(), "{:?}", status.counts);
    assert_eq!(
        (status.counts.succeeded, status.counts.failed),
        (values / 2, values / 2)
    );
    assert_eq!(status.total(), values);
    for state in [TaskState::Succeeded, TaskState::Failed] {
        assert_eq!(
            status.ranges(state).interval_count(),
            STATUS_PAGE,
            "{state}"
        );
        assert!(!status.is_whole(state), "{state}");
        // Page by page from the start, as `status --state` does.
        let mut whole = RangeSet::new();
        let mut from = 0;
        loop {
            let page = store.ranges(job, state, from, 300).await.unwrap();
            assert!(page.interval_count() <= 300);
            assert!(
                page.first().is_none_or(|first| first >= from),
                "{state} from {from}"
            );
            whole = whole.union(&page);
            match page.last() {
                Some(last) if page.interval_count() == 300 => from = last + 1,
                _ => break,
            }
        }
        let parity = u64::from(state == TaskState::Failed);
        let expected: RangeSet = (0..values).filter(|v| v % 2 == parity).collect();
        assert_eq!(whole, expected, "{state}");
        assert_eq!(&whole.page(0, STATUS_PAGE), status.ranges(state));
    }
    // A page from inside an interval starts with that interval whole.
    let pending = store.ranges(job, TaskState::Pending, 0, 10).await.unwrap();
    assert!(pending.is_empty(), "{pending}");
    let info = store.info(job, values - 1).await.unwrap();
    assert_eq!(info.state, Some(TaskState::Failed));
    assert!(matches!(
        store
            .ranges(JobId::generate(), TaskState::Failed, 0, 10)
            .await,
        Err(StorageError::UnknownJob(_))
    ));
}

pub async fn a_deleted_job_is_gone_and_its_workers_are_told_to_stop(store: &impl Store) {
    let job = runnable(store, "1..=3").await;
    let lease = claim_one(store).await;
    store.delete(job).await.unwrap();
    assert!(matches!(store.status(job).await, Err(StorageError::UnknownJob(id)) if id == job));
    assert!(matches!(
        store.describe(job).await,
        Err(StorageError::UnknownJob(_))
    ));
    assert!(matches!(
        store.info(job, 1).await,
        Err(StorageError::UnknownJob(_))
    ));
    assert!(matches!(
        store.delete(job).await,
        Err(StorageError::UnknownJob(_))
    ));
    assert_eq!(
        store.heartbeat(&lease, None).await.unwrap(),
        Heartbeat::JobGone
    );
    assert_eq!(
        report(store, &lease, Verdict::Success { result: vec![] }).await,
        Ack::UnknownJob
    );
    assert!(claim(store, 3).await.is_none());
    assert!(store.list().await.unwrap().is_empty());
}

pub async fn describe_returns_the_spec_and_info_knows_the_range(store: &impl Store) {
    let mut spec = spec("0..10,20..30");
    spec.metadata.insert("colour".into(), "blue".into());
    spec.max_concurrency = Some(3);
    let job = submit_runnable(store, &spec, b"module bytes").await;
    assert_eq!(store.describe(job).await.unwrap(), spec);
    let info = store.info(job, 25).await.unwrap();
    assert_eq!((info.state, info.attempts), (Some(TaskState::Pending), 0));
    assert!(matches!(
        store.info(job, 15).await,
        Err(StorageError::UnknownValue { value: 15, .. })
    ));
}

pub async fn an_invalid_spec_is_refused_naming_the_problem(store: &impl Store) {
    let mut spec = spec("1");
    spec.limits.lifetime = Duration::ZERO;
    let refused = store.submit(&spec).await;
    assert!(
        matches!(refused, Err(StorageError::InvalidSpec(_))),
        "{refused:?}"
    );
    assert!(refused.unwrap_err().to_string().contains("lifetime"));
    assert!(store.list().await.unwrap().is_empty());
}

pub async fn a_huge_job_submits_as_one_interval(store: &impl Store) {
    let job = runnable(store, "0..10000000").await;
    let status = store.status(job).await.unwrap();
    assert_eq!(status.pending.len(), 10_000_000);
    assert_eq!(status.pending.interval_count(), 1);
    let claim = claim(store, 3).await.unwrap();
    assert_eq!(
        claim.leases.iter().map(|l| l.value).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(store.status(job).await.unwrap().pending, set("3..10000000"));
}

pub async fn a_wait_for_work_returns_when_a_job_is_submitted(store: &impl Store) {
    let me = worker("w");
    let mark = store.wake_mark().await.unwrap();
    assert!(store.claim(&me, 1, &[], None).await.unwrap().is_none());
    let waiting = async {
        let started = Instant::now();
        let woken = store
            .wait_for_work(mark, Duration::from_secs(30))
            .await
            .unwrap();
        (woken, started.elapsed())
    };
    let submitting = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        runnable(store, "1").await
    };
    let ((woken, waited), job) = tokio::join!(waiting, submitting);
    let woken = woken.expect("woken by the job, not timed out");
    assert!(
        waited < Duration::from_secs(10),
        "it waited {waited:?} for a job submitted after 100 ms"
    );
    let claim = store.claim(&me, 1, &[], woken.job()).await.unwrap();
    assert_eq!(claim.map(|c| c.job), Some(job));

    // With nothing happening, a wait ends at its timeout.
    let mark = store.wake_mark().await.unwrap();
    assert!(store.claim(&me, 1, &[], None).await.unwrap().is_none());
    let started = Instant::now();
    while let Some(woken) = store
        .wait_for_work(mark, Duration::from_millis(50))
        .await
        .unwrap()
    {
        // A wake-up raised before the mark may still be on its way (Redis's pub/sub): it
        // finds nothing, and the next wait starts from it.
        assert!(store.claim(&me, 1, &[], None).await.unwrap().is_none());
        assert!(started.elapsed() < Duration::from_secs(5), "{woken:?}");
    }
}

pub async fn work_that_came_after_the_mark_ends_the_wait_and_a_dropped_wait_loses_nothing(
    store: &impl Store,
) {
    let me = worker("w");
    let mark = store.wake_mark().await.unwrap();
    assert!(store.claim(&me, 1, &[], None).await.unwrap().is_none());
    // A wait dropped half-way (as at a shutdown) takes nothing with it.
    let dropped = tokio::time::timeout(
        Duration::from_millis(20),
        store.wait_for_work(mark, Duration::from_secs(30)),
    )
    .await;
    assert!(dropped.is_err(), "nothing to wake it yet: {dropped:?}");
    // The job arrives after the claim looked and before the next wait began: the wait from
    // the same mark still sees it.
    let job = runnable(store, "1").await;
    let started = Instant::now();
    let woken = store
        .wait_for_work(mark, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(woken.is_some(), "the wake-up was missed");
    assert!(started.elapsed() < Duration::from_secs(10));
    let claim = store.claim(&me, 1, &[], None).await.unwrap();
    assert_eq!(claim.map(|c| c.job), Some(job));
}

/// A worker told to stop while it waits for work stops at once, not at the end of its idle
/// wait: the wait is dropped, and nothing was claimed.
pub async fn an_idle_worker_stops_promptly_when_told<S: Store + 'static>(store: Arc<S>) {
    let cache = tempfile::tempdir().unwrap();
    let mut config = WorkerConfig::new(cache.path().join("cache"));
    config.idle_wait = Duration::from_secs(10);
    let executor = Arc::new(Executor::new(ExecutorConfig::default()).unwrap());
    let worker = Worker::new(Arc::clone(&store), executor, config).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    // Time to register, find nothing and settle into its wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    stop.send(()).unwrap();
    let stats = tokio::time::timeout(Duration::from_secs(8), running)
        .await
        .expect("the worker waited out its idle wait")
        .unwrap()
        .unwrap();
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "stopping took {took:?} with a 10 s idle wait"
    );
    assert_eq!(stats, WorkerStats::default());
    assert!(store.workers().await.unwrap().is_empty(), "it unregistered");
}

/// Instantiates every case as a test for one backend. `$make` is a closure taking the lease time
/// and returning a future of `(guard, store)`: the guard (a server, say) lives as long as the
/// test.
async fn workers_register_their_ceilings_and_claim_only_what_fits(store: &impl Store) {
    // With no worker registered there is nobody to judge: any valid job is accepted.
    let mut big = spec("1..=2");
    big.limits.memory = 1 << 30;
    let waiting = submit_runnable(store, &big, b"module bytes").await;

    let small = worker("small");
    let ceilings = Limits {
        memory: 64 << 20,
        ..Limits::MAX
    };
    store.register(&small, &ceilings).await.unwrap();
    let registered = store.workers().await.unwrap();
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].worker, small);
    assert_eq!(registered[0].ceilings, ceilings);

    // Now a job above every live worker's ceilings is refused, and nothing of it is stored.
    let refused = store.submit(&big).await.unwrap_err();
    assert!(
        matches!(&refused, StorageError::OverCeilings(over) if over.excesses[0].limit == "memory"),
        "{refused:?}"
    );
    assert_eq!(store.list().await.unwrap().len(), 1);

    // The small worker skips the big job and claims the one that fits.
    let mut fits = spec("7");
    fits.limits.memory = 64 << 20;
    let fitting = submit_runnable(store, &fits, b"module bytes").await;
    let claim = store.claim(&small, 10, &[], None).await.unwrap().unwrap();
    assert_eq!(claim.job, fitting);
    assert!(store.claim(&small, 10, &[], None).await.unwrap().is_none());

    // A worker with the default ceilings takes the big one; with it live, big jobs are accepted.
    let large = worker("large");
    store.register(&large, &Limits::MAX).await.unwrap();
    let claim = store.claim(&large, 10, &[], None).await.unwrap().unwrap();
    assert_eq!(claim.job, waiting);
    store.submit(&big).await.unwrap();

    store.unregister(&large).await.unwrap();
    store.unregister(&small).await.unwrap();
    assert!(store.workers().await.unwrap().is_empty());
}

macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            conformance!(@cases $make;
                a_job_runs_only_once_its_files_are_uploaded,
                uploads_are_verified_against_the_manifest,
                files_are_stored_once_and_shared_between_jobs,
                a_file_is_removed_with_the_last_job_that_uses_it,
                a_claim_takes_a_batch_of_the_lowest_pending_values,
                higher_priority_runs_first_then_the_oldest_job,
                max_concurrency_caps_a_job_and_lets_others_run,
                success_keeps_the_result_log_and_worker,
                errors_are_retried_until_retries_run_out,
                fatal_is_never_retried,
                requeue_returns_a_task_without_counting_a_failure,
                an_untried_task_goes_back_as_if_never_claimed,
                reports_with_a_stale_task_id_are_refused,
                heartbeats_renew_the_lease_and_carry_progress,
                a_deleted_job_is_gone_and_its_workers_are_told_to_stop,
                a_claim_and_a_report_of_ten_thousand_tasks_lose_nothing,
                describe_returns_the_spec_and_info_knows_the_range,
                an_invalid_spec_is_refused_naming_the_problem,
                a_huge_job_submits_as_one_interval,
                a_fragmented_job_s_status_is_counted_whole_and_read_in_pages,
                a_quiet_success_is_still_known_value_by_value,
                a_wait_for_work_returns_when_a_job_is_submitted,
                work_that_came_after_the_mark_ends_the_wait_and_a_dropped_wait_loses_nothing,
                workers_register_their_ceilings_and_claim_only_what_fits,
                a_batch_of_reports_is_applied_in_order_with_one_ack_each,
            );

            // Cases that share the store with a worker.
            conformance!(@shared_cases $make;
                an_idle_worker_stops_promptly_when_told,
            );

            // Cases that let leases expire.
            conformance!(@cases_with_lease $make, Duration::from_millis(200);
                expired_leases_are_reaped_and_their_reports_refused,
                only_a_value_on_its_last_chance_runs_alone,
            );
        }
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        conformance!(@cases_with_lease $make, LONG_LEASE; $($case),*);
    };
    (@shared_cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (_guard, store) = ($make)(LONG_LEASE).await;
                super::$case(Arc::new(store)).await;
            }
        )*
    };
    (@cases_with_lease $make:expr, $lease:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (_guard, store) = ($make)($lease).await;
                super::$case(&store).await;
            }
        )*
    };
}

conformance!(memory, |lease| async move {
    ((), wasmjob::storage::MemoryStore::with_lease_ttl(lease))
});

conformance!(redis, |lease| async move {
    let server = wasmjob_test_support::RedisServer::start();
    let mut config = wasmjob::storage::RedisConfig::new(server.url());
    config.lease_ttl = lease;
    let store = wasmjob::storage::RedisStore::connect(&config)
        .await
        .unwrap();
    (server, store)
});
