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
    /// The keys under `prefix`.
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

    /// The keys of one job, in the order of [`JOB_KEYS`]: what every per-job script takes.
    pub(super) fn job(&self, job: JobId) -> Vec<String> {
        JOB_KEYS
            .iter()
            .map(|part| self.job_key(job, part))
            .collect()
    }

    /// A job's keys and then the lease index: what the scripts that take, end or reap leases
    /// take (the index is their `K_LEASED`).
    pub(super) fn leasing(&self, job: JobId) -> Vec<String> {
        let mut keys = self.job(job);
        keys.push(self.leased());
        keys
    }

    /// The job's spec key, one of [`job`](Self::job).
    pub(super) fn spec(&self, job: JobId) -> String {
        self.job_key(job, "spec")
    }

    fn job_key(&self, job: JobId, part: &str) -> String {
        format!("{}:job:{{{job}}}:{part}", self.prefix)
    }
}

/// The parts of a job's keys, in the order every per-job script receives them. This list is the
/// one place that order is written: the scripts' `K_SPEC`, `K_STATE`, ... (and `K_LEASED`, the
/// key after them) are generated from it (see `scripts`).
pub(super) const JOB_KEYS: [&str; 16] = [
    "spec",
    "state",
    "pending",
    "succeeded",
    "failed",
    "quarantined",
    "missing",
    "active",
    "deadlines",
    "tasks",
    "runs",
    "results",
    "logs",
    "progress",
    "errors",
    "workers",
];

#[cfg(test)]
mod tests {
    use super::{JOB_KEYS, Keys};
    use crate::storage::JobId;

    #[test]
    fn a_job_s_keys_share_its_hash_tag_and_end_with_the_lease_index() {
        let keys = Keys::new("q");
        let job = JobId::generate();
        let leasing = keys.leasing(job);
        assert_eq!(leasing.len(), JOB_KEYS.len() + 1);
        for key in &leasing[..JOB_KEYS.len()] {
            assert!(key.starts_with(&format!("q:job:{{{job}}}:")), "{key}");
        }
        assert_eq!(leasing[0], keys.spec(job));
        assert_eq!(leasing[JOB_KEYS.len()], keys.leased());
    }
}
