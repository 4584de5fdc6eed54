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

    /// Its loopback port.
    pub fn port(&self) -> u16 {
        self.port
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
            // A server started with `--requirepass` answers, but only to say it wants the
            // password: it is up all the same.
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && matches!(
                    self.command(&["PING"]).as_str(),
                    "+PONG" | "-NOAUTH Authentication required."
                )
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

/// A slow loopback link to a local port: a proxy that forwards each direction at most at
/// `bytes_per_second`, for transfers that must not depend on a fast network. [`cut`] drops
/// every connection through it, as a network that breaks would. Stops when dropped.
///
/// [`cut`]: SlowLink::cut
pub struct SlowLink {
    port: u16,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SlowLink {
    /// Starts a proxy on a free loopback port to `127.0.0.1:target`.
    pub fn start(target: u16, bytes_per_second: u64) -> Self {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (accepted, stopping) = (open.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut open = accepted.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                forward(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    bytes_per_second,
                );
                forward(server, client, bytes_per_second);
            }
        });
        SlowLink { port, open, stop }
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Closes every connection through the proxy; new ones are let through.
    pub fn cut(&self) {
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.cut();
    }
}

/// Copies `from` to `to` in a thread of its own, pausing so as to keep to the rate.
fn forward(mut from: std::net::TcpStream, mut to: std::net::TcpStream, bytes_per_second: u64) {
    use std::io::{Read, Write};
    std::thread::spawn(move || {
        // When the link is free again; time spent idle earns no credit for a burst.
        let mut free_at = std::time::Instant::now();
        let mut buffer = vec![0; 16 << 10];
        while let Ok(n) = from.read(&mut buffer) {
            if n == 0 || to.write_all(&buffer[..n]).is_err() {
                break;
            }
            let busy = std::time::Duration::from_secs_f64(n as f64 / bytes_per_second as f64);
            free_at = free_at.max(std::time::Instant::now()) + busy;
            std::thread::sleep(free_at.saturating_duration_since(std::time::Instant::now()));
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}
