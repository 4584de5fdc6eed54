//! behave: the behaviour guest of the wasmjob test suite. Each task does what its job's
//! metadata tells it to, so one module covers every guest behaviour the host must handle.
//!
//! The command is the metadata entry `do_<value>` if the job has one, else `do`, else `echo`. It
//! is a `;`-separated sequence of steps, each `name` or `name:arg`, run in order (an `arg` is
//! everything after the first `:` and cannot contain `;`):
//!
//! | step | does |
//! | --- | --- |
//! | `echo` | prints the task value and a newline |
//! | `print:TEXT` | prints TEXT (no newline) |
//! | `out:N` | writes N bytes of `x` to stdout, 64 KiB per write |
//! | `log:N` | writes N bytes of `y` to stderr, 64 KiB per write |
//! | `logline:TEXT` | writes TEXT and a newline to stderr |
//! | `sleep:MS` | sleeps MS milliseconds (`std::thread::sleep`, a WASI `poll_oneoff`) |
//! | `sleep_first:MS` | sleeps MS milliseconds on the first attempt only |
//! | `now` | prints the wall-clock time in milliseconds since the Unix epoch and a newline |
//! | `spin` | busy-loops forever |
//! | `alloc:BYTES` | allocates BYTES and touches every page, then prints BYTES and a newline |
//! | `panic` | panics (a trap) |
//! | `exit:N` | flushes stdout and exits with code N |
//! | `fatal[:MSG]` | ends with `TaskError::Fatal` (exit code `EXIT_FATAL`) |
//! | `retry[:MSG]` | ends with `TaskError::Retry` (exit code 1) |
//! | `fail_until:K` | ends with `TaskError::Retry` while the attempt is below K |
//! | `read:PATH` | prints the file; on error exits 1 with `read PATH: <error>` on stderr |
//! | `write:PATH` | writes `data` to PATH and prints `wrote PATH`; on error exits 1 with `write PATH: <error>` |
//! | `ls:PATH` | prints the directory's entry names, sorted, one per line; on error exits 1 with `ls PATH: <error>` |
//! | `env` | prints every environment variable as `K=V`, sorted, one per line |
//! | `args` | prints argv joined by spaces and a newline |
//! | `progress:TEXT` | reports TEXT as progress |
//! | `cancelled` | prints `cancelled=true` or `cancelled=false` and a newline |
//! | `time_left` | prints the milliseconds left and a newline |
//! | `recurse` | recurses without bound until the stack overflows (a trap) |
//! | `symlink:TARGET LINK` | creates the symbolic link LINK pointing at TARGET |
//! | `rename:FROM TO` | renames FROM to TO |
//! | `link:FROM TO` | creates the hard link TO of FROM |
//! | `truncate:PATH` | opens PATH for writing and truncates it to 0 bytes |
//! | `fill:PATH` | writes 64 KiB chunks to PATH until a write fails |
//! | `files:DIR` | creates empty files `DIR/0`, `DIR/1`, ... until a creation fails |
//! | `flood:DIR N` | tries to create N empty files `DIR/0` ... `DIR/N-1`, going on after failures |
//! | `openloop:PATH` | opens PATH again and again, keeping every handle, until an open fails |
//! | `connect:ADDR` | opens a TCP connection to ADDR (`127.0.0.1:6379`) |
//!
//! The file-system steps from `symlink` on end like `read` when they fail: exit 1 with
//! `NAME ARG: <error>` on stderr, `flood` with its first error. `fill`, `files`, `flood` and
//! `openloop` first log how far they got.
//!
//! An unknown step or a malformed argument ends fatal. Finishing every step is success.
//!
//! The test suite builds it with
//! `cargo build --release --target wasm32-wasip1 -p behave` (its build script does this) and
//! runs it with metadata such as `do=print:hi;logline:bye;exit:3` or `do_2=panic`.

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use wasmjob_guest::{Task, TaskError};

/// The size of one write for `out` and `log`.
const CHUNK: usize = 64 << 10;

fn main() {
    wasmjob_guest::run(|task| {
        let command = task
            .meta(&format!("do_{}", task.value()))
            .or_else(|| task.meta("do"))
            .unwrap_or("echo");
        for step in command.split(';').filter(|s| !s.trim().is_empty()) {
            let (name, arg) = step.split_once(':').unwrap_or((step, ""));
            perform(task, name.trim(), arg)?;
        }
        Ok("")
    })
}

