"""Helpers shared by the broker tests (both brokers)."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from repid_django.engine.brokers.base import MessageBroker
from repid_django.engine.brokers.memory.broker import InMemoryMessageBroker
from repid_django.engine.brokers.redis.broker import RedisMessageBroker
from repid_django.engine.message import Message

_raw_ids = itertools.count()


def msg(message_id: str, queue: str = "default", **fields: Any) -> Message:
    fields.setdefault("actor", "act")
    return Message(id=message_id, queue=queue, **fields)


async def put_raw(broker: MessageBroker, queue: str, body: bytes) -> str:
    """Write ``body`` as a ready message, bypassing every check, as a foreign producer could."""
    if isinstance(broker, InMemoryMessageBroker):
        broker.enqueue_raw(queue, body)
        return ""
    assert isinstance(broker, RedisMessageBroker)
    message_id = f"raw{next(_raw_ids)}"
    base = f"{broker.prefix}:{{{queue}}}:"
    client = broker.client
    await client.hset(base + "msgs", message_id, body)
    await client.hset(base + "pri", message_id, 0)
    await client.zadd(base + "ready", {message_id: 100 * 2**40 + next(_raw_ids)})
    return message_id


async def wait_until(predicate: Any, within: float = 10.0, interval: float = 0.02) -> None:
    """Poll an async predicate until it is true or fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)
