"""The in-memory broker: one process, one event loop; for tests, scripts and the seed examples.

It is a complete broker, not a mock: bodies are encoded to JSON at enqueue and decoded again at
claim (so it exercises the wire format and dead-letters what does not decode), queues are served
strictly by priority and FIFO within one priority, leases are fenced by tokens, delayed messages
are promoted by the claim itself, and results expire. ``join()`` waits until queues are idle, for
deterministic tests.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ..message import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Message,
    MessageDecodeError,
    decode,
    encode,
    encode_checked,
)
from ..results import JobResult
from ..serializer import dumps, loads
from .base import (
    BrokerCounters,
    DeadLetter,
    DeadReason,
    Delivery,
    MessageBroker,
    Outcome,
    OutcomeKind,
    QueueStats,
    ResultBroker,
)

RAW_EXCERPT = 200
"""Characters of an undecodable body kept in its dead letter."""


class _Entry:
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
class _Lease:
    queue: str
    message: Message
    seq: int


class _QueueState:
    __slots__ = ("dead", "delayed", "n_delayed", "n_ready", "ready", "running", "waiting")

    def __init__(self, dead_limit: int) -> None:
        self.ready: list[tuple[int, int, _Entry]] = []
        self.delayed: list[tuple[float, int, _Entry]] = []
        self.waiting: dict[str, _Entry] = {}
        self.running: dict[str, str] = {}
        self.n_ready = 0
        self.n_delayed = 0
        self.dead: deque[DeadLetter] = deque(maxlen=dead_limit)

    def push(self, entry: _Entry, now: float) -> None:
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

    def head(self) -> tuple[int, int, _Entry] | None:
        ready = self.ready
        while ready and ready[0][2].removed:
            heapq.heappop(ready)
        return ready[0] if ready else None

    def next_due(self) -> float | None:
        delayed = self.delayed
        while delayed and delayed[0][2].removed:
            heapq.heappop(delayed)
        return delayed[0][0] if delayed else None

    def remove(self, entry: _Entry) -> None:
        entry.removed = True
        if self.waiting.get(entry.id) is entry:
            del self.waiting[entry.id]
        if entry.run_at is None:
            self.n_ready -= 1
        else:
            self.n_delayed -= 1


class InMemoryMessageBroker(MessageBroker, ResultBroker):
    """A broker in this process's memory. Use it from one event loop.

    ``max_message_size`` bounds encoded bodies (``ValueError`` at enqueue); ``dead_letter_limit``
    bounds each queue's dead letters (the oldest are dropped first).
    """

    def __init__(
        self,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        dead_letter_limit: int = 10_000,
    ) -> None:
        self.max_message_size = max_message_size
        self.dead_letter_limit = dead_letter_limit
        self._queues: dict[str, _QueueState] = {}
        self._leases: dict[str, _Lease] = {}
        self._seq = itertools.count()
        self._tokens = itertools.count(1)
        self._results: dict[str, tuple[bytes, float | None]] = {}
        self._result_expiry: list[tuple[float, str]] = []
        self._claim_waiters: list[asyncio.Future[None]] = []
        self._join_waiters: list[asyncio.Future[None]] = []
        self._interrupts = 0
        self._counters = BrokerCounters(extra={"claimed": 0, "rejected": 0, "expired": 0})

    # connection ------------------------------------------------------------------------------
    async def connect(self) -> None:
        """Nothing to open."""

    async def disconnect(self) -> None:
        """Nothing to close; the stored state stays (a later ``connect`` sees it)."""

    # queues ----------------------------------------------------------------------------------
    async def declare_queue(self, name: str) -> None:
        if name not in self._queues:
            self._queues[name] = _QueueState(self.dead_letter_limit)

    async def flush_queue(self, name: str) -> int:
        state = self._queues.get(name)
        if state is None:
            return 0
        count = state.n_ready + state.n_delayed
        for entry in state.waiting.values():
            entry.removed = True
        state.ready.clear()
        state.delayed.clear()
        state.waiting.clear()
        state.n_ready = state.n_delayed = 0
        self._wake_joiners()
        return count

    async def delete_queue(self, name: str) -> None:
        if self._queues.pop(name, None) is not None:
            self._wake_joiners()

    async def list_queues(self) -> list[str]:
        return sorted(self._queues)

    async def queue_stats(self, name: str) -> QueueStats:
        state = self._queues.get(name)
        if state is None:
            return QueueStats(name=name)
        state.promote(time.time(), self._seq)
        return QueueStats(
            name=name,
            ready=state.n_ready,
            delayed=state.n_delayed,
            running=len(state.running),
            dead=len(state.dead),
        )

    # messages --------------------------------------------------------------------------------
    async def enqueue(self, messages: Sequence[Message]) -> list[bool]:
        bodies = [encode_checked(message, self.max_message_size) for message in messages]
        for message in messages:
            if message.queue not in self._queues:
                raise KeyError(message.queue)
        now = time.time()
        written: list[bool] = []
        for message, body in zip(messages, bodies, strict=True):
            written.append(self._push(message.queue, message, body, now))
        if any(written):
            self._wake_claimers()
        return written

    def enqueue_raw(self, queue: str, body: bytes | str, priority: int = 0) -> None:
        """Put a raw body on ``queue`` as if another producer wrote it (tests of poison data)."""
        state = self._queues[queue]
        data = body.encode() if isinstance(body, str) else body
        state.push(_Entry(f"raw-{next(self._seq)}", priority, data, next(self._seq), None), 0.0)
        self._wake_claimers()

    def _push(self, queue: str, message: Message, body: bytes, now: float, seq: int = -1) -> bool:
        state = self._queues[queue]
        if message.unique and (message.id in state.waiting or message.id in state.running):
            return False
        entry = _Entry(
            message.id, message.priority, body, next(self._seq) if seq < 0 else seq, message.run_at
        )
        state.push(entry, now)
        self._counters.enqueued += 1
        return True

    async def claim(self, queues: Sequence[str], limit: int, wait: float) -> list[Delivery]:
        deliveries = self._take(queues, limit)
        if deliveries or wait <= 0:
            return deliveries
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + wait
        interrupts = self._interrupts
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or interrupts != self._interrupts:
                return []
            due = self._next_due(queues)
            if due is not None:
                remaining = min(remaining, max(due - time.time(), 0.0))
            waiter: asyncio.Future[None] = loop.create_future()
            self._claim_waiters.append(waiter)
            try:
                async with asyncio.timeout(remaining):
                    await waiter
            except TimeoutError:
                pass
            finally:
                if not waiter.done():
                    waiter.cancel()
                    if waiter in self._claim_waiters:
                        self._claim_waiters.remove(waiter)
            deliveries = self._take(queues, limit)
            if deliveries:
                return deliveries

    def wake_claimers(self) -> None:
        """Make every waiting ``claim`` return now (a stopping worker calls this)."""
        self._interrupts += 1
        self._wake_claimers()

    def _take(self, queues: Sequence[str], limit: int) -> list[Delivery]:
        now = time.time()
        states: list[tuple[str, _QueueState]] = []
        for name in queues:
            state = self._queues.get(name)
            if state is not None:
                if state.delayed:
                    state.promote(now, self._seq)
                if state.n_ready:
                    states.append((name, state))
        deliveries: list[Delivery] = []
        changed = False
        while states and len(deliveries) < limit:
            best: tuple[int, int, _Entry] | None = None
            best_at = 0
            for index, (_, state) in enumerate(states):
                head = state.head()
                if head is not None and (best is None or head[:2] < best[:2]):
                    best, best_at = head, index
            if best is None:
                break
            name, state = states[best_at]
            heapq.heappop(state.ready)
            entry = best[2]
            state.n_ready -= 1
            if state.waiting.get(entry.id) is entry:
                del state.waiting[entry.id]
            if not state.n_ready:
                states.pop(best_at)
            try:
                message = decode(entry.body, self.max_message_size)
            except MessageDecodeError as exc:
                self._dead_raw(name, state, entry, exc, now)
                changed = True
                continue
            if message.expired(now):
                self._counters.extra["expired"] += 1
                self._add_dead(state, message, DeadReason.EXPIRED, "ttl passed before it ran", now)
                changed = True
                continue
            token = str(next(self._tokens))
            self._leases[token] = _Lease(name, message, entry.seq)
            state.running[message.id] = token
            deliveries.append(Delivery(message, token))
        if deliveries:
            self._counters.extra["claimed"] += len(deliveries)
        if changed:
            self._wake_joiners()
        return deliveries

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
            self._repush(lease.queue, lease.message, now, lease.seq)
            count += 1
        if count:
            self._wake_claimers()
        return count

    def _next_due(self, queues: Sequence[str]) -> float | None:
        due: float | None = None
        for name in queues:
            state = self._queues.get(name)
            if state is not None and state.delayed:
                first = state.next_due()
                if first is not None and (due is None or first < due):
                    due = first
        return due

    async def finish(self, outcomes: Sequence[Outcome]) -> list[bool]:
        now = time.time()
        applied: list[bool] = []
        requeued = False
        for outcome in outcomes:
            lease = self._leases.get(outcome.delivery.token)
            if lease is None or lease.message.id != outcome.delivery.message.id:
                applied.append(False)
                continue
            del self._leases[outcome.delivery.token]
            applied.append(True)
            state = self._queues.get(lease.queue)
            if state is None:
                continue  # the queue was deleted while the message ran
            message = lease.message
            if state.running.get(message.id) == outcome.delivery.token:
                del state.running[message.id]
            if outcome.result is not None:
                self._store(outcome.result, message.result_ttl, now)
            requeued |= self._apply(state, lease, outcome, now)
        if requeued:
            self._wake_claimers()
        self._wake_joiners()
        return applied

    def _apply(self, state: _QueueState, lease: _Lease, outcome: Outcome, now: float) -> bool:
        message = lease.message
        kind = outcome.kind
        counters = self._counters
        if kind is OutcomeKind.REJECT:
            counters.extra["rejected"] += 1
            changes: dict[str, object] = {"run_at": outcome.run_at}
            if outcome.count_unknown:
                changes["unknown_count"] = message.unknown_count + 1
            seq = lease.seq if outcome.run_at is None else -1
            return self._repush(lease.queue, message.with_changes(**changes), now, seq)
        if kind is OutcomeKind.RETRY:
            counters.retried += 1
            retry = message.with_changes(attempt=message.attempt + 1, run_at=outcome.run_at)
            return self._repush(lease.queue, retry, now)
        if kind is OutcomeKind.DEAD:
            reason = outcome.reason or DeadReason.FAILED
            self._add_dead(state, message, reason, outcome.error, now)
        else:
            counters.acked += 1
        if message.deferred_by is not None:
            run_at = outcome.run_at if outcome.run_at is not None else now + message.deferred_by
            again = message.with_changes(attempt=0, unknown_count=0, run_at=run_at)
            return self._repush(lease.queue, again, now)
        return False

    def _repush(self, queue: str, message: Message, now: float, seq: int = -1) -> bool:
        pushed = self._push(queue, message, encode(message), now, seq)
        if pushed:
            self._counters.enqueued -= 1  # a move, not a new message
        return pushed

    def _add_dead(
        self,
        state: _QueueState,
        message: Message,
        reason: DeadReason,
        error: str | None,
        now: float,
    ) -> None:
        self._counters.dead += 1
        state.dead.appendleft(
            DeadLetter(
                id=message.id,
                queue=message.queue,
                reason=reason,
                error=error,
                failed_at=datetime.fromtimestamp(now, UTC),
                message=message,
            )
        )

    def _dead_raw(
        self, queue: str, state: _QueueState, entry: _Entry, exc: MessageDecodeError, now: float
    ) -> None:
        self._counters.dead += 1
        raw = entry.body[:RAW_EXCERPT].decode("utf-8", "replace")
        state.dead.appendleft(
            DeadLetter(
                id=entry.id,
                queue=queue,
                reason=DeadReason(exc.reason),
                error=exc.detail,
                failed_at=datetime.fromtimestamp(now, UTC),
                raw=raw,
            )
        )

    async def list_messages(
        self, queue: str, *, delayed: bool = False, offset: int = 0, limit: int = 100
    ) -> list[Message]:
        state = self._queues.get(queue)
        if state is None:
            return []
        state.promote(time.time(), self._seq)
        heap: Sequence[tuple[float, int, _Entry]] = state.delayed if delayed else state.ready
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
        state = self._queues.get(queue)
        entry = None if state is None else state.waiting.get(message_id)
        if state is None or entry is None:
            return False
        state.remove(entry)
        self._wake_joiners()
        return True

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
            self._wake_claimers()
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
        stored = self._results.get(job_id)
        if stored is None:
            return None
        body, expires_at = stored
        if expires_at is not None and expires_at <= time.time():
            del self._results[job_id]
            return None
        return JobResult.from_dict(loads(body))

    async def store_results(self, results: Sequence[tuple[JobResult, float | None]]) -> None:
        now = time.time()
        for result, ttl in results:
            self._store(result, ttl, now)

    def _store(self, result: JobResult, ttl: float | None, now: float) -> None:
        expiry = self._result_expiry
        while expiry and expiry[0][0] <= now:
            _, job_id = heapq.heappop(expiry)
            stored = self._results.get(job_id)
            if stored is not None and stored[1] is not None and stored[1] <= now:
                del self._results[job_id]
        expires_at = None if ttl is None else now + ttl
        self._results[result.job_id] = (dumps(result.to_dict()), expires_at)
        if expires_at is not None:
            heapq.heappush(expiry, (expires_at, result.job_id))

    # waiting ---------------------------------------------------------------------------------
    async def join(self, queue: str | Sequence[str] | None = None, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until ``queue`` (all queues when ``None``) has no ready, due or running message.

        Delayed messages whose time has not come do not count. Raises ``TimeoutError`` saying
        what is left when ``timeout`` seconds pass first.
        """
        names = None if queue is None else [queue] if isinstance(queue, str) else list(queue)
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while True:
            selected = list(self._queues) if names is None else names
            busy, due = self._busy(selected)
            if not busy:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"join({queue!r}) timed out after {timeout}s: {busy}")
            if due is not None:
                remaining = min(remaining, max(due - time.time(), 0.0) + 0.001)
            waiter: asyncio.Future[None] = loop.create_future()
            self._join_waiters.append(waiter)
            try:
                async with asyncio.timeout(remaining):
                    await waiter
            except TimeoutError:
                pass
            finally:
                if not waiter.done():
                    waiter.cancel()
                    if waiter in self._join_waiters:
                        self._join_waiters.remove(waiter)

    def _busy(self, names: Sequence[str]) -> tuple[str, float | None]:
        now = time.time()
        parts: list[str] = []
        due: float | None = None
        for name in names:
            state = self._queues.get(name)
            if state is None:
                continue
            if state.delayed:
                state.promote(now, self._seq)
            first = state.next_due()
            if first is not None and (due is None or first < due):
                due = first
            if state.n_ready or state.running:
                parts.append(f"{name}: {state.n_ready} ready, {len(state.running)} running")
        return "; ".join(parts), due

    def _wake_claimers(self) -> None:
        waiters = self._claim_waiters
        if waiters:
            self._claim_waiters = []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _wake_joiners(self) -> None:
        waiters = self._join_waiters
        if waiters:
            self._join_waiters = []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def counters(self) -> BrokerCounters:
        counters = self._counters
        return BrokerCounters(
            enqueued=counters.enqueued,
            acked=counters.acked,
            retried=counters.retried,
            dead=counters.dead,
            extra=dict(counters.extra),
        )
