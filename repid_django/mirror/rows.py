"""The mirror's rows: how job events become :class:`JobRecord` values, and dead letters
:class:`DeadLetterRecord` values (the listener in ``listener.py`` writes them).

A job's state only moves forward: an event applies when its ``(attempt, STATUS_RANK)`` is not
behind the row's, so a late "started" never overwrites "succeeded". Two exceptions: a job
returned to its queue (shutdown) goes from "running" back to "queued" for the same attempt, and
a recurring job starts over when its next run begins.

A job dead-lettered because it was cancelled (``DeadReason.CANCELLED``) reads "cancelled", not
"dead-lettered" (:func:`status_of`, :func:`letter_status`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..engine.brokers.base import DeadLetter, DeadReason
from ..engine.message import Message
from ..engine.results import stamp
from ..engine.worker.events import EventKind, JobEvent
from ..models import FINAL_STATUSES, STATUS_RANK, JobStatus

JOB_FIELDS = (
    "actor",
    "queue",
    "status",
    "priority",
    "args",
    "attempt",
    "max_retries",
    "result",
    "error",
    "worker",
    "enqueued_at",
    "started_at",
    "finished_at",
    "retry_at",
    "updated_at",
)
DEAD_FIELDS = ("actor", "reason", "error", "args", "attempts", "raw", "failed_at")
DEAD_RESET = ("requeued_at", "purged_at")
WORKER_FIELDS = (
    "host",
    "pid",
    "queues",
    "concurrency",
    "state",
    "processed",
    "failed",
    "running",
    "started_at",
    "last_heartbeat",
)
QUEUE_FIELDS = ("ready", "delayed", "running", "dead", "updated_at")
STATUS_OF = {
    EventKind.STARTED: JobStatus.RUNNING,
    EventKind.SUCCEEDED: JobStatus.SUCCEEDED,
    EventKind.FAILED: JobStatus.RETRYING,
    EventKind.DEAD: JobStatus.DEAD,
    EventKind.REJECTED: JobStatus.QUEUED,
}


def status_of(event: JobEvent) -> str:
    """The row status ``event`` leads to."""
    if event.kind is EventKind.DEAD and event.reason is DeadReason.CANCELLED:
        return JobStatus.CANCELLED
    return STATUS_OF[event.kind]


def letter_status(reason: str) -> str:
    """The status of a job whose dead letter has ``reason``."""
    return JobStatus.CANCELLED if reason == DeadReason.CANCELLED else JobStatus.DEAD


@dataclass(slots=True)
class JobRow:
    """The mirror's view of one job row while a batch is merged."""

    values: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, int]:
        return (int(self.values.get("attempt", 0)), STATUS_RANK[self.values["status"]])


def accepts(row: JobRow | None, event: JobEvent) -> bool:
    """Whether ``event`` moves ``row`` forward (see the module docstring)."""
    status = STATUS_OF[event.kind]
    message = event.message
    if row is None:
        return event.kind is not EventKind.REJECTED
    current = row.values["status"]
    attempt = int(row.values.get("attempt", 0))
    if event.kind is EventKind.REJECTED:
        return current == JobStatus.RUNNING and message.attempt == attempt
    if (
        event.kind is EventKind.STARTED
        and message.deferred_by is not None
        and current in FINAL_STATUSES
        and message.attempt == 0
    ):
        finished = row.values.get("finished_at")
        return finished is None or stamp(event.at) > finished
    return (message.attempt, STATUS_RANK[status]) >= (attempt, STATUS_RANK[current])


def apply(row: JobRow | None, event: JobEvent) -> JobRow:
    message: Message = event.message
    values = dict(row.values) if row is not None else {}
    at = stamp(event.at)
    values.update(
        actor=message.actor,
        queue=message.queue,
        status=status_of(event),
        priority=message.priority,
        args=message.args,
        attempt=message.attempt,
        max_retries=message.retries,
        worker=event.worker_id[:200],
        enqueued_at=stamp(message.enqueued_at),
        updated_at=at,
    )
    values.setdefault("result", None)
    values.setdefault("error", "")
    if event.kind is EventKind.STARTED:
        values.update(started_at=at, finished_at=None, retry_at=None, result=None, error="")
    elif event.kind is EventKind.REJECTED:
        values.update(started_at=None)
    else:
        result = event.result
        values.update(finished_at=stamp(result.finished_when.timestamp()) if result else at)
        if result is not None:
            values.update(started_at=result.started_when)
            if result.success:
                values.update(result=result.data)
        values.update(error=event.error or "", retry_at=stamp(event.retry_at))
    return JobRow(values)


def dead_letter_values(event: JobEvent) -> dict[str, Any]:
    message = event.message
    return {
        "job_id": message.id,
        "queue": message.queue,
        "actor": message.actor,
        "reason": str(event.reason or "failed"),
        "error": event.error or "",
        "args": message.args,
        "attempts": message.attempt + 1,
        "raw": "",
        "failed_at": stamp(event.at),
    }


def letter_values(letter: DeadLetter) -> dict[str, Any]:
    message = letter.message
    return {
        "job_id": letter.id,
        "queue": letter.queue,
        "actor": message.actor if message else "",
        "reason": str(letter.reason),
        "error": letter.error or "",
        "args": message.args if message else None,
        "attempts": (message.attempt + 1) if message else 0,
        "raw": (letter.raw or "")[:2000],
        "failed_at": letter.failed_at,
    }
