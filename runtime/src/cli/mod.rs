//! The command line: parsing (clap derive), logging set-up, and one module per subcommand.
//!
//! Exit codes: 0 when everything asked for succeeded, 1 when a job ran but some of its tasks
//! failed, 2 for an error that stopped the command (bad input, an unknown job, an unreachable
//! Redis), 130 when interrupted.

mod escape;
mod inspect;
mod job_args;
mod limit_args;
mod run;
mod submit;
mod summary;
mod watch;
mod worker;

use clap::{Args, CommandFactory, Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;
use wasmjob::storage::{
    DEFAULT_LEASE_TTL, DEFAULT_PREFIX, DEFAULT_URL, RedisConfig, RedisStore, StorageError,
};

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
        RedisStore::connect(&config).await.map_err(|e| match e {
            // The library says where a password goes; here is where the URL comes from.
            StorageError::AuthRequired { .. } | StorageError::AuthFailed { .. } => {
                anyhow::anyhow!("{e}; the URL is --redis or WASMJOB_REDIS")
            }
            e => e.into(),
        })
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
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
            eprintln!("error: {}", one_line(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

/// Prints help and version as clap does; any other command-line error as one line (clap's
/// own takes three to six: the error, a list, the usage, a hint), exit code 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    // The subcommand's own help has the usage; clap's rendering shows it only sometimes.
    let command = Cli::command();
    let help = std::env::args()
        .skip(1)
        .find(|arg| command.find_subcommand(arg).is_some())
        .map_or_else(
            || "wasmjob --help".to_owned(),
            |sub| format!("wasmjob {sub} --help"),
        );
    eprintln!("error: {} (see {help})", one_line(&e.render().to_string()));
    ExitCode::from(2)
}

/// An error message in one line, as the README promises: paragraphs joined by `; `, the lines
/// of a list after a colon joined by `, ` (by `; ` for `- ` bullets), and clap's usage and hint
/// to use `--help` left out.
fn one_line(message: &str) -> String {
    let mut parts = Vec::new();
    for paragraph in message.split("\n\n").map(str::trim) {
        if paragraph.is_empty()
            || paragraph.starts_with("Usage: ")
            || paragraph.starts_with("For more information")
        {
            continue;
        }
        let mut lines = paragraph.lines().map(str::trim).filter(|l| !l.is_empty());
        let first = lines.next().unwrap_or_default();
        let rest: Vec<&str> = lines.collect();
        let bullets = rest.iter().all(|line| line.starts_with("- "));
        let separator = match (bullets, first.ends_with(':')) {
            (true, _) => "; ",
            (false, true) => ", ",
            (false, false) => " ",
        };
        let rest: Vec<&str> = rest
            .iter()
            .map(|line| line.strip_prefix("- ").unwrap_or(line))
            .collect();
        parts.push(if rest.is_empty() {
            first.to_owned()
        } else {
            format!("{first} {}", rest.join(separator))
        });
    }
    let text = parts.join("; ");
    text.strip_prefix("error: ").unwrap_or(&text).to_owned()
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

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn messages_become_one_line() {
        let cases = [
            ("unknown job 01J", "unknown job 01J"),
            (
                "error: the following required arguments were not provided:\n  --range <RANGE>\n  \
                 <MODULE>\n\nUsage: wasmjob submit --range <RANGE> <MODULE>\n\nFor more \
                 information, try '--help'.\n",
                "the following required arguments were not provided: --range <RANGE>, <MODULE>",
            ),
            (
                "error: unrecognized subcommand 'statu'\n\n  tip: a similar subcommand exists: \
                 'status'\n\nUsage: wasmjob [OPTIONS] <COMMAND>\n",
                "unrecognized subcommand 'statu'; tip: a similar subcommand exists: 'status'",
            ),
            (
                "invalid job spec:\n  - the range is empty, sadly\n  - the log cap 0 B is out",
                "invalid job spec: the range is empty, sadly; the log cap 0 B is out",
            ),
        ];
        for (message, line) in cases {
            assert_eq!(one_line(message), line);
        }
    }
}
