//! [`StorageError`]: every way a storage operation can fail, and whether retrying can help.
//!
//! The variants say what went wrong in terms a caller can act on (an unknown job, a server that
//! wants a password, a configuration no retry can fix); building them from a backend's own
//! errors is each backend's business (the Redis one classifies its replies in
//! `redis::connection`).

use super::JobId;
use crate::limits::OverCeilings;
use crate::manifest::{ContentMismatch, Digest, ManifestPath};
use crate::spec::SpecError;

/// The cause of a failure as the backend's own library gave it, kept for the error chain.
type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A storage failure, typed so that callers can tell a wrong request from a passing fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// No job has this id (it never existed or was deleted).
    #[error("unknown job {0}")]
    UnknownJob(JobId),
    /// The value is not in the job's range.
    #[error("value {value} is not in the range of job {job}")]
    UnknownValue {
        /// The job.
        job: JobId,
        /// The value.
        value: u64,
    },
    /// The uploaded path is not a file of the job's manifest.
    #[error("{path} is not a file of the manifest of job {job}")]
    NotInManifest {
        /// The job.
        job: JobId,
        /// The path uploaded.
        path: ManifestPath,
    },
    /// The bytes are not the content the manifest names.
    #[error("{path}: the upload does not match the manifest: {mismatch}")]
    HashMismatch {
        /// The path.
        path: ManifestPath,
        /// What was expected and what came.
        mismatch: ContentMismatch,
    },
    /// No blob with this digest is stored.
    #[error("no stored file has sha256 {0}")]
    UnknownBlob(Digest),
    // These two show their cause in their own text, so they do not give it as their
    // `source` too: a caller printing the error chain (`{:#}`) would print it twice.
    /// The job spec is invalid.
    #[error("invalid job: {0}")]
    InvalidSpec(SpecError),
    /// The job asks for more than any live worker allows; it was not accepted.
    #[error("no worker would run this job: {0}")]
    OverCeilings(OverCeilings),
    /// An id could not be parsed.
    #[error("invalid {what} {input:?}: expected a ULID such as 01JD3Q4G7TZ9N8V2K5X6Y1R0AB")]
    InvalidId {
        /// Which kind of id.
        what: &'static str,
        /// What was given.
        input: String,
    },
    /// The backend cannot be reached (refused, timed out, the connection dropped): the request
    /// may succeed when retried.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The backend's address.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The backend is set up in a way that can lose accepted work; the reason says how to fix
    /// it.
    #[error("refusing to use {url}: {reason}")]
    UnsafeConfig {
        /// The backend's address.
        url: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The backend no longer holds the queue this store connected to: it restarted without its
    /// data, or was flushed. Jobs and results stored before are gone.
    #[error(
        "{url} lost its data (it restarted without persistence, or was flushed): jobs and results \
         stored before are gone; see the README's Durability section"
    )]
    DataLost {
        /// The backend's address.
        url: String,
    },
    /// The job's spec or state in the backend cannot be read (written there by something other
    /// than wasmjob, or damaged): the job was set aside and runs no more.
    #[error("job {job} is set aside: {reason}")]
    SetAside {
        /// The job.
        job: JobId,
        /// What cannot be read.
        reason: String,
    },
    /// The server wants a password and none was given (Redis's `NOAUTH`).
    #[error(
        "{url} requires a password: give it in the URL, as redis://:PASSWORD@HOST:PORT (or \
         redis://USER:PASSWORD@HOST:PORT for an ACL user)"
    )]
    AuthRequired {
        /// The backend's address, without any password.
        url: String,
    },
    /// The server refused the user or password given (Redis's `WRONGPASS`).
    #[error("{url} refused the user or password given in the URL ({reason})")]
    AuthFailed {
        /// The backend's address, without any password.
        url: String,
        /// What the server said.
        reason: String,
    },
    /// Something answers at the address, but not in the Redis protocol.
    #[error("{url} does not speak the Redis protocol: is it the address of a Redis server?")]
    NotRedis {
        /// The backend's address.
        url: String,
    },
    /// The server is at its memory limit and refuses writes (Redis's `OOM`).
    #[error(
        "{url} refused a write because it is at its maxmemory (OOM): raise its maxmemory, or \
         free memory by deleting jobs that are done"
    )]
    OutOfMemory {
        /// The backend's address.
        url: String,
    },
    /// The store is configured in a way no retry can put right: a URL that does not parse, a
    /// key prefix it cannot use.
    #[error("{reason}")]
    Config {
        /// What is wrong, and with what value.
        reason: String,
        /// The error of the backend's library, when it found the fault.
        #[source]
        source: Option<Cause>,
    },
    /// The backend answered, or holds, data of a shape wasmjob never writes (a reply of the
    /// wrong form, a stored record that does not parse): reading it again gives the same.
    #[error("unexpected data in the store: {what}")]
    Corrupt {
        /// What could not be read.
        what: String,
        /// Why it could not, when a parser said.
        #[source]
        source: Option<Cause>,
    },
    /// The backend failed the request for a reason of its own (an error in a script, a server
    /// still loading its data or read-only): the request may succeed when retried.
    #[error("{url} failed a request")]
    Backend {
        /// The backend's address.
        url: String,
        /// What the backend said.
        #[source]
        source: Cause,
    },
}

