"""Operations on the broker that the admin console performs, as plain synchronous functions.

Each one calls the engine over the process's default connection (the one ``repid_django``
configures at start-up) and then brings the ORM mirror in line at once, so the admin shows
the effect without waiting for a worker's next mirror batch. Redis stays the source of truth:
a row is only changed for what the broker confirms.

All of them are for synchronous code (admin views, management commands, shell). A broker
that cannot be reached raises :class:`BrokerUnavailable` with a message that says so; an
operation that does not finish in time raises :class:`OperationTimedOut` (it may still
complete). Live queue depths are in :mod:`repid_django.depths` (``queue_depths`` is importable
from here too).

Pause, cancel and progress: :func:`pause_queue` / :func:`resume_queue` stop and restart the
workers' claims of a queue; :func:`cancel_job` removes a waiting job or stops a running one;
:func:`job_progress` reads what running actors reported with ``set_progress``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError
from django.utils import timezone

from .depths import QueueDepth, queue_depths
from .engine.brokers.base import CancelState, MessageBroker
from .engine.connection import Connection, get_connection
from .engine.job import Job
from .engine.queue import validate_queue_name
from .models import (
    FINAL_STATUSES,
    DeadLetterRecord,
    DeadReasonChoice,
    JobRecord,
    JobStatus,
    QueueRecord,
)

__all__ = [
    "OPERATION_TIMEOUT",
    "RETRYABLE",
    "BrokerUnavailable",
    "CancelState",
    "OperationTimedOut",
    "Progress",
    "QueueDepth",
    "Requeued",
    "cancel_job",
    "job_progress",
    "pause_queue",
    "purge_dead",
    "purge_queue",
    "queue_depths",
    "requeue_dead",
    "resume_queue",
    "retry_job",
]

logger = logging.getLogger(__name__)

OPERATION_TIMEOUT = 15.0
"""Seconds the admin waits for an operation before it reports that it did not finish in time."""
PAGE = 500

UNDECODABLE = (DeadReasonChoice.DECODE_ERROR, DeadReasonChoice.TOO_LARGE)
RETRYABLE = (JobStatus.FAILED, JobStatus.DEAD, JobStatus.CANCELLED)


class BrokerUnavailable(RuntimeError):
    """The broker could not be reached, or an operation did not finish in time (then
    :class:`OperationTimedOut`); the message says which."""


class OperationTimedOut(BrokerUnavailable):
    """The operation did not finish in time; it may still complete (nothing was undone)."""


def _run[T](
    work: Callable[[MessageBroker], Coroutine[Any, Any, T]],
    timeout: float | None = None,
    connection: Connection | None = None,
) -> T:
    """Run ``work`` on the broker within ``timeout`` seconds (default: ``OPERATION_TIMEOUT``)."""
    timeout = OPERATION_TIMEOUT if timeout is None else timeout
    conn = connection or get_connection()
    try:
        return conn.call(lambda: work(conn.message_broker), timeout=timeout)
    except TimeoutError as exc:
        # The call goes on in the background: its effect may still appear.
        raise OperationTimedOut(
            f"the operation did not finish within {timeout:g}s and may still complete: check "
            "the queue before trying again. If Redis is slow or unreachable, check that it is "
            "running and that REPID['BROKER_URL'] points at it."
        ) from exc
    except (ConnectionError, OSError) as exc:
        raise BrokerUnavailable(
            f"the Redis broker did not answer ({type(exc).__name__}: {exc}); nothing was "
            "changed. Check that Redis is running and REPID['BROKER_URL'] points at it."
        ) from exc


# ---------------------------------------------------------------------------- dead letters


@dataclass(frozen=True, slots=True)
class Requeued:
    """What a requeue did: ``done`` ids are back in their queue; ``missing`` ids were no longer
    in the broker's dead-letter queue (expired, purged or requeued already); ``kept`` ids are
    undecodable and stay dead-lettered."""

    done: list[str]
    missing: list[str]
    kept: list[str]


async def _dead_ids(broker: MessageBroker, queue: str) -> dict[str, bool]:
    """Every dead letter id of ``queue`` -> whether it can be run again (its body decoded)."""
    found: dict[str, bool] = {}
    offset = 0
    while True:
        page = await broker.list_dead(queue, offset=offset, limit=PAGE)
        for letter in page:
            found[letter.id] = letter.message is not None
        if len(page) < PAGE:
            return found
        offset += PAGE


def requeue_dead(queue: str, ids: Sequence[str] | None = None) -> Requeued:
    """Put dead letters of ``queue`` back as fresh runs (all of them when ``ids`` is ``None``)."""

    async def work(broker: MessageBroker) -> Requeued:
        present = await _dead_ids(broker, queue)
        wanted = list(present) if ids is None else list(dict.fromkeys(ids))
        runnable = [i for i in wanted if present.get(i)]
        kept = [i for i in wanted if i in present and not present[i]]
        missing = [i for i in wanted if i not in present]
        if runnable:
            await broker.requeue_dead(queue, runnable)
        return Requeued(runnable, missing, kept)

    outcome = _run(work)
    now = timezone.now()
    for start in range(0, len(outcome.done), PAGE):
        chunk = outcome.done[start : start + PAGE]
        DeadLetterRecord.objects.filter(queue=queue, job_id__in=chunk).update(requeued_at=now)
        JobRecord.objects.filter(queue=queue, job_id__in=chunk).update(
            status=JobStatus.QUEUED,
            attempt=0,
            started_at=None,
            finished_at=None,
            retry_at=None,
            enqueued_at=now,
            updated_at=now,
        )
    logger.info("requeued %d dead letter(s) of queue %r", len(outcome.done), queue)
    return outcome


def purge_dead(queue: str, ids: Sequence[str] | None = None) -> int:
    """Delete dead letters of ``queue`` from the broker (all when ``ids`` is ``None``)."""
    wanted = None if ids is None else list(ids)

    async def work(broker: MessageBroker) -> int:
        return await broker.purge_dead(queue, wanted)

    count = _run(work)
    rows = DeadLetterRecord.objects.filter(queue=queue, purged_at=None, requeued_at=None)
    if wanted is not None:
        rows = rows.filter(job_id__in=wanted)
    rows.update(purged_at=timezone.now())
    logger.info("purged %d dead letter(s) of queue %r", count, queue)
    return count


# -------------------------------------------------------------------------------- jobs


def retry_job(record: JobRecord) -> str:
    """Run a failed, dead-lettered or cancelled job again; returns the id of the new run.

    A job still in the broker's dead-letter queue (dead-lettered, or cancelled while it ran)
    is requeued from there (it keeps its id); otherwise a new job is enqueued with the
    recorded actor, queue, arguments and retries.
    """
    if record.status not in RETRYABLE:
        raise ValueError(
            f"job {record.job_id} is {record.get_status_display().lower()}: only failed, "
            "dead-lettered or cancelled jobs can be retried"
        )
    if record.status in (JobStatus.DEAD, JobStatus.CANCELLED):
        outcome = requeue_dead(record.queue, [record.job_id])
        if outcome.done:
            return record.job_id
    job = Job(
        record.actor,
        queue=record.queue,
        priority=record.priority,
        args=record.args,
        retries=record.max_retries,
    )

    async def work(broker: MessageBroker) -> str:
        message = job.to_message()
        await broker.enqueue([message])
        return message.id

    new_id = _run(work)
    now = timezone.now()
    # The worker's mirror may have written the row first: that row is newer, keep it.
    with contextlib.suppress(IntegrityError):
        JobRecord.objects.get_or_create(
            job_id=new_id,
            defaults={
                "actor": record.actor,
                "queue": record.queue,
                "priority": record.priority,
                "args": record.args,
                "max_retries": record.max_retries,
                "status": JobStatus.QUEUED,
                "enqueued_at": now,
                "updated_at": now,
            },
        )
    logger.info("retried job %s as %s", record.job_id, new_id)
    return new_id


def cancel_job(queue: str, job_id: str) -> CancelState:
    """Cancel job ``job_id`` of ``queue``: ``"removed"`` when it was waiting (it will not run;
    its record reads cancelled at once), ``"stopping"`` when it runs (the worker holding it is
    told within about half a second; the job then ends as a dead letter with reason
    ``cancelled`` and its record reads cancelled), ``"unknown"`` when it is neither (finished
    already, or never there). A cancelled job is never retried.

    An async actor gets ``CancelledError``; a sync one sees ``current_job().cancelled`` and
    should return; a ``run_in_process`` actor has its process terminated.
    """
    validate_queue_name(queue)
    _check_job_id(job_id)

    async def work(broker: MessageBroker) -> CancelState:
        return await broker.cancel_job(queue, job_id)

    state = _run(work)
    if state == "removed":
        now = timezone.now()
        JobRecord.objects.filter(queue=queue, job_id=job_id).exclude(
            status__in=FINAL_STATUSES
        ).update(status=JobStatus.CANCELLED, finished_at=now, updated_at=now)
    logger.info("cancel job %s of queue %r: %s", job_id, queue, state)
    return state


def _check_job_id(job_id: str) -> None:
    if not isinstance(job_id, str) or not job_id or len(job_id) > 200:
        raise ValueError(f"invalid job id {job_id!r}: a non-empty string of 200 characters at most")


@dataclass(frozen=True, slots=True)
class Progress:
    """What a running actor last reported with ``set_progress``: ``value`` from 0 to 1, a
    short ``text`` and when (``at``)."""

    value: float
    text: str
    at: datetime

    @property
    def percent(self) -> int:
        return round(self.value * 100)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Progress | None:
        """From the broker's ``{"value", "text", "at"}`` (``None`` when unreadable)."""
        try:
            value = min(1.0, max(0.0, float(data["value"])))
            at = datetime.fromtimestamp(float(data["at"]), UTC)
        except (KeyError, TypeError, ValueError, OverflowError):
            return None
        return cls(value, str(data.get("text") or ""), at)


