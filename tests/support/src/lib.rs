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
    command_importing(
        r#"(import "wasi_snapshot_preview1" "fd_write"
             (func $fd_write (param i32 i32 i32 i32) (result i32)))
           (import "wasi_snapshot_preview1" "poll_oneoff"
             (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))"#,
        body,
    )
}

/// A WASI command with one page of exported memory whose `_start` runs `body`; it imports
/// `proc_exit` as `$exit` and whatever `imports` (WAT import fields) declare.
pub fn command_importing(imports: &str, body: &str) -> Vec<u8> {
    wat(&format!(
        r#"(module
             (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
             {imports}
             (memory (export "memory") 1)
             (func (export "_start") {body}))"#
    ))
}

/// A private `redis-server` for one test: on a free loopback port, with its data in a temporary
/// directory, stopped (by its process id) when dropped. It never touches any other server.
pub struct RedisServer {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
}

impl RedisServer {
    /// Starts a server with test settings: no snapshots, no append-only file.
    pub fn start() -> Self {
        Self::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// Starts a server with extra `redis-server` arguments (e.g. `["--appendonly", "yes"]`).
    pub fn start_with(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory for redis");
        Self::start_in(dir, args)
    }

    /// Starts a server that keeps its data in `dir`, as a restart of an earlier one would.
    pub fn start_in(dir: tempfile::TempDir, args: &[&str]) -> Self {
        let port = free_port();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let child = spawn_redis(port, dir.path(), &args);
        let server = RedisServer {
            child,
            port,
            dir,
            args,
        };
        server.wait_until_ready();
        server
    }

    /// Kills the server (SIGKILL) and starts it again on the same port, data directory and
    /// arguments: what it kept on disk is all it has.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_redis(self.port, self.dir.path(), &self.args);
        self.wait_until_ready();
    }

    /// The URL to connect to it.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its process id, for tests that stop or pause it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sends one command and returns the raw reply line, for inspecting the server from tests.
    pub fn command(&self, args: &[&str]) -> String {
        use std::io::{BufRead, BufReader, Write};
        let stream =
            std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connecting to redis");
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        (&stream)
            .write_all(request.as_bytes())
            .expect("writing to redis");
        let mut line = String::new();
        BufReader::new(&stream)
            .read_line(&mut line)
            .expect("reading from redis");
        line.trim_end().to_owned()
    }

    /// The whole reply of `INFO section` (e.g. `stats`, `memory`, `commandstats`, `cpu`).
    pub fn info(&self, section: &str) -> String {
        use std::io::{BufRead, BufReader, Read, Write};
        let stream =
            std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connecting to redis");
        let request = format!("*2\r\n$4\r\nINFO\r\n${}\r\n{section}\r\n", section.len());
        (&stream)
            .write_all(request.as_bytes())
            .expect("writing to redis");
        let mut reader = BufReader::new(&stream);
        let mut header = String::new();
        reader.read_line(&mut header).expect("reading from redis");
        let len: usize = header
            .trim_end()
            .strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected INFO reply {header:?}"));
        let mut body = vec![0; len];
        reader.read_exact(&mut body).expect("reading from redis");
        String::from_utf8_lossy(&body).into_owned()
    }

    /// One numeric field of `INFO section`, such as `used_memory` in `memory`.
    pub fn info_field(&self, section: &str, field: &str) -> f64 {
        let info = self.info(section);
        info.lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no numeric {field} in INFO {section}"))
    }

    fn wait_until_ready(&self) {
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(10) {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.command(&["PING"]) == "+PONG"
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        panic!("redis-server on port {} did not start:\n{log}", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_redis(port: u16, dir: &Path, args: &[String]) -> std::process::Child {
    std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .args(["--logfile", "redis.log"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server is not installed: run scripts/test, or apt-get install redis-server")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("binding a free loopback port")
}
