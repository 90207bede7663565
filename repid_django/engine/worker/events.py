"""Worker events for observers (the Django ORM mirror, the live monitor).

The worker never calls an observer on the processing path: it appends small event records to
a buffer, and a background task hands them over in batches (:class:`WorkerListener`).
A slow or failing listener never delays or breaks job processing; its errors are logged.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..brokers.base import DeadReason
from ..message import Message
from ..results import JobResult


class EventKind(enum.StrEnum):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """The run failed and a retry is scheduled (``retry_at``)."""
    DEAD = "dead"
    """The run failed for good (or could not run); the message is dead-lettered."""
    REJECTED = "rejected"
    """Returned to the queue without running to the end (shutdown, unknown actor)."""
    LEASE_LOST = "lease_lost"
    """The worker finished but had lost the lease: its outcome was refused."""


@dataclass(slots=True)
class JobEvent:
    """One thing that happened to a job in a worker (listeners must not change it: it is not
    frozen only because a worker makes two per job and a frozen one costs three times more)."""

    kind: EventKind
    message: Message
    at: float
    worker_id: str
    result: JobResult | None = None
    error: str | None = None
    reason: DeadReason | None = None
    retry_at: float | None = None


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker's heartbeat snapshot."""

    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    started_at: float
    at: float
    processed: int = 0
    failed: int = 0
    running: int = 0
    state: str = "running"
    """``running``, ``draining`` or ``stopped``."""
    actors: tuple[str, ...] = field(default_factory=tuple)


class WorkerListener(Protocol):
    """Receives batches of events and heartbeats; both run off the processing path."""

    async def on_events(self, events: Sequence[JobEvent]) -> None: ...

    async def on_heartbeat(self, info: WorkerInfo) -> None: ...
