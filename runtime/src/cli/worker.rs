//! `wasmjob worker`: the daemon each worker host runs against the Redis queue.

use super::Global;
use super::limit_args::Ceilings;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use wasmjob::executor::{Executor, ExecutorConfig};
use wasmjob::limits::Limits;
use wasmjob::units;
use wasmjob::worker::{Worker, WorkerConfig, hostname};

/// `wasmjob worker [--slots N] [--app NAME] [...]`
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// How many tasks run at once (default: the number of cores).
    #[arg(long)]
    pub slots: Option<usize>,

    /// The application name recorded with each task this worker runs.
    #[arg(long, default_value = "wasmjob")]
    pub app: String,

    /// The host name recorded with each task (default: this machine's).
    #[arg(long)]
    pub hostname: Option<String>,

    /// Where manifest files are cached between runs (default: ~/.cache/wasmjob).
    #[arg(long, env = "WASMJOB_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// On SIGTERM or Ctrl-C, how long running tasks may take to finish before they are stopped
    /// and handed back to the queue.
    #[arg(long, value_parser = units::parse_duration, default_value = "30s")]
    pub grace: Duration,

    /// How long a lease lasts without a heartbeat; a crashed worker's tasks are retried after it.
    #[arg(long, value_parser = units::parse_duration, default_value = "30s")]
    pub lease: Duration,

    /// How often running tasks' leases are renewed (default: a third of the lease).
    #[arg(long, value_parser = units::parse_duration)]
    pub heartbeat: Option<Duration>,

    /// How often this worker returns expired leases to the queue.
    #[arg(long, value_parser = units::parse_duration, default_value = "5s")]
    pub reap_interval: Duration,

    /// The operator's ceilings: a job asking for more than these is not run here, and refused
    /// at submit when no live worker accepts it.
    #[command(flatten)]
    pub ceilings: Ceilings,

    #[command(flatten)]
    pub engine: EngineArgs,
}

/// What this worker's engine accepts of a module and its stack.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// The largest module this worker compiles; a larger one fails its tasks as fatal.
    #[arg(long, value_parser = units::parse_size, default_value = "128MiB")]
    pub max_module_size: u64,

    /// How long compiling one module may take; a module that takes longer fails as fatal.
    #[arg(long, value_parser = units::parse_duration, default_value = "60s")]
    pub compile_timeout: Duration,

    /// The most native stack a guest's wasm frames may use before a stack-overflow trap.
    #[arg(long, value_parser = units::parse_size, default_value = "512KiB")]
    pub max_wasm_stack: u64,
}

pub async fn worker(args: WorkerArgs, global: &Global) -> anyhow::Result<ExitCode> {
    // Checked before the heartbeat, which defaults to a third of it: a zero lease is the
    // mistake, whatever the heartbeat.
    anyhow::ensure!(
        !args.lease.is_zero(),
        "--lease must be above 0s: it is how long a task stays claimed without a heartbeat \
         (default 30s)"
    );
    // The engine reserves address space for the largest memory it allows; above what a 32-bit
    // memory can address it refuses to start, in terms of its own settings.
    anyhow::ensure!(
        args.ceilings.0.memory <= Limits::MAX.memory,
        "--max-memory {} is above the most a job's memory can be: at most {}",
        units::format_size(args.ceilings.0.memory),
        units::format_size(Limits::MAX.memory)
    );
    let heartbeat = args.heartbeat.unwrap_or(args.lease / 3);
    anyhow::ensure!(
        heartbeat < args.lease,
        "--heartbeat ({}) must be shorter than --lease ({})",
        units::format_duration(heartbeat),
        units::format_duration(args.lease)
    );
    let cache_dir = args.cache_dir.unwrap_or_else(super::default_cache_dir);
    let mut config = WorkerConfig::new(&cache_dir);
    if let Some(slots) = args.slots {
        anyhow::ensure!(slots > 0, "--slots must be at least 1");
        config.slots = slots;
    }
    config.app = args.app;
    config.hostname = args.hostname.unwrap_or_else(hostname);
    config.grace = args.grace;
    config.heartbeat_interval = heartbeat;
    config.reap_interval = args.reap_interval;
    config.ceilings = args.ceilings.0;
    let max_wasm_stack = usize::try_from(args.engine.max_wasm_stack)
        .ok()
        .filter(|&bytes| (64 << 10..=64 << 20).contains(&bytes))
        .context("--max-wasm-stack must be from 64KiB to 64MiB")?;

    let store = Arc::new(global.connect_with_lease(args.lease).await?);
    let executor = Arc::new(Executor::new(ExecutorConfig {
        scratch_root: Some(cache_dir.join("scratch")),
        max_module_size: args.engine.max_module_size,
        compile_timeout: args.engine.compile_timeout,
        max_wasm_stack,
        module_cache_dir: Some(cache_dir.join("modules")),
        pooled_instances: pool_size(config.slots),
        max_memory: config.ceilings.memory,
        max_table_elements: config.ceilings.table_elements,
        ..ExecutorConfig::default()
    })?);
    std::fs::create_dir_all(cache_dir.join("scratch"))
        .with_context(|| format!("cannot create {}", cache_dir.join("scratch").display()))?;
    let worker = Worker::new(store, executor, config.clone())?;
    tracing::info!(
        worker = %worker.id().instance,
        host = %config.hostname,
        app = %config.app,
        slots = config.slots,
        redis = %wasmjob::storage::redact_url(&global.redis),
        cache = %cache_dir.display(),
        "worker started"
    );
    let stats = worker.run(shutdown_signal()).await?;
    tracing::info!(
        attempts = stats.attempts,
        requeued = stats.requeued,
        refused = stats.refused,
        "worker stopped"
    );
    Ok(ExitCode::SUCCESS)
}

/// Completes at the first SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: shutting down"),
    }
}

/// How many instances the pooling allocator keeps ready for `slots` attempts at once: an attempt
/// that just ended may still hold its slot while the next one starts.
pub(super) fn pool_size(slots: usize) -> u32 {
    u32::try_from(slots.saturating_mul(2).saturating_add(2)).unwrap_or(u32::MAX)
}
