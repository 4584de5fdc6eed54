//! The instance marker: a value set once in the server's data, by the first store to find none.
//! A store remembers the marker it found on connecting; when the server's marker changes or
//! disappears, the server restarted without its data or was flushed, and [`check`] says so once
//! ([`StorageError::DataLost`]) before going on with the server as it is now.
//!
//! What a worker does about a loss is the worker's business; the marker's key is `keys`'s.

use super::RedisStore;
use crate::storage::StorageError;
use std::sync::{Mutex, MutexGuard};

/// The marker of the server's data this store knows (see `Keys::instance`).
#[derive(Default)]
pub(super) struct Marker(Mutex<String>);

impl Marker {
    fn lock(&self) -> MutexGuard<'_, String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RedisStore {
    /// Sets the data marker if the server has none, and remembers the marker it holds.
    pub(super) async fn adopt_instance(&self) -> Result<(), StorageError> {
        let key = self.keys.instance();
        let fresh = ulid::Ulid::new().to_string();
        self.query::<Option<String>>(redis::cmd("SET").arg(&key).arg(&fresh).arg("NX"))
            .await?;
        let current: Option<String> = self.query(redis::cmd("GET").arg(&key)).await?;
        *self.instance.lock() = current.unwrap_or(fresh);
        Ok(())
    }
}

/// Checks that the server still holds the data `store` connected to: fails with
/// [`StorageError::DataLost`] once after it lost them.
pub(super) async fn check(store: &RedisStore) -> Result<(), StorageError> {
    let current: Option<String> = store
        .query(redis::cmd("GET").arg(store.keys.instance()))
        .await?;
    let known = store.instance.lock().clone();
    if current.as_deref() == Some(known.as_str()) {
        return Ok(());
    }
    // Report the loss once, then go on with the server as it is now.
    store.adopt_instance().await?;
    store.specs.clear();
    Err(StorageError::DataLost {
        url: store.url.clone(),
    })
}
