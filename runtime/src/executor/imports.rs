//! The `wasmjob_v1` host imports: progress, cancellation and time left.
//!
//! Their meaning and exact signatures are defined in `wasmjob-host-api`; this module only binds
//! them to a task's state. Following that contract, an import never traps for an expected
//! condition, only when the guest hands it a pointer or length it has no right to.

use super::TaskState;
use std::sync::atomic::Ordering;
use std::time::Instant;
use wasmjob_host_api::{IMPORT_MODULE, MAX_PROGRESS_BYTES, imports};
use wasmtime::{Caller, Extern, Linker};

/// Adds every `wasmjob_v1` import to `linker`.
pub(super) fn add_to_linker(linker: &mut Linker<TaskState>) -> wasmtime::Result<()> {
    linker.func_wrap(IMPORT_MODULE, imports::PROGRESS, progress)?;
    linker.func_wrap(
        IMPORT_MODULE,
        imports::CANCELLED,
        |caller: Caller<'_, TaskState>| -> i32 {
            caller
                .data()
                .control
                .cancelled
                .load(Ordering::Relaxed)
                .into()
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        imports::TIME_LEFT_MS,
        |caller: Caller<'_, TaskState>| -> i64 {
            let left = caller
                .data()
                .deadline
                .saturating_duration_since(Instant::now());
            i64::try_from(left.as_millis()).unwrap_or(i64::MAX)
        },
    )?;
    Ok(())
}

fn progress(mut caller: Caller<'_, TaskState>, ptr: i32, len: i32) -> wasmtime::Result<i32> {
    // Guest pointers are unsigned 32-bit offsets that arrive in an i32.
    let (ptr, len) = (ptr as u32 as usize, len as u32);
    if len > MAX_PROGRESS_BYTES {
        wasmtime::bail!("progress of {len} bytes is over the limit of {MAX_PROGRESS_BYTES}");
    }
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        wasmtime::bail!("progress called by a module that exports no memory");
    };
    let bytes = memory
        .data(&caller)
        .get(ptr..ptr + len as usize)
        .ok_or_else(|| wasmtime::format_err!("progress bytes at {ptr}+{len} are out of bounds"))?
        .to_vec();
    caller.data_mut().control.set_progress(bytes);
    Ok(0)
}
