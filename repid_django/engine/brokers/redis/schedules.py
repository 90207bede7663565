"""The Redis broker's side of periodic schedules: fire a tick once, read what was fired.

A mixin of :class:`~.broker.RedisMessageBroker`. Each queue keeps, in ``<prefix>:{<queue>}:sched``
(a hash), the last tick handled per schedule name; ``lua/fire.lua`` compares, records and
enqueues in one script, so any number of workers racing for a tick enqueue one job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aredis

from ...message import Message, encode_checked
from .codec import text


class RedisScheduleMixin:
    max_message_size: int

    @property
    def client(self) -> aredis.Redis:
        raise NotImplementedError

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        raise NotImplementedError

    def _base(self, queue: str) -> str:
        raise NotImplementedError

    async def fire(self, queue: str, schedule: str, tick: float, message: Message | None) -> bool:
        args: list[Any] = [schedule, repr(float(tick))]
        if message is not None:
            body = encode_checked(message, self.max_message_size)
            args += [message.id, message.priority, body]
        return bool(await self._script("fire", [self._base(queue)], args))

    async def schedule_marks(self, queue: str, names: Sequence[str]) -> dict[str, float]:
        if not names:
            return {}
        found = await self.client.hmget(self._base(queue) + "sched", list(names))
        return {n: float(text(v)) for n, v in zip(names, found, strict=True) if v is not None}
