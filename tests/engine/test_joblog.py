"""The worker's log lines: one per failure (with its retry delay), dead letter, unknown actor
and refused outcome, each with the job's fields as ``extra``; the start-up line names the
broker with its password redacted."""

from __future__ import annotations

import logging

import pytest

from repid_django import (
    Connection,
    InMemoryMessageBroker,
    Job,
    RedisMessageBroker,
    Repid,
    Router,
    Worker,
)

from ._helpers import Running, until


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "repid_django.worker" and r.levelno == level]


async def test_failures_retries_dead_letters_and_unknown_actors_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="repid_django")
    broker = InMemoryMessageBroker()
    router = Router()

    def soon(retry_number: int = 1) -> float:
        return 0.01

    @router.actor(name="always_fails", retry_policy=soon)
    async def always_fails(order: int) -> None:
        raise ValueError(f"order {order} is not payable")

    async with Repid(Connection(broker)).magic():
        await broker.declare_queue("default")
        job_id = await Job("always_fails", args={"order": 7}, retries=2).enqueue()
        ghost = await Job("ghost").enqueue()
        worker = Worker(routers=[router], handle_signals=[], unknown_actor_max=0)
        running = Running(worker)
        await until(
            lambda: worker.runner is not None and worker.runner.dead == 2, what="both dead-lettered"
        )
        await running.stop()
    retries = [r for r in records(caplog, logging.WARNING) if "retrying in" in r.getMessage()]
    assert [r.getMessage().split(" failed on ")[1].split(":")[0] for r in retries] == [
        "attempt 1 of 3",
        "attempt 2 of 3",
    ]
    assert "ValueError: order 7 is not payable; retrying in" in retries[0].getMessage()
    assert [(r.job_id, r.actor, r.queue, r.attempt) for r in retries] == [  # type: ignore[attr-defined]
        (job_id, "always_fails", "default", 1),
        (job_id, "always_fails", "default", 2),
    ]
    dead = records(caplog, logging.ERROR)
    messages = [r.getMessage() for r in dead]
    assert any(
        m.startswith(
            f"job {job_id} (actor 'always_fails', queue 'default') dead-lettered (failed)"
            " after attempt 3 of 3: ValueError: order 7 is not payable"
        )
        for m in messages
    ), messages
    assert any(f"job {ghost}" in m and "(unknown_actor)" in m for m in messages), messages
    tracebacks = [r for r in records(caplog, logging.DEBUG) if "traceback" in r.getMessage()]
    assert len(tracebacks) == 3
    assert "Traceback (most recent call last)" in tracebacks[0].getMessage()


@pytest.mark.redis
async def test_the_start_line_names_the_broker_without_its_password(
    caplog: pytest.LogCaptureFixture, redis_url: str, key_prefix: str
) -> None:
    caplog.set_level(logging.INFO, logger="repid_django")
    broker = RedisMessageBroker(redis_url, prefix=key_prefix)
    router = Router()
    router.actor(name="noop")(lambda: None)
    async with Repid(Connection(broker)).magic(auto_disconnect=True):
        worker = Worker(routers=[router], handle_signals=[])
        running = Running(worker)
        await running.started()
        await running.stop()
    (line,) = [r.getMessage() for r in caplog.records if "started:" in r.getMessage()]
    assert line.endswith(f"concurrency 100, broker {broker.target}")
    assert "actors noop" in line
    with_password = redis_url.replace("redis://", "redis://:s3cret@")
    assert "s3cret" not in RedisMessageBroker(with_password, prefix=key_prefix).target
