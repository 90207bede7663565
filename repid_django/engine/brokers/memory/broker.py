"""The in-memory broker: one process, one event loop; for tests, scripts and the seed examples.

It is a complete broker, not a mock: bodies are encoded to JSON at enqueue and decoded again at
claim (so it exercises the wire format and dead-letters what does not decode), queues are served
strictly by priority and FIFO within one priority, leases are fenced by tokens, delayed messages
are promoted by the claim itself, and results expire. ``join()`` waits until queues are idle, for
deterministic tests.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

from ...message import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Message,
    MessageDecodeError,
    decode,
    encode,
    encode_checked,
)
from ..base import (
    BrokerCounters,
    DeadReason,
    Delivery,
    MessageBroker,
    Outcome,
    OutcomeKind,
    QueueStats,
    ResultBroker,
)
from .admin import InMemoryAdminMixin
from .limits import InMemoryLimitsMixin
from .schedules import InMemoryScheduleMixin
from .state import Entry, Lease, QueueState, ResultStore, Waiters

HELD_SCAN = 200
"""Jobs held back by limits that one claim looks past before it gives up."""


class InMemoryMessageBroker(
    InMemoryLimitsMixin, InMemoryScheduleMixin, InMemoryAdminMixin, MessageBroker, ResultBroker
):
    """A broker in this process's memory. Use it from one event loop.

    ``max_message_size`` bounds encoded bodies (``ValueError`` at enqueue); ``dead_letter_limit``
    bounds each queue's dead letters (the oldest are dropped first). ``max_lost``: a message
    whose lease was lost (:meth:`expire_leases`) more often than this is dead-lettered as
    ``worker_lost``; on its last chance it is only leased alone, like on the Redis broker.
    """

    def __init__(
        self,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        dead_letter_limit: int = 10_000,
        max_lost: int = 3,
    ) -> None:
        self.max_message_size = max_message_size
        self.dead_letter_limit = dead_letter_limit
        self.max_lost = max_lost
        self._lost: dict[tuple[str, str], int] = {}
        self._alone_pending = False
        self._idle = Waiters()
        self._queues: dict[str, QueueState] = {}
        self._leases: dict[str, Lease] = {}
        self._rate_due: float | None = None
        self._seq = itertools.count()
        self._tokens = itertools.count(1)
        self._results = ResultStore()
        self._claimers = Waiters()
        self._joiners = Waiters()
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
            self._queues[name] = QueueState(self.dead_letter_limit)

    async def flush_queue(self, name: str) -> int:
        state = self._queues.get(name)
        if state is None:
            return 0
        count = state.clear_waiting()
        self._joiners.wake()
        return count

    async def delete_queue(self, name: str) -> None:
        if self._queues.pop(name, None) is not None:
            self._joiners.wake()

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
            paused=state.paused,
            limits=self._limits_of(name),
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
            self._claimers.wake()
        return written

    def enqueue_raw(self, queue: str, body: bytes | str, priority: int = 0) -> None:
        """Put a raw body on ``queue`` as if another producer wrote it (tests of poison data)."""
        state = self._queues[queue]
        data = body.encode() if isinstance(body, str) else body
        state.push(Entry(f"raw-{next(self._seq)}", priority, data, next(self._seq), None), 0.0)
        self._claimers.wake()

    def _push(self, queue: str, message: Message, body: bytes, now: float, seq: int = -1) -> bool:
        state = self._queues[queue]
        if message.unique and (message.id in state.waiting or message.id in state.running):
            return False
        entry = Entry(
            message.id, message.priority, body, next(self._seq) if seq < 0 else seq, message.run_at
        )
        state.push(entry, now)
        self._counters.enqueued += 1
        return True

    async def claim(self, queues: Sequence[str], limit: int, wait: float) -> list[Delivery]:
        deadline = time.monotonic() + max(wait, 0.0)
        interrupts = self._interrupts
        while True:
            remaining = deadline - time.monotonic()
            if self._alone_pending:
                # A last-chance message runs here, or one waits for a claimer that holds
                # nothing: lease nothing more until every lease is finished.
                if self._leases:
                    if remaining <= 0 or interrupts != self._interrupts:
                        return []
                    await self._idle.wait(remaining)
                    continue
                self._alone_pending = False
            deliveries = self._take(queues, limit)
            if deliveries:
                return deliveries
            if self._alone_pending:
                continue  # passed over a last-chance message: wait until idle, then take it
            remaining = deadline - time.monotonic()
            if remaining <= 0 or interrupts != self._interrupts:
                return []
            due = self._next_due(queues)
            if due is not None:
                remaining = min(remaining, max(due - time.time(), 0.0))
            if self._rate_due is not None:  # a rate limit gives a token again then
                remaining = min(remaining, max(self._rate_due - time.monotonic(), 0.0))
            await self._claimers.wait(remaining)

    def wake_claimers(self) -> None:
        """Make every waiting ``claim`` return now (a stopping worker calls this)."""
        self._interrupts += 1
        self._claimers.wake()
        self._idle.wake()

    def _take(self, queues: Sequence[str], limit: int) -> list[Delivery]:
        now = time.time()
        idle = not self._leases
        states: list[tuple[str, QueueState]] = []
        for name in queues:
            state = self._queues.get(name)
            if state is not None:
                if state.delayed:
                    state.promote(now, self._seq)
                if state.n_ready and not state.paused:
                    states.append((name, state))
        deliveries: list[Delivery] = []
        held: list[tuple[QueueState, Entry]] = []
        self._rate_due = None
        changed = False
        while states and len(deliveries) < limit:
            best_at = _best(states)
            if best_at < 0:
                break
            name, state = states[best_at]
            entry = state.pop()
            if not state.n_ready:
                states.pop(best_at)
            message = self._decode(name, state, entry, now)
            if message is None:
                changed = True
                continue
            if self._limited(name) and not self._admit(name, len(state.running), message):
                held.append((state, entry))  # over a limit: it stays in its place
                if len(held) > HELD_SCAN:
                    break
                continue
            lost = self._lost.get((name, message.id), 0)
            last = self.max_lost > 0 and lost >= self.max_lost
            if last and not (idle and not deliveries):
                state.push(entry, now)  # back at its place, for a claimer that holds nothing
                self._alone_pending = True
                break
            token = str(next(self._tokens))
            self._leases[token] = Lease(name, message, entry.seq)
            state.running[message.id] = token
            deliveries.append(Delivery(message, token, lost))
            if last:
                self._alone_pending = True
                break
        for held_state, entry in held:
            held_state.push(entry, now)
        if deliveries:
            self._counters.extra["claimed"] += len(deliveries)
        if changed:
            self._joiners.wake()
        return deliveries

    def _decode(self, name: str, state: QueueState, entry: Entry, now: float) -> Message | None:
        """The entry's message, or ``None`` when it was dead-lettered (undecodable, expired)."""
        try:
            message = decode(entry.body, self.max_message_size)
        except MessageDecodeError as exc:
            self._counters.dead += 1
            state.bury_raw(name, entry, exc, now)
            return None
        if message.expired(now):
            self._counters.extra["expired"] += 1
            self._counters.dead += 1
            state.bury(message, DeadReason.EXPIRED, "ttl passed before it ran", now)
            return None
        return message

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
                self._results.put(outcome.result, message.result_ttl, now)
            if outcome.kind in {OutcomeKind.ACK, OutcomeKind.DEAD}:
                self._lost.pop((lease.queue, message.id), None)
            requeued |= self._apply(state, lease, outcome, now) or self._limited(lease.queue)
        if requeued:
            self._claimers.wake()
        if not self._leases:
            self._idle.wake()
        self._joiners.wake()
        return applied

    def _apply(self, state: QueueState, lease: Lease, outcome: Outcome, now: float) -> bool:
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
            self._counters.dead += 1
            state.bury(message, reason, outcome.error, now)
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

    # waiting ---------------------------------------------------------------------------------
    async def join(self, queue: str | Sequence[str] | None = None, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until ``queue`` (all queues when ``None``) has no ready, due or running message.

        Delayed messages whose time has not come do not count. Raises ``TimeoutError`` saying
        what is left when ``timeout`` seconds pass first.
        """
        names = None if queue is None else [queue] if isinstance(queue, str) else list(queue)
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
            await self._joiners.wait(remaining)

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

    def counters(self) -> BrokerCounters:
        counters = self._counters
        return BrokerCounters(
            enqueued=counters.enqueued,
            acked=counters.acked,
            retried=counters.retried,
            dead=counters.dead,
            extra=dict(counters.extra),
        )


def _best(states: Sequence[tuple[str, QueueState]]) -> int:
    """The index of the queue whose head is served first (priority, then FIFO); -1: none."""
    best: tuple[int, int, Entry] | None = None
    best_at = -1
    for index, (_, state) in enumerate(states):
        head = state.head()
        if head is not None and (best is None or head[:2] < best[:2]):
            best, best_at = head, index
    return best_at
