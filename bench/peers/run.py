#!/usr/bin/env python3
"""Runs one peer queue of wasmjob's benchmark against a given Redis and writes its figures.

    run.py --redis URL --tasks N --concurrency C --out FILE {bullmq,apalis,celery,rq}

Installs the peer into target/peers/ from its registry when it is not there yet (npm, cargo,
pip, at the versions pinned beside this file), runs its program through the protocol of
README.md, and writes one JSON line to FILE: tasks per second, and Redis commands and CPU per
task from INFO deltas taken while the program works. Called by `scripts/bench --peers`.
"""

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PEERS_DIR = ROOT / "target" / "peers"
# A peer that has not finished by then is stuck, not slow.
DEADLINE_S = 1800


def run(command, **kwargs):
    print("+", " ".join(str(part) for part in command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True, **kwargs)


def stamped(stamp: Path, inputs: list[Path]) -> tuple[bool, str]:
    """Whether `stamp` records an install from exactly these input files, and their digest."""
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in inputs)).hexdigest()
    return stamp.is_file() and stamp.read_text() == digest, digest


def install_bullmq() -> list[str]:
    folder = HERE / "bullmq"
    stamp = folder / "node_modules" / ".wasmjob-installed"
    done, digest = stamped(stamp, [folder / "package-lock.json"])
    if not done:
        run(["npm", "ci", "--no-audit", "--no-fund"], cwd=folder)
        stamp.write_text(digest)
    return ["node", str(folder / "peer.mjs")]


def install_apalis() -> list[str]:
    target = PEERS_DIR / "apalis"
    # cargo itself knows when nothing changed.
    run([
        "cargo", "build", "--release", "--locked", "--quiet",
        "--manifest-path", str(HERE / "apalis" / "Cargo.toml"),
        "--target-dir", str(target),
    ])
    return [str(target / "release" / "apalis-peer")]


def python_venv() -> Path:
    venv = PEERS_DIR / "venv"
    requirements = HERE / "python" / "requirements.txt"
    stamp = venv / ".wasmjob-installed"
    done, digest = stamped(stamp, [requirements])
    if not done:
        run([sys.executable, "-m", "venv", "--clear", str(venv)])
        run([str(venv / "bin" / "pip"), "install", "--quiet", "-r", str(requirements)])
        stamp.write_text(digest)
    return venv / "bin" / "python"


def install_celery() -> list[str]:
    return [str(python_venv()), str(HERE / "python" / "celery_peer.py")]


def install_rq() -> list[str]:
    return [str(python_venv()), str(HERE / "python" / "rq_peer.py")]


INSTALL = {
    "bullmq": install_bullmq,
    "apalis": install_apalis,
    "celery": install_celery,
    "rq": install_rq,
}


def redis_work(url: str) -> tuple[int, float]:
    """Commands Redis has run (all of them, inside scripts too) and the CPU seconds it used."""
    parsed = urlparse(url)
    command = ["redis-cli", "-h", parsed.hostname or "127.0.0.1", "-p", str(parsed.port or 6379)]
    text = subprocess.run(
        command + ["INFO", "all"], check=True, capture_output=True, text=True
    ).stdout
    calls, cpu = 0, 0.0
    for line in text.splitlines():
        if line.startswith("cmdstat_"):
            calls += int(line.split("calls=", 1)[1].split(",", 1)[0])
        elif line.startswith(("used_cpu_sys:", "used_cpu_user:")):
            cpu += float(line.split(":", 1)[1])
    return calls, cpu


def read_line(program: subprocess.Popen, what: str) -> str:
    line = program.stdout.readline()
    if not line:
        raise SystemExit(f"the peer exited (code {program.wait()}) before it printed {what}")
    return line.strip()


def measure(peer: str, url: str, tasks: int, concurrency: int) -> dict:
    command = INSTALL[peer]() + [
        "--redis", url, "--tasks", str(tasks), "--concurrency", str(concurrency),
    ]
    print("+", " ".join(command), file=sys.stderr, flush=True)
    program = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        while (line := read_line(program, "`ready`")) != "ready":
            print(f"{peer}: {line}", file=sys.stderr)
        calls_before, cpu_before = redis_work(url)
        program.stdin.write("go\n")
        program.stdin.flush()
        while not (line := read_line(program, "its figures")).startswith("{"):
            print(f"{peer}: {line}", file=sys.stderr)
        calls_after, cpu_after = redis_work(url)
        figures = json.loads(line)
        code = program.wait(timeout=60)
        if code != 0:
            raise SystemExit(f"the peer exited with code {code}")
    finally:
        if program.poll() is None:
            program.kill()
            program.wait()
    if figures.get("completed") != tasks:
        raise SystemExit(f"the peer completed {figures.get('completed')} of {tasks} tasks")
    # The INFO call that took the first snapshot is counted in the second.
    commands = calls_after - calls_before - 1
    return {
        "peer": peer,
        "version": figures["version"],
        "tasks": tasks,
        "concurrency": concurrency,
        "seconds": figures["seconds"],
        "tasks_per_s": tasks / figures["seconds"],
        "redis_commands_per_task": commands / tasks,
        "redis_cpu_us_per_task": (cpu_after - cpu_before) * 1e6 / tasks,
        "notes": figures.get("notes", ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", required=True, help="a Redis of the benchmark's own")
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="where the JSON line goes")
    parser.add_argument("peer", choices=sorted(INSTALL))
    args = parser.parse_args()
    started = time.monotonic()
    figures = measure(args.peer, args.redis, args.tasks, args.concurrency)
    args.out.write_text(json.dumps(figures) + "\n")
    print(
        f"{args.peer} {figures['version']}: {figures['tasks_per_s']:.0f} tasks/s, "
        f"{figures['redis_commands_per_task']:.1f} Redis commands and "
        f"{figures['redis_cpu_us_per_task']:.1f} µs of Redis CPU per task "
        f"({time.monotonic() - started:.0f} s with the install)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
