//! The host imports of module `wasmjob_v1`, as safe functions.
//!
//! On `wasm32` they call the host through one `extern` block, the crate's only `unsafe` code. On
//! any other target they are stand-ins, so task logic can be unit-tested natively: [`progress`]
//! does nothing, [`cancelled`] is `false`, [`time_left`] is [`Duration::MAX`].

use std::time::Duration;

use wasmjob_host_api::{IMPORT_MODULE, MAX_PROGRESS_BYTES, imports};

/// Reports the task's progress: the latest report replaces earlier ones and travels to the queue
/// with the next heartbeat. Bytes past [`MAX_PROGRESS_BYTES`] are dropped.
pub fn progress(bytes: &[u8]) {
    let len = bytes.len().min(MAX_PROGRESS_BYTES as usize);
    sys::progress(&bytes[..len]);
}

/// Whether the host wants the task to stop (the job was deleted, the lease was lost, the worker
/// is shutting down). A task that ignores it is stopped anyway at the end of its lifetime.
pub fn cancelled() -> bool {
    sys::cancelled()
}

/// How long the attempt has left before its lifetime ends ([`Duration::ZERO`] once it has).
pub fn time_left() -> Duration {
    sys::time_left()
}

// The `#[link]` attributes below cannot name constants, so the literals are checked against the
// contract here, at compile time, on every target.
const _: () = {
    assert!(same(IMPORT_MODULE, "wasmjob_v1"));
    assert!(same(imports::PROGRESS, "progress"));
    assert!(same(imports::CANCELLED, "cancelled"));
    assert!(same(imports::TIME_LEFT_MS, "time_left_ms"));
};

/// `a == b`, usable in a constant.
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod sys {
    //! The real imports. Signatures as documented in `wasmjob_host_api::imports`; on wasm32 a
    //! pointer and a `usize` are both `i32`.

    use std::time::Duration;

    #[link(wasm_import_module = "wasmjob_v1")]
    unsafe extern "C" {
        #[link_name = "progress"]
        fn wasmjob_progress(ptr: *const u8, len: usize) -> i32;
        #[link_name = "cancelled"]
        safe fn wasmjob_cancelled() -> i32;
        #[link_name = "time_left_ms"]
        safe fn wasmjob_time_left_ms() -> i64;
    }

    pub(super) fn progress(bytes: &[u8]) {
        // SAFETY: the host only reads `bytes.len()` bytes at `bytes.as_ptr()`, a live slice whose
        // length the caller has capped at MAX_PROGRESS_BYTES. It always returns 0.
        let _ = unsafe { wasmjob_progress(bytes.as_ptr(), bytes.len()) };
    }

    pub(super) fn cancelled() -> bool {
        wasmjob_cancelled() != 0
    }

    pub(super) fn time_left() -> Duration {
        Duration::from_millis(u64::try_from(wasmjob_time_left_ms()).unwrap_or(0))
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod sys {
    //! Native stand-ins for `cargo test`.

    use std::time::Duration;

    pub(super) fn progress(_bytes: &[u8]) {}

    pub(super) fn cancelled() -> bool {
        false
    }

    pub(super) fn time_left() -> Duration {
        Duration::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_stand_ins() {
        progress(&[b'x'; 10_000]);
        assert!(!cancelled());
        assert_eq!(time_left(), Duration::MAX);
    }

    #[test]
    fn const_string_equality() {
        assert!(same("", ""));
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
