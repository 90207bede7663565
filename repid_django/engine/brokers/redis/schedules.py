"""The Redis broker's side of periodic schedules: fire a tick once, read what was fired.

A mixin of :class:`~.broker.RedisMessageBroker`. Each queue keeps, in ``<prefix>:{<queue>}:sched``
(a hash), the last tick handled per schedule name; ``lua/fire.lua`` compares, records and
enqueues in one script, so any number of workers racing for a tick enqueue one job.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aredis

from ...message import Message, encode_checked
from ...serializer import dumps, loads
from .codec import text
from .keys import schedules_key

log = logging.getLogger("repid_django.schedules")


class RedisScheduleMixin:
    max_message_size: int
    prefix: str

    @property
    def sync_client(self) -> redis.Redis:
        raise NotImplementedError

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

    async def schedule_marks(
        self, queue: str, names: Sequence[str], *, strip: int = 0
    ) -> dict[str, float]:
        if not names:
            return {}
        found = await self.client.hmget(self._base(queue) + "sched", list(names))
        return {
            n[strip:]: float(text(v)) for n, v in zip(names, found, strict=True) if v is not None
        }

    async def schedule_runs(self, queue: str, names: Sequence[str]) -> dict[str, float]:
        return await self.schedule_marks(queue, [">" + n for n in names], strip=1)

    async def forget_schedule(self, queue: str, name: str) -> None:
        await self.client.hdel(self._base(queue) + "sched", name, ">" + name)

    # schedules kept in Redis (Job(cron=...)) ---------------------------------------------------
    async def save_schedule(self, name: str, data: dict[str, Any]) -> None:
        await self.client.hset(schedules_key(self.prefix), name, dumps(data))

    def save_schedule_sync(self, name: str, data: dict[str, Any]) -> None:
        """:meth:`save_schedule` for sync code (no event loop)."""
        self.sync_client.hset(schedules_key(self.prefix), name, dumps(data))

    async def list_schedules(self) -> dict[str, dict[str, Any]]:
        found = await self.client.hgetall(schedules_key(self.prefix))
        out: dict[str, dict[str, Any]] = {}
        for name, raw in found.items():
            try:
                data = loads(raw)
            except ValueError as exc:
                log.warning("schedule %r kept in Redis is unreadable, skipped: %s", text(name), exc)
                continue
            if isinstance(data, dict):
                out[text(name)] = data
        return out

    async def remove_schedule(self, name: str) -> bool:
        return bool(await self.client.hdel(schedules_key(self.prefix), name))
