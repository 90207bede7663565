"""A worker process for the Redis fault tests: ``python redis_worker.py URL PREFIX [options]``.

Actors (queue ``e2e``): ``record(n)`` counts its run in ``<prefix>:{e2e}:runs`` (field n) and
returns n; ``block(n, seconds)`` records, then blocks the event loop; ``suicide()`` SIGKILLs its
own process; ``slow(n, seconds)`` records, then sleeps without blocking.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import time

import redis.asyncio as aredis

from repid_django import Connection, Repid, Router, Worker
from repid_django.engine.brokers.redis.broker import RedisMessageBroker


def build(url: str, prefix: str) -> Router:
    router = Router()
    counter = aredis.Redis.from_url(url)
    runs = f"{prefix}:{{e2e}}:runs"

    @router.actor(queue="e2e")
    async def record(n: int) -> int:
        await counter.hincrby(runs, str(n), 1)
        return n

    @router.actor(queue="e2e")
    async def block(n: int, seconds: float) -> int:
        await counter.hincrby(runs, str(n), 1)
        time.sleep(seconds)  # noqa: ASYNC251 - the point: a misbehaving actor
        return n

    @router.actor(queue="e2e")
    async def slow(n: int, seconds: float) -> int:
        await counter.hincrby(runs, str(n), 1)
        await asyncio.sleep(seconds)
        return n

    @router.actor(queue="e2e")
    async def suicide() -> None:
        await counter.hincrby(runs, "suicide", 1)
        os.kill(os.getpid(), signal.SIGKILL)

    return router


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("prefix")
    parser.add_argument("--lease-ttl", type=float, default=2.0)
    parser.add_argument("--reaper", type=float, default=0.5)
    parser.add_argument("--max-lost", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--prefetch", type=int, default=None)
    parser.add_argument("--graceful", type=float, default=10.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    broker = RedisMessageBroker(
        args.url,
        prefix=args.prefix,
        lease_ttl=args.lease_ttl,
        reaper_interval=args.reaper,
        max_lost=args.max_lost,
    )
    app = Repid(Connection(broker))
    async with app.magic(auto_disconnect=True):
        worker = Worker(
            routers=[build(args.url, args.prefix)],
            concurrency=args.concurrency,
            prefetch=args.prefetch,
            graceful_shutdown_time=args.graceful,
        )
        print("ready", flush=True)
        await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
