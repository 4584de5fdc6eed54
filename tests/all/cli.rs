//! `wasmjob run` end to end: the real binary, the example guests built for `wasm32-wasip1`, and
//! what a user reads back (summary, exit code, `--output` lines).

use crate::common::{FAST_WORKER, PATIENCE, Wasmjob, WorkerProcess, workspace_file};
use serde_json::Value;
use std::time::{Duration, Instant};
use wasmjob_test_support::{RedisServer, guest};

/// Asserts that a command failed with exit code 2 and one line on stderr saying each of `says`.
fn assert_refused(run: &crate::common::Ran, says: &[&str]) {
    run.assert_exit(2);
    assert_eq!(
        run.stderr.lines().count(),
        1,
        "not one line: {}",
        run.stderr
    );
    for said in says {
        assert!(
            run.stderr.contains(said),
            "does not say {said:?}: {}",
            run.stderr
        );
    }
}

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
        // An AS must be relative; the whole argument was taken for a host path.
        (
            &["--range", "1..=3", "--file", "dir/x.txt:/abs"],
            "write --file dir/x.txt:abs",
        ),
        (&["--range", "1..=3", "--slots", "x"], "--slots"),
        (&["--range"], "--range"),
    ];
    for (args, names) in cases {
        let run = Wasmjob::new().arg("run").arg(&hello).args(*args).run();
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
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

#[test]
fn guest_text_is_escaped_before_it_reaches_the_terminal() {
    let server = RedisServer::start();
    let url = server.url();
    let _worker = WorkerProcess::start(&url, "host", FAST_WORKER);
    // ESC sequences that clear the screen or recolour it, a BEL, a CR that overwrites the line,
    // a C1 CSI, and a right-to-left override in the job's name (which is no control character,
    // so the spec allows it). The sleep lets a heartbeat carry the progress.
    let steps = "logline:log\x1b[2Jline\rcr;progress:prog\x1b[1mress\x07;sleep:1200;\
                 fatal:fat\x1b[31mal\u{9b}";
    let run = Wasmjob::new()
        .redis(&url)
        .arg("submit")
        .arg(guest("behave"))
        .args(["--range", "1", "--name", "name\u{202e}txt.exe", "--wait"])
        .args(["--meta", &format!("do={steps}")])
        .run();
    run.assert_exit(1);
    let job = run
        .stderr
        .split_whitespace()
        .nth(2)
        .expect("submit --wait names the job")
        .trim_end_matches(';')
        .to_owned();
    let info = Wasmjob::new().redis(&url).args(["info", &job, "1"]).run();
    info.assert_exit(0);
    let list = Wasmjob::new().redis(&url).arg("list").run();
    list.assert_exit(0);
    let status = Wasmjob::new().redis(&url).args(["status", &job]).run();
    status.assert_exit(0);

    for (what, out, shown) in [
        (
            "the summary",
            &run.stdout,
            &["name\\u{202e}txt.exe", "fat\\u{1b}[31mal\\u{9b}"][..],
        ),
        (
            "info",
            &info.stdout,
            &[
                "    log\\u{1b}[2Jline\\rcr",
                "prog\\u{1b}[1mress\\u{7}",
                "fat\\u{1b}[31mal\\u{9b}",
            ][..],
        ),
        ("list", &list.stdout, &["name\\u{202e}txt.exe"][..]),
        ("status", &status.stdout, &["name\\u{202e}txt.exe"][..]),
    ] {
        let raw: Vec<char> = out
            .chars()
            .filter(|&c| (c.is_control() && c != '\n') || c == '\u{202e}')
            .collect();
        assert!(raw.is_empty(), "{what} prints {raw:?} raw:\n{out}");
        for text in shown {
            assert!(out.contains(text), "{what} does not show {text:?}:\n{out}");
        }
    }
}

#[test]
fn a_module_that_is_not_webassembly_is_refused_before_anything_is_sent() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[u8], &str)] = &[
        ("empty.wasm", b"", "the file is empty"),
        (
            "notes.wasm",
            b"hello, world\n",
            "starts neither with the WebAssembly magic",
        ),
        (
            "component.wasm",
            b"\0asm\x0d\0\x01\0",
            "is a WebAssembly component",
        ),
        (
            "cut.wasm",
            b"\0asm\x01",
            "ends inside the 8-byte WebAssembly header",
        ),
    ];
    for &(name, bytes, says) in cases {
        let module = dir.path().join(name);
        std::fs::write(&module, bytes).unwrap();
        for command in ["submit", "run"] {
            let run = Wasmjob::new()
                .redis(&server.url())
                .arg(command)
                .arg(&module)
                .args(["--range", "1..=3"])
                .run();
            let named = format!("{} is not a WebAssembly module", module.display());
            assert_refused(&run, &[&named, says]);
            assert!(run.stdout.is_empty(), "{name}: {}", run.stdout);
        }
    }
    // Refused before connecting: not even the data marker was written.
    assert_eq!(server.command(&["DBSIZE"]), ":0");
}

