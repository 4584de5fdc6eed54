//! hello: the smallest wasmjob task. Prints one line naming its value and attempt.
//!
//! Shows: a whole task is one closure handed to `wasmjob_guest::run`; what it returns is the
//! task's result (its stdout).
//!
//! Build and run from the workspace root:
//!
//! ```text
//! cargo build --release --target wasm32-wasip1 -p hello
//! wasmjob run target/wasm32-wasip1/release/hello.wasm --range 1..=10
//! ```
//!
//! Each task's result is `hello from task <value> (attempt <n>)`.

fn main() {
    wasmjob_guest::run(|task| {
        Ok(format!(
            "hello from task {} (attempt {})\n",
            task.value(),
            task.attempt()
        ))
    })
}
