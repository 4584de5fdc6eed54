"""RQ peer for `scripts/bench --peers`: N no-op RQ jobs through Redis, timed.

Protocol (bench/peers/README.md): `rq_peer.py --redis URL --tasks N --concurrency C` prints
`ready`, reads `go`, runs the N jobs, prints one JSON line, stops its workers, exits 0.

RQ's work horses import this module by name to find `noop`, once per job (each job runs in a
fresh fork), so everything else is imported inside run() and the module itself stays cheap.
"""

import os
import sys
import time

QUEUE = "peer"
# The job RQ runs; a string, because the producer runs this file as __main__ and the horse must
# import it under its real name.
NOOP = "rq_peer.noop"


def noop():
    return None


def run(peer, args):
    import redis
    import rq
    from rq import Queue, Worker
    from rq.registry import FailedJobRegistry, FinishedJobRegistry

    import peer_protocol

    peer_protocol.check_redis(args.redis)
    cores = os.cpu_count() or 1
    # An RQ worker runs one job at a time, forking a work horse for each, so its concurrency is
    # its number of worker processes. Past about two per core they only contend for the CPU:
    # C=100 processes on 2 cores is not a setup anyone would run.
    workers = min(args.concurrency, 2 * cores)

    conn = redis.Redis.from_url(args.redis)
    # K plain `rq worker` processes, as RQ is run under a supervisor. `rq worker-pool -n K` ran
    # as fast here, but its workers are its children, not ours: should we be SIGKILLed, they
    # would run on, while ours die with us (see Peer.spawn).
    for _ in range(workers):
        peer.spawn([sys.executable, "-m", "rq.cli", "worker", "--url", args.redis, QUEUE])
    deadline = time.monotonic() + 60

    def registered():
        # Each worker adds itself to the workers set just before it starts dequeuing.
        up = Worker.count(connection=conn)
        if up < workers and time.monotonic() > deadline:
            raise peer_protocol.PeerError(f"RQ workers: {up} of {workers} up after 60 s")
        return up >= workers

    peer_protocol.wait_until(peer, registered, "RQ workers", poll=0.1)

    start = peer_protocol.ready_then_go()
    queue = Queue(QUEUE, connection=conn)
    # RQ's documented bulk enqueue: every job is written in one pipeline.
    queue.enqueue_many([Queue.prepare_data(NOOP) for _ in range(args.tasks)])

    finished = FinishedJobRegistry(queue=queue)
    failed = FailedJobRegistry(queue=queue)
    seen = [0, time.monotonic()]

    def all_finished():
        # One ZCARD; the default count() would run the registry's cleanup first, a few more
        # commands per poll that RQ does not need to record completion.
        count = finished.get_job_count(cleanup=False)
        if count != seen[0]:
            seen[:] = [count, time.monotonic()]
        elif time.monotonic() - seen[1] > 2:
            # Failed jobs never reach the finished registry; look for them only when progress
            # stalls, so a normal run pays nothing for the check.
            lost = failed.get_job_count(cleanup=False)
            if lost:
                raise peer_protocol.PeerError(f"{lost} RQ jobs failed ({count} finished)")
        return count >= args.tasks

    peer_protocol.wait_until(peer, all_finished, "RQ jobs", poll=0.1, stall=60, progress=lambda: seen[0])
    # Polled, so the end is known to within the 100 ms poll interval.
    end = time.time()

    peer_protocol.report(
        rq.__version__,
        end - start,
        seen[0],
        f"{workers} `rq worker` processes (min(C={args.concurrency}, 2 per core on {cores} "
        "cores), as each RQ worker runs one job at a time in a forked work horse), "
        f"{args.tasks} jobs enqueued with one Queue.enqueue_many of Queue.prepare_data, "
        "completion polled as the FinishedJobRegistry count every 100 ms",
    )


if __name__ == "__main__":
    import peer_protocol

    peer_protocol.main("rq", "RQ no-op throughput peer", run)
