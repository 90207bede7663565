"""huey adapter: RedisHuey (blocking BRPOP) and its consumer with its default of 1 worker thread.

Results on by default, but a task returning None stores nothing.  No bulk enqueue API.
Sync enqueue: calling the task (sync only: the one-by-one phase is the same plain loop).
"""

from __future__ import annotations

from _common import COUNTER, latency_loop, parse_args, sync_loop, timed_loop
from huey import RedisHuey

args = parse_args()
huey = RedisHuey("bench", url=args.redis)


@huey.task()
def noop(x: int) -> None:
    COUNTER.hit()


def main() -> None:
    if args.mode == "work":
        consumer = huey.create_consumer(workers=args.concurrency or 1, worker_type="thread")
        consumer.run()
        return

    def one(i: int) -> None:
        noop(i)

    if args.mode == "enqueue":
        timed_loop(args.n, one)
    elif args.mode == "enqueue-sync":
        sync_loop(args.n, one)
    elif args.mode == "latency":
        latency_loop(args.n, one)
    else:
        raise SystemExit("huey has no bulk enqueue API")


if __name__ == "__main__":
    main()
