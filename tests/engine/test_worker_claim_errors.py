"""A broker that is away is waited for; a broker call that is broken stops the worker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from repid_django import Connection, InMemoryMessageBroker, Job, Queue, Repid, Worker
from repid_django.engine.brokers.base import Delivery
from repid_django.engine.worker.claims import AWAY_BACKOFF, ClaimFailures


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


def test_an_outage_is_retried_at_least_once_a_second_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Pauses double from 0.1 s to 1 s while the broker is away (a failover is followed within
    about a second of the new primary serving); one traceback per outage, one line when claims
    succeed again."""
    failures = ClaimFailures()
    with caplog.at_level(logging.WARNING, logger="repid_django.worker"):
        pauses = [failures.failed(ConnectionError("refused")) for _ in range(7)]
        failures.succeeded()
        again = failures.failed(TimeoutError("slow"))
    assert pauses == [0.1, 0.2, 0.4, 0.8, AWAY_BACKOFF, AWAY_BACKOFF, AWAY_BACKOFF]
    assert AWAY_BACKOFF == 1.0
    assert again == 0.1  # a new outage starts over
    logged = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert logged == [
        ("ERROR", "claim failed; retrying", True),
        ("WARNING", "claims succeed again; the worker goes on", False),
        ("ERROR", "claim failed; retrying", True),
    ]


def test_each_broken_claim_is_logged_and_the_third_stops_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = ClaimFailures()
    with caplog.at_level(logging.WARNING, logger="repid_django.worker"):
        assert failures.failed(TypeError("bad")) == 0.1
        assert failures.failed(ConnectionError("away")) == 0.2  # an outage in between
        assert failures.failed(TypeError("bad")) == 0.4
        with pytest.raises(RuntimeError, match="failed 3 times in a row with TypeError"):
            failures.failed(TypeError("bad"))
    assert [r.getMessage() for r in caplog.records] == [
        "claim failed; retrying",
        "claim failed again (TypeError: bad)",
    ]
