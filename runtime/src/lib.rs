//! wasmjob: run batches of untrusted WebAssembly tasks, in one process or across many hosts.
#![deny(missing_docs)]

pub mod cache;
pub mod executor;
pub mod limits;
pub mod manifest;
pub mod module_header;
pub mod range;
pub mod spec;
pub mod storage;
pub mod units;
pub mod worker;
