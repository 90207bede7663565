"""rq adapter: the default forking Worker (one work-horse process per job, results kept 500 s).

Bulk: ``Queue.enqueue_many`` (one pipeline).  The work-horse exits with ``os._exit``, so the
counter is published at once in every job (one command to the control server, not the
measured one).  Sync enqueue: ``Queue.enqueue`` (the library is sync only: the one-by-one phase
is the same plain loop).
"""

from __future__ import annotations

from _common import COUNTER, latency_loop, parse_args, sync_loop, timed_bulk, timed_loop
from _rq_jobs import noop
from redis import Redis
from rq import Queue, Worker


def main() -> None:
    args = parse_args()
    conn = Redis.from_url(args.redis)
    queue = Queue("default", connection=conn)
    if args.mode == "work":
        COUNTER.flush_each = True
        Worker([queue], connection=conn).work(with_scheduler=False)
        return

    def one(i: int) -> None:
        queue.enqueue(noop, i)

    def many(n: int) -> None:
        queue.enqueue_many([Queue.prepare_data(noop, (i,)) for i in range(n)])

    if args.mode == "enqueue":
        timed_loop(args.n, one)
    elif args.mode == "enqueue-sync":
        sync_loop(args.n, one)
    elif args.mode == "enqueue-bulk":
        timed_bulk(args.n, many)
    else:
        latency_loop(args.n, one)


if __name__ == "__main__":
    main()
