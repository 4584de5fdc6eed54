//! The adversarial suite: hostile guests against one real `wasmjob worker` process each.
//!
//! Every case submits a one-task job to a private Redis, waits for it to end, checks the failure
//! reason a user would read in `wasmjob info`, and then checks that the same worker process still
//! runs a normal task. The memory-hungry cases also read the worker's peak resident memory
//! (VmHWM, reset before each case through `/proc/PID/clear_refs`) and check it stays under the
//! job's memory limit plus a stated overhead.

use crate::common::{FAST_WORKER, Wasmjob, WorkerProcess, eventually, spec_with};
use std::time::Duration;
use wasmjob::spec::JobSpec;
use wasmjob::storage::{
    RedisConfig, RedisStore, StorageError, SubmitterStore, TaskInfo, TaskState,
};
use wasmjob_test_support::{RedisServer, command, command_importing, guest_bytes, wat};

const PATIENCE: Duration = Duration::from_secs(60);

/// The memory limit of the memory-hungry cases.
const HUNGRY_MEMORY: u64 = 64 << 20;

/// What the worker process may hold beyond a guest's memory limit at its peak: its own code,
/// heap and caches, compiled modules, and one WASI call's copy of guest bytes. The debug build
/// holds about 40 MiB at rest and peaked at 54 MiB in these cases when the guest's own memory is
/// not counted.
const WORKER_OVERHEAD: u64 = 96 << 20;

/// A private Redis and one worker process on it.
struct Sandbox {
    server: RedisServer,
    worker: WorkerProcess,
    store: RedisStore,
}

impl Sandbox {
    async fn start(worker_args: &[&str]) -> Self {
        let server = RedisServer::start();
        let mut args = FAST_WORKER.to_vec();
        args.extend(["--slots", "2"]);
        args.extend(worker_args);
        let worker = WorkerProcess::start(&server.url(), "sandbox", &args);
        let store = RedisStore::connect(&RedisConfig::new(server.url()))
            .await
            .unwrap();
        // The worker has registered once its ceilings are known to the queue.
        eventually("the worker to register", PATIENCE, || async {
            !store.workers().await.unwrap().is_empty()
        })
        .await;
        Sandbox {
            server,
            worker,
            store,
        }
    }

    /// Submits a one-task job of `module` (no retries, the behaviour guest's data file beside
    /// it), lets `edit` adjust its spec, and returns the task's info once it has ended.
    async fn run(
        &self,
        module: &[u8],
        meta: &[(&str, &str)],
        edit: impl FnOnce(&mut JobSpec),
    ) -> TaskInfo {
        let data: &[u8] = b"manifest data\n";
        let mut spec = spec_with(module, &[("data.txt", data)], "1");
        spec.max_retries = 0;
        spec.limits.lifetime = Duration::from_secs(30);
        for (key, value) in meta {
            spec.metadata.insert(key.to_string(), value.to_string());
        }
        edit(&mut spec);
        let submitted = self.store.submit(&spec).await.unwrap();
        for path in &submitted.missing {
            let bytes = if path.as_str() == "task.wasm" {
                module
            } else {
                data
            };
            self.store.upload(submitted.id, path, bytes).await.unwrap();
        }
        let store = &self.store;
        eventually("the hostile task to end", PATIENCE, || async {
            store.status(submitted.id).await.unwrap().is_done()
        })
        .await;
        store.info(submitted.id, 1).await.unwrap()
    }

    /// Runs the behaviour guest with `do` set to `steps`.
    async fn behave(&self, steps: &str) -> TaskInfo {
        self.run(&guest_bytes("behave"), &[("do", steps)], |_| {})
            .await
    }

    /// Checks that the worker process is alive and still runs a normal task.
    async fn still_serves(&mut self, after: &str) {
        assert!(
            !self.worker.has_exited(),
            "the worker died after {after}:\n{}",
            self.worker.log()
        );
        let info = self.run(&guest_bytes("hello"), &[], |_| {}).await;
        assert_eq!(
            info.state,
            Some(TaskState::Succeeded),
            "a normal task after {after}: {info:?}\n{}",
            self.worker.log()
        );
        assert_eq!(
            info.result.as_deref(),
            Some(&b"hello from task 1 (attempt 1)\n"[..])
        );
    }