/// Runs one step.
fn perform(task: &Task, name: &str, arg: &str) -> Result<(), TaskError> {
    match name {
        "echo" => stdout(format!("{}\n", task.value()).as_bytes())?,
        "print" => stdout(arg.as_bytes())?,
        "out" => repeat(number(name, arg)?, b'x', stdout)?,
        "log" => repeat(number(name, arg)?, b'y', stderr)?,
        "logline" => stderr(format!("{arg}\n").as_bytes())?,
        "sleep" => std::thread::sleep(Duration::from_millis(number(name, arg)?)),
        "sleep_first" if task.attempt() == 1 => {
            std::thread::sleep(Duration::from_millis(number(name, arg)?))
        }
        "sleep_first" => {}
        "now" => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|e| TaskError::fatal(format!("clock: {e}")))?;
            stdout(format!("{}\n", now.as_millis()).as_bytes())?
        }
        "spin" => spin(),
        "alloc" => {
            let bytes = number(name, arg)?;
            let len = usize::try_from(bytes).map_err(|_| bad(name, arg))?;
            let mut buffer = vec![0u8; len];
            for i in (0..len).step_by(4096) {
                buffer[i] = 1;
            }
            black_box(&buffer);
            stdout(format!("{bytes}\n").as_bytes())?;
        }
        "panic" => panic!("behave: panic step"),
        "exit" => {
            let code = arg.trim().parse().map_err(|_| bad(name, arg))?;
            let _ = std::io::stdout().flush();
            std::process::exit(code);
        }
        "fatal" => return Err(TaskError::fatal(message(arg, "behave: fatal step"))),
        "retry" => return Err(TaskError::retry(message(arg, "behave: retry step"))),
        "fail_until" => {
            let until = number(name, arg)?;
            if u64::from(task.attempt()) < until {
                return Err(TaskError::retry(format!(
                    "behave: attempt {} < {until}",
                    task.attempt()
                )));
            }
        }
        "read" => {
            let data = std::fs::read(arg).map_err(|e| failed(name, arg, e))?;
            stdout(&data)?;
        }
        "write" => {
            std::fs::write(arg, "data").map_err(|e| failed(name, arg, e))?;
            stdout(format!("wrote {arg}\n").as_bytes())?;
        }
        "ls" => {
            let mut names = std::fs::read_dir(arg)
                .and_then(|entries| {
                    entries
                        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
                        .collect::<std::io::Result<Vec<_>>>()
                })
                .map_err(|e| failed(name, arg, e))?;
            names.sort();
            stdout(lines(names).as_bytes())?;
        }
        "env" => {
            let mut vars: Vec<String> = std::env::vars_os()
                .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
                .collect();
            vars.sort();
            stdout(lines(vars).as_bytes())?;
        }
        "args" => {
            let args: Vec<String> = std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            stdout(format!("{}\n", args.join(" ")).as_bytes())?;
        }
        "progress" => wasmjob_guest::progress(arg.as_bytes()),
        "cancelled" => stdout(format!("cancelled={}\n", wasmjob_guest::cancelled()).as_bytes())?,
        "time_left" => {
            stdout(format!("{}\n", wasmjob_guest::time_left().as_millis()).as_bytes())?;
        }
        "recurse" => {
            black_box(recurse(0));
        }
        "symlink" => {
            let (target, link) = two_paths(name, arg)?;
            // The platform-neutral call: `std::os::wasi::fs::symlink_path` is still unstable.
            #[allow(deprecated)]
            std::fs::soft_link(target, link).map_err(|e| failed(name, arg, e))?;
        }
        "rename" => {
            let (from, to) = two_paths(name, arg)?;
            std::fs::rename(from, to).map_err(|e| failed(name, arg, e))?;
        }
        "link" => {
            let (from, to) = two_paths(name, arg)?;
            std::fs::hard_link(from, to).map_err(|e| failed(name, arg, e))?;
        }
        "truncate" => {
            std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(arg)
                .map_err(|e| failed(name, arg, e))?;
        }
        "fill" => {
            let mut file = std::fs::File::create(arg).map_err(|e| failed(name, arg, e))?;
            let chunk = [b'z'; CHUNK];
            let mut written = 0u64;
            let ended = loop {
                match file.write_all(&chunk) {
                    Ok(()) => written += CHUNK as u64,
                    Err(e) => break e,
                }
            };
            stderr(format!("wrote {written} bytes\n").as_bytes())?;
            return Err(failed(name, arg, ended));
        }
        "files" => {
            let mut created = 0u64;
            let ended = loop {
                match std::fs::File::create(format!("{arg}/{created}")) {
                    Ok(_) => created += 1,
                    Err(e) => break e,
                }
            };
            stderr(format!("created {created} files\n").as_bytes())?;
            return Err(failed(name, arg, ended));
        }
        "flood" => {
            let (dir, count) = arg.split_once(' ').ok_or_else(|| bad(name, arg))?;
            let count = number(name, count)?;
            let mut first_error = None;
            let mut refused = 0u64;
            for i in 0..count {
                if let Err(e) = std::fs::File::create(format!("{dir}/{i}")) {
                    refused += 1;
                    first_error.get_or_insert(e);
                }
            }
            stderr(format!("created {} files, refused {refused}\n", count - refused).as_bytes())?;
            if let Some(e) = first_error {
                return Err(failed(name, arg, e));
            }
        }
        "openloop" => {
            let mut open = Vec::new();
            let ended = loop {
                match std::fs::File::open(arg) {
                    Ok(file) => open.push(file),
                    Err(e) => break e,
                }
            };
            stderr(format!("opened {} files\n", open.len()).as_bytes())?;
            return Err(failed(name, arg, ended));
        }
        "connect" => {
            std::net::TcpStream::connect(arg).map_err(|e| failed(name, arg, e))?;
            stdout(format!("connected to {arg}\n").as_bytes())?;
        }
        _ => return Err(TaskError::fatal(format!("behave: unknown step {name:?}"))),
    }
    Ok(())
}