def job_progress(
    queue: str, ids: Sequence[str], *, timeout: float | None = None
) -> dict[str, Progress]:
    """The progress last reported by each of ``ids`` (jobs of ``queue``) that reported any
    (kept an hour after the last report). One round trip."""
    return progress_by_queue({queue: ids}, timeout=timeout).get(queue, {})


def progress_by_queue(
    jobs: Mapping[str, Sequence[str]], *, timeout: float | None = None
) -> dict[str, dict[str, Progress]]:
    """:func:`job_progress` for several queues at once (queue -> job ids), in one call."""
    wanted = {validate_queue_name(queue): list(ids) for queue, ids in jobs.items() if ids}

    async def work(broker: MessageBroker) -> dict[str, dict[str, dict[str, Any]]]:
        return {queue: await broker.get_progress(queue, ids) for queue, ids in wanted.items()}

    found = _run(work, timeout) if wanted else {}
    return {
        queue: {
            job_id: progress
            for job_id, data in reports.items()
            if (progress := Progress.from_data(data)) is not None
        }
        for queue, reports in found.items()
    }


# ------------------------------------------------------------------------------- queues


def purge_queue(queue: str) -> int:
    """Remove every waiting (ready and delayed) job of ``queue``; running jobs finish.

    Returns how many were removed; their mirrored rows are marked cancelled.
    """

    async def work(broker: MessageBroker) -> tuple[int, list[str]]:
        waiting: list[str] = []
        for delayed in (False, True):
            offset = 0
            while True:
                page = await broker.list_messages(queue, delayed=delayed, offset=offset, limit=PAGE)
                waiting.extend(message.id for message in page)
                if len(page) < PAGE:
                    break
                offset += PAGE
        return await broker.flush_queue(queue), waiting

    count, waiting = _run(work)
    now = timezone.now()
    for start in range(0, len(waiting), PAGE):
        JobRecord.objects.filter(
            queue=queue,
            job_id__in=waiting[start : start + PAGE],
            status__in=(JobStatus.QUEUED, JobStatus.RETRYING),
        ).update(status=JobStatus.CANCELLED, finished_at=now, updated_at=now)
    QueueRecord.objects.filter(name=queue).update(ready=0, delayed=0, updated_at=now)
    logger.info("purged %d waiting job(s) of queue %r", count, queue)
    return count


def pause_queue(name: str) -> None:
    """Stop workers from starting jobs of queue ``name``: from their next claim (well within a
    second) they take none of its jobs, until :func:`resume_queue`. Running jobs finish and
    enqueue keeps accepting (the jobs wait). Pausing a paused queue is harmless."""
    validate_queue_name(name)

    async def work(broker: MessageBroker) -> None:
        await broker.pause_queue(name)

    _run(work)
    logger.info("paused queue %r", name)


def resume_queue(name: str) -> None:
    """Let workers take the jobs of queue ``name`` again (the waiting workers are woken at
    once). Resuming a queue that is not paused is harmless."""
    validate_queue_name(name)

    async def work(broker: MessageBroker) -> None:
        await broker.resume_queue(name)

    _run(work)
    logger.info("resumed queue %r", name)
