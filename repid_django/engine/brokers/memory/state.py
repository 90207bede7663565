"""The in-memory broker's data structures: per-queue heaps, leases, results and waiters."""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from ...message import Message, MessageDecodeError
from ...results import DEFAULT_RESULT_TTL_SECONDS, JobResult, stamp
from ...serializer import dumps, loads
from ..base import DeadLetter, DeadReason

RAW_EXCERPT = 200
"""Characters of an undecodable body kept in its dead letter."""


class Entry:
    """A waiting message; ``removed`` marks it cancelled inside the heaps (lazy deletion)."""

    __slots__ = ("body", "id", "priority", "removed", "run_at", "seq")

    def __init__(
        self, id_: str, priority: int, body: bytes, seq: int, run_at: float | None
    ) -> None:
        self.id = id_
        self.priority = priority
        self.body = body
        self.seq = seq
        self.run_at = run_at
        self.removed = False


@dataclass(slots=True)
class Lease:
    """A claimed message: its queue, the message and its FIFO position (for a REJECT)."""

    queue: str
    message: Message
    seq: int


class QueueState:
    """One queue: ready heap by (-priority, seq), delayed heap by run_at, running ids, dead."""

    __slots__ = (
        "dead",
        "delayed",
        "n_delayed",
        "n_ready",
        "paused",
        "ready",
        "running",
        "waiting",
    )

    def __init__(self, dead_limit: int) -> None:
        self.ready: list[tuple[int, int, Entry]] = []
        self.delayed: list[tuple[float, int, Entry]] = []
        self.waiting: dict[str, Entry] = {}
        self.running: dict[str, str] = {}
        self.n_ready = 0
        self.n_delayed = 0
        self.dead: deque[DeadLetter] = deque(maxlen=dead_limit)
        self.paused = False

    def push(self, entry: Entry, now: float) -> None:
        self.waiting[entry.id] = entry
        if entry.run_at is None or entry.run_at <= now:
            entry.run_at = None
            heapq.heappush(self.ready, (-entry.priority, entry.seq, entry))
            self.n_ready += 1
        else:
            heapq.heappush(self.delayed, (entry.run_at, entry.seq, entry))
            self.n_delayed += 1

    def promote(self, now: float, seqs: Iterator[int]) -> None:
        """Move delayed messages whose time has come to the ready heap (new FIFO position)."""
        delayed = self.delayed
        while delayed and delayed[0][0] <= now:
            _, _, entry = heapq.heappop(delayed)
            if entry.removed:
                continue
            self.n_delayed -= 1
            entry.run_at = None
            entry.seq = next(seqs)
            heapq.heappush(self.ready, (-entry.priority, entry.seq, entry))
            self.n_ready += 1

    def head(self) -> tuple[int, int, Entry] | None:
        ready = self.ready
        while ready and ready[0][2].removed:
            heapq.heappop(ready)
        return ready[0] if ready else None

    def pop(self) -> Entry:
        """Take the head (call :meth:`head` first)."""
        _, _, entry = heapq.heappop(self.ready)
        self.n_ready -= 1
        if self.waiting.get(entry.id) is entry:
            del self.waiting[entry.id]
        return entry

    def next_due(self) -> float | None:
        delayed = self.delayed
        while delayed and delayed[0][2].removed:
            heapq.heappop(delayed)
        return delayed[0][0] if delayed else None

    def remove(self, entry: Entry) -> None:
        entry.removed = True
        if self.waiting.get(entry.id) is entry:
            del self.waiting[entry.id]
        if entry.run_at is None:
            self.n_ready -= 1
        else:
            self.n_delayed -= 1

    def clear_waiting(self) -> int:
        count = self.n_ready + self.n_delayed
        for entry in self.waiting.values():
            entry.removed = True
        self.ready.clear()
        self.delayed.clear()
        self.waiting.clear()
        self.n_ready = self.n_delayed = 0
        return count

    def bury(self, message: Message, reason: DeadReason, error: str | None, now: float) -> None:
        self.dead.appendleft(
            DeadLetter(
                id=message.id,
                queue=message.queue,
                reason=reason,
                error=error,
                failed_at=stamp(now),
                message=message,
            )
        )

    def bury_raw(self, queue: str, entry: Entry, exc: MessageDecodeError, now: float) -> None:
        self.dead.appendleft(
            DeadLetter(
                id=entry.id,
                queue=queue,
                reason=DeadReason(exc.reason),
                error=exc.detail,
                failed_at=stamp(now),
                raw=entry.body[:RAW_EXCERPT].decode("utf-8", "replace"),
            )
        )


class ResultStore:
    """Results as JSON bodies with an expiry; expired ones are swept as new ones arrive."""

    def __init__(self) -> None:
        self._results: dict[str, tuple[bytes, float | None]] = {}
        self._expiry: list[tuple[float, str]] = []

    def get(self, job_id: str) -> JobResult | None:
        stored = self._results.get(job_id)
        if stored is None:
            return None
        body, expires_at = stored
        if expires_at is not None and expires_at <= time.time():
            del self._results[job_id]
            return None
        return JobResult.from_dict(loads(body))

    def put(self, result: JobResult, ttl: float | None, now: float) -> None:
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            _, job_id = heapq.heappop(expiry)
            stored = self._results.get(job_id)
            if stored is not None and stored[1] is not None and stored[1] <= now:
                del self._results[job_id]
        expires_at = now + (DEFAULT_RESULT_TTL_SECONDS if ttl is None else ttl)
        self._results[result.job_id] = (dumps(result.to_dict()), expires_at)
        if expires_at is not None:
            heapq.heappush(expiry, (expires_at, result.job_id))


class Waiters:
    """Coroutines waiting for a change; :meth:`wake` releases all of them (no polling)."""

    def __init__(self) -> None:
        self._futures: list[asyncio.Future[None]] = []

    async def wait(self, seconds: float) -> None:
        """Return on :meth:`wake` or after ``seconds``, whichever comes first."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._futures.append(waiter)
        try:
            async with asyncio.timeout(seconds):
                await waiter
        except TimeoutError:
            pass
        finally:
            if not waiter.done():
                waiter.cancel()
                if waiter in self._futures:
                    self._futures.remove(waiter)

    def wake(self) -> None:
        futures = self._futures
        if futures:
            self._futures = []
            for waiter in futures:
                if not waiter.done():
                    waiter.set_result(None)
