//! `wasmjob run` end to end: the real binary, the example guests built for `wasm32-wasip1`, and
//! what a user reads back (summary, exit code, `--output` lines).

use crate::common::{Wasmjob, workspace_file};
use serde_json::Value;
use std::time::{Duration, Instant};
use wasmjob_test_support::guest;

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn hello_runs_a_hundred_tasks_and_prints_its_summary() {
    let out = tempfile::tempdir().unwrap();
    let output = out.path().join("out.jsonl");
    let run = Wasmjob::new()
        .arg("run")
        .arg(guest("hello"))
        .args(["--range", "1..=100", "--output"])
        .arg(&output)
        .run();
    run.assert_exit(0);
    assert!(run.stdout.contains("(hello): 100 tasks"), "{}", run.stdout);
    assert!(
        run.stdout.contains("succeeded       100  1..=100"),
        "{}",
        run.stdout
    );

    let lines = lines(&output);
    assert_eq!(lines.len(), 100);
    for (line, value) in lines.iter().zip(1..) {
        assert_eq!(line["value"], value);
        assert_eq!(line["outcome"], "succeeded");
        assert_eq!(line["attempts"], 1);
        assert_eq!(
            line["result"],
            format!("hello from task {value} (attempt 1)\n")
        );
        assert_eq!(line["error"], Value::Null);
    }
}

#[test]
fn pi_runs_a_thousand_tasks() {
    let run = Wasmjob::new()
        .arg("run")
        .arg(guest("pi"))
        .args(["--range", "1..=1000", "--json"])
        .run();
    run.assert_exit(0);
    let summary: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["succeeded"], 1000);
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["succeeded_values"], "1..=1000");
}

#[test]
fn retries_then_fatal_values_fail_with_their_reasons() {
    let out = tempfile::tempdir().unwrap();
    let output = out.path().join("out.jsonl");
    let run = Wasmjob::new()
        .arg("run")
        .arg(guest("flaky"))
        .args(["--range", "1..=6", "--max-retries", "2"])
        .args(["--meta", "fail_attempts=2", "--meta", "fatal_values=4"])
        .arg("--output")
        .arg(&output)
        .run();
    run.assert_exit(1);
    assert!(
        run.stdout.contains("failed            1  4"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("value 4: fatal (exit code 100): value 4 is listed in fatal_values"),
        "{}",
        run.stdout
    );
    for line in lines(&output) {
        if line["value"] == 4 {
            assert_eq!(
                (&line["outcome"], &line["attempts"]),
                (&"failed".into(), &1.into())
            );
        } else {
            // Two transient failures, then success on the third and last allowed attempt.
            assert_eq!(
                (&line["outcome"], &line["attempts"]),
                (&"succeeded".into(), &3.into())
            );
        }
    }

    let run = Wasmjob::new()
        .arg("run")
        .arg(guest("flaky"))
        .args([
            "--range",
            "1..=2",
            "--max-retries",
            "1",
            "--meta",
            "fail_attempts=5",
        ])
        .run();
    run.assert_exit(1);
    assert!(
        run.stdout
            .contains("value 1: exit code 1: transient failure on attempt 2 (2 attempts)"),
        "{}",
        run.stdout
    );
}

#[test]
fn wordcount_reads_the_manifest_file_its_value_selects() {
    let out = tempfile::tempdir().unwrap();
    let output = out.path().join("out.jsonl");
    let data = workspace_file("examples/wordcount/data");
    let run = Wasmjob::new()
        .arg("run")
        .arg(guest("wordcount"))
        .args(["--range", "0..=2", "--dir"])
        .arg(&data)
        .arg("--output")
        .arg(&output)
        .run();
    run.assert_exit(0);
    for line in lines(&output) {
        let value = line["value"].as_u64().unwrap();
        let text = std::fs::read_to_string(data.join(format!("part-{value}.txt"))).unwrap();
        let result: Value = serde_json::from_str(line["result"].as_str().unwrap()).unwrap();
        assert_eq!(result["words"], text.split_whitespace().count());
        assert_eq!(result["lines"], text.lines().count());
        assert_eq!(result["bytes"], text.len());
    }
}

#[test]
fn an_endless_loop_ends_at_its_lifetime_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("loop.wat");
    std::fs::write(
        &module,
        r#"(module (func (export "_start") (loop $l (br $l))))"#,
    )
    .unwrap();
    let started = Instant::now();
    let run = Wasmjob::new()
        .arg("run")
        .arg(&module)
        .args([
            "--range",
            "1..=2",
            "--lifetime",
            "1s",
            "--max-retries",
            "0",
            "--slots",
            "1",
        ])
        .run();
    run.assert_exit(1);
    assert!(
        run.stdout
            .contains("value 1: lifetime exceeded (1 attempt)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("value 2: lifetime exceeded (1 attempt)"),
        "{}",
        run.stdout
    );
    // One slot: the second task started only after the first was stopped.
    assert!(started.elapsed() >= Duration::from_secs(2));

    // A task stopped at its lifetime does not hold up the tasks after it.
    let run = Wasmjob::new()
        .arg("run")
        .arg(guest("behave"))
        .args([
            "--range",
            "1..=3",
            "--lifetime",
            "1s",
            "--max-retries",
            "0",
            "--slots",
            "1",
        ])
        .args(["--meta", "do_1=spin"])
        .run();
    run.assert_exit(1);
    assert!(
        run.stdout.contains("succeeded         2  2..=3"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("value 1: lifetime exceeded"),
        "{}",
        run.stdout
    );
}

#[test]
fn the_plain_wat_example_runs_without_the_sdk() {
    let run = Wasmjob::new()
        .arg("run")
        .arg(workspace_file("examples/wat/hello.wat"))
        .args(["--range", "1..=3", "--json"])
        .run();
    run.assert_exit(0);
    let summary: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["succeeded"], 3);
}

#[test]
fn a_module_that_does_not_compile_fails_every_task_as_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("garbage.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0 this is not a module").unwrap();
    let run = Wasmjob::new()
        .arg("run")
        .arg(&module)
        .args(["--range", "1..=3"])
        .run();
    run.assert_exit(1);
    assert!(
        run.stdout.contains("failed            3  1..=3"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("value 1: compilation error:"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("(1 attempt)"),
        "fatal is not retried: {}",
        run.stdout
    );
}

#[test]
fn bad_input_is_refused_with_one_clear_line() {
    let hello = guest("hello");
    let cases: &[(&[&str], &str)] = &[
        (&["--range", "10..5"], "10..5"),
        (&["--range", "abc"], "abc"),
        (
            &["--range", "1..=3", "--file", "/no/such/file.txt"],
            "/no/such/file.txt",
        ),
        (&["--range", "1..=3", "--lifetime", "0s"], "lifetime"),
        (&["--range", "1..=3", "--memory", "lots"], "lots"),
        (&["--range", "1..=3", "--meta", "no-dashes=1"], "no-dashes"),
        (&["--range", "1..=3", "--workdir", "missing"], "missing"),
    ];
    for (args, names) in cases {
        let run = Wasmjob::new().arg("run").arg(&hello).args(*args).run();
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(names),
            "{args:?} does not name {names:?}: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }

    let run = Wasmjob::new()
        .args(["run", "/no/such/module.wasm", "--range", "1"])
        .run();
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("/no/such/module.wasm"),
        "{}",
        run.stderr
    );
}
