//! Manifest files stored in Redis: how long they live, how they cross a slow or broken link, and
//! what an upload that fails half-way leaves behind.

use crate::common::{
    PATIENCE, Wasmjob, WorkerProcess, data_file, eventually, spec_with, submit, wait_done,
};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use wasmjob::manifest::{Digest, ManifestPath};
use wasmjob::storage::{RedisConfig, RedisStore, StorageError, SubmitterStore, WorkerStore};
use wasmjob_test_support::{RedisServer, SlowLink, guest_bytes};

/// Every key of the test's Redis that holds a file's bytes or the chunks of one on its way.
fn blob_keys(server: &RedisServer) -> Vec<String> {
    let mut redis = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("wasmjob:blob:*")
        .query(&mut redis)
        .unwrap();
    keys.into_iter()
        .filter(|k| !k.ends_with(":users"))
        .collect()
}

/// Bytes that do not compress or repeat, so that a chunk out of place shows.
fn file_of(size: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn big_file() -> ManifestPath {
    ManifestPath::new("big.bin").unwrap()
}

#[tokio::test]
async fn a_stored_file_lives_as_long_as_its_job_and_a_fresh_worker_fetches_it() {
    let server = RedisServer::start();
    let (_files, data) = data_file("kept\n");
    let job = submit(
        &server,
        "behave",
        &[
            "--range",
            "1",
            "--file",
            &data,
            "--meta",
            "do=read:data.txt",
        ],
    );
    let keys = blob_keys(&server);
    assert_eq!(keys.len(), 2, "the module and data.txt: {keys:?}");
    for key in &keys {
        // No expiry at all: a job may wait for a worker for days.
        assert_eq!(server.command(&["TTL", key]), ":-1", "{key}");
    }

    let _worker = WorkerProcess::start(&server.url(), "fresh", &[]);
    wait_done(&crate::common::connect(&server).await, job).await;
    let output = Wasmjob::new()
        .redis(&server.url())
        .args(["output", &job.to_string()])
        .run();
    output.assert_exit(0);
    assert_eq!(output.stdout, "kept\n");
}

#[tokio::test]
async fn a_big_file_crosses_a_slow_link_that_breaks_both_ways() {
    // 12 MiB at 4 MB/s: three seconds each way, against a one-second reply timeout. Larger
    // figures can be given, e.g. WASMJOB_LINK_MIB=1024 WASMJOB_LINK_RATE=12500000.
    let setting = |name, default| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (mib, rate) = (
        setting("WASMJOB_LINK_MIB", 12),
        setting("WASMJOB_LINK_RATE", 4_000_000),
    );
    let server = RedisServer::start();
    let link = SlowLink::start(server.port(), rate as u64);
    let mut config = RedisConfig::new(format!("redis://127.0.0.1:{}", link.port()));
    config.timeout = Duration::from_secs(1);
    let store = RedisStore::connect(&config).await.unwrap();
    let bytes = file_of(mib << 20);
    let spec = spec_with(&guest_bytes("behave"), &[("big.bin", &bytes)], "1");
    let submitted = store.submit(&spec).await.unwrap();

    let breaks = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        link.cut();
    };
    let (progress_calls, last_progress) = (AtomicUsize::new(0), AtomicU64::new(0));
    let upload = async {
        for path in &submitted.missing {
            let file = spec.manifest.file(path).unwrap();
            let content = if *path == big_file() {
                bytes.clone()
            } else {
                guest_bytes("behave")
            };
            assert_eq!(file.size, content.len() as u64);
            let big = *path == big_file();
            store
                .upload_with_progress(submitted.id, path, &content, &|sent| {
                    if big {
                        progress_calls.fetch_add(1, Ordering::Relaxed);
                        last_progress.store(sent, Ordering::Relaxed);
                    }
                })
                .await
                .unwrap();
        }
    };
    tokio::join!(breaks, upload);
    assert!(
        progress_calls.load(Ordering::Relaxed) >= mib,
        "progress is told chunk by chunk"
    );
    assert_eq!(last_progress.load(Ordering::Relaxed), bytes.len() as u64);
    assert_eq!(store.status(submitted.id).await.unwrap().missing_files, 0);

    let digest = spec.manifest.file(&big_file()).unwrap().sha256;
    let breaks = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        link.cut();
    };
    let (_, fetched) = tokio::join!(breaks, store.download(&digest));
    let fetched = fetched.unwrap();
    assert_eq!(fetched.len(), bytes.len());
    assert!(fetched == bytes, "the bytes come back as they were sent");
}

