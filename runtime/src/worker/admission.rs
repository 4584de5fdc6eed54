//! Admission: which leases in hand may take a slot and run now.
//!
//! A worker's slots are a semaphore. A lease whose value is on its last chance (one more loss
//! quarantines it) runs alone: it takes every slot, nothing more is claimed while it is in
//! hand, and the other leases waiting for a slot give way (back untried), so that if it kills
//! this process no other task is lost with it. At shutdown, leases still waiting go back at
//! once. This room also counts the leases in hand, which the reporter watches to size its
//! batches. What runs once admitted is the attempt's (`attempt.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{Semaphore, SemaphorePermit, watch};

/// The slots, the leases in hand, and what decides whether one waiting may run.
#[derive(Debug)]
pub(super) struct Admission {
    slots: Semaphore,
    slot_count: usize,
    /// Watched by every lease waiting for a slot.
    gate: watch::Sender<Gate>,
    /// Leases claimed whose reports are not yet queued.
    in_hand: AtomicUsize,
}

/// What a lease waiting for a slot watches.
#[derive(Debug, Clone, Copy, Default)]
struct Gate {
    /// Shutdown has begun: leases waiting for a slot are handed back at once.
    draining: bool,
    /// How many leases in hand are to run alone.
    alone: usize,
}

impl Gate {
    /// Whether a lease (`alone` when it says so) may take its slots.
    fn admits(&self, alone: bool) -> bool {
        !self.draining && (alone || self.alone == 0)
    }
}

impl Admission {
    /// Admission to `slots` slots (at least one).
    pub(super) fn new(slots: usize) -> Self {
        let slot_count = slots.max(1);
        Admission {
            slots: Semaphore::new(slot_count),
            slot_count,
            gate: watch::Sender::default(),
            in_hand: AtomicUsize::new(0),
        }
    }

    /// How many slots there are.
    pub(super) fn slots(&self) -> usize {
        self.slot_count
    }

    /// Counts a lease just claimed, to run alone when `alone`, until the returned guard drops.
    /// Counted before the next look at the queue, which a lease to run alone stops.
    pub(super) fn claimed(self: &Arc<Self>, alone: bool) -> Claimed {
        if alone {
            self.gate.send_modify(|gate| gate.alone += 1);
        }
        Claimed {
            admission: Arc::clone(self),
            alone,
        }
    }

    /// Whether a lease to run alone is in hand: then nothing more is claimed.
    pub(super) fn holds_one_alone(&self) -> bool {
        self.gate.borrow().alone > 0
    }

    /// Waits for the lease's slots (every slot for one to run alone); `None` when it is turned
    /// away instead: shutdown began, or another lease must run alone.
    pub(super) async fn admit(&self, lease: &Claimed) -> Option<SemaphorePermit<'_>> {
        let alone = lease.alone;
        let permits = if alone { self.slot_count } else { 1 };
        let mut gate = self.gate.subscribe();
        let turned_away = |gate: &Gate| !gate.admits(alone);
        let permit = tokio::select! {
            permit = self.slots.acquire_many(permits as u32) => {
                permit.expect("the semaphore is never closed")
            }
            _ = gate.wait_for(turned_away) => return None,
        };
        // The slots may have come in the same instant as a reason to give way.
        (!turned_away(&gate.borrow())).then_some(permit)
    }

    /// Shutdown has begun: every lease waiting for a slot goes back.
    pub(super) fn drain(&self) {
        self.gate.send_modify(|gate| gate.draining = true);
    }

    /// Counts a lease in hand from its task's start until the guard drops (when its report is
    /// queued).
    pub(super) fn in_hand(self: &Arc<Self>) -> InHand {
        self.in_hand.fetch_add(1, Ordering::SeqCst);
        InHand(Arc::clone(self))
    }

    /// How many leases are in hand: their reports are still to come.
    pub(super) fn leases_in_hand(&self) -> usize {
        self.in_hand.load(Ordering::SeqCst)
    }
}

/// A lease claimed and not yet done with (see [`Admission::claimed`]).
#[derive(Debug)]
pub(super) struct Claimed {
    admission: Arc<Admission>,
    alone: bool,
}

impl Drop for Claimed {
    fn drop(&mut self) {
        if self.alone {
            self.admission.gate.send_modify(|gate| gate.alone -= 1);
        }
    }
}

/// One lease counted in hand (see [`Admission::in_hand`]).
#[derive(Debug)]
pub(super) struct InHand(Arc<Admission>);

impl Drop for InHand {
    fn drop(&mut self) {
        self.0.in_hand.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lease_to_run_alone_turns_the_others_away_and_takes_every_slot() {
        let admission = Arc::new(Admission::new(2));
        let other = admission.claimed(false);
        assert!(!admission.holds_one_alone());
        let alone = admission.claimed(true);
        assert!(admission.holds_one_alone());
        assert!(
            admission.admit(&other).await.is_none(),
            "the other gives way"
        );
        let permit = admission.admit(&alone).await.expect("it runs");
        assert_eq!(
            admission.slots.available_permits(),
            0,
            "every slot is its own"
        );
        drop((permit, alone));
        assert!(!admission.holds_one_alone());
        assert!(admission.admit(&other).await.is_some());
    }

    #[tokio::test]
    async fn nothing_waiting_is_admitted_once_draining() {
        let admission = Arc::new(Admission::new(1));
        let running = admission.claimed(false);
        let waiting = admission.claimed(false);
        let permit = admission.admit(&running).await.unwrap();
        let wait = admission.admit(&waiting);
        admission.drain();
        assert!(wait.await.is_none());
        drop(permit);
        assert!(admission.admit(&waiting).await.is_none());
    }

    #[test]
    fn leases_in_hand_are_counted_while_their_guards_live() {
        let admission = Arc::new(Admission::new(1));
        let a = admission.in_hand();
        let b = admission.in_hand();
        assert_eq!(admission.leases_in_hand(), 2);
        drop(a);
        assert_eq!(admission.leases_in_hand(), 1);
        drop(b);
        assert_eq!(admission.leases_in_hand(), 0);
    }
}
