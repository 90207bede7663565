"""celery adapter: ``celery worker`` with its defaults (prefork pool, concurrency = CPU count,
acks early, prefetch multiplier 4, no result backend).  No bulk enqueue API
(``group``/``chunks`` send one message per task).  Sync enqueue: ``task.delay`` (the library is
sync only: the one-by-one phase is the same plain loop).
"""

from __future__ import annotations

import os

from _common import COUNTER, latency_loop, parse_args, sync_loop, timed_loop
from celery import Celery

args = parse_args()
app = Celery("bench", broker=args.redis)


@app.task(name="noop")
def noop(x: int) -> None:
    COUNTER.hit()


def main() -> None:
    if args.mode == "work":
        argv = ["worker", "--loglevel=WARNING", "-Q", "celery", "--pool=prefork"]
        argv.append(f"--concurrency={args.concurrency or os.cpu_count() or 1}")
        app.worker_main(argv)
        return

    def one(i: int) -> None:
        noop.delay(i)

    if args.mode == "enqueue":
        timed_loop(args.n, one)
    elif args.mode == "enqueue-sync":
        sync_loop(args.n, one)
    elif args.mode == "latency":
        latency_loop(args.n, one)
    else:
        raise SystemExit("celery has no bulk enqueue API")


if __name__ == "__main__":
    main()
