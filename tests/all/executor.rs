//! The executor against the guest contract: every way an attempt can end, and the sandbox's
//! file-system rules, through the library API.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tempfile::TempDir;
use wasmjob::executor::{
    Attempt, AttemptControl, AttemptReport, Executor, ExecutorConfig, ModuleStats, TaskModule,
};
use wasmjob::limits::Limits;
use wasmjob_host_api::{Ending, Outcome};
use wasmjob_test_support::{command, guest_bytes, wat};

const LIMITS: Limits = Limits {
    lifetime: Duration::from_secs(20),
    memory: 16 << 20,
    result_cap: 1 << 20,
    log_cap: 64 << 10,
    table_elements: 10_000,
    scratch_bytes: 1 << 20,
    scratch_files: 100,
};

/// One executor for the whole file, with the behaviour guest compiled once.
struct Shared {
    executor: Executor,
    behave: TaskModule,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let executor = Executor::new(ExecutorConfig::default()).unwrap();
        let behave = executor.compile(&guest_bytes("behave")).unwrap();
        Shared { executor, behave }
    })
}

/// A job directory with a data file, a nested one and a `work` directory.
fn job_dir() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.txt"), "top data\n").unwrap();
    std::fs::create_dir_all(dir.path().join("work/sub")).unwrap();
    std::fs::write(dir.path().join("work/sub/in.txt"), "nested data\n").unwrap();
    dir
}

async fn run_with(
    executor: &Executor,
    module: &TaskModule,
    metadata: &[(&str, &str)],
    limits: Limits,
    workdir: &str,
    control: &Arc<AttemptControl>,
) -> AttemptReport {
    let job_dir = job_dir();
    let metadata: BTreeMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let attempt = Attempt {
        job_id: "01JD3Q4G7TZ9N8V2K5X6Y1R0AB",
        job_name: "executor-test",
        task_id: "01JD3Q4G7TZ9N8V2K5X6Y1R0AC",
        value: 7,
        attempt: 2,
        script: "behave.wasm",
        metadata: &metadata,
        job_dir: job_dir.path(),
        workdir,
        limits,
    };
    executor
        .run(module, &attempt, control)
        .await
        .expect("the host side of an attempt does not fail")
}

async fn run_wat(wasm: &[u8], limits: Limits) -> AttemptReport {
    let module = shared()
        .executor
        .compile(wasm)
        .expect("test module compiles");
    run_with(
        &shared().executor,
        &module,
        &[],
        limits,
        ".",
        &Arc::default(),
    )
    .await
}