/// An error's text followed by each of its causes, `: `-separated: one line for a log or a note
/// that only has the text (`{e}` shows an error without its causes).
pub fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

impl From<SpecError> for StorageError {
    fn from(e: SpecError) -> Self {
        StorageError::InvalidSpec(e)
    }
}

impl From<OverCeilings> for StorageError {
    fn from(e: OverCeilings) -> Self {
        StorageError::OverCeilings(e)
    }
}

impl StorageError {
    /// A [`Corrupt`](Self::Corrupt) error with no parser's error behind it.
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        StorageError::Corrupt {
            what: what.into(),
            source: None,
        }
    }

    /// A [`Corrupt`](Self::Corrupt) error caused by `source`.
    pub(crate) fn corrupt_because(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StorageError::Corrupt {
            what: what.into(),
            source: Some(Box::new(source)),
        }
    }

    /// Whether the same request may succeed if retried later (a passing backend fault), as
    /// opposed to a request that is wrong in itself, or a store configured or holding data in a
    /// way that no retry changes.
    pub fn is_retryable(&self) -> bool {
        // A server out of memory, or answering with a password or protocol it did not have,
        // can be put right by its operator while a worker waits: these pass like an outage.
        // A bad URL or prefix, or data wasmjob cannot read, stays as it is: a caller retrying
        // on those would loop forever.
        matches!(
            self,
            StorageError::Backend { .. }
                | StorageError::Unreachable { .. }
                | StorageError::AuthRequired { .. }
                | StorageError::AuthFailed { .. }
                | StorageError::NotRedis { .. }
                | StorageError::OutOfMemory { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{StorageError, with_causes};
    use std::error::Error;

    #[test]
    fn configuration_and_corrupt_data_are_not_retried() {
        let config = StorageError::Config {
            reason: "invalid key prefix \"\"".into(),
            source: None,
        };
        assert!(!config.is_retryable());
        assert!(!StorageError::corrupt("a lease").is_retryable());
        let json = serde_json::from_str::<u32>("x").unwrap_err();
        assert!(!StorageError::corrupt_because("a worker record", json).is_retryable());
    }

    #[test]
    fn a_failure_of_the_backend_is_retried() {
        let backend = StorageError::Backend {
            url: "redis://127.0.0.1:6379".into(),
            source: "BUSY a script is running".into(),
        };
        assert!(backend.is_retryable());
    }

    #[test]
    fn a_cause_is_given_once_as_the_source_not_in_the_text() {
        let json = serde_json::from_str::<u32>("x").unwrap_err();
        let cause = json.to_string();
        let e = StorageError::corrupt_because("a worker record", json);
        assert_eq!(
            e.to_string(),
            "unexpected data in the store: a worker record"
        );
        assert_eq!(e.source().map(|s| s.to_string()), Some(cause));
    }

    #[test]
    fn with_causes_shows_every_cause_of_a_backend_failure() {
        let backend = StorageError::Backend {
            url: "redis://127.0.0.1:6379".into(),
            source: "ERR script failed".into(),
        };
        assert_eq!(
            with_causes(&backend),
            "redis://127.0.0.1:6379 failed a request: ERR script failed"
        );
        assert_eq!(
            with_causes(&StorageError::corrupt("a lease")),
            "unexpected data in the store: a lease"
        );
    }
}
