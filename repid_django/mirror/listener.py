"""The ORM mirror: a :class:`~repid_django.engine.WorkerListener` that keeps the admin's rows.

The worker hands job events and heartbeats over in batches, off its processing path
(``engine/emitter.py``). This listener turns each batch into a few queries, run in one
dedicated thread (so it has one database connection, recycled with
``close_old_connections()``):

* one ``SELECT`` of the batch's existing :class:`JobRecord` rows, then one upsert
  (``bulk_create(update_conflicts=True)``) of the merged rows;
* one upsert of :class:`DeadLetterRecord` rows for ``DEAD`` events;
* per heartbeat, one upsert of the :class:`WorkerRecord` and one of the :class:`QueueRecord`
  depth snapshots; dead letters that the broker made by itself (lost workers, undecodable or
  expired messages) are pulled from its dead-letter list when a queue's dead count changes.

Writes are idempotent and a job's state only moves forward: an event applies when its
``(attempt, STATUS_RANK)`` is not behind the row's, so a late "started" never overwrites
"succeeded". Two exceptions: a job returned to its queue (shutdown) goes from "running" back
to "queued" for the same attempt, and a recurring job starts over when its next run begins.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import CommandError
from django.db import close_old_connections, connections

from ..engine.brokers.base import DeadLetter, MessageBroker
from ..engine.message import Message
from ..engine.worker.events import EventKind, JobEvent, WorkerInfo
from ..models import (
    FINAL_STATUSES,
    STATUS_RANK,
    DeadLetterRecord,
    JobRecord,
    JobStatus,
    QueueRecord,
    WorkerRecord,
)
from .upsert import upsert

logger = logging.getLogger("repid_django.mirror")

_JOB_FIELDS = (
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
_DEAD_FIELDS = ("actor", "reason", "error", "args", "attempts", "raw", "failed_at")
_DEAD_RESET = ("requeued_at", "purged_at")
_WORKER_FIELDS = (
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
_QUEUE_FIELDS = ("ready", "delayed", "running", "dead", "updated_at")
_STATUS_OF = {
    EventKind.STARTED: JobStatus.RUNNING,
    EventKind.SUCCEEDED: JobStatus.SUCCEEDED,
    EventKind.FAILED: JobStatus.RETRYING,
    EventKind.DEAD: JobStatus.DEAD,
    EventKind.REJECTED: JobStatus.QUEUED,
}


def ensure_mirror_tables(using: str = "default") -> None:
    """``CommandError`` saying to run ``migrate`` when the mirror's tables are missing."""
    tables = set(connections[using].introspection.table_names())
    missing = [
        model._meta.db_table
        for model in (JobRecord, DeadLetterRecord, WorkerRecord, QueueRecord)
        if model._meta.db_table not in tables
    ]
    if missing:
        raise CommandError(
            f"the tables of repid_django ({', '.join(missing)}) do not exist in database "
            f"{using!r}: run 'python manage.py migrate', or turn the ORM mirror off "
            "(REPID['MIRROR'] = False or runworker --no-mirror)"
        )


def _dt(seconds: float | None) -> datetime | None:
    return None if seconds is None else _at(seconds)


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(slots=True)
class _Row:
    """The mirror's view of one job row while a batch is merged."""

    values: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, int]:
        return (int(self.values.get("attempt", 0)), STATUS_RANK[self.values["status"]])


def _accepts(row: _Row | None, event: JobEvent) -> bool:
    """Whether ``event`` moves ``row`` forward (see the module docstring)."""
    status = _STATUS_OF[event.kind]
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
        return finished is None or _at(event.at) > finished
    return (message.attempt, STATUS_RANK[status]) >= (attempt, STATUS_RANK[current])


def _apply(row: _Row | None, event: JobEvent) -> _Row:
    message: Message = event.message
    values = dict(row.values) if row is not None else {}
    at = _dt(event.at)
    values.update(
        actor=message.actor,
        queue=message.queue,
        status=_STATUS_OF[event.kind],
        priority=message.priority,
        args=message.args,
        attempt=message.attempt,
        max_retries=message.retries,
        worker=event.worker_id[:200],
        enqueued_at=_dt(message.enqueued_at),
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
        values.update(finished_at=_dt(result.finished_when.timestamp()) if result else at)
        if result is not None:
            values.update(started_at=result.started_when)
            if result.success:
                values.update(result=result.data)
        values.update(error=event.error or "", retry_at=_dt(event.retry_at))
    return _Row(values)


def _dead_letter_values(event: JobEvent) -> dict[str, Any]:
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
        "failed_at": _dt(event.at),
    }


def _letter_values(letter: DeadLetter) -> dict[str, Any]:
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


