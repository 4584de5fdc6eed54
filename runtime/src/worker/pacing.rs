//! Claim pacing: how many leases a worker takes ahead of its slots, and how long it waits
//! between tries against a store that is away.
//!
//! Short tasks are claimed hundreds at a time (about [`PREFETCH_WORK`] of work per slot at the
//! recent attempts' pace), long ones one per free slot. The claim itself is the claim loop's
//! (`mod.rs`); this room only keeps the pace and the back-off.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How much work, at the recent attempts' pace, a worker claims per slot ahead of running it.
const PREFETCH_WORK: Duration = Duration::from_millis(20);

/// The most leases per slot a worker holds at once.
const MAX_PREFETCH: usize = 256;

/// The recent attempts' pace, shared by every task of a worker.
#[derive(Debug, Default)]
pub(super) struct Pace {
    /// The recent attempts' average duration in microseconds (0 before the first).
    recent_attempt_micros: AtomicU64,
}

impl Pace {
    /// How many leases per slot to hold: enough for about [`PREFETCH_WORK`] of work at the
    /// recent attempts' pace, one for slow tasks, at most [`MAX_PREFETCH`].
    pub(super) fn prefetch(&self) -> usize {
        let average = self.recent_attempt_micros.load(Ordering::Relaxed);
        if average == 0 {
            return 1;
        }
        (PREFETCH_WORK.as_micros() as u64 / average).clamp(1, MAX_PREFETCH as u64) as usize
    }

    /// Folds an attempt's duration into the recent average (a moving average weighting the
    /// newest by 1/8).
    pub(super) fn record(&self, duration: Duration) {
        let micros = (duration.as_micros() as u64).max(1);
        let _ =
            self.recent_attempt_micros
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                    Some(if old == 0 {
                        micros
                    } else {
                        (old * 7 + micros) / 8
                    })
                });
    }
}

/// Waits between retries against a store that is away: 250 ms, doubling up to 5 s.
#[derive(Debug)]
pub(super) struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Duration::from_millis(250),
        }
    }
}

impl Backoff {
    /// Waits the current step and doubles the next.
    pub(super) async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Duration::from_secs(5));
    }

    /// Starts again from the first step, after the store answered.
    pub(super) fn reset(&mut self) {
        *self = Backoff::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_tasks_are_claimed_many_per_slot_and_long_ones_one() {
        let pace = Pace::default();
        assert_eq!(
            pace.prefetch(),
            1,
            "nothing is known before the first attempt"
        );
        pace.record(Duration::from_micros(100));
        assert_eq!(pace.prefetch(), 200);
        let slow = Pace::default();
        slow.record(Duration::from_secs(2));
        assert_eq!(slow.prefetch(), 1);
        let instant = Pace::default();
        instant.record(Duration::ZERO);
        assert_eq!(instant.prefetch(), MAX_PREFETCH);
    }

    #[test]
    fn the_pace_follows_the_recent_attempts() {
        let pace = Pace::default();
        pace.record(Duration::from_millis(10));
        for _ in 0..40 {
            pace.record(Duration::from_micros(100));
        }
        assert!(pace.prefetch() > 100, "{}", pace.prefetch());
    }
}
