"""A worker process for the Redis fault tests: ``python redis_worker.py URL PREFIX [options]``.

It prints ``ready <worker id>`` once it consumes. Actors (queue ``e2e``), each counting its run
in ``<prefix>:{e2e}:runs`` (field n) and returning ``{"n": n, "run": <run id>}``:
``record(n)``; ``slow(n, seconds)`` sleeps without blocking; ``flaky(n, seconds)`` too, but
fails its first attempt (retried after 0.1 s); ``block(n, seconds)`` blocks the event loop;
``suicide()`` SIGKILLs its own process. ``--log-url`` sends the run log elsewhere.

Every run also leaves records in the run log (``runlog.py``): the actors append ``start`` and
``end``, and :class:`RecordingBroker` appends what each ``finish`` did.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import RedisError

from repid_django import Connection, Repid, Router, Worker
from repid_django.engine.brokers.base import Delivery, Outcome
from repid_django.engine.brokers.redis.broker import RedisMessageBroker
from repid_django.engine.brokers.redis.clients import async_client
from repid_django.engine.brokers.redis.url import RedisOptions


class RunLog:
    """This worker's side of the run log: records go to ``<prefix>:{e2e}:log`` (RPUSH)."""

    def __init__(self, client: aredis.Redis, prefix: str, worker: str) -> None:
        self.client, self.worker = client, worker
        self.key, self.counts = f"{prefix}:{{e2e}}:log", f"{prefix}:{{e2e}}:runs"
        self.claimed: dict[int, Delivery] = {}
        """Deliveries held, by their ``n`` argument: how an actor finds its job id and attempt."""
        self.running: dict[tuple[str, str], dict[str, Any]] = {}
        """The start record of each run under way, by its delivery (lease token, job id)."""
        self._numbers = itertools.count()

    def claim(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            args = delivery.message.args
            if isinstance(args, dict) and isinstance(args.get("n"), int):
                self.claimed[args["n"]] = delivery

    async def start(self, n: int) -> dict[str, Any]:
        """Count and record the start of a run of job ``n``; returns its start record."""
        delivery = self.claimed.get(n)
        job = delivery.message.id if delivery else f"unclaimed-{n}"
        run: dict[str, Any] = {
            "e": "start",
            "job": job,
            "run": f"{self.worker}/{next(self._numbers)}",
            "w": self.worker,
            "a": delivery.message.attempt if delivery else None,
            "lost": delivery.lost if delivery else None,
        }
        if delivery is not None:
            self.running[delivery.token, job] = run
        pipe = self.client.pipeline(transaction=False)
        pipe.hincrby(self.counts, str(n), 1)
        pipe.rpush(self.key, json.dumps(run))
        await pipe.execute()
        return run

    async def end(self, run: dict[str, Any], ok: bool) -> None:
        record = {"e": "end", "job": run["job"], "run": run["run"], "w": self.worker, "ok": ok}
        record["t"] = time.time()  # when: a failover test measures the longest gap
        await self.client.rpush(self.key, json.dumps(record))

    async def finished(self, outcomes: Sequence[Outcome], applied: Sequence[bool]) -> None:
        """After ``finish``: what the broker did with each outcome (``refused``: lease lost)."""
        records = []
        for outcome, ok in zip(outcomes, applied, strict=True):
            message = outcome.delivery.message
            n = message.args.get("n") if isinstance(message.args, dict) else None
            if isinstance(n, int):
                self.claimed.pop(n, None)
            run = self.running.pop((outcome.delivery.token, message.id), None)
            kind = outcome.kind.value if ok else "refused"
            record = {"e": kind, "job": message.id, "run": run and run["run"], "w": self.worker}
            records.append(json.dumps(record))
        try:
            await self.client.rpush(self.key, *records)
        except RedisError:  # the log is evidence, never a reason to change what the worker does
            logging.getLogger("redis_worker").warning("could not log %d outcomes", len(records))


class RecordingBroker(RedisMessageBroker):
    """The Redis broker, telling the run log what it claimed and what each finish did."""

    log: RunLog | None = None

    async def claim(self, queues: Sequence[str], limit: int, wait: float) -> list[Delivery]:
        deliveries = await super().claim(queues, limit, wait)
        if self.log is not None:
            self.log.claim(deliveries)
        return deliveries

    async def finish(self, outcomes: Sequence[Outcome]) -> list[bool]:
        applied = await super().finish(outcomes)
        if self.log is not None and outcomes:
            await self.log.finished(outcomes, applied)
        return applied


def soon(retry_number: int = 1) -> float:
    """The retry policy of ``flaky``: again in 0.1 s."""
    return 0.1


def build(log: RunLog) -> Router:
    router = Router()

    async def done(n: int, run: dict[str, Any]) -> dict[str, Any]:
        await log.end(run, ok=True)
        return {"n": n, "run": run["run"]}

    @router.actor(queue="e2e")
    async def record(n: int) -> dict[str, Any]:
        return await done(n, await log.start(n))

    @router.actor(queue="e2e")
    async def block(n: int, seconds: float) -> dict[str, Any]:
        run = await log.start(n)
        time.sleep(seconds)  # noqa: ASYNC251 - the point: a misbehaving actor
        return await done(n, run)

    @router.actor(queue="e2e")
    async def slow(n: int, seconds: float) -> dict[str, Any]:
        run = await log.start(n)
        await asyncio.sleep(seconds)
        return await done(n, run)

    @router.actor(queue="e2e", retry_policy=soon)
    async def flaky(n: int, seconds: float) -> dict[str, Any]:
        run = await log.start(n)
        await asyncio.sleep(seconds)
        if run["a"] == 0:
            await log.end(run, ok=False)
            raise RuntimeError(f"job {n} fails its first attempt")
        return await done(n, run)

    @router.actor(queue="e2e")
    async def suicide() -> None:
        await log.client.hincrby(log.counts, "suicide", 1)
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
    parser.add_argument("--log-url", default=None, help="where the run log goes (default: url)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    worker_id = f"w{os.getpid()}-{os.urandom(2).hex()}"
    log_url = args.log_url or args.url  # a failover test logs to a server it does not fail
    log = RunLog(async_client(RedisOptions(log_url), 10.0)[0], args.prefix, worker_id)
    broker = RecordingBroker(
        args.url,
        prefix=args.prefix,
        lease_ttl=args.lease_ttl,
        reaper_interval=args.reaper,
        max_lost=args.max_lost,
    )
    broker.log = log
    app = Repid(Connection(broker))
    async with app.magic(auto_disconnect=True):
        worker = Worker(
            routers=[build(log)],
            concurrency=args.concurrency,
            prefetch=args.prefetch,
            graceful_shutdown_time=args.graceful,
        )
        print(f"ready {worker_id}", flush=True)
        await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