    /// Resets the worker's peak resident memory to its current size, and returns that size.
    fn reset_peak_memory(&self) -> u64 {
        std::fs::write(format!("/proc/{}/clear_refs", self.worker.pid()), "5")
            .expect("resetting the worker's VmHWM");
        self.memory("VmRSS:")
    }

    /// The worker's peak resident memory since the last reset, in bytes.
    fn peak_memory(&self) -> u64 {
        self.memory("VmHWM:")
    }

    /// A memory figure of the worker's `/proc/PID/status`, in bytes.
    fn memory(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.worker.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/PID/status"));
        kib << 10
    }
}

/// A change to a hostile job's spec.
type SpecEdit = fn(&mut JobSpec);

/// Asserts that the task failed with a reason that starts with `reason`.
#[track_caller]
fn assert_failed(info: &TaskInfo, reason: &str) {
    assert_eq!(info.state, Some(TaskState::Failed), "{info:?}");
    let error = info.last_error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with(reason),
        "expected a reason starting with {reason:?}, got {error:?}"
    );
}

fn text(bytes: &Option<Vec<u8>>) -> String {
    String::from_utf8_lossy(bytes.as_deref().unwrap_or_default()).into_owned()
}

#[tokio::test]
async fn hostile_guests_cannot_starve_or_exhaust_the_host() {
    let mut sandbox = Sandbox::start(&[]).await;
    let short = |spec: &mut JobSpec| spec.limits.lifetime = Duration::from_secs(1);

    // Every case runs with a memory limit of HUNGRY_MEMORY, which its peak is checked against.
    let cases: Vec<(&str, Vec<u8>, &str, SpecEdit)> = vec![
        ("an infinite loop", command("(loop $spin (br $spin))"), "lifetime exceeded", short),
        (
            "a loop of zero-timeout polls",
            // One clock subscription (relative, timeout 0) at offset 0, events at 64, count at 128.
            command(
                "(i64.store offset=8 (i32.const 0) (i64.const 1))
                 (loop $poll
                   (drop (call $poll_oneoff (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
                   (br $poll))",
            ),
            "lifetime exceeded",
            short,
        ),
        (
            "a sleep inside a host call, past its lifetime",
            guest_bytes("behave"),
            "lifetime exceeded",
            |spec| {
                spec.limits.lifetime = Duration::from_secs(1);
                spec.metadata.insert("do".into(), "sleep:600000".into());
            },
        ),
        (
            "500,000 clock subscriptions in one poll",
            // Zeroed subscriptions are relative realtime clocks with no timeout, all ready at
            // once; the guest exits with the poll's errno. 48 is ENOMEM.
            wat(r#"(module
                     (import "wasi_snapshot_preview1" "poll_oneoff"
                       (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
                     (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
                     (memory (export "memory") 640)
                     (func (export "_start")
                       (call $exit (call $poll_oneoff
                         (i32.const 0) (i32.const 24000000) (i32.const 500000)
                         (i32.const 40000000)))))"#),
            "exit code 48",
            |_| {},
        ),
        (
            "a recursion without end",
            wat(r#"(module
                     (func $down (param i32) (result i32)
                       (i32.add (call $down (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
                     (func (export "_start") (drop (call $down (i32.const 0)))))"#),
            "trap: stack overflow",
            |_| {},
        ),
        (
            "memory.grow to 4 GiB",
            command("(if (i32.eq (memory.grow (i32.const 65535)) (i32.const -1)) (then unreachable))"),
            "memory limit exceeded",
            |_| {},
        ),
        (
            "an initial memory above the limit",
            wat(r#"(module (memory 2048) (func (export "_start")))"#),
            "memory limit exceeded",
            |_| {},
        ),
        (
            "an initial table above the limit",
            wat(r#"(module (table 20000 funcref) (func (export "_start")))"#),
            "memory limit exceeded",
            |spec| spec.limits.table_elements = 10_000,
        ),
        (
            "memory.copy of the whole memory, again and again",
            wat(r#"(module
                     (memory 1024)
                     (func (export "_start")
                       (loop $copy
                         (memory.copy (i32.const 33554432) (i32.const 0) (i32.const 33554432))
                         (br $copy))))"#),
            "lifetime exceeded",
            short,
        ),
        (
            "1 GiB of random bytes asked of WASI",
            wat(r#"(module
                     (import "wasi_snapshot_preview1" "random_get"
                       (func $random_get (param i32 i32) (result i32)))
                     (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
                     (memory (export "memory") 1024)
                     (func (export "_start")
                       (call $exit (call $random_get (i32.const 0) (i32.const 1073741824)))))"#),
            "trap: ",
            |_| {},
        ),
        (
            "touching all of its memory, then asking for more",
            guest_bytes("behave"),
            "memory limit exceeded",
            |spec| {
                let steps = "alloc:60000000;alloc:67108864";
                spec.metadata.insert("do".into(), steps.into());
            },
        ),
        (
            "1 GiB written to stdout",
            guest_bytes("behave"),
            "output limit exceeded",
            |spec| {
                spec.metadata.insert("do".into(), "out:1073741824".into());
            },
        ),
    ];
    for (name, module, reason, edit) in cases {
        let at_rest = sandbox.reset_peak_memory();
        let info = sandbox
            .run(&module, &[], |spec| {
                spec.limits.memory = HUNGRY_MEMORY;
                edit(spec);
            })
            .await;
        assert_failed(&info, reason);
        let peak = sandbox.peak_memory();
        let figures = format!(
            "{name}: the worker's peak memory was {} MiB, {} MiB at rest before",
            peak >> 20,
            at_rest >> 20
        );
        eprintln!("{figures}");
        assert!(peak < HUNGRY_MEMORY + WORKER_OVERHEAD, "{figures}");
        sandbox.still_serves(name).await;
    }

    // 1 GiB to stderr is no error: only the log's tail is kept, and memory stays bounded.
    sandbox.reset_peak_memory();
    let info = sandbox
        .run(
            &guest_bytes("behave"),
            &[("do", "log:1073741824;logline:the end")],
            |spec| {
                spec.limits.memory = HUNGRY_MEMORY;
                spec.limits.lifetime = Duration::from_secs(50);
            },
        )
        .await;
    assert_eq!(info.state, Some(TaskState::Succeeded), "{info:?}");
    let log = text(&info.log);
    assert_eq!(log.len() as u64, wasmjob_host_api::DEFAULT_LOG_CAP);
    assert!(log.ends_with("yyythe end\n"));
    let peak = sandbox.peak_memory();
    eprintln!(
        "1 GiB to stderr: the worker's peak memory was {} MiB",
        peak >> 20
    );
    assert!(
        peak < HUNGRY_MEMORY + WORKER_OVERHEAD,
        "1 GiB to stderr: the worker's peak memory was {} MiB",
        peak >> 20
    );
    sandbox.still_serves("1 GiB to stderr").await;
}

#[tokio::test]
async fn hostile_guests_reach_nothing_outside_their_sandbox() {
    let mut sandbox = Sandbox::start(&[]).await;
    let redis_port = sandbox.server.url().rsplit(':').next().unwrap().to_owned();
    let connections_before = connections_received(&sandbox.server);
    let connect = format!("connect:127.0.0.1:{redis_port}");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "reading ../",
            "read:../../../../etc/passwd".into(),
            "exit code 1: read ../../../../etc/passwd: ",
        ),
        (
            "reading an absolute path",
            "read:/etc/passwd".into(),
            "exit code 1: read /etc/passwd: ",
        ),
        (
            "reading /proc",
            "read:/proc/self/environ".into(),
            "exit code 1: read /proc/self/environ: ",
        ),
        (
            "a symlink planted in the scratch dir pointing outside",
            "symlink:/etc/passwd /scratch/escape;read:/scratch/escape".into(),
            "exit code 1: symlink /etc/passwd /scratch/escape: Operation not permitted",
        ),
        (
            "a relative symlink climbing out of the scratch dir",
            "symlink:../../../../etc/passwd /scratch/climb;read:/scratch/climb".into(),
            "exit code 1: read /scratch/climb: ",
        ),
        (
            "writing into the manifest",
            "write:/job/data.txt".into(),
            "exit code 1: write /job/data.txt: ",
        ),
        (
            "truncating a manifest file",
            "truncate:/job/data.txt".into(),
            "exit code 1: truncate /job/data.txt: ",
        ),
        (
            "renaming inside the manifest",
            "rename:/job/data.txt /job/moved.txt".into(),
            "exit code 1: rename /job/data.txt /job/moved.txt: ",
        ),
        (
            "renaming a manifest file into the scratch dir",
            "rename:/job/data.txt /scratch/stolen.txt".into(),
            "exit code 1: rename /job/data.txt /scratch/stolen.txt: ",
        ),
        (
            "linking inside the manifest",
            "link:/job/data.txt /job/again.txt".into(),
            "exit code 1: link /job/data.txt /job/again.txt: ",
        ),
        (
            "filling the scratch dir",
            "fill:/scratch/big".into(),
            "scratch limit exceeded",
        ),
        (
            "creating files without end",
            "files:/scratch".into(),
            "scratch limit exceeded",
        ),
        // The guest's own libc knows there are no sockets; the host is asked below.
        (
            "opening a socket to the Redis port",
            connect.clone(),
            "exit code 1: connect 127.0.0.1:",
        ),
        (
            "opening file handles in a loop",
            "openloop:/job/data.txt".into(),
            "exit code 1: openloop /job/data.txt: ",
        ),
    ];
    for (name, steps, reason) in &cases {
        let info = sandbox.behave(steps).await;
        assert_failed(&info, reason);
        sandbox.still_serves(name).await;
    }

    // The manifest is as it was, and no connection reached Redis from a guest.
    let info = sandbox.behave("read:/job/data.txt;ls:/job").await;
    assert_eq!(text(&info.result), "manifest data\ndata.txt\ntask.wasm\n");
    assert_eq!(
        connections_received(&sandbox.server),
        connections_before + 1,
        "a guest's connection attempt reached Redis (the one expected is this count's own)"
    );

    // The scratch limits are the job's: what fits, fits, and the failure says how far it got.
    let info = sandbox
        .run(
            &guest_bytes("behave"),
            &[("do", "files:/scratch")],
            |spec| spec.limits.scratch_files = 10,
        )
        .await;
    assert_failed(&info, "scratch limit exceeded");
    assert!(
        text(&info.log).starts_with("created 10 files\nfiles /scratch: Quota exceeded"),
        "{}",
        text(&info.log)
    );
    let info = sandbox
        .run(
            &guest_bytes("behave"),
            &[("do", "fill:/scratch/big")],
            |spec| spec.limits.scratch_bytes = 1 << 20,
        )
        .await;
    assert_failed(&info, "scratch limit exceeded");
    assert!(
        text(&info.log).starts_with("wrote 1048576 bytes\nfill /scratch/big: No space left"),
        "{}",
        text(&info.log)
    );

    // Open handles are capped per attempt, far below what would starve the worker.
    let info = sandbox.behave("openloop:/job/data.txt").await;
    let log = text(&info.log);
    let opened: u32 = log
        .strip_prefix("opened ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{log}"));
    assert!((200..=256).contains(&opened), "opened {opened}");

    // The environment holds only what the contract names.
    let info = sandbox.behave("env").await;
    let names: Vec<String> = text(&info.result)
        .lines()
        .map(|line| line.split('=').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "WASMJOB_ATTEMPT",
            "WASMJOB_JOB_DIR",
            "WASMJOB_JOB_ID",
            "WASMJOB_JOB_NAME",
            "WASMJOB_META_do",
            "WASMJOB_SCRATCH_DIR",
            "WASMJOB_TASK_ID",
            "WASMJOB_TASK_VALUE",
        ]
    );
    sandbox.still_serves("dumping the environment").await;
}

/// How many connections the server has accepted since it started.
fn connections_received(server: &RedisServer) -> i64 {
    server.info_field("stats", "total_connections_received") as i64
}

#[tokio::test]
async fn modules_that_cannot_run_fail_as_fatal_and_hostile_imports_only_trap() {
    let mut sandbox = Sandbox::start(&[]).await;
    let random_bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a component instead of a module",
            b"\0asm\x0d\x00\x01\x00".to_vec(),
            "compilation error: this is a WebAssembly component",
        ),
        (
            "random bytes (with a valid hash)",
            random_bytes,
            "compilation error: not a WebAssembly module",
        ),
        (
            "an empty module",
            wat("(module)"),
            "compilation error: the module has no `_start`",
        ),
        (
            "an empty file",
            Vec::new(),
            "compilation error: the module is empty",
        ),
        (
            "a module importing what the host does not provide",
            wat(r#"(module (import "env" "launch_missiles" (func)) (func (export "_start")))"#),
            "compilation error: ",
        ),
    ];
    for (name, module, reason) in &cases {
        let info = sandbox.run(module, &[], |_| {}).await;
        assert_failed(&info, reason);
        assert_eq!(info.attempts, 1, "{name}: a fatal outcome is never retried");
        sandbox.still_serves(name).await;
    }

    // Every host import handed pointers outside memory or huge lengths: a trap naming the
    // pointer, or an errno (here the exit code) where the call refuses the size; the host never
    // panics. The errno cases: 48 is ENOMEM, the host refusing to copy a 2 GiB path (its
    // host-call budget); 57 is ENOTSOCK, the host's answer to a socket call.
    let wasi_calls: &[(&str, &str, &str)] = &[
        (
            "fd_write with an unaligned iovec list",
            "(call $fd_write (i32.const 1) (i32.const 65530) (i32.const 4) (i32.const 0))",
            "trap: Pointer not aligned",
        ),
        (
            "fd_write with a buffer past the end of memory",
            "(i32.store (i32.const 0) (i32.const 65000)) (i32.store (i32.const 4) (i32.const 2000000))
             (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))",
            "trap: Pointer out of bounds",
        ),
        (
            "random_get past the end of memory",
            "(call $random_get (i32.const 65535) (i32.const 16))",
            "trap: Pointer out of bounds",
        ),
        (
            "args_get at the top of the address space",
            "(call $args_get (i32.const -16) (i32.const -8))",
            "trap: Pointer out of bounds",
        ),
        (
            "path_open with a 2 GiB path",
            "(call $path_open (i32.const 3) (i32.const 0) (i32.const 65500) (i32.const 2147483647)
               (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 0))",
            "exit code 48",
        ),
        (
            "sock_accept on the manifest's descriptor",
            "(call $sock_accept (i32.const 3) (i32.const 0) (i32.const 0))",
            "exit code 57",
        ),
    ];
    for (name, call, reason) in wasi_calls {
        let module = hostile_imports(&format!("(call $exit {call})"));
        let info = sandbox.run(&module, &[], |_| {}).await;
        assert_failed(&info, reason);
        sandbox.still_serves(name).await;
    }
    let own_calls: &[(&str, &str)] = &[
        (
            "progress out of bounds",
            "(drop (call $progress (i32.const 65500) (i32.const 100)))",
        ),
        (
            "progress with a huge length",
            "(drop (call $progress (i32.const 0) (i32.const 2147483647)))",
        ),
        (
            "progress with a negative pointer",
            "(drop (call $progress (i32.const -1) (i32.const 1)))",
        ),
    ];
    for (name, call) in own_calls {
        let info = sandbox.run(&hostile_imports(call), &[], |_| {}).await;
        assert_failed(&info, "trap: progress");
        sandbox.still_serves(name).await;
    }
}

/// A command that imports the WASI calls and the `wasmjob_v1` import the hostile-pointer cases
/// use, and runs `body`.
fn hostile_imports(body: &str) -> Vec<u8> {
    command_importing(
        r#"(import "wasi_snapshot_preview1" "fd_write"
             (func $fd_write (param i32 i32 i32 i32) (result i32)))
           (import "wasi_snapshot_preview1" "random_get"
             (func $random_get (param i32 i32) (result i32)))
           (import "wasi_snapshot_preview1" "args_get"
             (func $args_get (param i32 i32) (result i32)))
           (import "wasi_snapshot_preview1" "path_open"
             (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
           (import "wasi_snapshot_preview1" "sock_accept"
             (func $sock_accept (param i32 i32 i32) (result i32)))
           (import "wasmjob_v1" "progress" (func $progress (param i32 i32) (result i32)))"#,
        body,
    )
}

#[tokio::test]
async fn the_operators_budgets_and_ceilings_are_kept() {
    let mut sandbox = Sandbox::start(&[
        "--max-memory",
        "64MiB",
        "--max-lifetime",
        "1m",
        "--max-module-size",
        "64KiB",
    ])
    .await;

    // A job above the only worker's ceilings is refused at submit, naming the limits and the
    // options that raise them; nothing of it is stored.
    let mut spec = spec_with(&guest_bytes("hello"), &[], "1..=3");
    spec.limits.memory = 128 << 20;
    spec.limits.lifetime = Duration::from_secs(120);
    let refused = sandbox.store.submit(&spec).await.unwrap_err();
    let StorageError::OverCeilings(over) = &refused else {
        panic!("expected OverCeilings, got {refused:?}");
    };
    let limits: Vec<_> = over.excesses.iter().map(|e| e.limit).collect();
    assert_eq!(limits, ["memory", "lifetime"]);
    let message = refused.to_string();
    assert!(
        message.contains("memory 128 MiB is above the workers' ceiling of 64 MiB"),
        "{message}"
    );
    assert!(message.contains("--max-memory"), "{message}");
    assert!(sandbox.store.list().await.unwrap().is_empty());
    let cli = Wasmjob::new()
        .redis(&sandbox.server.url())
        .arg("submit")
        .arg(wasmjob_test_support::guest("hello"))
        .args([
            "--range",
            "1..=3",
            "--memory",
            "128MiB",
            "--lifetime",
            "30s",
        ])
        .run();
    cli.assert_exit(2);
    assert!(
        cli.stderr
            .contains("memory 128 MiB is above the workers' ceiling of 64 MiB"),
        "{}",
        cli.stderr
    );
    assert!(sandbox.store.list().await.unwrap().is_empty());

    // Within the ceilings it runs. The module is too big for this worker's compile budget:
    // fatal, never retried.
    let big = guest_bytes("hello");
    assert!(big.len() > 64 << 10);
    let info = sandbox
        .run(&big, &[], |spec| spec.limits.memory = 32 << 20)
        .await;
    assert_failed(&info, "compilation error: the module is");
    assert!(
        info.last_error
            .as_deref()
            .unwrap()
            .contains("above the worker's limit of 65536 bytes")
    );
    assert_eq!(info.attempts, 1);

    let small = command("");
    let info = sandbox
        .run(&small, &[], |spec| spec.limits.memory = 32 << 20)
        .await;
    assert_eq!(info.state, Some(TaskState::Succeeded), "{info:?}");
    assert!(!sandbox.worker.has_exited());
}

#[tokio::test]
async fn a_compilation_over_its_time_budget_is_fatal() {
    let mut sandbox = Sandbox::start(&["--compile-timeout", "1ms"]).await;
    let info = sandbox.run(&guest_bytes("behave"), &[], |_| {}).await;
    assert_failed(
        &info,
        "compilation error: compiling took longer than the worker's budget of 1ms",
    );
    assert_eq!(info.attempts, 1);
    assert!(!sandbox.worker.has_exited());
}
