//! The command line: parsing (clap derive), logging set-up, and one module per subcommand.
//!
//! Exit codes: 0 when everything asked for succeeded, 1 when the job ran but some tasks failed,
//! 2 for an error that stopped the command (bad input, an unusable module or directory), 130
//! when interrupted.

mod job_args;
mod run;
mod summary;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Run batches of untrusted WebAssembly tasks: one task per value of a range, each in a fresh
/// sandbox.
#[derive(Debug, Parser)]
#[command(name = "wasmjob", version, about, long_about = None)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a whole job in this process, on the embedded queue, and print its summary.
    Run(run::RunArgs),
}

/// Parses the command line, runs the command and turns its result into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
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
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(args, cli.json).await,
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

/// Logs go to stderr, filtered by `WASMJOB_LOG` (e.g. `info`, `wasmjob=debug`); warnings by
/// default.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WASMJOB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
