"""repid_django adapter (runs in the project venv): ``Worker`` with its defaults
(concurrency 100, claims and completions in batches, lease kept by a heartbeat, results kept
1 hour when useful: the no-op returns ``None``, which stores nothing).  Bulk: ``enqueue_many``
(one round trip).  Sync: ``Job(...).enqueue()`` called without ``await`` from plain sync code
(no event loop), over the process's default connection, the way a sync Django view calls it.
The async modes run on uvloop when it is installed (the ``fast`` extra), see ``_common.run``.

Scenarios (``--scenario``) for the engine-only measurements: ``noop`` (async no-op), ``sleep``
(``await asyncio.sleep(0.01)``), ``sync`` (a plain ``def`` run in the worker's thread pool).
``BENCH_METRICS=1`` adds the Prometheus metrics listener (``repid_django.metrics.listener``,
what ``runworker`` adds) to the worker: processed/s with metrics on versus off (``0``, the
default: no listener at all, so "on" also pays for the worker's event buffer, which
``BENCH_METRICS=events`` measures alone with a listener that ignores the events).
``BENCH_MIRROR=1`` is the hook for the ORM mirror on/off measurement: it needs the Django app's
mirror listener, which the adapter does not wire yet (it refuses rather than measure the wrong
thing).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from _common import COUNTER, alatency_loop, atimed_bulk, atimed_loop, parse_args, run, sync_loop

from repid_django import (
    Connection,
    Job,
    Queue,
    RedisMessageBroker,
    Repid,
    Router,
    Worker,
    set_default_connection,
)
from repid_django import enqueue_many as _enqueue_many

router = Router()
args = parse_args()


class IgnoreEvents:
    """A worker listener that does nothing: the cost of the worker's event buffer alone."""

    async def on_events(self, events: Any) -> None:
        return None

    async def on_heartbeat(self, info: Any) -> None:
        return None


def build(scenario: str) -> None:
    if scenario == "sleep":

        @router.actor(name="noop")
        async def sleeper(x: int) -> None:
            await asyncio.sleep(0.01)
            COUNTER.hit()

    elif scenario == "sync":

        @router.actor(name="noop")
        def sync_noop(x: int) -> None:
            COUNTER.hit()

    else:

        @router.actor(name="noop")
        async def noop(x: int) -> None:
            COUNTER.hit()


def sync_main() -> None:
    """``enqueue-sync``: plain sync code, the connection made the process default."""
    connection = Connection(RedisMessageBroker(args.redis))
    set_default_connection(connection)
    try:
        Queue().declare()

        def one(i: int) -> None:
            Job("noop", args={"x": i}).enqueue()

        sync_loop(args.n, one)
    finally:
        set_default_connection(None)
        connection.close()


async def main() -> None:
    build(args.scenario)
    app = Repid(Connection(RedisMessageBroker(args.redis)))
    async with app.magic(auto_disconnect=True):
        if args.mode == "work":
            kwargs: dict[str, Any] = {"concurrency": args.concurrency} if args.concurrency else {}
            metrics = os.environ.get("BENCH_METRICS", "0")
            if metrics == "1":
                from repid_django.metrics.listener import MetricsListener

                kwargs["listeners"] = [MetricsListener(actors=router.actors)]
            elif metrics == "events":
                kwargs["listeners"] = [IgnoreEvents()]
            await Worker(routers=[router], **kwargs).run()
            return
        await Queue().declare()

        async def one(i: int) -> None:
            await Job("noop", args={"x": i}).enqueue()

        async def many(n: int) -> None:
            for start in range(0, n, 10_000):  # batches of 10,000 jobs, one round trip each
                await _enqueue_many(
                    [Job("noop", args={"x": i}) for i in range(start, min(n, start + 10_000))]
                )

        if args.mode == "enqueue":
            await atimed_loop(args.n, one)
        elif args.mode == "enqueue-bulk":
            await atimed_bulk(args.n, many)
        else:
            await alatency_loop(args.n, one)


if __name__ == "__main__":
    if os.environ.get("BENCH_MIRROR") == "1":
        raise SystemExit("ORM mirror measurement: not wired yet (needs the Django app's mirror)")
    if args.mode == "enqueue-sync":
        sync_main()
    else:
        run(main)
