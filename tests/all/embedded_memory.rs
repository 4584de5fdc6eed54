//! The embedded queue's memory follows the intervals and the results worth keeping, not the
//! values: a real `wasmjob run` of a big no-op job, with `--output`, whose peak resident memory
//! is read from `/proc` while it runs and held under a bound that a record per value exceeds;
//! and what `info` answers of the values that keep no record of their own (answered by their
//! claimed batch) beside those that do.

use crate::common::{PATIENCE, Wasmjob, spec_with};
use serde_json::Value;
use std::time::{Duration, Instant};
use wasmjob::storage::{
    Lease, MemoryStore, Report, SubmitterStore, TaskState, Verdict, WorkerId, WorkerStore,
};

/// The no-op guest of the benchmark: `_start` returns at once, printing nothing.
const NOOP: &str = r#"(module (func (export "_start")))"#;

/// How many values the run has. A debug build runs about 2,500 no-op tasks a second on two
/// cores, so 10^6 values would take minutes; 10^5 keep the test within a minute and still
/// separate the two layouts by far.
const VALUES: u64 = 100_000;

/// The bound on the run's peak resident memory. A record per value (about 1.1 KB each, as the
/// queue kept before) took a release build to 84 MB at this size, a debug build (whose binary
/// alone is bigger) to more; the queue that keeps only batches peaks at ~36 MB in a debug build,
/// most of it the engine and the binary.
const PEAK_BOUND_KB: u64 = 60 * 1024;

/// The process's peak resident set (`VmHWM`) in KB, while it is alive.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_big_no_op_run_keeps_memory_flat_and_streams_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("noop.wat");
    std::fs::write(&module, NOOP).unwrap();
    let output = dir.path().join("out.jsonl");
    let mut child = Wasmjob::new()
        .arg("run")
        .arg(&module)
        .args(["--range", &format!("1..={VALUES}"), "--output"])
        .arg(&output)
        .spawn();

    // The high-water mark only rises, so the last reading before the process exits is its
    // peak, give or take the last few milliseconds (which write nothing big).
    let mut peak = 0;
    let deadline = Instant::now() + 5 * PATIENCE;
    let status = loop {
        if let Some(kb) = peak_rss_kb(child.id()) {
            peak = peak.max(kb);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wasmjob run of {VALUES} values did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "wasmjob run failed: {status}");
    assert!(peak > 0, "no reading of the run's memory");
    eprintln!("wasmjob run of {VALUES} no-op values peaked at {peak} KB");
    assert!(
        peak < PEAK_BOUND_KB,
        "wasmjob run of {VALUES} no-op values peaked at {peak} KB (bound {PEAK_BOUND_KB} KB)"
    );

    // Every value's line, in value order, as a value with no record of its own reads back.
    let text = std::fs::read_to_string(&output).unwrap();
    let mut count = 0;
    for (line, value) in text.lines().zip(1..) {
        let line: Value = serde_json::from_str(line).unwrap();
        assert_eq!(line["value"], value, "{line}");
        assert_eq!(line["outcome"], "succeeded", "{line}");
        assert_eq!(line["attempts"], 1, "{line}");
        assert_eq!(line["result"], "", "{line}");
        assert_eq!(line["log"], "", "{line}");
        assert_eq!(line["error"], Value::Null, "{line}");
        count += 1;
    }
    assert_eq!(count, VALUES);
}

fn worker(name: &str) -> WorkerId {
    WorkerId {
        app: "embedded".into(),
        hostname: name.into(),
        instance: ulid::Ulid::new(),
    }
}

async fn runnable(store: &MemoryStore, spec: &wasmjob::spec::JobSpec) -> wasmjob::storage::JobId {
    let submitted = store.submit(spec).await.unwrap();
    for path in &submitted.missing {
        store
            .upload(submitted.id, path, b"module bytes")
            .await
            .unwrap();
    }
    submitted.id
}

async fn finish(store: &MemoryStore, lease: &Lease, verdict: Verdict, log: &[u8]) {
    let report = Report {
        lease: lease.clone(),
        verdict,
        log: log.to_vec(),
    };
    store.report(&[report]).await.unwrap();
}

fn success(result: &[u8]) -> Verdict {
    Verdict::Success {
        result: result.to_vec(),
    }
}

