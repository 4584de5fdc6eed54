//! The Lua scripts, one per state change, each prefixed with the shared prelude.
//!
//! Every state change of a job is one script run atomically by Redis, with time from Redis's
//! own clock. The scripts live in `lua/`, each opening with the KEYS and ARGV it takes. The
//! per-job ones start with the indexes of the job's keys, generated here from
//! [`JOB_KEYS`](super::keys::JOB_KEYS), and the prelude; what the keys are named is `keys`'s
//! business, and what a script does is its own file's.

use super::keys::JOB_KEYS;
use redis::Script;
use std::sync::LazyLock;

const PRELUDE: &str = include_str!("lua/prelude.lua");

/// Interval sets kept in sorted sets (`lua/intervals.lua`), read after the prelude.
const INTERVALS: &str = include_str!("lua/intervals.lua");

/// A job's records, leases, attempts and sets (`lua/job.lua`), read after the interval sets.
const JOB: &str = include_str!("lua/job.lua");

/// The Lua lines that name the index in KEYS of each of a job's keys (`K_SPEC` for `spec`, ...)
/// and of the lease index after them (`K_LEASED`): the order the Rust side builds the keys in.
fn key_indexes() -> String {
    let names: Vec<String> = JOB_KEYS
        .iter()
        .map(|part| format!("K_{}", part.to_ascii_uppercase()))
        .collect();
    let indexes: Vec<String> = (1..=JOB_KEYS.len()).map(|i| i.to_string()).collect();
    format!(
        "-- Generated from keys::JOB_KEYS: where each of the job's keys is in KEYS.\n\
         local {} = {}\n\
         local K_LEASED = {}\n",
        names.join(", "),
        indexes.join(", "),
        JOB_KEYS.len() + 1
    )
}

/// A per-job script's whole text: the key indexes, the prelude, the interval sets, the job's
/// helpers, then `body`.
fn per_job(body: &str) -> String {
    format!("{}{PRELUDE}\n{INTERVALS}\n{JOB}\n{body}", key_indexes())
}

fn with_prelude(body: &str) -> Script {
    Script::new(&per_job(body))
}

/// The submit script, sent whole (`EVAL`) rather than by its hash: it is pipelined with the
/// job's enqueueing, and a pipeline cannot load a script the server has forgotten before the
/// commands after it run.
pub(super) static SUBMIT: LazyLock<String> =
    LazyLock::new(|| per_job(include_str!("lua/submit.lua")));

/// The loaded scripts.
pub(super) struct Scripts {
    pub(super) uploaded: Script,
    pub(super) claim: Script,
    pub(super) report: Script,
    pub(super) heartbeat: Script,
    pub(super) reap: Script,
    pub(super) status: Script,
    pub(super) ranges: Script,
    pub(super) info: Script,
    pub(super) delete: Script,
    pub(super) set_aside: Script,
    pub(super) hold_back: Script,
    pub(super) abandon: Script,
    pub(super) register: Script,
    pub(super) workers: Script,
    pub(super) due: Script,
    pub(super) blob_use: Script,
    pub(super) blob_release: Script,
    pub(super) blob_commit: Script,
}

/// Every script but the submit, built once.
pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    uploaded: with_prelude(include_str!("lua/uploaded.lua")),
    claim: with_prelude(include_str!("lua/claim.lua")),
    report: with_prelude(include_str!("lua/report.lua")),
    heartbeat: with_prelude(include_str!("lua/heartbeat.lua")),
    reap: with_prelude(include_str!("lua/reap.lua")),
    status: with_prelude(include_str!("lua/status.lua")),
    ranges: with_prelude(include_str!("lua/ranges.lua")),
    info: with_prelude(include_str!("lua/info.lua")),
    delete: with_prelude(include_str!("lua/delete.lua")),
    set_aside: with_prelude(include_str!("lua/set_aside.lua")),
    hold_back: with_prelude(include_str!("lua/hold_back.lua")),
    abandon: with_prelude(include_str!("lua/abandon.lua")),
    // The worker registry is not a job's: these two take their own key.
    register: Script::new(include_str!("lua/register.lua")),
    workers: Script::new(include_str!("lua/workers.lua")),
    // The lease index is no job's either.
    due: Script::new(include_str!("lua/due.lua")),
    // A blob's scripts take the blob's keys; they run pipelined, once per file of a job.
    blob_use: Script::new(include_str!("lua/blob_use.lua")),
    blob_release: Script::new(include_str!("lua/blob_release.lua")),
    blob_commit: Script::new(include_str!("lua/blob_commit.lua")),
});

#[cfg(test)]
mod tests;
