"""The part of the peer protocol (bench/peers/README.md) that Celery and RQ share.

PROGRAM --redis URL --tasks N --concurrency C: start workers, print `ready`, read `go`,
enqueue N no-op jobs, wait for all N, print one JSON line, stop every worker process, exit 0.
"""

import argparse
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Seconds a worker gets to shut down warmly (deregister itself) before it is killed.
GRACE = 10.0


class PeerError(Exception):
    """A failure to report on stderr with a non-zero exit."""


def parse_args(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--redis", required=True, help="Redis URL, e.g. redis://127.0.0.1:6379")
    parser.add_argument("--tasks", type=int, required=True, help="number of no-op jobs")
    parser.add_argument("--concurrency", type=int, required=True, help="jobs run at once")
    args = parser.parse_args()
    if args.tasks < 1 or args.concurrency < 1:
        parser.error("--tasks and --concurrency must be at least 1")
    return args


def check_redis(url):
    """Fails at once on a wrong URL, where the workers would retry quietly until a timeout."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=5).ping()
    except redis.RedisError as e:
        raise PeerError(f"cannot reach Redis at {url}: {e}") from None


PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option, value):
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the process-group kill in Peer.stop still covers the usual case


def _become_subreaper():
    # RQ's work horses call setpgrp(), so killing the worker's process group misses them, and a
    # horse whose worker died would be re-parented to init, out of our sight. As a child
    # subreaper every orphan below us becomes our child instead, so cleanup can always find it.
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def _die_with_parent():
    # Runs in the child before exec: should this program be SIGKILLed, with no chance to clean
    # up, the worker it started is killed too instead of running on.
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _descendants(root):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces; the ppid follows the state.
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Peer:
    """Owns the worker processes and the scratch directory of one run; `with` guarantees that
    nothing is left behind, whether the run ends in a result, an error or a signal."""

    def __init__(self, name):
        self.name = name
        self.procs = []
        self.dir = tempfile.mkdtemp(prefix=f"{name}-peer-")
        self.log_path = os.path.join(self.dir, "workers.log")
        self._log = open(self.log_path, "ab")
        # Objects whose finalizers must never run; main() ends with os._exit, so they don't.
        self.keep = []

    def __enter__(self):
        _become_subreaper()
        # SIGTERM from run.py (or a timeout) must still run the cleanup in __exit__.
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _raise_exit)
        return self

    def __exit__(self, *exc):
        try:
            self.stop()
        finally:
            self._log.close()
            shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def path(self, name):
        return os.path.join(self.dir, name)

    def spawn(self, argv, env=None):
        """Starts argv in a session of its own, output to the log, with this directory importable."""
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONPATH"] = HERE + os.pathsep + full_env.get("PYTHONPATH", "")
        full_env["PYTHONUNBUFFERED"] = "1"
        proc = subprocess.Popen(
            argv,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.procs.append(proc)
        return proc

    def check_alive(self):
        for proc in self.procs:
            if proc.poll() is not None:
                raise PeerError(f"worker {proc.args[:4]} exited with {proc.returncode}")

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        # A second SIGTERM from an impatient caller must not cut the cleanup short.
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        # A warm stop first: SIGTERM to the process we started, as a supervisor sends it. Only to
        # it: `rq worker-pool` stops its workers itself, and workers hit twice (by us and by the
        # pool) stop cold without deregistering.
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + GRACE
        for proc in self.procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        # Then everything still below us, group or not, is killed and reaped.
        for _ in range(100):
            for proc in self.procs:
                if proc.poll() is None:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            rest = _descendants(os.getpid())
            for pid in rest:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for proc in self.procs:
                try:
                    proc.wait(0.05)
                except subprocess.TimeoutExpired:
                    pass
            if all(proc.poll() is not None for proc in self.procs):
                _reap_orphans()
            if not rest and all(proc.poll() is not None for proc in self.procs):
                return
            time.sleep(0.05)
        raise PeerError(f"processes still alive after SIGKILL: {_descendants(os.getpid())}")


def _reap_orphans():
    # Orphans handed to us as subreaper are our children now; without a wait they stay zombies.
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


def wait_until(peer, done, what, poll, stall=None, progress=None):
    """Calls done() every `poll` seconds until it is true. Fails if a worker exits, or if
    progress() (a count) has not moved for `stall` seconds: a hung run must not hang run.py."""
    last, moved = None, time.monotonic()
    while True:
        if done():
            return
        peer.check_alive()
        if stall is not None:
            now = progress() if progress else None
            if now != last:
                last, moved = now, time.monotonic()
            elif time.monotonic() - moved > stall:
                raise PeerError(f"{what}: no progress for {stall:.0f} s (at {last})")
        time.sleep(poll)


def wait_for_file(peer, path, what, timeout, poll=0.05):
    deadline = time.monotonic() + timeout

    def present():
        if os.path.exists(path):
            return True
        if time.monotonic() > deadline:
            raise PeerError(f"{what}: not within {timeout:.0f} s")
        return False

    wait_until(peer, present, what, poll)
    with open(path) as f:
        return f.read()


def write_atomically(path, text):
    """The parent polls for the file, so it must never see it half written."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def ready_then_go():
    """Says `ready`, blocks for `go`, and returns the wall-clock time of `go`.

    The wall clock (time.time), not time.monotonic: the end may be stamped in a worker process,
    and monotonic's reference point is undefined, so it is not comparable across processes."""
    print("ready", flush=True)
    line = sys.stdin.readline()
    if line.strip() != "go":
        raise PeerError(f"expected `go` on stdin, got {line!r}")
    return time.time()


def report(version, seconds, completed, notes):
    line = {"version": version, "seconds": round(seconds, 6), "completed": completed, "notes": notes}
    print(json.dumps(line), flush=True)


def _describe(e):
    if isinstance(e, PeerError):
        return str(e), 1
    if isinstance(e, KeyboardInterrupt):
        return "interrupted", 130
    if isinstance(e, SystemExit):  # only _raise_exit raises it in here
        code = e.code if isinstance(e.code, int) else 1
        return f"stopped by signal {code - 128}", code
    return f"{type(e).__name__}: {e}", 1


def main(name, description, run):
    """Runs run(peer, args) and turns any failure into a message on stderr and a non-zero exit,
    with the workers stopped either way."""
    args = parse_args(description)
    status = 0
    try:
        with Peer(name) as peer:
            try:
                run(peer, args)
            except BaseException as e:
                message, status = _describe(e)
                print(f"{name} peer: {message}", file=sys.stderr)
                tail = peer.log_tail()
                if tail:
                    print(f"--- last lines of the {name} workers' log ---\n{tail}", file=sys.stderr)
    except BaseException as e:  # the cleanup itself failed: still a message and a non-zero exit
        message, code = _describe(e)
        print(f"{name} peer: while stopping the workers: {message}", file=sys.stderr)
        status = status or code
    sys.stdout.flush()
    sys.stderr.flush()
    # No interpreter teardown: it would run the peer libraries' finalizers (Celery's AsyncResult
    # unsubscribes each of the N results), Redis traffic after the JSON line while run.py reads
    # Redis's counters. The workers are stopped and the scratch directory is gone by now.
    os._exit(status)
