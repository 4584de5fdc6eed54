//! The wasmjob guest contract: everything a task and its host agree on, and nothing else.
//!
//! A task is a WASI preview-1 *command*: a core WebAssembly module exporting `_start`, built for
//! `wasm32-wasip1` by any toolchain. The host runs one fresh instance per attempt of a task and
//! shares nothing between attempts. This crate is the single source of truth for that contract;
//! it has no dependency on wasmtime or tokio and builds for the host and for `wasm32-wasip1`, so
//! the host (crate `wasmjob`) and the guest SDK (crate `wasmjob-guest`) read the same constants.
//!
//! # What a task receives
//!
//! * `argv` is `[script, value]`: the manifest path of the module, then the task value in decimal.
//! * The environment holds exactly the variables named in [`env`] (job id, job name, task id, task
//!   value, attempt, the two directory paths) plus one [`env::META_PREFIX`] variable per metadata
//!   entry of the job. Nothing of the host's environment leaks through.
//! * The job's manifest tree is preopened **read-only** at [`JOB_DIR`]; the job's working
//!   directory (a directory of the manifest) is also preopened read-only as `.`, so relative paths
//!   resolve inside it. A fresh, empty, writable directory is preopened at [`SCRATCH_DIR`]; it is
//!   removed when the attempt ends. No other host path and no socket is reachable.
//! * The scratch directory holds at most the job's scratch limits (bytes written, files and
//!   directories created): past them a write fails with `ENOSPC` and a creation with `EDQUOT`,
//!   and an attempt that then fails ends as [`Ending::ScratchLimitExceeded`]. At most 256
//!   descriptors may be open at once (`EMFILE` past that).
//! * stdin is empty.
//!
//! # What a task gives back
//!
//! * stdout is the task's **result**, kept with the task. Writing more than the job's result cap
//!   ([`DEFAULT_RESULT_CAP`] unless the job sets another) stops the attempt with
//!   [`Ending::OutputLimitExceeded`].
//! * stderr is the task's **log**. Only its tail is kept ([`DEFAULT_LOG_CAP`] bytes); writing more
//!   is never an error.
//! * How the attempt ends decides the outcome; see [`outcome`]. In short: exit code 0 (or
//!   returning from `_start`) is success, [`EXIT_FATAL`] is fatal and never retried, any other exit
//!   code or a trap is a retryable error.
//!
//! # Host imports
//!
//! All are optional; a plain WASI program runs without them. They live in the import module
//! [`IMPORT_MODULE`] and are listed in [`imports`] with their exact signatures. A C guest declares
//! one as, for example:
//!
//! ```c
//! __attribute__((import_module("wasmjob_v1"), import_name("cancelled")))
//! int32_t wasmjob_cancelled(void);
//! ```
//!
//! Host imports never trap for an expected condition; they trap only when the guest misbehaves (a
//! pointer or length outside its memory, a length over the documented limit).

#![no_std]
#![deny(missing_docs)]

extern crate alloc;

use alloc::string::{String, ToString};
use core::fmt;
use serde::{Deserialize, Serialize};

/// The module name of every wasmjob host import. The version suffix changes only when an
/// existing import changes meaning; new imports may be added under the same name.
pub const IMPORT_MODULE: &str = "wasmjob_v1";

/// Where the job's manifest tree is mounted, read-only, inside the guest.
pub const JOB_DIR: &str = "/job";

/// Where the attempt's private writable scratch directory is mounted inside the guest.
pub const SCRATCH_DIR: &str = "/scratch";

/// The exit code that ends a task as **fatal**: the task failed in a way that retrying cannot fix
/// (bad input, a value that can never succeed). Any other non-zero exit code is a retryable error.
///
/// It is below 126 because WASI preview 1 hosts refuse `proc_exit` codes from 126 up.
pub const EXIT_FATAL: i32 = 100;

/// The default cap on a task's result (its stdout): 1 MiB.
pub const DEFAULT_RESULT_CAP: u64 = 1 << 20;

/// The default cap on a task's log (its stderr): the last 64 KiB are kept.
pub const DEFAULT_LOG_CAP: u64 = 64 << 10;

/// The most bytes one [`imports::PROGRESS`] call may carry.
pub const MAX_PROGRESS_BYTES: u32 = 4096;

/// Names of the environment variables every task sees. All are always set.
pub mod env {
    /// The job's id (a ULID, e.g. `01JD3Q4G7TZ9N8V2K5X6Y1R0AB`).
    pub const JOB_ID: &str = "WASMJOB_JOB_ID";
    /// The job's name as given at submit (may be empty).
    pub const JOB_NAME: &str = "WASMJOB_JOB_NAME";
    /// The id of this attempt of the task (a ULID, fresh per attempt).
    pub const TASK_ID: &str = "WASMJOB_TASK_ID";
    /// The task value in decimal; the same as `argv[1]`.
    pub const TASK_VALUE: &str = "WASMJOB_TASK_VALUE";
    /// The attempt number, starting at 1.
    pub const ATTEMPT: &str = "WASMJOB_ATTEMPT";
    /// The guest path of the manifest tree; always [`JOB_DIR`](crate::JOB_DIR).
    pub const JOB_DIR: &str = "WASMJOB_JOB_DIR";
    /// The guest path of the scratch directory; always [`SCRATCH_DIR`](crate::SCRATCH_DIR).
    pub const SCRATCH_DIR: &str = "WASMJOB_SCRATCH_DIR";
    /// Prefix of the metadata variables: job metadata `key=value` is seen as
    /// `WASMJOB_META_key=value`. Keys are `[A-Za-z_][A-Za-z0-9_]*`, case kept.
    pub const META_PREFIX: &str = "WASMJOB_META_";
}

