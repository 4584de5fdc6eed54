//! Every Redis key and channel wasmjob uses, built in one place.
//!
//! All keys start with one configurable prefix. The keys of one job share the hash tag
//! `{<job id>}` and a blob's keys the tag `{<sha256>}`, so every script touches one cluster
//! slot. The two job indexes are plain keys of their own.

use crate::manifest::Digest;
use crate::storage::JobId;

/// The key names under one prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// ZSET of every job, scored by minus its priority: highest priority first, then by id
    /// (oldest first).
    pub(super) fn jobs(&self) -> String {
        format!("{}:jobs", self.prefix)
    }

    /// ZSET of the jobs that may have tasks to claim (all files uploaded, not finished), scored
    /// as [`jobs`](Self::jobs).
    pub(super) fn queue(&self) -> String {
        format!("{}:queue", self.prefix)
    }

    /// HASH of registered workers: instance id -> "<seen ms> <JSON: worker, ceilings>".
    pub(super) fn workers(&self) -> String {
        format!("{}:workers", self.prefix)
    }

    /// A marker set once per server lifetime: if it changes or disappears, the server lost its
    /// data.
    pub(super) fn instance(&self) -> String {
        format!("{}:instance", self.prefix)
    }

    /// The pub/sub channel on which idle workers wait for work.
    pub(super) fn wake(&self) -> String {
        format!("{}:wake", self.prefix)
    }

    /// A stored manifest file, by content.
    pub(super) fn blob(&self, digest: &Digest) -> String {
        format!("{}:blob:{{{digest}}}", self.prefix)
    }

    /// ZSET of the jobs that may hold leases, each scored at or before its earliest lease
    /// deadline (ms): the reaper looks only at those that are due, however many jobs wait.
    pub(super) fn leased(&self) -> String {
        format!("{}:leased", self.prefix)
    }

    /// ZSET of the jobs still missing files, scored by their upload deadline (ms).
    pub(super) fn uploading(&self) -> String {
        format!("{}:uploading", self.prefix)
    }

    /// HASH of the queue's running counts (`abandoned_uploads`: jobs removed because their
    /// files never all arrived).
    pub(super) fn stats(&self) -> String {
        format!("{}:stats", self.prefix)
    }

    /// HASH of the chunks of a blob uploaded for one job, renamed to the blob once whole.
    pub(super) fn blob_upload(&self, digest: &Digest, job: JobId) -> String {
        format!("{}:blob:{{{digest}}}:upload:{job}", self.prefix)
    }

    /// SET of the jobs that use a blob: the bytes are removed with the last of them.
    pub(super) fn blob_users(&self, digest: &Digest) -> String {
        format!("{}:blob:{{{digest}}}:users", self.prefix)
    }

    /// The keys of one job, in the order every per-job script expects (see `lua/prelude.lua`).
    pub(super) fn job(&self, job: JobId) -> Vec<String> {
        [
            "spec",
            "state",
            "missing",
            "active",
            "deadlines",
            "tasks",
            "results",
            "logs",
            "progress",
            "errors",
            "workers",
        ]
        .iter()
        .map(|part| format!("{}:job:{{{job}}}:{part}", self.prefix))
        .collect()
    }

    /// The job's spec key, the first of [`job`](Self::job).
    pub(super) fn spec(&self, job: JobId) -> String {
        format!("{}:job:{{{job}}}:spec", self.prefix)
    }
}
