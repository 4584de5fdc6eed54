//! The cross-crate test suite, one binary: the executor against the guest contract, the
//! storage backends, end-to-end runs of the `wasmjob` binary, and hostile guests.

mod cli;
mod common;
mod distributed;
mod embedded_memory;
mod executor;
mod files;
mod forged;
mod reliability;
mod sandbox;
mod shape;
mod storage;
