"""A broker that is away is waited for; a broker call that is broken stops the worker."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from repid_django import Connection, InMemoryMessageBroker, Job, Queue, Repid, Worker
from repid_django.engine.brokers.base import Delivery


class FlakyBroker(InMemoryMessageBroker):
    """Raises the queued errors from ``claim`` first, then claims normally."""

    def __init__(self, errors: Sequence[BaseException]) -> None:
        super().__init__()
        self.errors = list(errors)
        self.claims = 0

    async def claim(self, queues: Sequence[str], limit: int, wait: float) -> list[Delivery]:
        self.claims += 1
        if self.errors:
            raise self.errors.pop(0)
        return await super().claim(queues, limit, wait)


async def test_claim_errors_of_an_unreachable_broker_are_retried() -> None:
    broker = FlakyBroker([ConnectionError("refused")] * 4)
    ran: list[int] = []
    worker = Worker(handle_signals=[], burst=True)

    @worker.actor
    async def work(i: int) -> None:
        ran.append(i)

    async with Repid(Connection(broker)).magic():
        await Queue().declare()
        for i in range(3):
            await Job("work", args={"i": i}).enqueue()
        async with asyncio.timeout(10):
            runner = await worker.run()
    assert sorted(ran) == [0, 1, 2]
    assert runner.processed == 3
    assert broker.claims > 4


async def test_a_broken_claim_stops_the_worker_and_returns_its_jobs() -> None:
    broker = FlakyBroker([TypeError("'int' object is not callable")] * 10)
    worker = Worker(handle_signals=[])

    @worker.actor
    async def work() -> None:
        raise AssertionError("nothing can be claimed")

    async with Repid(Connection(broker)).magic():
        await Queue().declare()
        await Job("work").enqueue()
        with pytest.raises(RuntimeError, match=r"failed 3 times in a row with TypeError") as info:
            async with asyncio.timeout(10):
                await worker.run()
        assert isinstance(info.value.__cause__, TypeError)
        assert broker.claims == 3
        assert (await broker.queue_stats("default")).ready == 1
