"""streaq adapter: its Worker with the default concurrency of 16 (Redis streams, results kept
5 minutes).  Bulk: ``Worker.enqueue_many`` (one pipeline).
"""

from __future__ import annotations

from _common import COUNTER, alatency_loop, atimed_bulk, atimed_loop, parse_args, run
from streaq import Worker

args = parse_args()
worker = Worker(redis_url=args.redis, concurrency=args.concurrency or 16)


@worker.task()
async def noop(x: int) -> None:
    COUNTER.hit()


async def main() -> None:
    if args.mode == "work":
        await worker.run_async()
        return
    async with worker:

        async def one(i: int) -> None:
            await noop.enqueue(i)

        async def many(n: int) -> None:
            await worker.enqueue_many([noop.enqueue(i) for i in range(n)])

        if args.mode == "enqueue":
            await atimed_loop(args.n, one)
        elif args.mode == "enqueue-bulk":
            await atimed_bulk(args.n, many)
        else:
            await alatency_loop(args.n, one)


if __name__ == "__main__":
    run(main)