#[test]
fn a_password_protected_server_asks_for_its_password() {
    let server = RedisServer::start_with(&["--save", "", "--requirepass", "s3cret"]);
    let url = server.url();
    let run = Wasmjob::new().redis(&url).arg("list").run();
    assert_refused(
        &run,
        &[
            &url,
            "requires a password",
            "redis://:PASSWORD@",
            "WASMJOB_REDIS",
            "--redis",
        ],
    );

    let port = url.rsplit(':').next().unwrap();
    let wrong = format!("redis://:wrong-one@127.0.0.1:{port}");
    let run = Wasmjob::new().redis(&wrong).arg("list").run();
    assert_refused(
        &run,
        &[&format!("redis://:***@127.0.0.1:{port}"), "refused"],
    );
    assert!(!run.stderr.contains("wrong-one"), "{}", run.stderr);

    let right = format!("redis://:s3cret@127.0.0.1:{port}");
    Wasmjob::new()
        .redis(&right)
        .arg("list")
        .run()
        .assert_exit(0);
}

#[test]
fn a_server_that_is_not_redis_is_named_as_such() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let done = std::sync::Arc::new(AtomicBool::new(false));
    // An HTTP server in spirit: whatever it is sent, it answers 400. It stops when the test is
    // done, or after 30 s at the latest.
    let http = std::thread::spawn({
        let done = std::sync::Arc::clone(&done);
        move || {
            let started = Instant::now();
            while !done.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(30) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let _ = stream.read(&mut [0; 1024]);
                        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
    });
    let run = Wasmjob::new().redis(&url).arg("list").run();
    done.store(true, Ordering::Relaxed);
    http.join().unwrap();
    assert_refused(&run, &[&format!("{url} does not speak the Redis protocol")]);
}

#[test]
fn an_upload_refused_for_memory_says_so_and_leaves_nothing() {
    let server =
        RedisServer::start_with(&["--save", "", "--appendonly", "no", "--maxmemory", "2mb"]);
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![7; 3 << 20]).unwrap();
    let run = Wasmjob::new()
        .redis(&server.url())
        .arg("submit")
        .arg(guest("hello"))
        .args(["--range", "1..=3", "--file"])
        .arg(&big)
        .run();
    assert_refused(
        &run,
        &[
            &format!("cannot upload {} as big.bin", big.display()),
            "at its maxmemory (OOM)",
            "the job was withdrawn",
        ],
    );
    // The data marker alone: the job and its files went with the withdrawal.
    assert_eq!(server.command(&["DBSIZE"]), ":1");
}

#[test]
fn a_submit_no_worker_would_run_is_refused_once() {
    let server = RedisServer::start();
    let url = server.url();
    let _worker = WorkerProcess::start(&url, "host", &["--max-memory", "64MiB"]);
    let started = Instant::now();
    while server.command(&["HLEN", "wasmjob:workers"]) != ":1" {
        assert!(started.elapsed() < PATIENCE, "the worker never registered");
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = Wasmjob::new()
        .redis(&url)
        .arg("submit")
        .arg(guest("hello"))
        .args(["--range", "1..=3", "--memory", "128MiB"])
        .run();
    let refusal = "memory 128 MiB is above the workers' ceiling of 64 MiB";
    assert_refused(
        &run,
        &["no worker would run this job", refusal, "--max-memory"],
    );
    assert_eq!(run.stderr.matches(refusal).count(), 1, "{}", run.stderr);
    assert_eq!(server.command(&["ZCARD", "wasmjob:jobs"]), ":0");
}

#[test]
fn worker_options_out_of_range_are_refused_naming_the_option() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["--lease", "0s"], &["--lease must be above 0s"]),
        (
            &["--max-memory", "1TiB"],
            &["--max-memory 1 TiB is above", "at most 4 GiB"],
        ),
    ];
    for (args, says) in cases {
        // Refused before connecting: no server is needed.
        let run = Wasmjob::new().arg("worker").args(*args).run();
        assert_refused(&run, says);
        assert!(!run.stderr.contains("--heartbeat"), "{}", run.stderr);
        assert!(!run.stderr.contains("reservation"), "{}", run.stderr);
    }
}
