//! flaky: a task that fails on purpose, to show retries and fatal errors.
//!
//! Shows: [`TaskError::Retry`] (exit code 1: the task is tried again while the job has retries
//! left) against [`TaskError::Fatal`] (exit code `EXIT_FATAL`: never retried), and the attempt
//! number the host passes in. Two metadata entries steer it:
//!
//! * `fail_attempts` (default 2): attempts up to and including this number fail with
//!   `transient failure on attempt N`;
//! * `fatal_values` (comma-separated, default empty): these values end fatal on their first
//!   attempt.
//!
//! Any other attempt prints `value V succeeded on attempt N`.
//!
//! Build and run from the workspace root:
//!
//! ```text
//! cargo build --release --target wasm32-wasip1 -p flaky
//! wasmjob run target/wasm32-wasip1/release/flaky.wasm --range 1..=5 --meta fatal_values=4
//! ```
//!
//! With the default of 2 failing attempts a task succeeds on its third attempt, so give the job
//! at least two retries; value 4 fails for good at once.

use wasmjob_guest::{Task, TaskError};

fn main() {
    wasmjob_guest::run(|task| {
        let rules = Rules::from_task(task)?;
        rules.decide(task.value(), task.attempt())
    })
}

/// What the metadata asks of this job.
#[derive(Debug, PartialEq, Eq)]
struct Rules {
    /// Attempts up to and including this one fail with a retryable error.
    fail_attempts: u32,
    /// Values that fail fatally.
    fatal_values: Vec<u64>,
}

impl Rules {
    /// Reads the rules from the metadata; malformed metadata is fatal (retrying cannot fix it).
    fn from_task(task: &Task) -> Result<Rules, TaskError> {
        Rules::parse(task.meta("fail_attempts"), task.meta("fatal_values"))
    }

    fn parse(fail_attempts: Option<&str>, fatal_values: Option<&str>) -> Result<Rules, TaskError> {
        let fail_attempts = match fail_attempts {
            None => 2,
            Some(text) => text.trim().parse().map_err(|_| {
                TaskError::fatal(format!(
                    "metadata fail_attempts={text:?} is not a whole number"
                ))
            })?,
        };
        let fatal_values = fatal_values
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse().map_err(|_| {
                    TaskError::fatal(format!(
                        "metadata fatal_values: {item:?} is not a task value"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Rules {
            fail_attempts,
            fatal_values,
        })
    }

    /// The outcome for `value` on `attempt`: fatal values first, then the failing attempts.
    fn decide(&self, value: u64, attempt: u32) -> Result<String, TaskError> {
        if self.fatal_values.contains(&value) {
            Err(TaskError::fatal(format!(
                "value {value} is listed in fatal_values; it will never succeed"
            )))
        } else if attempt <= self.fail_attempts {
            Err(TaskError::retry(format!(
                "transient failure on attempt {attempt}"
            )))
        } else {
            Ok(format!("value {value} succeeded on attempt {attempt}\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fail_twice_then_succeed() {
        let rules = Rules::parse(None, None).unwrap();
        assert_eq!(
            rules,
            Rules {
                fail_attempts: 2,
                fatal_values: vec![]
            }
        );
        assert_eq!(
            rules.decide(5, 1),
            Err(TaskError::retry("transient failure on attempt 1"))
        );
        assert_eq!(
            rules.decide(5, 2),
            Err(TaskError::retry("transient failure on attempt 2"))
        );
        assert_eq!(
            rules.decide(5, 3),
            Ok("value 5 succeeded on attempt 3\n".into())
        );
    }

    #[test]
    fn fatal_values_end_at_once() {
        let rules = Rules::parse(Some("0"), Some(" 4, 9,,")).unwrap();
        assert_eq!(rules.fatal_values, [4, 9]);
        assert!(rules.decide(4, 1).unwrap_err().is_fatal());
        assert!(rules.decide(9, 7).unwrap_err().is_fatal());
        assert_eq!(
            rules.decide(5, 1),
            Ok("value 5 succeeded on attempt 1\n".into())
        );
    }

    #[test]
    fn malformed_metadata_is_fatal() {
        assert!(Rules::parse(Some("two"), None).unwrap_err().is_fatal());
        assert!(Rules::parse(Some("-1"), None).unwrap_err().is_fatal());
        assert!(Rules::parse(None, Some("1,x")).unwrap_err().is_fatal());
    }
}
