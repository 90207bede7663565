"""The in-memory broker's listing, cancelling, dead-letter and result operations.

A mixin of :class:`~.broker.InMemoryMessageBroker`, kept apart from the delivery path (enqueue,
claim, finish), like the Redis broker's ``admin.py``. These are the operations the admin and
``await job.result`` use.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ...message import Message, MessageDecodeError, decode, encode_checked
from ...results import JobResult
from ..base import BrokerCounters, CancelState, DeadLetter, DeadReason
from .results import InMemoryResultsMixin
from .state import Entry, Lease, QueueState, ResultStore, Waiters


class InMemoryAdminMixin(InMemoryResultsMixin):
    """Operations on the state the broker keeps (see :class:`~.broker.InMemoryMessageBroker`)."""

    max_message_size: int
    _queues: dict[str, QueueState]
    _leases: dict[str, Lease]
    _seq: Iterator[int]
    _results: ResultStore
    _claimers: Waiters
    _joiners: Waiters
    _idle: Waiters
    _lost: dict[tuple[str, str], int]
    _counters: BrokerCounters
    max_lost: int

    def _repush(self, queue: str, message: Message, now: float, seq: int = -1) -> bool:
        raise NotImplementedError

    def _push(self, queue: str, message: Message, body: bytes, now: float, seq: int = -1) -> bool:
        raise NotImplementedError

    async def list_messages(
        self, queue: str, *, delayed: bool = False, offset: int = 0, limit: int = 100
    ) -> list[Message]:
        state = self._queues.get(queue)
        if state is None:
            return []
        state.promote(time.time(), self._seq)
        heap: Sequence[tuple[float, int, Entry]] = state.delayed if delayed else state.ready
        entries = [item[2] for item in sorted(heap, key=lambda item: item[:2])]
        live = (entry for entry in entries if not entry.removed)
        messages: list[Message] = []
        for entry in itertools.islice(live, offset, offset + limit):
            try:
                messages.append(decode(entry.body, self.max_message_size))
            except MessageDecodeError:
                continue
        return messages

    async def cancel(self, queue: str, message_id: str) -> bool:
        return await self.cancel_job(queue, message_id) != "unknown"

    async def cancel_job(self, queue: str, message_id: str) -> CancelState:
        state = self._queues.get(queue)
        if state is None:
            return "unknown"
        entry = state.waiting.get(message_id)
        if entry is not None:
            state.remove(entry)
            self._joiners.wake()
            return "removed"
        if message_id not in state.running:
            return "unknown"
        for callback in self.__dict__.get("_on_stop", ()):
            callback(queue, message_id)
        return "stopping"

    def watch_stops(self, callback: Callable[[str, str], None]) -> None:
        self.__dict__.setdefault("_on_stop", []).append(callback)

    async def set_progress(self, queue: str, message_id: str, data: dict[str, Any]) -> None:
        self.__dict__.setdefault("_progress", {})[(queue, message_id)] = dict(data)

    async def get_progress(self, queue: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        kept = self.__dict__.get("_progress", {})
        return {i: dict(kept[(queue, i)]) for i in ids if (queue, i) in kept}

    def expire_leases(self, queue: str | None = None) -> int:
        """Return every running message (of ``queue``) to its queue as if its worker had died.

        This is what the Redis broker's reaper does for expired leases; the old deliveries are
        fenced off (their ``finish`` reports ``False``). For tests of lost leases.
        """
        now = time.time()
        count = 0
        for token, lease in list(self._leases.items()):
            if queue is not None and lease.queue != queue:
                continue
            del self._leases[token]
            state = self._queues.get(lease.queue)
            if state is None:
                continue
            if state.running.get(lease.message.id) == token:
                del state.running[lease.message.id]
            key = (lease.queue, lease.message.id)
            lost = self._lost[key] = self._lost.get(key, 0) + 1
            count += 1
            if lost > self.max_lost:
                del self._lost[key]
                self._counters.dead += 1
                error = f"its lease expired {lost} times (the worker running it died or hung)"
                state.bury(lease.message, DeadReason.WORKER_LOST, error, now)
                continue
            self._repush(lease.queue, lease.message, now, lease.seq)
        if count:
            self._claimers.wake()
            self._joiners.wake()
        if not self._leases:
            self._idle.wake()
        return count

    async def pause_queue(self, queue: str) -> None:
        self._queues[queue].paused = True

    async def resume_queue(self, queue: str) -> None:
        self._queues[queue].paused = False
        self._claimers.wake()

    # dead letters ----------------------------------------------------------------------------
    async def list_dead(self, queue: str, *, offset: int = 0, limit: int = 100) -> list[DeadLetter]:
        state = self._queues.get(queue)
        if state is None:
            return []
        return list(itertools.islice(state.dead, offset, offset + limit))

    async def requeue_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        state = self._queues.get(queue)
        if state is None:
            return 0
        wanted = None if ids is None else set(ids)
        now = time.time()
        kept: list[DeadLetter] = []
        count = 0
        for letter in state.dead:
            message = letter.message
            busy = message is not None and (
                message.id in state.waiting or message.id in state.running
            )
            if (wanted is not None and letter.id not in wanted) or message is None or busy:
                kept.append(letter)
                continue
            fresh = message.with_changes(attempt=0, unknown_count=0, run_at=None, enqueued_at=now)
            if message.deferred_by is not None:
                fresh = fresh.with_changes(run_at=now)
            self._push(queue, fresh, encode_checked(fresh, self.max_message_size), now)
            count += 1
        state.dead.clear()
        state.dead.extend(kept)
        if count:
            self._claimers.wake()
            self._joiners.wake()
        if not self._leases:
            self._idle.wake()
        return count

    async def purge_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        state = self._queues.get(queue)
        if state is None:
            return 0
        before = len(state.dead)
        if ids is None:
            state.dead.clear()
            return before
        wanted = set(ids)
        kept = [letter for letter in state.dead if letter.id not in wanted]
        state.dead.clear()
        state.dead.extend(kept)
        return before - len(kept)

    # results ---------------------------------------------------------------------------------
    async def get_result(self, job_id: str, queue: str = "default") -> JobResult | None:
        return self._results.get(job_id)

    async def store_results(self, results: Sequence[tuple[JobResult, float | None]]) -> None:
        now = time.time()
        for result, ttl in results:
            self._results.put(result, ttl, now)
