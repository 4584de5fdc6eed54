//! The wake-ups idle workers wait on: one pub/sub subscription per store, started by its first
//! wake mark (or wait), counted in the store's [`Wakeups`] that every wait reads, and
//! resubscribed after a lost connection.
//!
//! Publishing is left to whatever makes work appear (the queue's enqueue, the scripts that end
//! or return leases, a worker registering); the mark and the wait are the storage interface's
//! (`storage::wake`); what a claim does once woken is `claim`'s.

use super::RedisStore;
use crate::storage::wake::Wakeups;
use crate::storage::{StorageError, WakeMark};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// Counts the wake channel's messages for the store's waits: every message is a wake-up, naming
/// the job it made claimable when it was one.
pub(super) struct WakeListener {
    wakes: Arc<Wakeups>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WakeListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where the store's wake-ups stand now. The first call subscribes to the wake channel and keeps
/// a task listening, resubscribing after a lost connection; later ones cost no round trip.
pub(super) async fn mark(store: &RedisStore) -> Result<WakeMark, StorageError> {
    Ok(listener(store).await?.wakes.mark())
}

/// Waits for a wake-up after `mark`, up to `timeout` (see `WorkerStore::wait_for_work`).
/// Cancel-safe: once subscribed, it only reads the count.
pub(super) async fn wait(
    store: &RedisStore,
    mark: WakeMark,
    timeout: Duration,
) -> Result<Option<WakeMark>, StorageError> {
    Ok(listener(store).await?.wakes.wait_past(mark, timeout).await)
}

/// The store's listener, subscribed at the first call. A call dropped while it subscribes
/// leaves nothing behind: the next one subscribes afresh.
async fn listener(store: &RedisStore) -> Result<&WakeListener, StorageError> {
    store
        .wake
        .get_or_try_init(|| async {
            let channel = store.keys.wake();
            let mut pubsub = store
                .client
                .get_async_pubsub()
                .await
                .map_err(|e| store.error(e))?;
            pubsub
                .subscribe(&channel)
                .await
                .map_err(|e| store.error(e))?;
            let wakes = Arc::new(Wakeups::default());
            let task = tokio::spawn(listen_for_work(
                store.client.clone(),
                channel,
                pubsub,
                Arc::clone(&wakes),
            ));
            Ok::<_, StorageError>(WakeListener { wakes, task })
        })
        .await
}

/// Forwards wake-ups to `wakes` until aborted; resubscribes when the connection drops.
async fn listen_for_work(
    client: redis::Client,
    channel: String,
    mut pubsub: redis::aio::PubSub,
    wakes: Arc<Wakeups>,
) {
    let wake = |job| wakes.wake(job);
    loop {
        {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let job = message.get_payload::<String>().ok();
                wake(job.and_then(|job| job.parse().ok()));
            }
        }
        // Lost: wake everyone, so they look for work while we reconnect.
        wake(None);
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Ok(mut fresh) = client.get_async_pubsub().await
                && fresh.subscribe(&channel).await.is_ok()
            {
                pubsub = fresh;
                break;
            }
        }
    }
}
