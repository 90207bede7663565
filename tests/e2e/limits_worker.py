"""A worker process for the limits tests: ``python limits_worker.py URL PREFIX``.

Actors (queue ``lim``): ``pair(n)`` (at most 2 at once across all workers) sleeps 50 ms;
``paced(n)`` (at most 20 starts a second) returns at once. Each run appends
``"<start> <end> <pid> <actor> <n>"`` (Unix seconds) to ``<prefix>:{lim}:log`` on a direct
connection, so the records outlive a SIGKILLed worker. Prints ``ready`` once it consumes.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import redis.asyncio as aredis

from repid_django import Connection, RedisMessageBroker, Repid, Router, Worker


async def main(url: str, prefix: str) -> None:
    log = aredis.Redis.from_url(url)
    key = f"{prefix}:{{lim}}:log"
    router = Router()

    async def record(actor: str, n: int, seconds: float) -> None:
        started = time.time()
        await asyncio.sleep(seconds)
        await log.rpush(key, f"{started} {time.time()} {os.getpid()} {actor} {n}")

    @router.actor(name="pair", queue="lim", concurrency_limit=2)
    async def pair(n: int) -> None:
        await record("pair", n, 0.05)

    @router.actor(name="paced", queue="lim", rate_limit="20/s")
    async def paced(n: int) -> None:
        await record("paced", n, 0.0)

    broker = RedisMessageBroker(url, prefix=prefix, lease_ttl=2.0, reaper_interval=0.3)
    async with Repid(Connection(broker)).magic(auto_disconnect=True):
        worker = Worker(routers=[router], concurrency=20)
        task = asyncio.create_task(worker.run())
        while worker.runner is None or worker.runner.state != "running":  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        print("ready", flush=True)
        await task
    await log.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
