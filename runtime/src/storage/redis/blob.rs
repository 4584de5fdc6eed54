//! Manifest files in Redis, sent and fetched in chunks: each chunk is a command of its own with
//! its own reply timeout, sent again after a reconnect, so that a file of any size crosses a slow
//! link. A file becomes visible under its digest only once every chunk has arrived whole.
//!
//! A stored file is a HASH of chunk index to bytes, plus its `size` and `chunk` size; files
//! stored whole as a string by an older wasmjob are still read. Who uses a file, and so how long
//! it lives, is the business of the `blob_use` and `blob_release` scripts, not of this module.
//! A copy a worker found damaged is dropped here, so that the next submit uploads it again.

use super::RedisStore;
use super::scripts::SCRIPTS;
use crate::manifest::Digest;
use crate::storage::{JobId, StorageError};
use std::future::Future;
use std::time::Duration;

/// The bytes per chunk: a few tenths of a second on a slow link, well within the reply timeout.
pub(super) const CHUNK: usize = 1 << 20;

/// How often a chunk is sent again after the connection broke, each after a longer pause.
const ATTEMPTS: u32 = 6;

/// How long an upload cut off half-way keeps its chunks, renewed with each chunk sent.
const UPLOAD_TTL_SECS: u64 = 3600;

impl RedisStore {
    /// Stores a file of `job` under its digest unless it is there already, telling `progress`
    /// the bytes sent so far after each chunk.
    pub(super) async fn store_blob(
        &self,
        job: JobId,
        digest: &Digest,
        bytes: &[u8],
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), StorageError> {
        let key = self.keys.blob(digest);
        let exists: bool = self.query_retrying(redis::cmd("EXISTS").arg(&key)).await?;
        if exists {
            return Ok(());
        }
        // Named by the job, so that a job whose submitter vanished is removed with its chunks.
        let upload = self.keys.blob_upload(digest, job);
        let sent = self.send_chunks(&upload, bytes, progress).await;
        let committed = match sent {
            Ok(()) => {
                let mut commit = SCRIPTS.blob_commit.prepare_invoke();
                commit.key(&upload).key(&key).arg(bytes.len()).arg(CHUNK);
                self.retrying(|| async {
                    commit
                        .invoke_async::<i64>(&mut self.con.clone())
                        .await
                        .map_err(|e| self.error(e))
                })
                .await
                .map(drop)
            }
            Err(e) => Err(e),
        };
        if committed.is_err() {
            // What arrived would expire anyway; a server short of memory wants it back now.
            let _ = self.query::<()>(redis::cmd("DEL").arg(&upload)).await;
        }
        committed
    }

    /// Sends every chunk of `bytes` to the upload key. Sending a chunk twice writes the same
    /// field twice, so a chunk whose reply was lost is simply sent again.
    async fn send_chunks(
        &self,
        upload: &str,
        bytes: &[u8],
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), StorageError> {
        let mut sent = 0;
        for (index, chunk) in bytes.chunks(CHUNK).enumerate() {
            let mut pipe = redis::pipe();
            // Atomic, so that no chunk is stored without the expiry that cleans it up.
            pipe.atomic()
                .hset(upload, index, chunk)
                .ignore()
                .expire(upload, UPLOAD_TTL_SECS as i64)
                .ignore();
            self.retrying(|| self.query_pipe(&pipe)).await?;
            sent += chunk.len() as u64;
            progress(sent);
        }
        Ok(())
    }

    /// Fetches a stored file chunk by chunk. The caller checks the bytes against the digest.
    pub(super) async fn fetch_blob(&self, digest: &Digest) -> Result<Vec<u8>, StorageError> {
        let key = self.keys.blob(digest);
        let kind: String = self.query_retrying(redis::cmd("TYPE").arg(&key)).await?;
        let (size, chunk) = match kind.as_str() {
            "none" => return Err(StorageError::UnknownBlob(*digest)),
            "hash" => {
                let (size, chunk): (Option<u64>, Option<u64>) = self
                    .query_retrying(redis::cmd("HMGET").arg(&key).arg("size").arg("chunk"))
                    .await?;
                match (size, chunk) {
                    (Some(size), Some(chunk)) if chunk > 0 => (size, chunk),
                    _ => {
                        return Err(StorageError::corrupt(format!(
                            "stored file {digest} has no size"
                        )));
                    }
                }
            }
            // Stored whole by an older wasmjob: read in ranges all the same.
            "string" => {
                let size: u64 = self.query_retrying(redis::cmd("STRLEN").arg(&key)).await?;
                (size, CHUNK as u64)
            }
            other => {
                return Err(StorageError::corrupt(format!(
                    "stored file {digest} is a Redis {other}, not a file"
                )));
            }
        };
        let mut bytes = Vec::with_capacity(size.min(1 << 30) as usize);
        for index in 0..size.div_ceil(chunk) {
            let read = if kind == "hash" {
                redis::cmd("HGET").arg(&key).arg(index).to_owned()
            } else {
                let start = index * chunk;
                let end = (start + chunk).min(size) - 1;
                redis::cmd("GETRANGE")
                    .arg(&key)
                    .arg(start)
                    .arg(end)
                    .to_owned()
            };
            let part: Option<Vec<u8>> = self.query_retrying(&read).await?;
            // Gone half-way: its last user let it go.
            let part = part.ok_or(StorageError::UnknownBlob(*digest))?;
            bytes.extend_from_slice(&part);
        }
        if bytes.len() as u64 != size {
            return Err(StorageError::UnknownBlob(*digest));
        }
        Ok(bytes)
    }

    /// Drops a stored file whose bytes were found not to hash to its digest.
    pub(super) async fn drop_blob(&self, digest: &Digest) -> Result<(), StorageError> {
        // A stored file is never uploaded over (a submit skips what is there), so what is
        // under the digest now is the copy found damaged.
        tracing::warn!(%digest, "dropping a damaged stored file; the next submit uploads it again");
        self.query(redis::cmd("DEL").arg(self.keys.blob(digest)))
            .await
    }

    /// Sends `cmd`, again after a reconnect.
    pub(super) async fn query_retrying<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, StorageError> {
        self.retrying(|| self.query(cmd)).await
    }

    /// Runs `op` again, after a pause, while it fails for want of a connection: the connection
    /// manager reconnects meanwhile.
    pub(super) async fn retrying<T, F, Fut>(&self, mut op: F) -> Result<T, StorageError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
    {
        let mut pause = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e @ StorageError::Unreachable { .. }) if attempt < ATTEMPTS => {
                    tracing::debug!("retrying a file transfer after {pause:?}: {e}");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    attempt += 1;
                }
                done => return done,
            }
        }
    }
}
