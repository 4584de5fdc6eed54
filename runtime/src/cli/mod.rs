//! The command line: parsing (clap derive), logging set-up, and one module per subcommand.
//!
//! Exit codes: 0 when everything asked for succeeded, 1 when a job ran but some of its tasks
//! failed, 2 for an error that stopped the command (bad input, an unknown job, an unreachable
//! Redis), 130 when interrupted.

mod inspect;
mod job_args;
mod run;
mod submit;
mod summary;
mod watch;
mod worker;

use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;
use wasmjob::storage::{DEFAULT_LEASE_TTL, DEFAULT_PREFIX, DEFAULT_URL, RedisConfig, RedisStore};

/// Run batches of untrusted WebAssembly tasks: one task per value of a range, each in a fresh
/// sandbox, in this process or on worker hosts sharing a Redis queue.
#[derive(Debug, Parser)]
#[command(name = "wasmjob", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: Global,

    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// The Redis server holding the queue.
    #[arg(long, global = true, env = "WASMJOB_REDIS", default_value = DEFAULT_URL)]
    pub redis: String,

    /// The prefix of every Redis key, so that several queues can share a server.
    #[arg(long, global = true, env = "WASMJOB_PREFIX", default_value = DEFAULT_PREFIX)]
    pub prefix: String,
}

impl Global {
    /// Connects to the queue; fails naming the server when it cannot be reached.
    pub async fn connect(&self) -> anyhow::Result<RedisStore> {
        self.connect_with_lease(DEFAULT_LEASE_TTL).await
    }

    /// Connects to the queue with leases of the given length (for workers).
    pub async fn connect_with_lease(&self, lease_ttl: Duration) -> anyhow::Result<RedisStore> {
        let mut config = RedisConfig::new(&self.redis);
        config.prefix = self.prefix.clone();
        config.lease_ttl = lease_ttl;
        Ok(RedisStore::connect(&config).await?)
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a whole job in this process, on the embedded queue, and print its summary.
    Run(run::RunArgs),
    /// Run tasks from the Redis queue until SIGTERM or Ctrl-C: the worker host's daemon.
    Worker(worker::WorkerArgs),
    /// Submit a job to the Redis queue and print its id.
    Submit(submit::SubmitArgs),
    /// Show a job's values by state.
    Status(inspect::StatusArgs),
    /// Show everything known about one task value.
    Info(inspect::InfoArgs),
    /// Print tasks' results.
    Output(inspect::OutputArgs),
    /// List the jobs in the queue, highest priority first.
    List(inspect::ListArgs),
    /// Print a job's spec as submitted.
    Describe(inspect::DescribeArgs),
    /// Delete a job; its running tasks are stopped.
    Delete(inspect::DeleteArgs),
}

/// Parses the command line, runs the command and turns its result into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(cli.command, Command::Worker(_)));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let global = &cli.global;
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(args, global.json).await,
            Command::Worker(args) => worker::worker(args, global).await,
            Command::Submit(args) => submit::submit(args, global).await,
            Command::Status(args) => inspect::status(args, global).await,
            Command::Info(args) => inspect::info(args, global).await,
            Command::Output(args) => inspect::output(args, global).await,
            Command::List(args) => inspect::list(args, global).await,
            Command::Describe(args) => inspect::describe(args, global).await,
            Command::Delete(args) => inspect::delete(args, global).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr, filtered by `WASMJOB_LOG` (e.g. `info`, `wasmjob=debug`): by default
/// warnings, and for a worker one line per task too.
fn init_logging(worker: bool) {
    let default = if worker { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WASMJOB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Where a worker host keeps its caches unless told otherwise: `$XDG_CACHE_HOME/wasmjob`, else
/// `~/.cache/wasmjob`.
fn default_cache_dir() -> std::path::PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| std::path::PathBuf::from(home).join(".cache"))
        })
        .unwrap_or_else(std::env::temp_dir)
        .join("wasmjob")
}
