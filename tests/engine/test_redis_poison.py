"""Poison data written straight into Redis: dead-lettered with a reason, never executed."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from repid_django.engine.brokers.base import DeadReason
from repid_django.engine.brokers.redis.broker import RedisMessageBroker
from repid_django.engine.message import encode

from .broker_helpers import msg, put_raw

pytestmark = pytest.mark.redis


class Canary:
    """Unpickling this creates the canary file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.path}",))


async def test_garbage_and_pickle_are_dead_lettered_and_never_unpickled(
    redis_broker: RedisMessageBroker, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    await redis_broker.declare_queue("default")
    good = encode(msg("good"))
    bodies = {
        "garbage": b"\x00\xff\xfe garbage",
        "truncated": good[: len(good) // 2],
        "wrong types": good.replace(b'"priority":0', b'"priority":"high"'),
        "array": b"[1, 2, 3]",
        "pickle": pickle.dumps(Canary(str(canary))),
    }
    for body in bodies.values():
        await put_raw(redis_broker, "default", body)
    await redis_broker.enqueue([msg("after")])
    got = await redis_broker.claim(["default"], 20, 0)
    assert [d.message.id for d in got] == ["after"]
    dead = await redis_broker.list_dead("default")
    assert len(dead) == len(bodies)
    assert {d.reason for d in dead} == {DeadReason.DECODE_ERROR}
    assert all(d.message is None and d.raw and d.error for d in dead)
    assert not canary.exists()
    stats = await redis_broker.queue_stats("default")
    assert (stats.ready, stats.running, stats.dead) == (0, 1, len(bodies))


async def test_oversized_body_is_dead_lettered_as_too_large(
    redis_broker: RedisMessageBroker,
) -> None:
    await redis_broker.declare_queue("default")
    huge = encode(msg("huge", args=["x" * (redis_broker.max_message_size + 1)]))
    await put_raw(redis_broker, "default", huge)
    assert await redis_broker.claim(["default"], 5, 0) == []
    (dead,) = await redis_broker.list_dead("default")
    assert dead.reason is DeadReason.TOO_LARGE
    assert dead.raw is not None
    assert len(dead.raw) < 1000  # an excerpt, not the whole body


async def test_requeue_leaves_undecodable_dead_letters(redis_broker: RedisMessageBroker) -> None:
    await redis_broker.declare_queue("default")
    await put_raw(redis_broker, "default", b"not json")
    assert await redis_broker.claim(["default"], 5, 0) == []
    assert await redis_broker.requeue_dead("default") == 0
    assert len(await redis_broker.list_dead("default")) == 1


async def test_a_failed_dead_lettering_does_not_strand_the_jobs_claimed_with_it(
    redis_broker: RedisMessageBroker,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await redis_broker.declare_queue("default")
    await put_raw(redis_broker, "default", b"\x00 garbage")
    await redis_broker.enqueue([msg("good")])

    async def broken(outcomes: object) -> list[bool]:
        raise ConnectionError("Redis went away while dead-lettering")

    monkeypatch.setattr(redis_broker, "_finish", broken)
    got = await redis_broker.claim(["default"], 10, 0)
    assert [d.message.id for d in got] == ["good"]
    assert "could not dead-letter 1 unreadable message(s)" in caplog.text
