//! The wake-ups idle workers wait on: one pub/sub subscription per store, started by its first
//! claim, forwarded to every claim under way through a watch channel, and resubscribed after a
//! lost connection.
//!
//! Publishing is left to whatever makes work appear (the queue's enqueue, the scripts that end
//! or return leases, a worker registering); what a claim does once woken is `claim`'s.

use super::RedisStore;
use crate::storage::{JobId, StorageError};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Forwards the wake channel to the store's claims: every message is a change, and its value
/// is the job the latest wake-up named, when it was a job made claimable.
pub(super) struct WakeListener {
    wakes: Arc<watch::Sender<Option<JobId>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WakeListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RedisStore {
    /// A receiver that changes whenever work may have appeared. The first call subscribes to
    /// the wake channel and keeps a task listening, resubscribing after a lost connection.
    pub(super) async fn wake_receiver(
        &self,
    ) -> Result<watch::Receiver<Option<JobId>>, StorageError> {
        let listener = self
            .wake
            .get_or_try_init(|| async {
                let channel = self.keys.wake();
                let mut pubsub = self
                    .client
                    .get_async_pubsub()
                    .await
                    .map_err(|e| self.error(e))?;
                pubsub
                    .subscribe(&channel)
                    .await
                    .map_err(|e| self.error(e))?;
                let wakes = Arc::new(watch::Sender::new(None));
                let task = tokio::spawn(listen_for_work(
                    self.client.clone(),
                    channel,
                    pubsub,
                    Arc::clone(&wakes),
                ));
                Ok::<_, StorageError>(WakeListener { wakes, task })
            })
            .await?;
        Ok(listener.wakes.subscribe())
    }
}

/// Forwards wake-ups to `wakes` until aborted; resubscribes when the connection drops.
async fn listen_for_work(
    client: redis::Client,
    channel: String,
    mut pubsub: redis::aio::PubSub,
    wakes: Arc<watch::Sender<Option<JobId>>>,
) {
    // `send_replace` marks a change even when the value is the same: every wake-up counts.
    let wake = |job| {
        wakes.send_replace(job);
    };
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
