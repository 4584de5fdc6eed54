//! Wake-ups: how an idle worker learns that something may have become claimable, without
//! polling. A store counts its wake-ups in a watch channel ([`Wakeups`]); a worker takes a
//! [`WakeMark`] before it claims and, when the claim found nothing, waits for the count to move
//! past it. Work that appears between the claim and the wait has already moved the count, so no
//! wake-up is missed, and the wait takes nothing, so it can be dropped at any point.
//!
//! What raises a wake-up is each backend's (the embedded store raises them itself; the Redis
//! store forwards its pub/sub channel, in `redis::wake`); what a worker does once woken is the
//! worker's.

use super::JobId;
use std::time::Duration;
use tokio::sync::watch;

/// Where a store's wake-ups stood when it was taken, with
/// [`WorkerStore::wake_mark`](super::WorkerStore::wake_mark) before a claim. Handed to
/// [`WorkerStore::wait_for_work`](super::WorkerStore::wait_for_work) after a claim that found
/// nothing, it ends the wait at once if a wake-up came in between.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WakeMark {
    /// How many wake-ups the store had seen.
    seen: u64,
    /// The job the latest of them made claimable, when it named one.
    job: Option<JobId>,
}

impl WakeMark {
    /// The job the latest wake-up made claimable, when it named one: worth trying first (see
    /// [`WorkerStore::claim`](super::WorkerStore::claim)).
    pub fn job(&self) -> Option<JobId> {
        self.job
    }
}

/// A store's wake-ups, counted: cheap to raise, to read, and to wait on.
#[derive(Debug)]
pub(super) struct Wakeups(watch::Sender<WakeMark>);

impl Default for Wakeups {
    fn default() -> Self {
        Wakeups(watch::Sender::new(WakeMark::default()))
    }
}

impl Wakeups {
    /// Counts one wake-up: something may be claimable, in `job` when it is named.
    pub(super) fn wake(&self, job: Option<JobId>) {
        self.0.send_modify(|mark| {
            mark.seen = mark.seen.wrapping_add(1);
            mark.job = job;
        });
    }

    /// Where the wake-ups stand now.
    pub(super) fn mark(&self) -> WakeMark {
        *self.0.borrow()
    }

    /// Waits until a wake-up after `mark` (at once if one came already) and returns where the
    /// wake-ups stand then, or `None` once `timeout` has passed without one. Cancel-safe: it only
    /// reads the channel.
    pub(super) async fn wait_past(&self, mark: WakeMark, timeout: Duration) -> Option<WakeMark> {
        let mut wakes = self.0.subscribe();
        let woken = wakes.wait_for(|now| now.seen != mark.seen);
        match tokio::time::timeout(timeout, woken).await {
            Ok(Ok(now)) => Some(*now),
            // The sender lives as long as `self`: it cannot be closed while borrowed here.
            Ok(Err(_)) | Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_up_after_the_mark_ends_the_wait_at_once() {
        let wakeups = Wakeups::default();
        let mark = wakeups.mark();
        let job = JobId::generate();
        wakeups.wake(Some(job));
        let woken = wakeups.wait_past(mark, Duration::from_secs(30)).await;
        assert_eq!(woken.and_then(|w| w.job()), Some(job));
    }

    #[tokio::test]
    async fn without_a_wake_up_the_wait_times_out_and_a_dropped_wait_loses_nothing() {
        let wakeups = Wakeups::default();
        wakeups.wake(None);
        let mark = wakeups.mark();
        assert_eq!(
            wakeups.wait_past(mark, Duration::from_millis(10)).await,
            None
        );
        let dropped = tokio::time::timeout(
            Duration::from_millis(10),
            wakeups.wait_past(mark, Duration::from_secs(30)),
        )
        .await;
        assert!(dropped.is_err());
        wakeups.wake(None);
        assert!(
            wakeups
                .wait_past(mark, Duration::from_secs(30))
                .await
                .is_some()
        );
    }
}
