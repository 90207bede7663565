"""The ORM mirror: a :class:`~repid_django.engine.WorkerListener` that keeps the admin's rows.

The worker hands job events and heartbeats over in batches, off its processing path
(``engine/emitter.py``). This listener turns each batch into a few queries, run in one
dedicated thread (so it has one database connection, recycled with
``close_old_connections()``):

* one ``SELECT`` of the batch's existing :class:`JobRecord` rows, then one upsert
  (``bulk_create(update_conflicts=True)``) of the merged rows;
* one upsert of :class:`DeadLetterRecord` rows for ``DEAD`` events;
* now and then, the deletion of rows older than ``REPID["MIRROR_RETENTION"]``, in bounded
  chunks (``retention.py``);
* per heartbeat, one upsert of the :class:`WorkerRecord` and one of the :class:`QueueRecord`
  depth snapshots, and one of the minute's :class:`QueueSample` rows (the monitor's depth
  chart, ``history.py``); dead letters that the broker made by itself (lost workers, undecodable or
  expired messages) are pulled from its dead-letter list when a queue's dead count changes.

Writes are idempotent and a job's state only moves forward (how events become rows is in
``rows.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import batched
from typing import Any, Literal

from django.core.management.base import CommandError
from django.db import close_old_connections, connections
from django.db.models import Case, CharField, DateTimeField, Value, When

from ..conf import get_settings
from ..engine.brokers.base import DeadLetter, MessageBroker
from ..engine.results import stamp
from ..engine.worker.events import EventKind, JobEvent, WorkerInfo
from ..models import (
    FINAL_STATUSES,
    STATUS_RANK,
    DeadLetterRecord,
    JobRecord,
    QueueRecord,
    QueueSample,
    WorkerRecord,
)
from .history import SampleWriter
from .retention import Retention
from .rows import (
    DEAD_FIELDS,
    DEAD_RESET,
    JOB_FIELDS,
    QUEUE_FIELDS,
    STATUS_OF,
    WORKER_FIELDS,
    JobRow,
    accepts,
    apply,
    dead_letter_values,
    letter_status,
    letter_values,
)
from .upsert import conflict_target, upsert

logger = logging.getLogger("repid_django.mirror")

LOOKUP_CHUNK = 500
"""Job ids per query when a batch reads its existing rows (an index lookup each)."""

_T = JobRecord._meta.db_table
_RANK = f"CASE {{}} {' '.join(f"WHEN '{k}' THEN {v}" for k, v in STATUS_RANK.items())} END"
FORWARD_ONLY = (
    f"excluded.attempt > {_T}.attempt"
    f" OR (excluded.attempt = {_T}.attempt"
    f" AND {_RANK.format('excluded.status')} >= {_RANK.format(f'{_T}.status')})"
    f" OR (excluded.status = 'running' AND excluded.started_at > {_T}.finished_at)"
    f" OR (excluded.status = 'queued' AND {_T}.status = 'running'"
    f" AND excluded.attempt = {_T}.attempt)"
)
"""The rule of ``rows.accepts`` again, in SQL, checked by the database when a row is written:
another worker may have moved the row forward between this batch's ``SELECT`` and its upsert
(a job's attempts run on several workers, whose batches cross); then the older state is not
written over the newer one. (A recurring job's new run, and a rejected job going back to the
queue, are the two ways back, as in ``accepts``.)"""


def ensure_mirror_tables(using: str = "default") -> None:
    """``CommandError`` saying to run ``migrate`` when the mirror's tables are missing."""
    tables = set(connections[using].introspection.table_names())
    missing = [
        model._meta.db_table
        for model in (JobRecord, DeadLetterRecord, WorkerRecord, QueueRecord, QueueSample)
        if model._meta.db_table not in tables
    ]
    if missing:
        raise CommandError(
            f"the tables of repid_django ({', '.join(missing)}) do not exist in database "
            f"{using!r}: run 'python manage.py migrate', or turn the ORM mirror off "
            "(REPID['MIRROR'] = False or runworker --no-mirror)"
        )


class OrmMirror:
    """Writes the worker's events and heartbeats to the ORM (see the module docstring).

    ``broker`` (optional) is asked for queue depths and dead letters at each heartbeat.
    ``using`` is the database alias to write to. ``flush_interval``: at most one batch of job
    rows is written per this many seconds (events that arrive meanwhile join the next batch).
    ``retention``: seconds finished rows are kept (``None``: forever; by default
    ``REPID["MIRROR_RETENTION"]``), applied after a flush at most every ``retention_interval``.
    """

    def __init__(
        self,
        broker: MessageBroker | None = None,
        *,
        using: str = "default",
        batch_size: int = 500,
        flush_interval: float = 0.0,
        dead_letters_per_sync: int = 200,
        retention: float | Literal["settings"] | None = "settings",
        retention_interval: float = 600.0,
    ) -> None:
        self.broker = broker
        self.using = using
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.dead_letters_per_sync = dead_letters_per_sync
        self.written = 0
        self._dead_seen: dict[str, int] = {}
        self._samples = SampleWriter(using)
        if retention == "settings":
            retention = get_settings().mirror_retention
        self.retention = (
            None
            if retention is None
            else Retention(retention, using=using, interval=retention_interval)
        )
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
        relevant = [e for e in events if e.kind in STATUS_OF]
        if not relevant:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self._in_thread(self.write_events, relevant)
        if self.retention is not None and self.retention.due():
            try:
                await self._in_thread(self.retention.run)
            except Exception:  # the next flush tries again; the mirror goes on
                logger.warning("could not delete old mirror rows", exc_info=True)
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
                        "updated_at": stamp(info.at),
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
        rows: dict[str, JobRow] = {}
        # In chunks: with thousands of ids in one IN list PostgreSQL scans the whole table
        # rather than the index on job_id.
        for chunk in batched(ids, LOOKUP_CHUNK):
            existing = JobRecord.objects.using(self.using).filter(job_id__in=chunk)
            for values in existing.values("job_id", *JOB_FIELDS):
                rows[values.pop("job_id")] = JobRow(values)
        changed: set[str] = set()
        dead: dict[tuple[str, str], dict[str, Any]] = {}
        for event in ordered:
            job_id = event.message.id
            row = rows.get(job_id)
            if event.kind is EventKind.DEAD:
                dead[(event.message.queue, job_id)] = dead_letter_values(event)
            if accepts(row, event):
                rows[job_id] = apply(row, event)
                changed.add(job_id)
        records = [
            {"job_id": job_id, **{name: rows[job_id].values.get(name) for name in JOB_FIELDS}}
            for job_id in changed
        ]
        for record in records:
            record["error"] = record["error"] or ""
            record["worker"] = record["worker"] or ""
        upsert(
            JobRecord,
            records,
            unique=("job_id",),
            update=JOB_FIELDS,
            using=self.using,
            batch_size=self.batch_size,
            only_if=FORWARD_ONLY,
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
            update=DEAD_FIELDS + DEAD_RESET,
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
                    started_at=stamp(info.started_at or info.at),
                    last_heartbeat=stamp(info.at),
                )
            ],
            update_conflicts=True,
            unique_fields=conflict_target(self.using, ("worker_id",)),
            update_fields=WORKER_FIELDS,
        )
        if stats:
            QueueRecord.objects.using(self.using).bulk_create(
                [QueueRecord(**values) for values in stats],
                update_conflicts=True,
                unique_fields=conflict_target(self.using, ("name",)),
                update_fields=QUEUE_FIELDS,
            )
            self._samples.write(stats, stamp(info.at))
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
            letter_values(letter)
            for letter in letters
            if (letter.queue, letter.id) not in known
            or known[(letter.queue, letter.id)] < letter.failed_at
        ]
        if fresh:
            self.write_dead_letters(fresh)
            # Jobs the broker dead-lettered by itself (e.g. their worker died) end here too,
            # each at the time of its own dead letter.
            # A cancelled job (its worker died before it saw the request) reads cancelled.
            failed_at = {values["job_id"]: values["failed_at"] for values in fresh}
            at = Case(
                *(When(job_id=job_id, then=Value(when)) for job_id, when in failed_at.items()),
                output_field=DateTimeField(),
            )
            status = Case(
                *(
                    When(job_id=values["job_id"], then=Value(letter_status(values["reason"])))
                    for values in fresh
                ),
                output_field=CharField(),
            )
            JobRecord.objects.using(self.using).filter(job_id__in=failed_at).exclude(
                status__in=FINAL_STATUSES
            ).update(status=status, finished_at=at, updated_at=at)
