//! Claiming: up to N tasks of the first queued job that has tasks to give and fits the worker's
//! ceilings, in one script call; the job a wake-up named is tried first. A claim never waits:
//! waiting for work is `wake`'s. A job the claim finds it cannot run (an unreadable spec, values
//! outside its range) is set aside for good.
//!
//! What a lease is and how it ends is `report`'s; the wake-ups are `wake`'s; the ceilings a
//! worker registered are the registry's.

use super::scripts::SCRIPTS;
use super::wire::{self, ClaimReply};
use super::{RedisStore, report};
use crate::limits::Limits;
use crate::storage::{Claim, JobId, Report, StorageError, Verdict, WorkerId};

/// How many queued jobs one claim looks at before it gives up.
const CLAIM_CANDIDATES: isize = 32;

/// How many low bits of a claim's task-id base count its leases.
const CLAIM_ID_BITS: u32 = 15;

/// The most leases one claim gives: one per task id its base leaves room for.
const MAX_CLAIM: usize = 1 << CLAIM_ID_BITS;

/// The base of one claim's task ids: a fresh ULID whose low [`CLAIM_ID_BITS`] (its last three
/// characters) are zero. The claim script numbers its leases in them, so that a claim of
/// hundreds sends one id, not hundreds. The other 65 random bits keep bases apart, within a
/// millisecond too.
fn claim_task_ids() -> ulid::Ulid {
    ulid::Ulid(ulid::Ulid::new().0 & !((1u128 << CLAIM_ID_BITS) - 1))
}

/// Claims up to `max` tasks for `worker`, passing over the jobs in `avoid` and trying `hint`
/// first; never waits.
pub(super) async fn claim(
    store: &RedisStore,
    worker: &WorkerId,
    max: usize,
    avoid: &[JobId],
    hint: Option<JobId>,
) -> Result<Option<Claim>, StorageError> {
    if max == 0 {
        return Ok(None);
    }
    let ceilings = store.registry.ceilings_of(worker);
    let worker = wire::to_json("a worker", worker)?;
    try_claim(store, &worker, ceilings, max, hint, avoid).await
}

/// Tries the queued jobs in order and claims from the first that has tasks to give and fits
/// the worker's ceilings. A wake-up that named the job just made claimable (`hint`) has it
/// tried first, which spares the look at the queue.
async fn try_claim(
    store: &RedisStore,
    worker: &str,
    ceilings: Option<Limits>,
    max: usize,
    hint: Option<JobId>,
    avoid: &[JobId],
) -> Result<Option<Claim>, StorageError> {
    let hint = hint.filter(|job| !avoid.contains(job));
    let ceiling_limits = ceilings.map_or_else(String::new, |c| c.to_counts());
    // One job whose claim fails for reasons of its own must not keep the worker from the
    // jobs behind it: its error is kept, and given only if no job had anything to give.
    let mut failed = None;
    let mut claim =
        async |job| match claim_from(store, job, worker, ceilings, &ceiling_limits, max).await {
            Ok(claimed) => Ok(claimed),
            Err(e @ StorageError::Unreachable { .. }) => Err(e),
            Err(e) => {
                // As a field, so that the log shows the error's sources too.
                let error: &(dyn std::error::Error + 'static) = &e;
                tracing::warn!(%job, error, "cannot claim from this job, trying the next");
                failed.get_or_insert(e);
                Ok(None)
            }
        };
    if let Some(job) = hint
        && let Some(claimed) = claim(job).await?
    {
        return Ok(Some(claimed));
    }
    let candidates: Vec<String> = store
        .query(
            redis::cmd("ZRANGE")
                .arg(store.keys.queue())
                .arg(0)
                .arg(CLAIM_CANDIDATES - 1),
        )
        .await?;
    for candidate in candidates {
        let Some(job) = store.job_of_entry(store.keys.queue(), &candidate).await? else {
            continue;
        };
        // The hinted job was just tried: it has nothing to give this worker now.
        if hint == Some(job) || avoid.contains(&job) {
            continue;
        }
        if let Some(claimed) = claim(job).await? {
            return Ok(Some(claimed));
        }
    }
    failed.map_or(Ok(None), Err)
}

/// Claims up to `max` tasks of one job, if it has tasks to give and fits the ceilings.
async fn claim_from(
    store: &RedisStore,
    job: JobId,
    worker: &str,
    ceilings: Option<Limits>,
    ceiling_limits: &str,
    max: usize,
) -> Result<Option<Claim>, StorageError> {
    // A spec in hand is checked here. Otherwise the script compares the job's stored
    // limits with the ceilings and hands the spec back with the leases: a job new to
    // this worker costs one round trip, not two.
    let cached = store.specs.get(job);
    if let (Some(ceilings), Some(spec)) = (ceilings, &cached)
        && spec.limits.within(&ceilings).is_err()
    {
        return Ok(None);
    }
    let ttl = store.lease_ttl.as_millis().to_string();
    let want_spec = if cached.is_none() { "1" } else { "0" };
    let wanted = max.min(MAX_CLAIM).to_string();
    let task_ids = claim_task_ids().to_string();
    let id = job.to_string();
    let args: [&[u8]; 7] = [
        ttl.as_bytes(),
        worker.as_bytes(),
        ceiling_limits.as_bytes(),
        want_spec.as_bytes(),
        task_ids.as_bytes(),
        wanted.as_bytes(),
        id.as_bytes(),
    ];
    let reply: Vec<String> = store
        .run_on(&SCRIPTS.claim, store.keys.leasing(job), &args)
        .await?;
    let (json, leases) = match wire::claim_reply(job, &reply)? {
        ClaimReply::Leases { spec, leases } => (spec, leases),
        ClaimReply::Finished => {
            store.dequeue(job).await?;
            return Ok(None);
        }
        ClaimReply::Unreadable(reason) => {
            tracing::warn!(%job, reason, "set aside a job that cannot be read");
            store.specs.forget(job);
            store.dequeue(job).await?;
            return Ok(None);
        }
        ClaimReply::Nothing => return Ok(None),
    };
    let spec = match cached.map_or_else(|| store.remember_spec(job, json), Ok) {
        Ok(spec) => spec,
        Err(StorageError::SetAside { reason, .. }) => {
            set_aside(store, job, &reason).await?;
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if let Some(stray) = leases.iter().find(|l| !spec.range.contains(l.value)) {
        let reason = format!("its pending set holds {}, outside its range", stray.value);
        set_aside(store, job, &reason).await?;
        return Ok(None);
    }
    // The script's check and this one agree for every job that stored its limits; a job
    // that did not (submitted by an older wasmjob) is caught here and handed back untouched.
    if let Some(ceilings) = ceilings
        && spec.limits.within(&ceilings).is_err()
    {
        let handed_back: Vec<Report> = leases
            .into_iter()
            .map(|lease| Report {
                lease,
                verdict: Verdict::Untried,
                log: Vec::new(),
            })
            .collect();
        report::report(store, &handed_back).await?;
        return Ok(None);
    }
    Ok(Some(Claim { spec, job, leases }))
}

/// Sets a job aside for good (see `lua/set_aside.lua`) and takes it off the queue.
async fn set_aside(store: &RedisStore, job: JobId, reason: &str) -> Result<(), StorageError> {
    tracing::warn!(%job, reason, "set aside a job that cannot be run");
    store.specs.forget(job);
    store
        .run::<i64>(&SCRIPTS.set_aside, job, &[reason.as_bytes()])
        .await?;
    store.dequeue(job).await
}
