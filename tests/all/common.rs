//! Helpers for running the `wasmjob` binary from tests.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

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

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.command.args(args);
        self
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
