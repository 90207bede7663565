"""saq adapter: its Worker with the default concurrency of 10 (job hash kept 600 s after it
finishes).  No bulk enqueue API.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from _common import COUNTER, alatency_loop, atimed_loop, parse_args, run
from saq import Queue, Worker


async def noop(ctx: dict[str, Any], *, x: int) -> None:
    COUNTER.hit()


async def main() -> None:
    args = parse_args()
    queue = Queue.from_url(args.redis)
    await queue.connect()
    if args.mode == "work":
        worker = Worker(queue, functions=[noop], concurrency=args.concurrency or 10)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        task = asyncio.create_task(worker.start())
        await stop.wait()
        await worker.stop()
        task.cancel()
        return

    async def one(i: int) -> None:
        await queue.enqueue("noop", x=i)

    if args.mode == "enqueue":
        await atimed_loop(args.n, one)
    elif args.mode == "latency":
        await alatency_loop(args.n, one)
    else:
        raise SystemExit("saq has no bulk enqueue API")
    await queue.disconnect()


if __name__ == "__main__":
    run(main)
