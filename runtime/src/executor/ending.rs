//! How an attempt that returned an error ended: an exit code, the output cap, or a trap under its
//! short, stable name; and the description of that error (its wasm backtrace, cut to size) that
//! is added to the attempt's log.
//!
//! What the ending means for the task is the contract's `outcome`, in `wasmjob-host-api`; the
//! endings the host decides itself (lifetime, cancellation, the memory and scratch limits) are
//! settled where the attempt runs, in the executor.

use super::output::OutputLimitExceeded;
use wasmjob_host_api::Ending;
use wasmtime::Trap;
use wasmtime_wasi::I32Exit;

/// The most lines of a trap's description (with its wasm backtrace) added to the log.
const MAX_NOTE_LINES: usize = 24;

/// How an attempt that returned an error ended.
pub(super) fn ending_of(error: &wasmtime::Error) -> Ending {
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        Ending::Exited(exit.0)
    } else if error.downcast_ref::<OutputLimitExceeded>().is_some() {
        Ending::OutputLimitExceeded
    } else if let Some(trap) = error.downcast_ref::<Trap>() {
        Ending::Trapped(trap_name(*trap))
    } else {
        // A host call refused the guest (a pointer out of bounds, say): a trap by another name.
        Ending::Trapped(error.root_cause().to_string())
    }
}

/// The short, stable name of a trap, as users will see it in a task's reason.
fn trap_name(trap: Trap) -> String {
    let name = match trap {
        Trap::StackOverflow => "stack overflow",
        Trap::UnreachableCodeReached => "unreachable",
        Trap::IntegerDivisionByZero => "integer divide by zero",
        Trap::IntegerOverflow => "integer overflow",
        Trap::MemoryOutOfBounds => "out of bounds memory access",
        Trap::TableOutOfBounds => "out of bounds table access",
        Trap::BadConversionToInteger => "invalid conversion to integer",
        Trap::IndirectCallToNull => "uninitialized element",
        Trap::BadSignature => "indirect call type mismatch",
        other => {
            return other
                .to_string()
                .trim_start_matches("wasm trap: ")
                .to_owned();
        }
    };
    name.to_owned()
}

/// The error with its wasm backtrace, cut to a size that leaves room for the guest's own log.
pub(super) fn describe(error: &wasmtime::Error) -> String {
    // The chain of messages (the wasm backtrace is one of them), not `{:?}`: with RUST_BACKTRACE
    // set that also resolves the host's own backtrace, which loads the binary's debug info and
    // cost a debug-build worker 200 MiB for one stack-overflow trap.
    let full: Vec<String> = error.chain().map(|cause| cause.to_string()).collect();
    let full = full.join("\n");
    let mut lines: Vec<&str> = full.lines().take(MAX_NOTE_LINES + 1).collect();
    if lines.len() > MAX_NOTE_LINES {
        lines.truncate(MAX_NOTE_LINES);
        lines.push("…");
    }
    lines.join("\n")
}
