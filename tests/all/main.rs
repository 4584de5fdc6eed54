//! The cross-crate test suite, one binary: the executor against the guest contract, the
//! storage backends, and end-to-end runs of the `wasmjob` binary.

mod cli;
mod common;
mod distributed;
mod executor;
mod reliability;
mod storage;
