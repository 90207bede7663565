"""The broker interface, shared by the in-memory and the Redis broker.

Contract (both brokers obey it; ``tests/engine/test_broker_contract.py`` checks it):

* ``enqueue`` writes messages atomically, all in one round trip. A message whose ``unique`` flag
  is set and whose id is already queued, delayed or running is not written again (``False``).
* ``claim`` hands out up to ``limit`` ready messages as leased :class:`Delivery` objects,
  strictly by priority (higher first), FIFO within a priority. Delayed messages whose ``run_at``
  has come are promoted by the claim itself. With nothing ready it waits up to ``wait`` seconds
  for work (without sleep-polling) and returns ``[]``. Bodies that fail to decode or are too
  large are dead-lettered by the broker (reason ``decode_error`` / ``too_large``) and never
  returned. Messages whose ``ttl`` has passed are dead-lettered as ``expired``.
* While a delivery is held (claimed, not yet finished), the broker keeps its lease alive by
  itself. A lease that expires (its worker died) is returned to the queue by the reaper; after
  ``max_lost`` such returns the message is dead-lettered as ``worker_lost``.
* ``finish`` applies a batch of :class:`Outcome` objects in one round trip. Each is fenced by
  its delivery's lease token: a stale delivery changes nothing and reports ``False``.
* Results are written atomically with the outcome that carries them.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

from ..limits import Limits
from ..message import Message
from ..results import JobResult


class OutcomeKind(enum.StrEnum):
    ACK = "ack"
    """Done (success, or failure without dead-lettering). Recurring messages are rescheduled."""
    RETRY = "retry"
    """Failed; run again at ``run_at`` with ``attempt + 1``."""
    DEAD = "dead"
    """Failed for good; move to the dead-letter queue with ``reason`` and ``error``."""
    REJECT = "reject"
    """Not run (shutdown, unknown actor); back to the queue without spending a retry."""


CancelState = Literal["removed", "stopping", "unknown"]
"""What :meth:`MessageBroker.cancel_job` did."""


class DeadReason(enum.StrEnum):
    FAILED = "failed"
    TIMEOUT = "timeout"
    WORKER_LOST = "worker_lost"
    UNKNOWN_ACTOR = "unknown_actor"
    DECODE_ERROR = "decode_error"
    TOO_LARGE = "too_large"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Delivery:
    """A leased message. ``token`` fences every later write; ``lost`` counts expired leases."""

    message: Message
    token: str
    lost: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do with a delivery; see :class:`OutcomeKind`.

    ``run_at``: for RETRY the time to run again; for REJECT the earliest time to hand it out
    again (``None``: at once); for ACK/DEAD of a recurring message the next occurrence.
    ``count_unknown``: a REJECT because no actor was found; increments ``unknown_count``.
    """

    delivery: Delivery
    kind: OutcomeKind
    result: JobResult | None = None
    run_at: float | None = None
    reason: DeadReason | None = None
    error: str | None = None
    count_unknown: bool = False


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead-lettered message. ``message`` is ``None`` when the body could not be decoded;
    ``raw`` then holds a printable excerpt of it."""

    id: str
    queue: str
    reason: DeadReason
    error: str | None
    failed_at: datetime
    message: Message | None = None
    raw: str | None = None


@dataclass(frozen=True, slots=True)
class QueueStats:
    name: str
    ready: int = 0
    delayed: int = 0
    running: int = 0
    dead: int = 0
    paused: bool = False
    limits: Mapping[str | None, Limits] = field(default_factory=dict)
    """The limits in force (``{None: the queue's, actor: its own}``), read with the rest."""


@dataclass(slots=True)
class BrokerCounters:
    """Totals a broker keeps for monitoring."""

    enqueued: int = 0
    acked: int = 0
    retried: int = 0
    dead: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class ResultBroker(abc.ABC):
    """Stores and reads :class:`JobResult` objects."""

    supports_sync: ClassVar[bool] = False
    """True when :meth:`get_result_sync` works (sync callers then need no event loop)."""

    def get_result_sync(self, job_id: str, queue: str = "default") -> JobResult | None:
        """:meth:`get_result` for sync code; only when ``supports_sync``."""
        raise NotImplementedError(f"{type(self).__name__} has no sync path")

    @abc.abstractmethod
    async def get_result(self, job_id: str, queue: str = "default") -> JobResult | None:
        """The stored result of ``job_id`` (a job of ``queue``), or ``None`` when there is none
        yet. ``queue`` lets a broker keep results beside their queue (Redis Cluster slots)."""

    @abc.abstractmethod
    async def store_results(self, results: Sequence[tuple[JobResult, float | None]]) -> None:
        """Store ``(result, ttl_seconds)`` pairs (used when results live apart from messages)."""

    async def job_result(self, job_id: str, queue: str = "default") -> JobResult | None:
        """What ``job.result`` reads when this broker holds the job's messages too: the stored
        result; else ``None`` while the job waits, runs or will be retried; else a result with
        ``stored=False`` rebuilt from how it ended (its dead letter, or a success with no data:
        see :func:`~repid_django.engine.results.unstored`). Its ``actor`` may be empty. The
        default, for a broker that cannot tell, is :meth:`get_result`."""
        return await self.get_result(job_id, queue)

    def job_result_sync(self, job_id: str, queue: str = "default") -> JobResult | None:
        """:meth:`job_result` for sync code; only when ``supports_sync``."""
        return self.get_result_sync(job_id, queue)


class MessageBroker(abc.ABC):
    """Moves messages between producers and workers; see the module docstring."""

    max_message_size: int
    loop_bound: ClassVar[bool] = True
    """True when the broker's state belongs to one event loop (the in-memory broker): calls
    from elsewhere are then run on that loop. False (Redis): any loop may call it directly."""
    supports_sync: ClassVar[bool] = False
    """True when :meth:`enqueue_sync` works (sync callers then need no event loop)."""

    def enqueue_sync(self, messages: Sequence[Message]) -> list[bool]:
        """:meth:`enqueue` for sync code; only when ``supports_sync``."""
        raise NotImplementedError(f"{type(self).__name__} has no sync path")

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open connections; raises ``ConnectionError`` naming the (redacted) target on failure."""

    @abc.abstractmethod
    async def disconnect(self) -> None:
        """Close connections and stop background threads."""

    # queues
    @abc.abstractmethod
    async def declare_queue(self, name: str) -> None:
        """Create ``name``; declaring an existing queue is harmless."""

    @abc.abstractmethod
    async def flush_queue(self, name: str) -> int:
        """Remove the waiting (ready and delayed) messages of ``name``; returns how many."""

    @abc.abstractmethod
    async def delete_queue(self, name: str) -> None:
        """Remove ``name`` with its messages and dead letters."""

    @abc.abstractmethod
    async def list_queues(self) -> list[str]:
        """Declared queue names, sorted."""

    @abc.abstractmethod
    async def queue_stats(self, name: str) -> QueueStats:
        """Counts of ready, delayed, running and dead messages of ``name``."""

    # messages
    @abc.abstractmethod
    async def enqueue(self, messages: Sequence[Message]) -> list[bool]:
        """Write ``messages`` (one round trip); ``False`` where a unique id already exists.

        Bodies are encoded with :func:`~repid_django.engine.message.encode_checked`: one over
        ``max_message_size`` raises ``ValueError`` and nothing of the batch is written.

        The in-memory broker raises ``KeyError(queue)`` for an undeclared queue.
        """

    @abc.abstractmethod
    async def claim(self, queues: Sequence[str], limit: int, wait: float) -> list[Delivery]:
        """Lease up to ``limit`` ready messages of ``queues``; see the module docstring."""

    @abc.abstractmethod
    async def finish(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Apply ``outcomes`` (one round trip); ``False`` where the lease was lost."""

    async def cancel_job(self, queue: str, message_id: str) -> CancelState:
        """Cancel a job: ``"removed"`` when it was waiting (it will not run), ``"stopping"``
        when it runs (the worker holding it is told; see :meth:`watch_stops`), ``"unknown"``
        when it is neither (finished, or never there)."""
        return "removed" if await self.cancel(queue, message_id) else "unknown"

    def watch_stops(self, callback: Callable[[str, str], None]) -> None:  # noqa: B027 - optional
        """Call ``callback(queue, message_id)`` (from any thread) when a delivery this broker
        holds is asked to stop (:meth:`cancel_job`). The default never calls it."""

    async def set_progress(self, queue: str, message_id: str, data: dict[str, Any]) -> None:
        """Keep a running job's progress (``{"value", "text", "at"}``)."""
        raise NotImplementedError(f"{type(self).__name__} does not keep progress")

    async def get_progress(self, queue: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The progress last reported by each of ``ids`` that reported any."""
        return {}

    async def set_limits(self, queue: str, limits: Mapping[str | None, Limits]) -> None:
        """Set the limits of ``queue``'s actors (key: the actor's name) or of the queue itself
        (key ``None``), replacing what those keys had; an empty ``Limits()`` removes them.
        Enforced at the next claim of every worker (see :mod:`..limits`)."""
        raise NotImplementedError(f"{type(self).__name__} does not enforce limits")

    async def get_limits(self, queue: str) -> dict[str | None, Limits]:
        """The limits in force on ``queue``: ``{None: the queue's, actor: the actor's}``."""
        return {}

    async def pause_queue(self, queue: str) -> None:
        """Stop offering ``queue``'s jobs to workers (running jobs finish; enqueue still
        works) until :meth:`resume_queue`. Takes effect at the workers' next claim."""
        raise NotImplementedError(f"{type(self).__name__} cannot pause queues")

    async def resume_queue(self, queue: str) -> None:
        """Offer ``queue``'s jobs again (and wake the workers waiting for jobs)."""
        raise NotImplementedError(f"{type(self).__name__} cannot pause queues")

    async def fire(self, queue: str, schedule: str, tick: float, message: Message | None) -> bool:
        """Handle tick ``tick`` of ``schedule`` (its state lives in ``queue``) once: if no
        later-or-equal tick was handled, record it and enqueue ``message`` (``None``: only
        record it). ``True`` when this call enqueued the job. Atomic across processes."""
        raise NotImplementedError(f"{type(self).__name__} does not run periodic schedules")

    async def schedule_marks(self, queue: str, names: Sequence[str]) -> dict[str, float]:
        """The last tick handled (Unix seconds) of each of ``names`` that has one."""
        raise NotImplementedError(f"{type(self).__name__} does not run periodic schedules")

    async def schedule_runs(self, queue: str, names: Sequence[str]) -> dict[str, float]:
        """The tick (Unix seconds) of the last job each of ``names`` enqueued (its job id is
        ``scheduler.tick_id(name, tick)``); ticks only marked handled are not runs."""
        raise NotImplementedError(f"{type(self).__name__} does not run periodic schedules")

    async def forget_schedule(self, queue: str, name: str) -> None:
        """Forget what was fired of schedule ``name`` (it was deleted): a schedule made again
        under that name starts afresh instead of catching up."""
        raise NotImplementedError(f"{type(self).__name__} does not run periodic schedules")

    async def save_schedule(self, name: str, data: dict[str, Any]) -> None:
        """Keep schedule ``name`` (its ``Schedule.to_dict()``, JSON) in the broker, for
        ``Job(cron=...)``: every worker fires it until :meth:`remove_schedule`. Saving a name
        again replaces it."""
        raise NotImplementedError(f"{type(self).__name__} does not keep schedules")

    async def list_schedules(self) -> dict[str, dict[str, Any]]:
        """The schedules kept by :meth:`save_schedule`, by name (unreadable ones skipped)."""
        return {}

    async def remove_schedule(self, name: str) -> bool:
        """Forget a kept schedule; ``False`` when there was none of that name."""
        raise NotImplementedError(f"{type(self).__name__} does not keep schedules")

    def started(self, delivery: Delivery, timeout: float) -> None:  # noqa: B027 - optional
        """The worker starts running ``delivery``, which it stops after ``timeout`` seconds
        (the actor's, when shorter than the message's). A broker that bounds how long a hung
        worker keeps a lease uses it; the default does nothing."""

    @abc.abstractmethod
    async def list_messages(
        self, queue: str, *, delayed: bool = False, offset: int = 0, limit: int = 100
    ) -> list[Message]:
        """Waiting messages of ``queue`` in the order they will be served (or by ``run_at``)."""

    @abc.abstractmethod
    async def cancel(self, queue: str, message_id: str) -> bool:
        """Cancel a message: remove it when it waits; a broker that can stop running jobs
        (both built-in ones) also asks the worker holding a running one to stop. ``True`` when
        it was waiting or running (see :meth:`cancel_job` for which)."""

    # dead letters
    @abc.abstractmethod
    async def list_dead(self, queue: str, *, offset: int = 0, limit: int = 100) -> list[DeadLetter]:
        """Dead letters of ``queue``, newest first."""

    @abc.abstractmethod
    async def requeue_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        """Put dead letters (all of ``queue`` when ``ids`` is ``None``) back as fresh messages
        with ``attempt`` reset; returns how many. Undecodable ones stay (nothing to run)."""

    @abc.abstractmethod
    async def purge_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        """Delete dead letters (all of ``queue`` when ``ids`` is ``None``); returns how many."""

    def counters(self) -> BrokerCounters:
        """Totals since this broker object was created (monitoring)."""
        return BrokerCounters()