/// Writes to stdout at once, bypassing nothing but the line buffer (which is flushed first).
fn stdout(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.flush()?;
    out.write_all(bytes)?;
    out.flush()
}

/// Writes to stderr (unbuffered).
fn stderr(bytes: &[u8]) -> std::io::Result<()> {
    std::io::stderr().lock().write_all(bytes)
}

/// Writes `total` copies of `byte` through `write`, [`CHUNK`] bytes per call.
fn repeat(total: u64, byte: u8, write: fn(&[u8]) -> std::io::Result<()>) -> std::io::Result<()> {
    let chunk = [byte; CHUNK];
    let mut left = total;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        write(&chunk[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// Each item followed by a newline.
fn lines(items: Vec<String>) -> String {
    items.into_iter().map(|item| item + "\n").collect()
}

/// A step's numeric argument; anything else is fatal.
fn number(name: &str, arg: &str) -> Result<u64, TaskError> {
    arg.trim().parse().map_err(|_| bad(name, arg))
}

/// The fatal error for a malformed argument.
fn bad(name: &str, arg: &str) -> TaskError {
    TaskError::fatal(format!("behave: bad argument {arg:?} for step {name:?}"))
}

/// The retryable error for a failed file-system step, e.g. `read /etc/passwd: <error>`.
fn failed(name: &str, path: &str, err: std::io::Error) -> TaskError {
    TaskError::retry(format!("{name} {path}: {err}"))
}

/// The two space-separated paths of a step's argument.
fn two_paths<'a>(name: &str, arg: &'a str) -> Result<(&'a str, &'a str), TaskError> {
    arg.split_once(' ').ok_or_else(|| bad(name, arg))
}

/// The step's own message, or the default when it has none.
fn message(arg: &str, default: &str) -> String {
    if arg.is_empty() { default } else { arg }.to_owned()
}

/// Busy-loops forever; `black_box` keeps the loop from being optimized away.
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Recurses until the stack overflows: the condition is never true but the optimizer cannot
/// know, and the addition after the call keeps it from being a tail call.
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return depth;
    }
    black_box(recurse(black_box(depth + 1))).wrapping_add(depth)
}
