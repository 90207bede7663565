"""Counting enqueued jobs: ``repid_jobs_enqueued_total``, in the process that enqueues.

Every enqueue of a Django process (``job.enqueue()``, ``enqueue_many``, ``@actor`` helpers,
the ``django.tasks`` backend, a worker's actors enqueuing follow-ups) ends in its broker's
``enqueue`` or ``enqueue_sync``, which say which messages were written (a unique job already
waiting is not). :class:`CountingRedisBroker` is the Redis broker with those two calls counted;
``repid_django.connection`` builds it. The cost is a dictionary look-up and a counter increment
per message, next to a Redis round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..engine.brokers.redis.broker import RedisMessageBroker
from ..engine.message import Message
from . import definitions as m
from .labels import MAX_ACTORS, MAX_QUEUES, LabelCap

_actor = LabelCap(MAX_ACTORS)
_queue = LabelCap(MAX_QUEUES)
_children: dict[tuple[str, str], Any] = {}


def count_written(messages: Sequence[Message], written: Sequence[bool]) -> None:
    """Count the messages of ``messages`` whose flag in ``written`` is true."""
    counts: dict[tuple[str, str], int] = {}
    for message, done in zip(messages, written, strict=False):
        if done:
            key = (message.actor, message.queue)
            counts[key] = counts.get(key, 0) + 1
    for key, count in counts.items():
        child = _children.get(key)
        if child is None:
            child = m.ENQUEUED.labels(_actor(key[0]), _queue(key[1]))
            if len(_children) < MAX_ACTORS * MAX_QUEUES:
                _children[key] = child
        child.inc(count)


class CountingRedisBroker(RedisMessageBroker):
    """:class:`RedisMessageBroker` whose enqueues count into ``repid_jobs_enqueued_total``."""

    async def enqueue(self, messages: Sequence[Message]) -> list[bool]:
        written = await super().enqueue(messages)
        count_written(messages, written)
        return written

    def enqueue_sync(self, messages: Sequence[Message]) -> list[bool]:
        written = super().enqueue_sync(messages)
        count_written(messages, written)
        return written
