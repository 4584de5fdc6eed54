//! The wasmjob guest SDK: what a task author writes against.
//!
//! A wasmjob task is a WASI preview-1 command built for `wasm32-wasip1`. The host runs one fresh
//! instance per attempt; the task reads its inputs from argv, the environment and the preopened
//! job tree, writes its **result** to stdout and its **log** to stderr, and says how it went with
//! its exit code. This crate wraps that contract (defined in [`contract`], the `wasmjob-host-api`
//! crate) so a task is one closure:
//!
//! ```no_run
//! use wasmjob_guest::{Task, TaskError};
//!
//! fn main() {
//!     wasmjob_guest::run(|task: &Task| {
//!         let name = task.meta("greeting").unwrap_or("hello");
//!         if task.value() == 13 {
//!             return Err(TaskError::fatal("13 is unlucky; retrying will not help"));
//!         }
//!         Ok(format!("{name} from task {} (attempt {})\n", task.value(), task.attempt()))
//!     })
//! }
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip1` and hand the `.wasm` to the host
//! (`wasmjob run task.wasm --range 1..=100`). [`run`] turns `Ok(bytes)` into the result and exit
//! code 0, [`TaskError::Retry`] into exit code 1 (the task is retried while it has retries left)
//! and [`TaskError::Fatal`] into [`contract::EXIT_FATAL`] (never retried).
//!
//! The three optional host imports of module [`contract::IMPORT_MODULE`] are wrapped as
//! [`progress`], [`cancelled`] and [`time_left`]. When a crate is compiled for a non-wasm target
//! (for `cargo test` on the developer's machine) they are stand-ins: `progress` does nothing,
//! `cancelled` is `false` and `time_left` is [`Duration::MAX`](std::time::Duration::MAX), so a
//! task's logic can be unit-tested natively. A task that calls none of them imports none of them
//! (the linker drops unused imports) and so runs on any WASI preview-1 host.
//!
//! # Layout
//!
//! * `lib.rs` — [`run`], the entry point that maps a closure's outcome to stdout, stderr and the
//!   exit code; [`contract`], the host-api crate re-exported.
//! * `task.rs` — [`Task`], the task's identity and metadata read from the environment, and
//!   [`EnvError`] for an environment that does not follow the contract.
//! * `error.rs` — [`TaskError`], retryable or fatal.
//! * `host.rs` — the host imports: the crate's only `unsafe` (one `extern` block, wasm only) and
//!   their native stand-ins.

mod error;
mod host;
mod task;

use std::io::Write;

pub use error::TaskError;
pub use host::{cancelled, progress, time_left};
pub use task::{EnvError, Task};

/// The host <-> guest contract (crate `wasmjob-host-api`): environment variable names, import
/// names, [`EXIT_FATAL`](contract::EXIT_FATAL), [`JOB_DIR`](contract::JOB_DIR),
/// [`SCRATCH_DIR`](contract::SCRATCH_DIR), output caps.
pub use wasmjob_host_api as contract;

/// Runs a task and ends the process with the exit code its outcome calls for. Never returns.
///
/// Reads the [`Task`] from the environment (panicking, and so trapping, if the environment does
/// not follow the contract), calls `f` once, then:
///
/// * `Ok(result)`: writes `result` to stdout (the task's result), flushes it, exits with 0;
/// * `Err(TaskError::Retry(m))`: writes `m` and a newline to stderr (the task's log), exits with
///   1, a retryable error;
/// * `Err(TaskError::Fatal(m))`: writes `m` and a newline to stderr, exits with
///   [`EXIT_FATAL`](contract::EXIT_FATAL): the task fails for good.
///
/// Whatever `f` itself printed to stdout or stderr is kept and comes first. A panic inside `f`
/// aborts the instance (a trap), which the host counts as a retryable error.
pub fn run<F, R>(f: F) -> !
where
    F: FnOnce(&Task) -> Result<R, TaskError>,
    R: AsRef<[u8]>,
{
    let task = Task::from_env();
    let code = match f(&task) {
        Ok(result) => write_result(result.as_ref()),
        Err(err) => {
            let _ = std::io::stdout().flush();
            write_log(err.message());
            err.exit_code()
        }
    };
    std::process::exit(code)
}

/// Writes the result to stdout and flushes it; returns the exit code.
fn write_result(bytes: &[u8]) -> i32 {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(err) => {
            write_log(&format!("writing the result to stdout: {err}"));
            TaskError::Retry(String::new()).exit_code()
        }
    }
}

/// Writes one message to stderr, ending it with a newline if it has none. Errors are ignored:
/// stderr is the last channel there is.
fn write_log(message: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(message.as_bytes());
    if !message.ends_with('\n') {
        let _ = err.write_all(b"\n");
    }
    let _ = err.flush();
}
