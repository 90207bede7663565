"""Helpers of the every-caller tests: a worker that runs everything queued and says what ran."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from repid_django import Connection, RedisMessageBroker, Repid, Router, Worker


def run_all(
    url: str, prefix: str, expected: int, queue: str = "default", **options: Any
) -> Counter[str]:
    """Run a worker (on a loop of its own) until ``expected`` jobs ran; their ``token`` args,
    counted. Each job must be ``Job("mark", args={"token": ...})``."""
    seen: Counter[str] = Counter()
    router = Router()

    @router.actor(name="mark", queue=queue)
    async def mark(token: str) -> None:
        seen[token] += 1

    async def main() -> None:
        broker = RedisMessageBroker(
            url, prefix=prefix, lease_ttl=5.0, reaper_interval=0.5, **options
        )
        app = Repid(Connection(broker))
        async with app.magic(auto_disconnect=True):
            worker = Worker(
                routers=[router], messages_limit=expected, handle_signals=[], concurrency=50
            )
            async with asyncio.timeout(60):
                await worker.run()

    asyncio.run(main())
    return seen