#[tokio::test]
async fn an_upload_refused_for_memory_stores_nothing_under_the_digest() {
    let server = RedisServer::start_with(&["--save", "", "--maxmemory", "8mb"]);
    let store = crate::common::connect(&server).await;
    let bytes = file_of(12 << 20);
    let spec = spec_with(b"\0asm\x01\0\0\0", &[("big.bin", &bytes)], "1");
    let digest = Digest::of(&bytes);

    // A first job waits for the file and keeps it in use through what follows.
    let waiting = store.submit(&spec).await.unwrap();
    let refused = store.upload(waiting.id, &big_file(), &bytes).await;
    assert!(
        matches!(refused, Err(StorageError::OutOfMemory { .. })),
        "{refused:?}"
    );
    assert!(
        !blob_keys(&server)
            .iter()
            .any(|k| k.contains(&digest.to_string())),
        "neither the file nor its partial upload is left: {:?}",
        blob_keys(&server)
    );

    // The next job is asked for the file again, and with room its upload is whole.
    let again = store.submit(&spec).await.unwrap();
    assert!(again.missing.contains(&big_file()), "{:?}", again.missing);
    assert_eq!(server.command(&["CONFIG", "SET", "maxmemory", "0"]), "+OK");
    store.upload(again.id, &big_file(), &bytes).await.unwrap();
    assert!(store.download(&digest).await.unwrap() == bytes);
}

#[tokio::test]
async fn a_submit_killed_half_way_is_removed_with_its_chunks_after_its_upload_timeout() {
    let server = RedisServer::start();
    // 16 MiB at 2 MB/s: eight seconds of upload, cut short after one.
    let link = SlowLink::start(server.port(), 2_000_000);
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    std::fs::write(&big, file_of(16 << 20)).unwrap();
    let mut submit = Wasmjob::new()
        .redis(&format!("redis://127.0.0.1:{}", link.port()))
        .arg("submit")
        .arg(wasmjob_test_support::guest("hello"))
        .args(["--range", "1", "--upload-timeout", "2s", "--file"])
        .arg(format!("{}:big.bin", big.display()))
        .spawn();
    let store = crate::common::connect(&server).await;
    eventually("chunks of the big file to arrive", PATIENCE, || async {
        blob_keys(&server).iter().any(|k| k.contains(":upload:"))
    })
    .await;
    submit.kill().unwrap();
    submit.wait().unwrap();
    let jobs = store.list().await.unwrap();
    assert_eq!(jobs.len(), 1, "the job waits for its files: {jobs:?}");
    let job = jobs[0].id;
    assert!(jobs[0].missing_files > 0);

    let _worker = WorkerProcess::start(&server.url(), "host", &["--reap-interval", "200ms"]);
    eventually("the abandoned job to be removed", PATIENCE, || async {
        matches!(
            store.status(job).await,
            Err(wasmjob::storage::StorageError::UnknownJob(_))
        )
    })
    .await;
    assert!(store.list().await.unwrap().is_empty());
    let left: Vec<String> = blob_keys(&server)
        .into_iter()
        .filter(|k| k.contains(":upload:"))
        .collect();
    assert!(left.is_empty(), "partial uploads left: {left:?}");
    assert_eq!(store.abandoned_uploads().await.unwrap(), 1);
}
