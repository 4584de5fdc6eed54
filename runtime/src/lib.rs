//! wasmjob: run batches of untrusted WebAssembly tasks, in one process or across many hosts.
//!
//! # Layout
//!
//! - What a job is: [`range`] (task values as interval sets), [`manifest`] (the files it reads,
//!   by sha256), [`spec`] (the job and its policy), [`limits`] (the limits of an attempt: a
//!   job's, and a worker's ceilings), [`units`].
//! - Where it waits: [`storage`], the queue's interface, with the embedded [`MemoryStore`] and
//!   the distributed [`RedisStore`].
//! - Where it runs: [`worker`] claims, prepares (into the [`cache`]), runs on the [`executor`]
//!   (the one seam where guest code runs) and reports.
//!
//! # How an attempt ends
//!
//! One attempt's end is named at four stages, each owned by one place:
//!
//! 1. **Ending** ([`Ending`](wasmjob_host_api::Ending), the executor): what happened to the
//!    guest: it exited with a code, trapped, ran out of time or memory, was cancelled.
//! 2. **Outcome** ([`Outcome`](wasmjob_host_api::Outcome), the guest contract): what that means
//!    for the task: success, error (retried) or fatal (never retried).
//! 3. **Verdict** ([`Verdict`](storage::Verdict), the worker): what the worker reports: the
//!    outcome with its result or reason, or the task handed back (`Requeue` after a stopped
//!    attempt, `Untried` when it never ran: no attempt counted). Nothing is reported when the
//!    lease was lost.
//! 4. **Ack** ([`Ack`](storage::Ack), the store): whether the report was applied, or refused
//!    because that attempt is no longer the current one or the job is gone.
//!
//! [`MemoryStore`]: storage::MemoryStore
//! [`RedisStore`]: storage::RedisStore
#![deny(missing_docs)]

pub mod cache;
pub mod executor;
pub mod limits;
pub mod manifest;
pub mod module_header;
pub mod range;
pub mod spec;
pub mod storage;
pub mod units;
pub mod worker;