class OrmMirror:
    """Writes the worker's events and heartbeats to the ORM (see the module docstring).

    ``broker`` (optional) is asked for queue depths and dead letters at each heartbeat.
    ``using`` is the database alias to write to. ``flush_interval``: at most one batch of job
    rows is written per this many seconds (events that arrive meanwhile join the next batch).
    """

    def __init__(
        self,
        broker: MessageBroker | None = None,
        *,
        using: str = "default",
        batch_size: int = 500,
        flush_interval: float = 0.0,
        dead_letters_per_sync: int = 200,
    ) -> None:
        self.broker = broker
        self.using = using
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.dead_letters_per_sync = dead_letters_per_sync
        self.written = 0
        self._dead_seen: dict[str, int] = {}
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="repid-mirror")

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._guarded, fn, *args)

    @staticmethod
    def _guarded(fn: Any, *args: Any) -> Any:
        close_old_connections()
        try:
            return fn(*args)
        finally:
            close_old_connections()

    # WorkerListener --------------------------------------------------------------------------
    async def on_events(self, events: Sequence[JobEvent]) -> None:
        relevant = [e for e in events if e.kind in _STATUS_OF]
        if not relevant:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self._in_thread(self.write_events, relevant)
        pause = self.flush_interval - (loop.time() - started)
        if pause > 0:
            await asyncio.sleep(pause)

    async def on_heartbeat(self, info: WorkerInfo) -> None:
        stats: list[dict[str, Any]] = []
        letters: list[DeadLetter] = []
        if self.broker is not None:
            for queue in info.queues:
                try:
                    snap = await self.broker.queue_stats(queue)
                    if snap.dead and snap.dead != self._dead_seen.get(queue):
                        letters.extend(
                            await self.broker.list_dead(queue, limit=self.dead_letters_per_sync)
                        )
                    self._dead_seen[queue] = snap.dead
                except Exception:
                    logger.warning("could not read the depth of queue %r", queue, exc_info=True)
                    continue
                stats.append(
                    {
                        "name": queue,
                        "ready": snap.ready,
                        "delayed": snap.delayed,
                        "running": snap.running,
                        "dead": snap.dead,
                        "updated_at": _dt(info.at),
                    }
                )
        await self._in_thread(self.write_heartbeat, info, stats, letters)
        if info.state == "stopped":
            await self._in_thread(self._close_connection)
            self._executor.shutdown(wait=False)
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="repid-mirror")

    def _close_connection(self) -> None:
        connections[self.using].close()

    # synchronous writers (run in the mirror's thread; usable directly in tests) --------------
    def write_events(self, events: Iterable[JobEvent]) -> int:
        """Merge ``events`` into the job and dead-letter rows; returns the job rows written."""
        ordered = list(events)
        ids = {event.message.id for event in ordered}
        rows: dict[str, _Row] = {}
        existing = JobRecord.objects.using(self.using).filter(job_id__in=ids)
        for values in existing.values("job_id", *_JOB_FIELDS):
            rows[values.pop("job_id")] = _Row(values)
        changed: set[str] = set()
        dead: dict[tuple[str, str], dict[str, Any]] = {}
        for event in ordered:
            job_id = event.message.id
            row = rows.get(job_id)
            if event.kind is EventKind.DEAD:
                dead[(event.message.queue, job_id)] = _dead_letter_values(event)
            if _accepts(row, event):
                rows[job_id] = _apply(row, event)
                changed.add(job_id)
        records = [
            {"job_id": job_id, **{name: rows[job_id].values.get(name) for name in _JOB_FIELDS}}
            for job_id in changed
        ]
        for record in records:
            record["error"] = record["error"] or ""
            record["worker"] = record["worker"] or ""
        upsert(
            JobRecord,
            records,
            unique=("job_id",),
            update=_JOB_FIELDS,
            using=self.using,
            batch_size=self.batch_size,
        )
        if dead:
            self.write_dead_letters(dead.values())
        self.written += len(records)
        return len(records)

    def write_dead_letters(self, letters: Iterable[dict[str, Any]]) -> None:
        upsert(
            DeadLetterRecord,
            [{**values, "requeued_at": None, "purged_at": None} for values in letters],
            unique=("queue", "job_id"),
            update=_DEAD_FIELDS + _DEAD_RESET,
            using=self.using,
            batch_size=self.batch_size,
        )

    def write_heartbeat(
        self, info: WorkerInfo, stats: Sequence[dict[str, Any]], letters: Sequence[DeadLetter]
    ) -> None:
        WorkerRecord.objects.using(self.using).bulk_create(
            [
                WorkerRecord(
                    worker_id=info.id[:200],
                    host=info.host[:255],
                    pid=info.pid,
                    queues=list(info.queues),
                    concurrency=info.concurrency,
                    state=info.state[:16],
                    processed=info.processed,
                    failed=info.failed,
                    running=info.running,
                    started_at=_at(info.started_at or info.at),
                    last_heartbeat=_at(info.at),
                )
            ],
            update_conflicts=True,
            unique_fields=("worker_id",),
            update_fields=_WORKER_FIELDS,
        )
        if stats:
            QueueRecord.objects.using(self.using).bulk_create(
                [QueueRecord(**values) for values in stats],
                update_conflicts=True,
                unique_fields=("name",),
                update_fields=_QUEUE_FIELDS,
            )
        if letters:
            self._sync_dead_letters(letters)

    def _sync_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Add the broker's dead letters the mirror has not seen (never resurrects requeued ones
        with an older failure time)."""
        keys = {(letter.queue, letter.id) for letter in letters}
        known = {
            (queue, job_id): failed_at
            for queue, job_id, failed_at in DeadLetterRecord.objects.using(self.using)
            .filter(job_id__in={job_id for _, job_id in keys})
            .values_list("queue", "job_id", "failed_at")
        }
        fresh = [
            _letter_values(letter)
            for letter in letters
            if (letter.queue, letter.id) not in known
            or known[(letter.queue, letter.id)] < letter.failed_at
        ]
        if fresh:
            self.write_dead_letters(fresh)
            # Jobs the broker dead-lettered by itself (e.g. their worker died) end here too.
            JobRecord.objects.using(self.using).filter(
                job_id__in={values["job_id"] for values in fresh}
            ).exclude(status__in=FINAL_STATUSES).update(
                status=JobStatus.DEAD,
                finished_at=fresh[0]["failed_at"],
                updated_at=fresh[0]["failed_at"],
            )
