//! The ids of the queue: a job's ([`JobId`]), an attempt's ([`TaskId`]) and a worker
//! process's ([`WorkerId`]), and the storage's clock ([`Millis`]).
//!
//! Job and task ids are ULIDs, made in order within this process so that ids sort by time. What
//! the ids name (jobs, leases, registered workers) is in the other files of `storage`.

use super::StorageError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};
use ulid::Ulid;

/// A job's id: a ULID, so ids sort by submission time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub Ulid);

/// The id of one attempt of a task: a ULID, fresh per attempt, the lease's fencing token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub Ulid);

macro_rules! ulid_id {
    ($id:ident, $what:literal) => {
        impl $id {
            /// A new id, unique and later than every id made before it in this process.
            pub fn generate() -> Self {
                $id(monotonic_ulid())
            }
        }

        impl fmt::Display for $id {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $id {
            type Err = StorageError;

            fn from_str(s: &str) -> Result<Self, StorageError> {
                Ulid::from_string(s.trim())
                    .map($id)
                    .map_err(|_| StorageError::InvalidId {
                        what: $what,
                        input: s.to_owned(),
                    })
            }
        }
    };
}

/// A ULID later than every one made before it in this process, even within one millisecond,
/// so that jobs submitted in a burst keep their order.
fn monotonic_ulid() -> Ulid {
    static GENERATOR: std::sync::Mutex<Option<ulid::Generator>> = std::sync::Mutex::new(None);
    let mut generator = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    generator
        .get_or_insert_with(ulid::Generator::new)
        .generate()
        .unwrap_or_else(|_| Ulid::new())
}

ulid_id!(JobId, "job id");
ulid_id!(TaskId, "task id");

/// Milliseconds since the Unix epoch, on the storage's clock.
pub type Millis = u64;

/// Now, in [`Millis`], from this host's clock.
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// Who runs a task: the worker process, as reported in task info.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkerId {
    /// The application name the worker was started with (`--app`).
    pub app: String,
    /// The worker host's name.
    pub hostname: String,
    /// Unique per worker process, so a restarted worker is a new worker.
    pub instance: Ulid,
}
