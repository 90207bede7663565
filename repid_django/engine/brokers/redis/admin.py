"""The Redis broker's listing, cancelling, dead-letter and result operations.

A mixin of :class:`~.redis.RedisMessageBroker`, kept apart from the delivery path (enqueue,
claim, finish). These are the operations the admin and ``await job.result`` use; each is one
round trip (a script or a pipeline).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aredis

from ...message import Message, MessageDecodeError, decode, encode
from ...results import JobResult
from ...serializer import dumps, loads
from ..base import DeadLetter
from .codec import dead_letter, text
from .keys import loose_result_key, result_key
from .results import RedisResultsMixin


class RedisAdminMixin(RedisResultsMixin):
    prefix: str
    max_message_size: int
    result_ttl: float

    @property
    def client(self) -> aredis.Redis:
        raise NotImplementedError

    @property
    def sync_client(self) -> redis.Redis:
        raise NotImplementedError

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        raise NotImplementedError

    def _base(self, queue: str) -> str:
        raise NotImplementedError

    async def list_messages(
        self, queue: str, *, delayed: bool = False, offset: int = 0, limit: int = 100
    ) -> list[Message]:
        which = "delayed" if delayed else "ready"
        reply = await self._script("list", [self._base(queue)], [which, offset, limit])
        messages = []
        for i in range(0, len(reply), 2):
            try:
                messages.append(decode(reply[i + 1], self.max_message_size))
            except MessageDecodeError:
                continue  # dead-lettered when claimed
        return messages

    async def cancel(self, queue: str, message_id: str) -> bool:
        return bool(await self._script("cancel", [self._base(queue)], [message_id]))

    # dead letters
    async def list_dead(self, queue: str, *, offset: int = 0, limit: int = 100) -> list[DeadLetter]:
        reply = await self._script("list_dead", [self._base(queue)], [offset, limit])
        return [
            dead_letter(queue, text(reply[i]), reply[i + 1], reply[i + 2], self.max_message_size)
            for i in range(0, len(reply), 3)
        ]

    async def requeue_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        dmsg = self._base(queue) + "dmsg"
        if ids is None:
            found = await self.client.hgetall(dmsg)
            pairs = [(text(k), v) for k, v in found.items()]
        else:
            if not ids:
                return 0
            bodies = await self.client.hmget(dmsg, list(ids))
            pairs = [(i, b) for i, b in zip(ids, bodies, strict=True) if b is not None]
        now = time.time()
        args: list[Any] = []
        for message_id, body in pairs:
            try:
                message = decode(body, self.max_message_size)
            except MessageDecodeError:
                continue  # nothing to run: it stays until purged or expired
            fresh = message.with_changes(attempt=0, unknown_count=0, run_at=None, enqueued_at=now)
            args += [message_id, message.priority, encode(fresh)]
        if not args:
            return 0
        return int(await self._script("requeue_dead", [self._base(queue)], args))

    async def purge_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        if ids is not None and not ids:
            return 0
        return int(await self._script("purge_dead", [self._base(queue)], list(ids or [])))

    # results
    async def get_result(self, job_id: str, queue: str = "default") -> JobResult | None:
        async with self.client.pipeline(transaction=False) as pipe:
            for key in self._result_keys(job_id, queue):
                pipe.get(key)
            return _result(await pipe.execute())

    def get_result_sync(self, job_id: str, queue: str = "default") -> JobResult | None:
        """:meth:`get_result` for sync code, over the sync client (no event loop)."""
        with self.sync_client.pipeline(transaction=False) as pipe:
            for key in self._result_keys(job_id, queue):
                pipe.get(key)
            return _result(pipe.execute())

    def _result_keys(self, job_id: str, queue: str) -> list[str]:
        # Two GETs, not an MGET: the keys are in different Cluster slots.
        return [result_key(self.prefix, queue, job_id), loose_result_key(self.prefix, job_id)]

    async def store_results(self, results: Sequence[tuple[JobResult, float | None]]) -> None:
        if not results:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for result, ttl in results:
                ttl_ms = max(1, int((ttl or self.result_ttl) * 1000))
                pipe.set(
                    loose_result_key(self.prefix, result.job_id), dumps(result.to_dict()), px=ttl_ms
                )
            await pipe.execute()


def _result(replies: Sequence[bytes | None]) -> JobResult | None:
    raw = replies[0] if replies[0] is not None else replies[1]
    return None if raw is None else JobResult.from_dict(loads(raw))
