//! Helpers for running the `wasmjob` binary from tests, and for the Redis-backed tests that
//! drive it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use wasmjob::manifest::{Digest, FileEntry, Manifest, ManifestPath};
use wasmjob::spec::JobSpec;
use wasmjob::storage::{JobId, RedisConfig, RedisStore, SubmitterStore};
use wasmjob_test_support::{RedisServer, guest};

/// How long a test waits for a job or a task before it fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A `wasmjob` command line under construction.
pub struct Wasmjob {
    command: Command,
}

/// How a finished `wasmjob` command went.
pub struct Ran {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Everything it printed to stdout.
    pub stdout: String,
    /// Everything it printed to stderr.
    pub stderr: String,
}

impl Wasmjob {
    /// The freshly built binary, with no logging configuration inherited from the test's
    /// environment.
    pub fn new() -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wasmjob"));
        command
            .env_remove("WASMJOB_LOG")
            .env_remove("WASMJOB_REDIS");
        Wasmjob { command }
    }

    /// Points it at a Redis server.
    pub fn redis(mut self, url: &str) -> Self {
        self.command.env("WASMJOB_REDIS", url);
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.command.args(args);
        self
    }

    /// Starts it, for a test that stops it half-way (killed when dropped only if the test
    /// kills it).
    pub fn spawn(mut self) -> Child {
        self.command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting wasmjob")
    }

    /// Runs it to the end.
    pub fn run(mut self) -> Ran {
        let output = self.command.output().expect("running wasmjob");
        Ran {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Ran {
    /// Asserts the exit code, showing what the command printed when it differs.
    pub fn assert_exit(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
    }
}

/// A path inside the workspace.
pub fn workspace_file(relative: &str) -> PathBuf {
    wasmjob_test_support::workspace_root().join(relative)
}

/// A `wasmjob worker` process, with its own cache directory unless told otherwise, logging to a
/// file. Killed (by its process id) when dropped, unless it already exited.
pub struct WorkerProcess {
    child: Child,
    dir: tempfile::TempDir,
}

/// Timings short enough for tests: a crashed worker's lease expires within seconds.
pub const FAST_WORKER: &[&str] = &[
    "--lease",
    "3s",
    "--heartbeat",
    "500ms",
    "--reap-interval",
    "500ms",
];

impl WorkerProcess {
    /// Starts a worker on `redis` that records `hostname`, with extra arguments.
    pub fn start(redis: &str, hostname: &str, args: &[&str]) -> Self {
        Self::start_with_env(redis, hostname, args, &[])
    }

    /// Like [`start`](Self::start), with extra environment variables.
    pub fn start_with_env(
        redis: &str,
        hostname: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        Self::spawn(redis, hostname, None, args, env)
    }

    /// Like [`start`](Self::start), with the given cache directory instead of one of its own.
    pub fn start_in_cache(redis: &str, hostname: &str, cache: &Path, args: &[&str]) -> Self {
        Self::spawn(redis, hostname, Some(cache), args, &[])
    }

    fn spawn(
        redis: &str,
        hostname: &str,
        cache: Option<&Path>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("worker.log")).unwrap();
        let own_cache = dir.path().join("cache");
        let child = Command::new(env!("CARGO_BIN_EXE_wasmjob"))
            .env("WASMJOB_REDIS", redis)
            .env("WASMJOB_LOG", "info")
            .args(["worker", "--hostname", hostname, "--cache-dir"])
            .arg(cache.unwrap_or(&own_cache))
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting wasmjob worker");
        WorkerProcess { child, dir }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends it SIGTERM: the graceful stop.
    pub fn terminate(&self) {
        signal(self.pid(), "TERM");
    }

    /// Waits up to `timeout` for it to exit.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Whether it has exited.
    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("worker.log")).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal (`TERM`, `KILL`, `STOP`, `CONT`) to a process this test started.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Polls `check` until it holds, failing the test with `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A job whose manifest holds `task.wasm` with `module` as content, plus the given files.
pub fn spec_with(module: &[u8], files: &[(&str, &[u8])], range: &str) -> JobSpec {
    let mut manifest = Manifest::new();
    let entry = |bytes: &[u8]| FileEntry {
        sha256: Digest::of(bytes),
        size: bytes.len() as u64,
    };
    let path = |p: &str| ManifestPath::new(p).unwrap();
    manifest
        .insert_file(path("task.wasm"), entry(module))
        .unwrap();
    for (p, bytes) in files {
        manifest.insert_file(path(p), entry(bytes)).unwrap();
    }
    JobSpec::new("test", manifest, path("task.wasm"), range.parse().unwrap())
}

/// A submitter's connection to the test's own Redis.
pub async fn connect(server: &RedisServer) -> RedisStore {
    RedisStore::connect(&RedisConfig::new(server.url()))
        .await
        .unwrap()
}

/// Submits the built guest `module` through the CLI, without waiting, and returns the job's id.
pub fn submit(server: &RedisServer, module: &str, args: &[&str]) -> JobId {
    let run = Wasmjob::new()
        .redis(&server.url())
        .arg("submit")
        .arg(guest(module))
        .args(args)
        .run();
    run.assert_exit(0);
    run.stdout.trim().parse().expect("submit prints the job id")
}

/// Waits until every task of `job` is terminal.
pub async fn wait_done(store: &RedisStore, job: JobId) {
    eventually("the job to finish", PATIENCE, || async {
        store.status(job).await.unwrap().is_done()
    })
    .await;
}

/// A `data.txt` holding `text`, in a directory removed when the returned guard drops, and its
/// path for `--file`.
pub fn data_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.txt");
    std::fs::write(&path, text).unwrap();
    let path = path.to_str().unwrap().to_owned();
    (dir, path)
}

/// A job written straight into the test's Redis, as a hostile submitter or a careless operator
/// could: `spec` as its stored spec and `state` over the fields of a well-formed state (three
/// pending values), queued at priority 255, ahead of every job the CLI submits. A field named
/// after a set (`pending`, `succeeded`, `failed`, `quarantined`) is that set's sorted set
/// instead: its members separated by commas, each scored by the number it starts with (0 when
/// it starts with none). Returns its id.
pub fn forge_job(server: &RedisServer, spec: &str, state: &[(&str, &str)]) -> JobId {
    const SETS: [&str; 4] = ["pending", "succeeded", "failed", "quarantined"];
    let job = JobId::generate();
    let mut fields: Vec<(&str, &str)> = vec![
        ("pending", "1 3"),
        ("max_retries", "3"),
        ("max_lost", "3"),
        ("max_concurrency", "0"),
        ("priority", "255"),
        ("name", "forged"),
        ("submitted_at", "1"),
        ("n_values", "3"),
        ("n_succeeded", "0"),
        ("n_failed", "0"),
        ("n_quarantined", "0"),
    ];
    for (name, value) in state {
        fields.retain(|(f, _)| f != name);
        fields.push((name, value));
    }
    let mut redis = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let key = |part: &str| format!("wasmjob:job:{{{job}}}:{part}");
    let mut pipe = redis::pipe();
    pipe.set(key("spec"), spec);
    for (name, value) in &fields {
        if SETS.contains(name) {
            for member in value.split(',').filter(|m| !m.is_empty()) {
                let digits: String = member.chars().take_while(char::is_ascii_digit).collect();
                pipe.zadd(key(name), member, digits.parse::<f64>().unwrap_or(0.0));
            }
        } else {
            pipe.hset(key("state"), name, value);
        }
    }
    pipe.zadd("wasmjob:jobs", job.to_string(), -255)
        .zadd("wasmjob:queue", job.to_string(), -255)
        .query::<()>(&mut redis)
        .unwrap();
    job
}
