//! How a worker behaves: [`WorkerConfig`], its defaults, and the host name it reports.
//!
//! Only settings live here; what they do is in the rooms that read them (the claim loop in
//! `mod.rs`, pacing, the attempt, the reporter).

use crate::limits::Limits;
use std::path::PathBuf;
use std::time::Duration;

/// How a worker behaves; the defaults suit a worker host.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How many tasks run at once.
    pub slots: usize,
    /// The application name reported with each task (`--app`).
    pub app: String,
    /// The host name reported with each task.
    pub hostname: String,
    /// Where manifest files and job trees are cached.
    pub cache_dir: PathBuf,
    /// How often a running task's lease is renewed. Must be well below the store's lease time.
    pub heartbeat_interval: Duration,
    /// How often this worker reaps expired leases.
    pub reap_interval: Duration,
    /// How long one wait for work lasts, when a claim found nothing and no wake-up comes, before
    /// the worker claims and looks around (reaping) again. A stop ends the wait at once.
    pub idle_wait: Duration,
    /// On shutdown, how long running attempts may take to finish before they are stopped and
    /// handed back.
    pub grace: Duration,
    /// The most this worker accepts of each job limit; it claims no job above them.
    pub ceilings: Limits,
}

impl WorkerConfig {
    /// A configuration with the defaults, caching under `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        WorkerConfig {
            slots: num_cpus::get(),
            app: "wasmjob".into(),
            hostname: hostname(),
            cache_dir: cache_dir.into(),
            heartbeat_interval: Duration::from_secs(5),
            reap_interval: Duration::from_secs(5),
            idle_wait: Duration::from_secs(1),
            grace: Duration::from_secs(30),
            ceilings: Limits::MAX,
        }
    }
}

/// This machine's host name, or `localhost` if it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
