"""taskiq adapter: taskiq-redis ``RedisStreamBroker`` (consumer group, acknowledged) and the
receiver that ``taskiq worker`` runs, in-process, with the CLI defaults (max_async_tasks=100,
ack when saved, no result backend).  No bulk enqueue API.
"""

from __future__ import annotations

import asyncio
import signal

from _common import COUNTER, alatency_loop, atimed_loop, parse_args, run
from taskiq.acks import AcknowledgeType
from taskiq.api import run_receiver_task
from taskiq_redis import RedisStreamBroker

args = parse_args()
broker = RedisStreamBroker(url=args.redis)


@broker.task(task_name="noop")
async def noop(x: int) -> None:
    COUNTER.hit()


async def main() -> None:
    if args.mode == "work":
        broker.is_worker_process = True
        await broker.startup()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        task = asyncio.create_task(
            run_receiver_task(
                broker,
                max_async_tasks=args.concurrency or 100,
                ack_time=AcknowledgeType.WHEN_SAVED,
            )
        )
        await stop.wait()
        task.cancel()
        await broker.shutdown()
        return
    await broker.startup()

    async def one(i: int) -> None:
        await noop.kiq(i)

    if args.mode == "enqueue":
        await atimed_loop(args.n, one)
    elif args.mode == "latency":
        await alatency_loop(args.n, one)
    else:
        raise SystemExit("taskiq has no bulk enqueue API")
    await broker.shutdown()


if __name__ == "__main__":
    run(main)
