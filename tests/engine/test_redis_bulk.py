"""A big batch from async code goes to Redis in parts sent back to back (``produce.CHUNK``)."""

from __future__ import annotations

import time

import pytest
import redis

from repid_django.engine.brokers.redis import produce
from repid_django.engine.brokers.redis.broker import RedisMessageBroker
from repid_django.engine.message import decode

from .broker_helpers import msg

pytestmark = pytest.mark.redis


async def test_a_batch_in_parts_keeps_order_duplicates_and_delays(
    redis_broker: RedisMessageBroker, redis_client: redis.Redis, key_prefix: str
) -> None:
    count = produce.CHUNK * 2 + 500  # three parts
    later = time.time() + 3600
    messages = [msg(f"m{i}", run_at=later if i % 500 == 7 else None) for i in range(count)] + [
        msg("m3", args={"second": True})
    ]  # an id of the first part again, in the last part
    await redis_broker.declare_queue("default")
    written = await redis_broker.enqueue(messages)
    assert written == [True] * count + [False]
    base = f"{key_prefix}:{{default}}:"
    assert redis_client.hlen(base + "msgs") == count
    delayed = [m.id for m in messages[:count] if m.run_at is not None]
    assert redis_client.zcard(base + "delayed") == len(delayed)
    ready = [m.id for m in messages[:count] if m.run_at is None]
    claimed: list[str] = []
    while len(claimed) < len(ready):
        got = await redis_broker.claim(["default"], 500, 0)
        assert got
        claimed += [d.message.id for d in got]
    assert claimed == ready  # FIFO across the parts
    assert await redis_broker.claim(["default"], 10, 0) == []  # the delayed ones wait
    assert "m3" in claimed
    body = redis_client.hget(base + "msgs", "m3")
    assert body is not None
    assert decode(body).args is None  # the duplicate's body did not replace the first one's
