//! Test fixtures shared by every wasmjob test: the built guest programs, WAT modules, and
//! (for the distributed tests) a private `redis-server`.
//!
//! Tests reach for these instead of writing their own, so that there is one way to build a
//! guest, one way to write a module inline and one way to start a server.

use std::path::{Path, PathBuf};

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The path of a guest program built for `wasm32-wasip1` by this crate's build script: one of
/// the examples (`hello`, `pi`, `wordcount`, `flaky`) or the behaviour guest `behave`.
pub fn guest(name: &str) -> PathBuf {
    let path = Path::new(env!("WASMJOB_GUESTS_DIR")).join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "guest {name} was not built at {}",
        path.display()
    );
    path
}

/// The bytes of a guest program; see [`guest`].
pub fn guest_bytes(name: &str) -> Vec<u8> {
    std::fs::read(guest(name)).expect("reading a built guest")
}

/// Compiles WebAssembly text to a binary module, panicking with the parse error.
pub fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).unwrap_or_else(|e| panic!("invalid WAT in a test: {e}\n{text}"))
}

/// A WASI command whose `_start` runs `body`. It exports one page of memory and imports
/// `proc_exit` as `$exit`, `fd_write` as `$fd_write` and `poll_oneoff` as `$poll_oneoff`.
pub fn command(body: &str) -> Vec<u8> {
    wat(&format!(
        r#"(module
             (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
             (import "wasi_snapshot_preview1" "fd_write"
               (func $fd_write (param i32 i32 i32 i32) (result i32)))
             (import "wasi_snapshot_preview1" "poll_oneoff"
               (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
             (memory (export "memory") 1)
             (func (export "_start") {body}))"#
    ))
}
