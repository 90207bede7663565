"""Failures: retries with the policy's delay, timeouts, dead letters and failure results."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from repid_django import DeadReason, InMemoryMessageBroker, Job, Worker

pytestmark = pytest.mark.usefixtures("conn", "queue")

TOLERANCE = 0.5


def quiet(**kwargs: object) -> Worker:
    kwargs.setdefault("handle_signals", [])
    return Worker(**kwargs)  # type: ignore[arg-type]


async def test_retry_is_scheduled_with_the_policy_delay(broker: InMemoryMessageBroker) -> None:
    failed_at: list[float] = []
    worker = quiet(messages_limit=1)

    @worker.actor(retry_policy=lambda retry_number=1: retry_number * 100)
    async def flaky() -> None:
        failed_at.append(time.time())
        raise RuntimeError("not yet")

    job_id = await Job("flaky", retries=3).enqueue()
    runner = await worker.run()
    assert (runner.failed, runner.retried, runner.dead) == (1, 1, 0)
    [retry] = await broker.list_messages("default", delayed=True)
    assert (retry.id, retry.attempt) == (job_id, 1)
    assert retry.run_at is not None
    assert 100 <= retry.run_at - failed_at[0] <= 100 + TOLERANCE
    assert await Job("flaky", id_=job_id).result is None  # no result while it will be retried


async def test_each_retry_asks_the_policy_for_its_number(broker: InMemoryMessageBroker) -> None:
    numbers: list[int] = []

    def policy(retry_number: int = 1) -> float:
        numbers.append(retry_number)
        return 0.0 if retry_number < 3 else 1000.0

    worker = quiet(messages_limit=3)

    @worker.actor(retry_policy=policy)
    async def flaky() -> None:
        raise RuntimeError("no")

    began = time.time()
    await Job("flaky", retries=5).enqueue()
    async with asyncio.timeout(5):
        await worker.run()
    assert numbers == [1, 2, 3]
    [retry] = await broker.list_messages("default", delayed=True)
    assert retry.attempt == 3
    assert retry.run_at is not None
    assert retry.run_at - began >= 1000


async def test_default_policy_is_exponential(broker: InMemoryMessageBroker) -> None:
    worker = quiet(messages_limit=1)

    @worker.actor
    async def flaky() -> None:
        raise RuntimeError("no")

    before = time.time()
    await Job("flaky", retries=1).enqueue()
    await worker.run()
    [retry] = await broker.list_messages("default", delayed=True)
    assert retry.run_at is not None
    assert 1 <= retry.run_at - before <= 1 + TOLERANCE  # default: 1 s before the first retry


async def test_timeout_then_retry_then_dead_letter(broker: InMemoryMessageBroker) -> None:
    runs: list[int] = []
    worker = quiet(messages_limit=2)

    @worker.actor(retry_policy=lambda retry_number=1: 0)
    async def sleepy() -> None:
        runs.append(1)
        await asyncio.sleep(10)

    job = Job("sleepy", retries=1, timeout=timedelta(seconds=0.05))
    await job.enqueue()
    async with asyncio.timeout(5):
        runner = await worker.run()
    assert len(runs) == 2
    assert (runner.processed, runner.retried, runner.dead) == (2, 1, 1)
    [letter] = await broker.list_dead("default")
    assert letter.reason == DeadReason.TIMEOUT
    assert "timeout of 0.05s" in (letter.error or "")
    assert letter.message is not None
    assert letter.message.attempt == 1
    result = await job.result
    assert result is not None
    assert (result.success, result.timed_out, result.attempt) == (False, True, 1)
    assert 0.04 <= result.duration < 2


async def test_actor_timeout_caps_the_job_timeout(broker: InMemoryMessageBroker) -> None:
    worker = quiet(burst=True)

    @worker.actor(timeout=0.05)
    async def sleepy() -> None:
        await asyncio.sleep(10)

    await Job("sleepy").enqueue()  # the job's own timeout is 10 minutes
    async with asyncio.timeout(5):
        await worker.run()
    [letter] = await broker.list_dead("default")
    assert letter.reason == DeadReason.TIMEOUT


async def test_timeout_error_raised_by_the_actor_is_a_plain_failure(
    broker: InMemoryMessageBroker,
) -> None:
    worker = quiet(burst=True)

    @worker.actor
    async def raises_timeout() -> None:
        raise TimeoutError("upstream timed out")

    await Job("raises_timeout").enqueue()
    await worker.run()
    [letter] = await broker.list_dead("default")
    assert letter.reason == DeadReason.FAILED
    assert "upstream timed out" in (letter.error or "")


async def test_last_failure_goes_to_dead_letters_with_its_error(
    broker: InMemoryMessageBroker,
) -> None:
    worker = quiet(burst=True)

    @worker.actor(retry_policy=lambda retry_number=1: 0)
    async def broken(x: int) -> None:
        raise ValueError(f"bad x={x}")

    job = Job("broken", args={"x": 7}, retries=2)
    await job.enqueue()
    runner = await worker.run()
    assert (runner.processed, runner.failed, runner.retried, runner.dead) == (3, 3, 2, 1)
    [letter] = await broker.list_dead("default")
    assert letter.reason == DeadReason.FAILED
    assert "ValueError: bad x=7" in (letter.error or "")
    assert "Traceback" in (letter.error or "")
    result = await job.result
    assert result is not None
    assert not result.success
    assert result.attempt == 2
    assert "ValueError: bad x=7" in (result.exception or "")


async def test_a_broken_policy_falls_back_to_the_default(
    broker: InMemoryMessageBroker, caplog: pytest.LogCaptureFixture
) -> None:
    worker = quiet(messages_limit=1)

    @worker.actor(retry_policy=lambda retry_number=1: 1 / 0)
    async def flaky() -> None:
        raise RuntimeError("no")

    await Job("flaky", retries=1).enqueue()
    await worker.run()
    [retry] = await broker.list_messages("default", delayed=True)
    assert retry.attempt == 1
    assert "retry policy of actor 'flaky' failed" in caplog.text


async def test_recurring_job_keeps_recurring_after_a_failure(
    broker: InMemoryMessageBroker,
) -> None:
    worker = quiet(messages_limit=2)
    runs: list[int] = []

    @worker.actor
    async def tick() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("first run fails")

    await Job("tick", deferred_by=0.02).enqueue()
    async with asyncio.timeout(5):
        runner = await worker.run()
    assert (runner.dead, runner.succeeded) == (1, 1)
    assert len(await broker.list_dead("default")) == 1
    assert len(await broker.list_messages("default", delayed=True)) == 1
