//! The Lua scripts, one per state change, each prefixed with the shared prelude.
//!
//! Every state change of a job is one script run atomically by Redis, with time from Redis's
//! own clock. The scripts live in `lua/`, each opening with the KEYS and ARGV it takes.

use redis::Script;
use std::sync::LazyLock;

const PRELUDE: &str = include_str!("lua/prelude.lua");

fn with_prelude(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

/// The submit script, sent whole (`EVAL`) rather than by its hash: it is pipelined with the
/// job's enqueueing, and a pipeline cannot load a script the server has forgotten before the
/// commands after it run.
pub(super) static SUBMIT: LazyLock<String> =
    LazyLock::new(|| format!("{PRELUDE}\n{}", include_str!("lua/submit.lua")));

/// The loaded scripts.
pub(super) struct Scripts {
    pub(super) uploaded: Script,
    pub(super) claim: Script,
    pub(super) report: Script,
    pub(super) heartbeat: Script,
    pub(super) reap: Script,
    pub(super) status: Script,
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

pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    uploaded: with_prelude(include_str!("lua/uploaded.lua")),
    claim: with_prelude(include_str!("lua/claim.lua")),
    report: with_prelude(include_str!("lua/report.lua")),
    heartbeat: with_prelude(include_str!("lua/heartbeat.lua")),
    reap: with_prelude(include_str!("lua/reap.lua")),
    status: with_prelude(include_str!("lua/status.lua")),
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