/// The host imports, all in module [`IMPORT_MODULE`]. Each constant is the import's field name;
/// its doc gives the exact core-wasm signature.
pub mod imports {
    /// `progress(ptr: i32, len: i32) -> i32`
    ///
    /// Records `len` bytes at `ptr` as the task's progress; the latest value replaces earlier ones
    /// and is carried to the queue on the next heartbeat. Returns 0. Traps if the bytes are not
    /// inside the guest's memory or `len` exceeds [`MAX_PROGRESS_BYTES`](crate::MAX_PROGRESS_BYTES).
    pub const PROGRESS: &str = "progress";

    /// `cancelled() -> i32`
    ///
    /// Returns 1 when the host wants the task to stop (the job was deleted, the lease was lost,
    /// the worker is shutting down), 0 otherwise. A task that ignores it is stopped anyway at its
    /// lifetime; asking lets it stop cleanly and early.
    pub const CANCELLED: &str = "cancelled";

    /// `time_left_ms() -> i64`
    ///
    /// Milliseconds left before the attempt's lifetime ends (0 when it has ended).
    pub const TIME_LEFT_MS: &str = "time_left_ms";
}

/// How one attempt of a task ended, as the host observed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Ending {
    /// The guest called `proc_exit(code)`, or returned from `_start` (code 0).
    Exited(i32),
    /// The guest trapped; the payload names the trap (e.g. `unreachable`, `stack overflow`).
    Trapped(String),
    /// The attempt ran past its lifetime and was stopped.
    LifetimeExceeded,
    /// The guest asked for more linear memory (or table elements) than its limit allows and
    /// failed because of it.
    MemoryLimitExceeded,
    /// The guest wrote more to stdout than its result cap.
    OutputLimitExceeded,
    /// The host refused to let the guest write more into its scratch directory (bytes or files
    /// over the job's scratch limits), and the attempt then failed.
    ScratchLimitExceeded,
    /// The host stopped the attempt: the job was deleted, the lease was lost or the worker is
    /// shutting down.
    Cancelled,
    /// The module could not be run at all: it does not compile, does not instantiate (say, an
    /// import the host does not provide) or has no `_start`. The payload says why.
    InvalidModule(String),
}

/// What an attempt means for its task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Outcome {
    /// The task is done; its stdout is the result.
    Success,
    /// The attempt failed; the task is retried while it has retries left. The payload is the
    /// reason.
    Error(String),
    /// The task failed for good and is never retried. The payload is the reason.
    Fatal(String),
}

impl Outcome {
    /// Whether the task is done for good with this outcome, whatever its retries.
    pub fn is_final(&self) -> bool {
        !matches!(self, Outcome::Error(_))
    }
}

/// Maps how an attempt ended to what it means for the task. The host applies exactly this
/// function; it is the contract's definition of success, error and fatal.
pub fn outcome(ending: &Ending) -> Outcome {
    match ending {
        Ending::Exited(0) => Outcome::Success,
        Ending::Exited(EXIT_FATAL) => Outcome::Fatal(ending.to_string()),
        Ending::InvalidModule(_) => Outcome::Fatal(ending.to_string()),
        _ => Outcome::Error(ending.to_string()),
    }
}

/// The reason text of an ending. These strings are stable: users and scripts match on them.
impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::Exited(0) => f.write_str("success"),
            Ending::Exited(EXIT_FATAL) => write!(f, "fatal (exit code {EXIT_FATAL})"),
            Ending::Exited(code) => write!(f, "exit code {code}"),
            Ending::Trapped(name) => write!(f, "trap: {name}"),
            Ending::LifetimeExceeded => f.write_str("lifetime exceeded"),
            Ending::MemoryLimitExceeded => f.write_str("memory limit exceeded"),
            Ending::OutputLimitExceeded => f.write_str("output limit exceeded"),
            Ending::ScratchLimitExceeded => f.write_str("scratch limit exceeded"),
            Ending::Cancelled => f.write_str("cancelled"),
            Ending::InvalidModule(why) => write!(f, "compilation error: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_the_contract() {
        let cases = [
            (Ending::Exited(0), Outcome::Success),
            (Ending::Exited(1), Outcome::Error("exit code 1".into())),
            (
                Ending::Exited(EXIT_FATAL),
                Outcome::Fatal("fatal (exit code 100)".into()),
            ),
            (
                Ending::Trapped("unreachable".into()),
                Outcome::Error("trap: unreachable".into()),
            ),
            (
                Ending::LifetimeExceeded,
                Outcome::Error("lifetime exceeded".into()),
            ),
            (
                Ending::MemoryLimitExceeded,
                Outcome::Error("memory limit exceeded".into()),
            ),
            (
                Ending::OutputLimitExceeded,
                Outcome::Error("output limit exceeded".into()),
            ),
            (
                Ending::ScratchLimitExceeded,
                Outcome::Error("scratch limit exceeded".into()),
            ),
            (Ending::Cancelled, Outcome::Error("cancelled".into())),
            (
                Ending::InvalidModule("no `_start`".into()),
                Outcome::Fatal("compilation error: no `_start`".into()),
            ),
        ];
        for (ending, expected) in cases {
            assert_eq!(outcome(&ending), expected, "{ending:?}");
        }
    }

    #[test]
    fn only_errors_are_retried() {
        assert!(outcome(&Ending::Exited(0)).is_final());
        assert!(outcome(&Ending::Exited(EXIT_FATAL)).is_final());
        assert!(!outcome(&Ending::Exited(2)).is_final());
        assert!(!outcome(&Ending::LifetimeExceeded).is_final());
    }

    #[test]
    fn exit_fatal_is_a_valid_wasi_exit_code() {
        assert!((1..126).contains(&EXIT_FATAL));
        assert_eq!(Ending::Exited(7).to_string(), "exit code 7");
    }
}
