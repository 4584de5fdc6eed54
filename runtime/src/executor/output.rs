//! The guest's stdout and stderr: a capped result and a log that keeps only its tail.
//!
//! Both are in-memory pipes handed to the WASI context. They own nothing but their bytes; what
//! the executor does when a cap is hit is decided in the executor.

use bytes::Bytes;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// How much a guest may hand over in one write; the caps are enforced per byte regardless.
const WRITE_PERMIT: usize = 64 << 10;

/// The error that stops a guest which writes more than its result cap.
#[derive(Debug, thiserror::Error)]
#[error("output limit exceeded: the result is capped at {cap} bytes")]
pub(crate) struct OutputLimitExceeded {
    pub(crate) cap: u64,
}

/// A pipe the guest writes into; `B` decides what is kept.
pub(crate) struct Pipe<B> {
    buffer: Arc<Mutex<B>>,
}

impl<B> Clone for Pipe<B> {
    fn clone(&self) -> Self {
        Pipe {
            buffer: Arc::clone(&self.buffer),
        }
    }
}

impl<B> Pipe<B> {
    fn lock(&self) -> MutexGuard<'_, B> {
        // A poisoned lock only means another writer panicked mid-append; the bytes are still ours.
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a pipe does with the bytes written to it.
pub(crate) trait Buffer: Send + 'static {
    /// Keeps `data`, or refuses it when the guest has written more than it may.
    fn append(&mut self, data: &[u8]) -> Result<(), OutputLimitExceeded>;
}

/// stdout: the task's result. A write past the cap traps the guest, because a truncated result
/// would be taken for a whole one.
pub(crate) type ResultPipe = Pipe<ResultBuffer>;

pub(crate) struct ResultBuffer {
    bytes: Vec<u8>,
    cap: usize,
}

impl Buffer for ResultBuffer {
    fn append(&mut self, data: &[u8]) -> Result<(), OutputLimitExceeded> {
        if self.bytes.len() + data.len() > self.cap {
            return Err(OutputLimitExceeded {
                cap: self.cap as u64,
            });
        }
        self.bytes.extend_from_slice(data);
        Ok(())
    }
}

impl ResultPipe {
    pub(crate) fn new(cap: u64) -> Self {
        Pipe {
            buffer: Arc::new(Mutex::new(ResultBuffer {
                bytes: Vec::new(),
                cap: usize::try_from(cap).unwrap_or(usize::MAX),
            })),
        }
    }

    /// Takes the bytes written so far.
    pub(crate) fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.lock().bytes)
    }
}

/// stderr: the task's log. Never an error to write; only the last `cap` bytes are kept.
pub(crate) type LogPipe = Pipe<LogBuffer>;

pub(crate) struct LogBuffer {
    tail: VecDeque<u8>,
    cap: usize,
    dropped: u64,
}

impl Buffer for LogBuffer {
    fn append(&mut self, data: &[u8]) -> Result<(), OutputLimitExceeded> {
        // Only the last `cap` bytes of this write can survive; skip the rest without copying.
        let keep = &data[data.len().saturating_sub(self.cap)..];
        self.dropped += (data.len() - keep.len()) as u64;
        let overflow = (self.tail.len() + keep.len()).saturating_sub(self.cap);
        self.tail.drain(..overflow);
        self.dropped += overflow as u64;
        self.tail.extend(keep);
        Ok(())
    }
}

impl LogPipe {
    pub(crate) fn new(cap: u64) -> Self {
        Pipe {
            buffer: Arc::new(Mutex::new(LogBuffer {
                tail: VecDeque::new(),
                cap: usize::try_from(cap).unwrap_or(usize::MAX),
                dropped: 0,
            })),
        }
    }

    /// Appends a line from the host (why the attempt ended), kept like guest output.
    pub(crate) fn note(&self, line: &str) {
        let mut buffer = self.lock();
        let mut text = String::new();
        if buffer.tail.back().is_some_and(|&b| b != b'\n') {
            text.push('\n');
        }
        text.push_str("wasmjob: ");
        text.push_str(line);
        text.push('\n');
        let _ = buffer.append(text.as_bytes());
    }

    /// Takes the kept tail and how many earlier bytes were dropped.
    pub(crate) fn take(&self) -> (Vec<u8>, u64) {
        let mut buffer = self.lock();
        let dropped = std::mem::take(&mut buffer.dropped);
        (std::mem::take(&mut buffer.tail).into(), dropped)
    }
}

impl<B> IsTerminal for Pipe<B> {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl<B: Buffer> StdoutStream for Pipe<B> {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl<B: Buffer> Pollable for Pipe<B> {
    async fn ready(&mut self) {}
}

impl<B: Buffer> OutputStream for Pipe<B> {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.lock()
            .append(&bytes)
            .map_err(|e| StreamError::Trap(wasmtime::Error::new(e)))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl<B: Buffer> AsyncWrite for Pipe<B> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let appended = self.lock().append(buf);
        Poll::Ready(appended.map(|()| buf.len()).map_err(io::Error::other))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_refuses_writes_past_its_cap_and_keeps_what_fit() {
        let pipe = ResultPipe::new(10);
        pipe.lock().append(b"12345").unwrap();
        let err = pipe.lock().append(b"678901").unwrap_err();
        assert_eq!(err.cap, 10);
        pipe.lock().append(b"67890").unwrap();
        assert_eq!(pipe.take(), b"1234567890");
    }

    #[test]
    fn log_keeps_the_tail_and_counts_what_it_dropped() {
        let pipe = LogPipe::new(8);
        pipe.lock().append(b"abcdef").unwrap();
        pipe.lock().append(b"ghij").unwrap();
        assert_eq!(pipe.take(), (b"cdefghij".to_vec(), 2));

        let pipe = LogPipe::new(4);
        pipe.lock().append(b"0123456789").unwrap();
        assert_eq!(pipe.take(), (b"6789".to_vec(), 6));
    }

    #[test]
    fn host_notes_start_on_a_line_of_their_own() {
        let pipe = LogPipe::new(100);
        pipe.lock().append(b"partial").unwrap();
        pipe.note("lifetime exceeded");
        assert_eq!(pipe.take().0, b"partial\nwasmjob: lifetime exceeded\n");
    }
}
