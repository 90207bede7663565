"""A worker process for the fault matrix: ``python matrix_worker.py URL DIRECT_URL PREFIX NAME``.

It reaches Redis at ``URL`` (the fault proxy) with short timeouts, and writes what it does to
Redis at ``DIRECT_URL`` (never through the proxy), as JSON lists pushed to:

* ``<prefix>:{fm-log}:runs``: ``[t, worker, id, n]`` per execution of an actor; ``n``: which
  execution of that job it is, counted over every worker (``<prefix>:{fm-log}:execs``).
* ``<prefix>:{fm-log}:claims``: ``[t, worker, id, lost, token]`` per delivery claimed.
* ``<prefix>:{fm-log}:finishes``: ``[t, worker, id, kind, applied, token]`` per outcome whose
  ``finish`` returned, or ``[t, worker, null, "error", text, null]`` when a ``finish`` raised.

``t`` is ``time.monotonic()`` (system-wide on Linux). Actors, queue ``fm``: ``work(n)`` does
nothing; ``nap(n, seconds)`` sleeps on the job's first execution only (a rerun returns at
once); ``fail(n)`` raises (``retries=0``: dead-lettered as ``failed``). Prints ``ready`` once
the worker consumes; SIGTERM stops it gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aredis

from repid_django import Connection, Repid, Router, Worker
from repid_django.engine.brokers.base import Delivery, Outcome
from repid_django.engine.brokers.redis.broker import RedisMessageBroker

QUEUE = "fm"
RECORD = """
local n = redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
redis.call('RPUSH', KEYS[2], '[' .. ARGV[1] .. ',' .. cjson.encode(ARGV[3]) .. ','
  .. cjson.encode(ARGV[2]) .. ',' .. n .. ']')
return n
"""


def log_key(prefix: str, name: str) -> str:
    return f"{prefix}:{{fm-log}}:{name}"


class LoggedBroker(RedisMessageBroker):
    """The Redis broker, logging every delivery it hands out and every outcome it finishes."""

    def __init__(self, url: str, *, log: aredis.Redis, worker: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._log, self._worker = log, worker
        self._claims, self._finishes = (
            log_key(self.prefix, "claims"),
            log_key(self.prefix, "finishes"),
        )

    async def claim(self, queues: Sequence[str], limit: int, wait: float) -> list[Delivery]:
        deliveries = await super().claim(queues, limit, wait)
        if deliveries:
            now, who = time.monotonic(), self._worker
            entries = [json.dumps([now, who, d.message.id, d.lost, d.token]) for d in deliveries]
            await self._log.rpush(self._claims, *entries)
        return deliveries

    async def finish(self, outcomes: Sequence[Outcome]) -> list[bool]:
        try:
            applied = await super().finish(outcomes)
        except Exception as exc:
            entry = [time.monotonic(), self._worker, None, "error", repr(exc), None]
            await self._log.rpush(self._finishes, json.dumps(entry))
            raise
        if outcomes:
            now, who = time.monotonic(), self._worker
            entries = [
                json.dumps([now, who, o.delivery.message.id, o.kind.value, ok, o.delivery.token])
                for o, ok in zip(outcomes, applied, strict=True)
            ]
            await self._log.rpush(self._finishes, *entries)
        return applied


def build(log: aredis.Redis, prefix: str, worker: str) -> Router:
    router = Router()
    record = log.register_script(RECORD)
    keys = [log_key(prefix, "execs"), log_key(prefix, "runs")]

    async def ran(n: str) -> int:
        return int(await record(keys=keys, args=[repr(time.monotonic()), n, worker]))

    @router.actor(queue=QUEUE)
    async def work(n: str) -> str:
        await ran(n)
        return n

    @router.actor(queue=QUEUE)
    async def nap(n: str, seconds: float) -> str:
        if await ran(n) == 1:
            await asyncio.sleep(seconds)
        return n

    @router.actor(queue=QUEUE)
    async def fail(n: str) -> None:
        await ran(n)
        raise RuntimeError(f"job {n} fails on its own")

    return router


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("direct_url")
    parser.add_argument("prefix")
    parser.add_argument("name")
    parser.add_argument("--lease-ttl", type=float, required=True)
    parser.add_argument("--reaper", type=float, required=True)
    parser.add_argument("--socket-timeout", type=float, required=True)
    parser.add_argument("--max-backoff", type=float, required=True)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING, format=f"%(relativeCreated)d {args.name} %(levelname)s %(message)s"
    )
    log = aredis.Redis.from_url(args.direct_url)
    broker = LoggedBroker(
        args.url,
        log=log,
        worker=args.name,
        prefix=args.prefix,
        lease_ttl=args.lease_ttl,
        reaper_interval=args.reaper,
        socket_timeout=args.socket_timeout,
        max_backoff=args.max_backoff,
    )
    app = Repid(Connection(broker))
    async with app.magic(auto_disconnect=True):
        worker = Worker(
            routers=[build(log, args.prefix, args.name)],
            concurrency=args.concurrency,
            graceful_shutdown_time=2.0,
            name=args.name,
        )
        run = asyncio.create_task(worker.run())
        # The run has no "started" event: its state says it.
        while getattr(worker.runner, "state", None) != "running" and not run.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        print("ready", flush=True)
        await run
    await log.aclose()


if __name__ == "__main__":
    asyncio.run(main())
