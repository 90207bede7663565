"""dramatiq adapter: its Worker in-process (what ``dramatiq --processes 1`` runs in its one child),
8 threads (the CLI default), default middleware (no results backend).  No bulk enqueue API.
Sync enqueue: ``actor.send`` (sync only: the one-by-one phase is the same plain loop).
"""

from __future__ import annotations

import signal
import threading

import dramatiq
from _common import COUNTER, latency_loop, parse_args, sync_loop, timed_loop
from dramatiq.brokers.redis import RedisBroker

args = parse_args()
broker = RedisBroker(url=args.redis)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="default")
def noop(x: int) -> None:
    COUNTER.hit()


def main() -> None:
    if args.mode == "work":
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        worker = dramatiq.Worker(broker, worker_threads=args.concurrency or 8)
        worker.start()
        stop.wait()
        worker.stop()
        return

    def one(i: int) -> None:
        noop.send(i)

    if args.mode == "enqueue":
        timed_loop(args.n, one)
    elif args.mode == "enqueue-sync":
        sync_loop(args.n, one)
    elif args.mode == "latency":
        latency_loop(args.n, one)
    else:
        raise SystemExit("dramatiq has no bulk enqueue API")


if __name__ == "__main__":
    main()