async fn behave(command: &str) -> AttemptReport {
    run_with(
        &shared().executor,
        &shared().behave,
        &[("do", command)],
        LIMITS,
        ".",
        &Arc::default(),
    )
    .await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn lifetime(limit: Duration) -> Limits {
    Limits {
        lifetime: limit,
        ..LIMITS
    }
}

#[tokio::test]
async fn every_way_an_attempt_ends_maps_to_its_outcome() {
    let cases: &[(&str, Vec<u8>, Ending, Outcome)] = &[
        (
            "return from _start",
            command(""),
            Ending::Exited(0),
            Outcome::Success,
        ),
        (
            "exit code 0",
            command("(call $exit (i32.const 0))"),
            Ending::Exited(0),
            Outcome::Success,
        ),
        (
            "exit code 3",
            command("(call $exit (i32.const 3))"),
            Ending::Exited(3),
            Outcome::Error("exit code 3".into()),
        ),
        (
            "the fatal exit code",
            command("(call $exit (i32.const 100))"),
            Ending::Exited(100),
            Outcome::Fatal("fatal (exit code 100)".into()),
        ),
        (
            "unreachable",
            command("unreachable"),
            Ending::Trapped("unreachable".into()),
            Outcome::Error("trap: unreachable".into()),
        ),
        (
            "division by zero",
            command("(drop (i32.div_s (i32.const 1) (i32.const 0)))"),
            Ending::Trapped("integer divide by zero".into()),
            Outcome::Error("trap: integer divide by zero".into()),
        ),
        (
            "stack overflow",
            wat(r#"(module
                     (func $down (param i32) (result i32)
                       (i32.add (call $down (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
                     (func (export "_start") (drop (call $down (i32.const 0)))))"#),
            Ending::Trapped("stack overflow".into()),
            Outcome::Error("trap: stack overflow".into()),
        ),
        (
            "memory.grow past the limit",
            // 16 MiB allowed; ask for 32 MiB more and trap as an allocator would on failure.
            command(
                "(if (i32.eq (memory.grow (i32.const 512)) (i32.const -1)) (then unreachable))",
            ),
            Ending::MemoryLimitExceeded,
            Outcome::Error("memory limit exceeded".into()),
        ),
        (
            "initial memory above the limit",
            wat(r#"(module (memory 1024) (func (export "_start")))"#),
            Ending::MemoryLimitExceeded,
            Outcome::Error("memory limit exceeded".into()),
        ),
    ];
    for (name, wasm, ending, outcome) in cases {
        let report = run_wat(wasm, LIMITS).await;
        assert_eq!(&report.ending, ending, "{name}: {}", text(&report.log));
        assert_eq!(&report.outcome, outcome, "{name}");
    }
}

#[tokio::test]
async fn a_trap_leaves_its_reason_and_backtrace_in_the_log() {
    let report = run_wat(&command("unreachable"), LIMITS).await;
    let log = text(&report.log);
    assert!(log.starts_with("wasmjob: "), "{log}");
    assert!(log.contains("unreachable"), "{log}");
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_at_its_lifetime() {
    let limit = Duration::from_millis(500);
    let report = run_wat(&command("(loop $spin (br $spin))"), lifetime(limit)).await;
    assert_eq!(report.ending, Ending::LifetimeExceeded);
    assert_eq!(report.outcome, Outcome::Error("lifetime exceeded".into()));
    assert!(report.duration >= limit, "{:?}", report.duration);
    assert!(
        report.duration < limit * 10,
        "stopped late: {:?}",
        report.duration
    );
    assert!(text(&report.log).contains("lifetime of 500ms exceeded"));
}

#[tokio::test]
async fn a_guest_sleeping_in_a_wasi_call_is_stopped_at_its_lifetime() {
    let limit = Duration::from_millis(500);
    let report = run_with(
        &shared().executor,
        &shared().behave,
        &[("do", "sleep:60000")],
        lifetime(limit),
        ".",
        &Arc::default(),
    )
    .await;
    assert_eq!(report.ending, Ending::LifetimeExceeded);
    assert!(report.duration >= limit, "{:?}", report.duration);
    assert!(
        report.duration < limit * 10,
        "stopped late: {:?}",
        report.duration
    );
}

#[tokio::test]
async fn a_cancelled_attempt_stops_and_the_guest_could_see_it() {
    let control = Arc::new(AttemptControl::default());
    let cancel = {
        let control = Arc::clone(&control);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            control.cancel();
        })
    };
    let report = run_with(
        &shared().executor,
        &shared().behave,
        &[("do", "spin")],
        LIMITS,
        ".",
        &control,
    )
    .await;
    cancel.await.unwrap();
    assert_eq!(report.ending, Ending::Cancelled);
    assert!(report.duration < Duration::from_secs(10));

    let control = Arc::new(AttemptControl::default());
    control.cancel();
    let report = run_with(
        &shared().executor,
        &shared().behave,
        &[("do", "cancelled")],
        LIMITS,
        ".",
        &control,
    )
    .await;
    // Already cancelled before it started: the executor does not run it at all.
    assert_eq!(report.ending, Ending::Cancelled);
}

#[tokio::test]
async fn stdout_past_its_cap_ends_the_attempt_with_the_output_limit() {
    let small = Limits {
        result_cap: 1000,
        ..LIMITS
    };
    let module = &shared().behave;
    let report = run_with(
        &shared().executor,
        module,
        &[("do", "out:999")],
        small,
        ".",
        &Arc::default(),
    )
    .await;
    assert_eq!(report.outcome, Outcome::Success);
    assert_eq!(report.result.len(), 999);

    let report = run_with(
        &shared().executor,
        module,
        &[("do", "out:1001")],
        small,
        ".",
        &Arc::default(),
    )
    .await;
    assert_eq!(report.ending, Ending::OutputLimitExceeded);
    assert_eq!(
        report.outcome,
        Outcome::Error("output limit exceeded".into())
    );
}

#[tokio::test]
async fn stderr_keeps_its_tail_and_is_never_an_error() {
    let small = Limits {
        log_cap: 1000,
        ..LIMITS
    };
    let report = run_with(
        &shared().executor,
        &shared().behave,
        &[("do", "log:300000;logline:the end")],
        small,
        ".",
        &Arc::default(),
    )
    .await;
    assert_eq!(report.outcome, Outcome::Success);
    assert_eq!(report.log.len(), 1000);
    assert!(text(&report.log).ends_with("yyythe end\n"));
    assert_eq!(report.log_dropped, 300_000 + 8 - 1000);
}

#[tokio::test]
async fn the_guest_sees_exactly_the_contract_environment_and_argv() {
    let report = run_with(
        &shared().executor,
        &shared().behave,
        &[("do", "env;args"), ("colour", "blue")],
        LIMITS,
        ".",
        &Arc::default(),
    )
    .await;
    assert_eq!(report.outcome, Outcome::Success, "{}", text(&report.log));
    let expected = "\
WASMJOB_ATTEMPT=2
WASMJOB_JOB_DIR=/job
WASMJOB_JOB_ID=01JD3Q4G7TZ9N8V2K5X6Y1R0AB
WASMJOB_JOB_NAME=executor-test
WASMJOB_META_colour=blue
WASMJOB_META_do=env;args
WASMJOB_SCRATCH_DIR=/scratch
WASMJOB_TASK_ID=01JD3Q4G7TZ9N8V2K5X6Y1R0AC
WASMJOB_TASK_VALUE=7
behave.wasm 7
";
    assert_eq!(text(&report.result), expected);
}

#[tokio::test]
async fn the_manifest_is_readable_by_absolute_and_working_dir_relative_paths() {
    let report = behave("read:/job/data.txt;read:/job/work/sub/in.txt").await;
    assert_eq!(report.outcome, Outcome::Success, "{}", text(&report.log));
    assert_eq!(text(&report.result), "top data\nnested data\n");

    let module = &shared().behave;
    let report = run_with(
        &shared().executor,
        module,
        &[("do", "read:sub/in.txt")],
        LIMITS,
        "work",
        &Arc::default(),
    )
    .await;
    assert_eq!(report.outcome, Outcome::Success, "{}", text(&report.log));
    assert_eq!(text(&report.result), "nested data\n");
}

#[tokio::test]
async fn paths_outside_the_manifest_cannot_be_opened() {
    for path in [
        "/etc/passwd",
        "../../../../etc/passwd",
        "/job/../../etc/passwd",
        "/proc/self/environ",
    ] {
        let report = behave(&format!("read:{path}")).await;
        assert_eq!(
            report.outcome,
            Outcome::Error("exit code 1".into()),
            "{path}"
        );
        assert!(
            report.result.is_empty(),
            "{path} was read: {}",
            text(&report.result)
        );
        assert!(
            text(&report.log).contains(&format!("read {path}:")),
            "{}",
            text(&report.log)
        );
    }
}

#[tokio::test]
async fn the_manifest_cannot_be_written() {
    for path in ["/job/data.txt", "/job/new.txt", "data.txt"] {
        let report = behave(&format!("write:{path}")).await;
        assert_eq!(
            report.outcome,
            Outcome::Error("exit code 1".into()),
            "{path}"
        );
        assert!(
            text(&report.log).contains(&format!("write {path}:")),
            "{}",
            text(&report.log)
        );
    }
}

#[tokio::test]
async fn the_scratch_dir_is_writable_private_and_removed_afterwards() {
    let report = behave("write:/scratch/a.txt;read:/scratch/a.txt;ls:/scratch").await;
    assert_eq!(report.outcome, Outcome::Success, "{}", text(&report.log));
    assert_eq!(text(&report.result), "wrote /scratch/a.txt\ndataa.txt\n");

    // A second attempt starts with an empty scratch dir.
    let report = behave("ls:/scratch").await;
    assert_eq!(text(&report.result), "");

    // An executor of its own, so that no other test's attempt is running in its scratch root.
    let scratch_root = tempfile::tempdir().unwrap();
    let executor = Executor::new(ExecutorConfig {
        scratch_root: Some(scratch_root.path().to_path_buf()),
        ..ExecutorConfig::default()
    })
    .unwrap();
    let module = executor.compile(&guest_bytes("behave")).unwrap();
    let control = Arc::default();
    let write = [("do", "write:/scratch/big.txt")];
    let report = run_with(&executor, &module, &write, LIMITS, ".", &control).await;
    assert_eq!(report.outcome, Outcome::Success, "{}", text(&report.log));
    let left: Vec<_> = std::fs::read_dir(scratch_root.path()).unwrap().collect();
    assert!(left.is_empty(), "scratch left behind: {left:?}");
}

#[tokio::test]
async fn creations_past_the_file_quota_are_refused_at_once() {
    // Each refusal used to walk the whole scratch directory again: 9,000 walks of 1,000 files
    // held the attempt for 18 s. Within a 5 s lifetime, slowness ends it as a timeout.
    let limits = Limits {
        lifetime: Duration::from_secs(5),
        scratch_files: 1_000,
        ..LIMITS
    };
    let flood = [("do", "flood:/scratch 10000")];
    let shared = shared();
    let report = run_with(
        &shared.executor,
        &shared.behave,
        &flood,
        limits,
        ".",
        &Arc::default(),
    )
    .await;
    let log = text(&report.log);
    assert_eq!(report.ending, Ending::ScratchLimitExceeded, "{log}");
    assert!(
        log.starts_with("created 1000 files, refused 9000\nflood /scratch 10000: Quota exceeded"),
        "{log}"
    );
}

#[tokio::test]
async fn progress_reported_by_the_guest_reaches_the_control() {
    let control = Arc::new(AttemptControl::default());
    let report = run_with(
        &shared().executor,
        &shared().behave,
        &[("do", "progress:half way")],
        LIMITS,
        ".",
        &control,
    )
    .await;
    assert_eq!(report.outcome, Outcome::Success, "{}", text(&report.log));
    assert_eq!(control.take_progress().as_deref(), Some(&b"half way"[..]));
    assert_eq!(control.take_progress(), None);
}

#[tokio::test]
async fn a_module_that_cannot_run_is_a_compilation_error() {
    let executor = &shared().executor;
    let cases: &[(&str, Vec<u8>, &str)] = &[
        ("not wasm", b"definitely not wasm".to_vec(), ""),
        (
            "no _start",
            wat("(module (func (export \"main\")))"),
            "no `_start`",
        ),
        (
            "an import the host lacks",
            wat(r#"(module (import "env" "launch_missiles" (func)) (func (export "_start")))"#),
            "launch_missiles",
        ),
        (
            "a component",
            b"\0asm\x0d\x00\x01\x00".to_vec(),
            "component, not a core module",
        ),
    ];
    for (name, wasm, says) in cases {
        let invalid = executor
            .compile(wasm)
            .err()
            .unwrap_or_else(|| panic!("{name} compiled"));
        let ending = Ending::from(invalid.clone());
        assert!(matches!(&ending, Ending::InvalidModule(_)), "{name}");
        assert!(
            matches!(wasmjob_host_api::outcome(&ending), Outcome::Fatal(_)),
            "{name}"
        );
        assert!(invalid.0.contains(says), "{name}: {invalid}");
    }
}

#[tokio::test]
async fn a_module_cache_others_can_write_is_never_loaded_from() {
    use std::os::unix::fs::PermissionsExt;
    let executor = |dir: &std::path::Path| {
        Arc::new(
            Executor::new(ExecutorConfig {
                module_cache_dir: Some(dir.to_path_buf()),
                ..ExecutorConfig::default()
            })
            .unwrap(),
        )
    };
    let hello = guest_bytes("hello");
    // A sound compiled module, made in a safe directory and planted in one every user can
    // write: whoever can write there could have put any native code under that name.
    let safe = tempfile::tempdir().unwrap();
    executor(safe.path())
        .compile_within_budget(hello.clone())
        .await
        .unwrap();
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    for entry in std::fs::read_dir(safe.path()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, open.path().join(path.file_name().unwrap())).unwrap();
    }

    let worker = executor(open.path());
    let module = worker.compile_within_budget(hello.clone()).await.unwrap();
    assert_eq!(
        worker.module_stats(),
        ModuleStats {
            compiled: 1,
            loaded: 0
        }
    );
    let report = run_on(&worker, &module).await;
    assert_eq!(report.outcome, Outcome::Success, "{}", text(&report.log));
}

#[tokio::test]
async fn compiled_modules_are_kept_on_disk_and_a_bad_file_is_rebuilt() {
    let cache = tempfile::tempdir().unwrap();
    let executor = || {
        Arc::new(
            Executor::new(ExecutorConfig {
                module_cache_dir: Some(cache.path().to_path_buf()),
                ..ExecutorConfig::default()
            })
            .unwrap(),
        )
    };
    let hello = guest_bytes("hello");
    let files = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(cache.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect()
    };

    // The first executor compiles once, however many jobs use the module, and stores it.
    let first = executor();
    first.compile_within_budget(hello.clone()).await.unwrap();
    first.compile_within_budget(hello.clone()).await.unwrap();
    assert_eq!(
        first.module_stats(),
        ModuleStats {
            compiled: 1,
            loaded: 0
        }
    );
    let stored = files();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(stored[0].to_string_lossy().ends_with(".cwasm"));

    // A restarted worker loads it instead of compiling, and it runs.
    let second = executor();
    let module = second.compile_within_budget(hello.clone()).await.unwrap();
    assert_eq!(
        second.module_stats(),
        ModuleStats {
            compiled: 0,
            loaded: 1
        }
    );
    let report = run_on(&second, &module).await;
    assert_eq!(report.outcome, Outcome::Success, "{}", text(&report.log));

    // A torn file, and one whose header matches but whose bytes wasmtime refuses (a foreign
    // engine's): ignored, compiled again, and replaced by a sound file.
    let sound = std::fs::read(&stored[0]).unwrap();
    let foreign = {
        let payload = b"compiled by some other engine".to_vec();
        let mut file = wasmjob::manifest::Digest::of(&payload).as_bytes().to_vec();
        file.extend(payload);
        file
    };
    for bad in [sound[..sound.len() / 2].to_vec(), foreign] {
        std::fs::write(&stored[0], bad).unwrap();
        let next = executor();
        let module = next.compile_within_budget(hello.clone()).await.unwrap();
        assert_eq!(
            next.module_stats(),
            ModuleStats {
                compiled: 1,
                loaded: 0
            }
        );
        let report = run_on(&next, &module).await;
        assert_eq!(report.outcome, Outcome::Success, "{}", text(&report.log));
        assert_eq!(files().len(), 1);
        let again = executor();
        again.compile_within_budget(hello.clone()).await.unwrap();
        assert_eq!(
            again.module_stats(),
            ModuleStats {
                compiled: 0,
                loaded: 1
            }
        );
    }
}

/// Runs one attempt of `module` on `executor` with the test limits.
async fn run_on(executor: &Executor, module: &TaskModule) -> AttemptReport {
    run_with(executor, module, &[], LIMITS, ".", &Arc::default()).await
}
