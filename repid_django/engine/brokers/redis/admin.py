"""The Redis broker's flushing, listing, cancelling, dead-letter and result operations.

A mixin of :class:`~.redis.RedisMessageBroker`, kept apart from the delivery path (enqueue,
claim, finish). These are the operations the admin and ``await job.result`` use.

Redis runs one script at a time and every other client waits meanwhile, so the operations
whose work grows with a queue never run over the whole queue in one call: ``flush_queue``,
``requeue_dead`` and ``purge_dead`` with many ids, and long listings, run one script call (one
round trip) per chunk of at most :data:`CHUNK` messages, each atomic (a message is moved or
removed whole, never half), looping from Python until done; ``delete_queue`` and ``purge_dead``
of every dead letter UNLINK the keys (freed in a background thread), one short script whatever
their size. A chunked operation that fails midway (Redis unreachable) has done whole chunks
only: running it again does the rest.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

import redis
import redis.asyncio as aredis

from ...limits import Limits, ctl_fields, field_names, from_fields
from ...message import Message, MessageDecodeError, decode, encode
from ...results import JobResult
from ...serializer import dumps, loads
from ..base import CancelState, DeadLetter
from .codec import dead_letter, text
from .keys import loose_result_key, result_key
from .results import RedisResultsMixin

CHUNK = 500
"""Messages (or ids) per script call of the operations that scale with a queue. One call then
holds Redis for a few milliseconds at most, whatever the queue's size (on a busy 2-core
machine: about 1 ms per flush chunk, 5 ms per requeue chunk)."""


PROGRESS_MS = 3_600_000
"""How long a job's last progress report is kept (milliseconds)."""


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

    # waiting messages
    async def flush_queue(self, name: str) -> int:
        """Remove the waiting (ready and delayed) messages of ``name``; returns how many.

        Chunk by chunk (``lua/flush.lua``): the delayed messages in run_at order, then the
        ready ones in serving order, each removed with its body and its other entries in one
        script. Every message waiting when the flush began goes (unless a worker claims it
        first); one written meanwhile may go or stay. Ready messages written meanwhile never
        prolong it (those past the queue's FIFO sequence at the start of the ready phase are
        passed over), so it ends while producers keep writing. Running messages are left alone.
        """
        keys = [self._base(name)]
        state: list[Any] = ["d", "", ""]  # phase, cursor, bound: see lua/flush.lua
        total = 0
        while True:
            removed, phase, cursor, bound = await self._script("flush", keys, [CHUNK, *state])
            total += int(removed)
            if not phase:
                return total
            state = [phase, cursor, bound]

    async def list_messages(
        self, queue: str, *, delayed: bool = False, offset: int = 0, limit: int = 100
    ) -> list[Message]:
        which = "delayed" if delayed else "ready"
        keys = [self._base(queue)]
        messages = []
        for start in range(offset, offset + limit, CHUNK):
            size = min(CHUNK, offset + limit - start)
            reply = await self._script("list", keys, [which, start, size])
            for i in range(1, len(reply), 2):
                try:
                    messages.append(decode(reply[i + 1], self.max_message_size))
                except MessageDecodeError:
                    continue  # dead-lettered when claimed
            if reply[0] < size:
                break
        return messages

    async def set_limits(self, queue: str, limits: Mapping[str | None, Limits]) -> None:
        ctl = self._base(queue) + "ctl"
        async with self.client.pipeline(transaction=True) as pipe:
            for who, chosen in limits.items():
                pipe.hdel(ctl, *field_names(who))
                fields = ctl_fields(chosen, who)
                if fields:
                    pipe.hset(ctl, mapping=fields)  # type: ignore[arg-type]
            await pipe.execute()

    async def get_limits(self, queue: str) -> dict[str | None, Limits]:
        found = await self.client.hgetall(self._base(queue) + "ctl")
        return from_fields({text(k): text(v) for k, v in found.items() if text(k) != "paused"})

    async def pause_queue(self, queue: str) -> None:
        await self.client.hset(self._base(queue) + "ctl", "paused", "1")

    async def resume_queue(self, queue: str) -> None:
        base = self._base(queue)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(base + "ctl", "paused")
            pipe.lpush(base + "wake", *["1"] * 8)  # wake the waiting workers now
            pipe.ltrim(base + "wake", 0, 7)
            await pipe.execute()

    async def cancel(self, queue: str, message_id: str) -> bool:
        return await self.cancel_job(queue, message_id) != "unknown"

    async def cancel_job(self, queue: str, message_id: str) -> CancelState:
        done = await self._script("cancel", [self._base(queue)], [message_id, time.time()])
        return "removed" if done == 1 else "stopping" if done == 2 else "unknown"

    # progress (see ..worker.context): one key per job that reports any, for an hour
    async def set_progress(self, queue: str, message_id: str, data: dict[str, Any]) -> None:
        await self.client.set(self._base(queue) + "prog:" + message_id, dumps(data), px=PROGRESS_MS)

    def set_progress_sync(self, queue: str, message_id: str, data: dict[str, Any]) -> None:
        key = self._base(queue) + "prog:" + message_id
        self.sync_client.set(key, dumps(data), px=PROGRESS_MS)

    async def get_progress(self, queue: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        base = self._base(queue) + "prog:"
        found = await self.client.mget([base + i for i in ids])  # one slot: one MGET
        return {i: loads(raw) for i, raw in zip(ids, found, strict=True) if raw is not None}

    # dead letters
    async def list_dead(self, queue: str, *, offset: int = 0, limit: int = 100) -> list[DeadLetter]:
        keys = [self._base(queue)]
        letters = []
        for start in range(offset, offset + limit, CHUNK):
            size = min(CHUNK, offset + limit - start)
            reply = await self._script("list_dead", keys, [start, size])
            letters += [
                dead_letter(
                    queue, text(reply[i]), reply[i + 1], reply[i + 2], self.max_message_size
                )
                for i in range(0, len(reply), 3)
            ]
            if len(reply) < 3 * size:
                break
        return letters

    async def requeue_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        """See :meth:`MessageBroker.requeue_dead`. A chunk at a time: the bodies are read
        (``HSCAN`` of every dead letter, or ``HMGET`` of the given ids), decoded and made fresh
        here, then moved by one script per chunk, which skips those no longer dead or whose
        id is live again (so a dead letter seen twice by the scan is requeued once)."""
        base = self._base(queue)
        dmsg = base + "dmsg"
        count = 0
        if ids is None:
            cursor = 0
            while True:
                cursor, found = await self.client.hscan(dmsg, cursor, count=CHUNK)
                scanned = cast(dict[bytes, bytes], found)
                count += await self._requeue(base, [(text(k), v) for k, v in scanned.items()])
                if not cursor:
                    return count
        wanted = list(dict.fromkeys(ids))
        for start in range(0, len(wanted), CHUNK):
            part = wanted[start : start + CHUNK]
            bodies = await self.client.hmget(dmsg, part)
            pairs = [(i, b) for i, b in zip(part, bodies, strict=True) if b is not None]
            count += await self._requeue(base, pairs)
        return count

    async def _requeue(self, base: str, pairs: Sequence[tuple[str, bytes | str]]) -> int:
        """Requeue one chunk of dead letters, ``(id, stored body)`` each."""
        now = time.time()
        args: list[Any] = []
        for message_id, body in pairs:
            try:
                message = decode(body, self.max_message_size)
            except MessageDecodeError:
                continue  # nothing to run: it stays until purged or expired
            fresh = message.with_changes(
                attempt=0,
                unknown_count=0,
                run_at=None if message.deferred_by is None else now,
                enqueued_at=now,
            )
            args += [message_id, message.priority, encode(fresh)]
        if not args:
            return 0
        return int(await self._script("requeue_dead", [base], args))

    async def purge_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        """See :meth:`MessageBroker.purge_dead`: all at once with UNLINK, given ids a chunk
        per script call."""
        keys = [self._base(queue)]
        if ids is None:
            return int(await self._script("purge_dead", keys, []))
        wanted = list(dict.fromkeys(ids))
        count = 0
        for start in range(0, len(wanted), CHUNK):
            count += int(await self._script("purge_dead", keys, wanted[start : start + CHUNK]))
        return count

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
