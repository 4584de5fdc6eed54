//! [`TaskError`]: how a task says it failed, and whether retrying can help.

use std::fmt;

use wasmjob_host_api::EXIT_FATAL;

/// Why a task failed. [`run`](crate::run) writes the message to stderr and exits with the code
/// the variant calls for ([`TaskError::exit_code`]).
///
/// `?` on a [`std::io::Error`] gives a [`TaskError::Retry`]: most I/O failures inside the sandbox
/// are not worth retrying, but the SDK cannot tell which; map the ones you know are permanent
/// (a missing input file) to [`TaskError::fatal`] yourself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// The attempt failed but another may succeed: exit code 1, retried while the job allows.
    Retry(String),
    /// The task can never succeed (bad input, an impossible value): exit code
    /// [`EXIT_FATAL`], never retried.
    Fatal(String),
}

impl TaskError {
    /// A retryable error with this message.
    pub fn retry(message: impl Into<String>) -> TaskError {
        TaskError::Retry(message.into())
    }

    /// A fatal error with this message.
    pub fn fatal(message: impl Into<String>) -> TaskError {
        TaskError::Fatal(message.into())
    }

    /// The message, as written to stderr.
    pub fn message(&self) -> &str {
        match self {
            TaskError::Retry(message) | TaskError::Fatal(message) => message,
        }
    }

    /// Whether this error ends the task for good.
    pub fn is_fatal(&self) -> bool {
        matches!(self, TaskError::Fatal(_))
    }

    /// The exit code [`run`](crate::run) ends the process with: 1 for
    /// [`Retry`](TaskError::Retry), [`EXIT_FATAL`] for [`Fatal`](TaskError::Fatal).
    pub fn exit_code(&self) -> i32 {
        match self {
            TaskError::Retry(_) => 1,
            TaskError::Fatal(_) => EXIT_FATAL,
        }
    }
}

/// The message alone, as [`run`](crate::run) writes it.
impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for TaskError {}

/// An I/O error is retryable; its message is the error's own text.
impl From<std::io::Error> for TaskError {
    fn from(err: std::io::Error) -> TaskError {
        TaskError::Retry(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmjob_host_api::{Ending, Outcome, outcome};

    #[test]
    fn constructors_pick_the_variant() {
        assert_eq!(TaskError::retry("again"), TaskError::Retry("again".into()));
        assert_eq!(
            TaskError::fatal(String::from("never")),
            TaskError::Fatal("never".into())
        );
        assert!(TaskError::fatal("x").is_fatal());
        assert!(!TaskError::retry("x").is_fatal());
    }

    #[test]
    fn display_is_the_message() {
        assert_eq!(TaskError::retry("disk hiccup").to_string(), "disk hiccup");
        assert_eq!(TaskError::fatal("bad input").to_string(), "bad input");
        assert_eq!(TaskError::fatal("bad input").message(), "bad input");
        let boxed: Box<dyn std::error::Error> = Box::new(TaskError::retry("boxed"));
        assert_eq!(boxed.to_string(), "boxed");
    }

    #[test]
    fn io_errors_are_retryable() {
        fn read() -> Result<(), TaskError> {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "slow disk",
            ))?;
            Ok(())
        }
        assert_eq!(read(), Err(TaskError::Retry("slow disk".into())));
    }

    #[test]
    fn exit_codes_mean_what_the_contract_says() {
        let retry = outcome(&Ending::Exited(TaskError::retry("r").exit_code()));
        assert!(matches!(retry, Outcome::Error(_)), "{retry:?}");
        let fatal = outcome(&Ending::Exited(TaskError::fatal("f").exit_code()));
        assert!(matches!(fatal, Outcome::Fatal(_)), "{fatal:?}");
    }
}