#[tokio::test]
async fn info_answers_for_values_without_a_record_from_their_batch() {
    let store = MemoryStore::new();
    let spec = spec_with(b"module bytes", &[], "1..=6");
    let job = runnable(&store, &spec).await;
    let (a, b) = (worker("a"), worker("b"));
    let first = store.claim(&a, 3, &[], None).await.unwrap().unwrap().leases;
    let second = store.claim(&b, 3, &[], None).await.unwrap().unwrap().leases;
    let leases: Vec<&Lease> = first.iter().chain(&second).collect();
    let ids: std::collections::BTreeSet<_> = leases.iter().map(|l| l.task).collect();
    assert_eq!(ids.len(), 6, "a task id per attempt: {leases:?}");

    let running = store.info(job, 2).await.unwrap();
    assert_eq!(running.state, Some(TaskState::Active));
    assert_eq!(running.task_id, Some(first[1].task));
    assert_eq!(running.worker.as_ref(), Some(&a));

    // 1, 2 and 4 say nothing; 3 has a result, 5 a log, 6 fails once.
    finish(&store, &first[0], success(b""), b"").await;
    finish(&store, &first[1], success(b""), b"").await;
    finish(&store, &first[2], success(b"3\n"), b"").await;
    finish(&store, &second[0], success(b""), b"").await;
    finish(&store, &second[1], success(b""), b"a log").await;
    let failing = Verdict::Error {
        reason: "once".into(),
    };
    finish(&store, &second[2], failing, b"").await;
    let retry = store.claim(&a, 3, &[], None).await.unwrap().unwrap().leases;
    assert_eq!((retry.len(), retry[0].value, retry[0].attempt), (1, 6, 2));
    finish(&store, &retry[0], success(b""), b"").await;

    for (lease, who) in [(&first[0], &a), (&first[1], &a), (&second[0], &b)] {
        let info = store.info(job, lease.value).await.unwrap();
        assert_eq!(info.state, Some(TaskState::Succeeded), "{info:?}");
        assert_eq!((info.attempts, info.failures, info.lost), (1, 0, 0));
        assert_eq!(info.worker.as_ref(), Some(who));
        assert_eq!(info.task_id, Some(lease.task), "{info:?}");
        let (started, finished) = (info.started_at.unwrap(), info.finished_at.unwrap());
        assert!(started <= finished, "{info:?}");
        assert_eq!(info.result.as_deref(), Some(&b""[..]));
        assert_eq!(info.log.as_deref(), Some(&b""[..]));
        assert_eq!((info.deadline, info.last_error), (None, None));
    }
    let three = store.info(job, 3).await.unwrap();
    assert_eq!(three.result.as_deref(), Some(&b"3\n"[..]));
    assert_eq!(three.task_id, Some(first[2].task));
    let five = store.info(job, 5).await.unwrap();
    assert_eq!(five.log.as_deref(), Some(&b"a log"[..]));
    assert_eq!(five.worker.as_ref(), Some(&b));
    let six = store.info(job, 6).await.unwrap();
    assert_eq!((six.attempts, six.failures), (2, 1));
    assert_eq!(six.task_id, Some(retry[0].task));
    assert_eq!(six.worker.as_ref(), Some(&a));
    assert_eq!(six.last_error.as_deref(), Some("once"));

    // The pages `--output` streams: every value, in order, once all are final.
    let page = store.finished_infos(job, 2, 100).unwrap();
    assert_eq!(
        page.iter().map(|i| i.value).collect::<Vec<_>>(),
        [2, 3, 4, 5, 6]
    );
    assert_eq!(page[0], store.info(job, 2).await.unwrap());
}

#[tokio::test]
async fn output_pages_stop_before_the_first_value_not_final() {
    let store = MemoryStore::new();
    let spec = spec_with(b"module bytes", &[], "1..=3,10..=12");
    let job = runnable(&store, &spec).await;
    let me = worker("a");
    let leases = store
        .claim(&me, 5, &[], None)
        .await
        .unwrap()
        .unwrap()
        .leases;
    for lease in leases.iter().filter(|l| l.value != 10) {
        finish(&store, lease, success(b""), b"").await;
    }
    let values = |from| -> Vec<u64> {
        let page = store.finished_infos(job, from, 100).unwrap();
        page.iter().map(|i| i.value).collect()
    };
    assert_eq!(values(0), [1, 2, 3], "10 is still running");
    assert_eq!(values(11), [11], "12 was never claimed");
    assert_eq!(store.finished_infos(job, 0, 2).unwrap().len(), 2);
}
