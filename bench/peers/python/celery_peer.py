"""Celery peer for `scripts/bench --peers`: N no-op Celery tasks through Redis, timed.

Protocol (bench/peers/README.md): `celery_peer.py --redis URL --tasks N --concurrency C` prints
`ready`, reads `go`, runs the N tasks, prints one JSON line, stops its worker, exits 0.

This one file is both sides: run as a program it is the producer and supervisor; imported by
`celery -A celery_peer worker` it is the worker's app, counting completions with signals.
"""

import os
import sys
import threading
import time

import celery
from celery import Celery, group, signals

import peer_protocol

# The worker gets its settings through the environment, since it imports this module by name.
ENV_REDIS = "CELERY_PEER_REDIS"
ENV_TASKS = "CELERY_PEER_TASKS"
ENV_DIR = "CELERY_PEER_DIR"

# Celery's optimizing guide: with many short tasks and throughput in mind the prefetch multiplier
# "should be large", suggesting 64 or 128; the default 4 is meant for a mix of task lengths.
PREFETCH_MULTIPLIER = 64

_redis = os.environ.get(ENV_REDIS, "redis://127.0.0.1:6379")
app = Celery("celery_peer", broker=_redis, backend=_redis)
app.conf.update(
    worker_prefetch_multiplier=PREFETCH_MULTIPLIER,
    # The default already; stated because the benchmark must not pay for task events.
    worker_send_task_events=False,
    # Silences the 5.x deprecation warning with the value Celery uses anyway.
    broker_connection_retry_on_startup=True,
)


# An explicit name: the producer runs this file as __main__, the worker imports it as celery_peer,
# and both must call the task the same.
@app.task(name="noop")
def noop():
    return None


def _install_worker_hooks(directory, tasks):
    # With the threads pool every task runs in the worker process itself, so one counter in this
    # process sees them all; signals fire in the pool's threads, hence the lock.
    lock = threading.Lock()
    done = [0]

    @signals.worker_ready.connect(weak=False)
    def _ready(**_):
        peer_protocol.write_atomically(os.path.join(directory, "ready"), str(os.getpid()))

    # task_success fires after the result backend has stored the result: completion as Celery
    # records it, and no Redis command of our own.
    @signals.task_success.connect(weak=False)
    def _success(**_):
        with lock:
            done[0] += 1
            count = done[0]
        if count == tasks:
            peer_protocol.write_atomically(os.path.join(directory, "done"), f"{count} {time.time()!r}")

    @signals.task_failure.connect(weak=False)
    def _failure(exception=None, **_):
        peer_protocol.write_atomically(os.path.join(directory, "failed"), repr(exception))


if os.environ.get(ENV_DIR):
    _install_worker_hooks(os.environ[ENV_DIR], int(os.environ[ENV_TASKS]))


def run(peer, args):
    peer_protocol.check_redis(args.redis)
    app.conf.broker_url = args.redis
    app.conf.result_backend = args.redis

    peer.spawn(
        [
            sys.executable, "-m", "celery", "-A", "celery_peer", "worker",
            # Celery's pools for many I/O-light tasks at high concurrency are threads, gevent and
            # eventlet; threads needs no monkey-patching and no extra package, while prefork
            # with C processes on a 2-core machine is not how anyone runs C=100.
            "--pool", "threads",
            "--concurrency", str(args.concurrency),
            "--loglevel", "WARNING",  # Celery's default, so no per-task log lines
            "--hostname", f"peer{os.getpid()}@%h",
        ],
        env={ENV_REDIS: args.redis, ENV_TASKS: str(args.tasks), ENV_DIR: peer.dir},
    )
    peer_protocol.wait_for_file(peer, peer.path("ready"), "Celery worker ready", timeout=60)

    start = peer_protocol.ready_then_go()
    # One group applied at once: Celery's canvas way to send many independent tasks, still one
    # message per task (chunks would pack many calls into one message, so it is not used).
    # Kept to the end: a freed AsyncResult unsubscribes from its result channel, N commands
    # after the JSON line that nothing here needs.
    peer.keep.append(group(noop.s() for _ in range(args.tasks)).apply_async())

    def finished():
        if os.path.exists(peer.path("failed")):
            with open(peer.path("failed")) as f:
                raise peer_protocol.PeerError(f"a task failed: {f.read()}")
        return os.path.exists(peer.path("done"))

    # The file is only stat()ed, so polling it often costs Redis nothing; the end time comes from
    # inside the worker, so the poll interval does not blur it.
    peer_protocol.wait_until(peer, finished, "Celery tasks", poll=0.01)
    with open(peer.path("done")) as f:
        count, end = f.read().split()
    peer_protocol.report(
        celery.__version__,
        float(end) - start,
        int(count),
        f"threads pool, concurrency {args.concurrency}, prefetch multiplier {PREFETCH_MULTIPLIER} "
        f"(Celery's optimizing guide for many short tasks), {args.tasks} tasks sent as one "
        "group(...).apply_async() (one message per task), Redis as broker and result backend, "
        "the last completion stamped by a task_success signal in the worker",
    )


if __name__ == "__main__":
    peer_protocol.main("celery", "Celery no-op throughput peer", run)
