"""Deleting old mirror rows in bounded chunks: ``manage.py prune`` and the worker's retention.

A ``DELETE`` of millions of rows in one statement holds its locks (and, on PostgreSQL, a long
transaction that keeps vacuum from reclaiming anything) for minutes. Here each statement
deletes at most ``chunk`` rows picked by primary key (``DELETE ... WHERE id IN (SELECT ...
LIMIT chunk)``, in two steps so that it works the same on SQLite, PostgreSQL and MySQL, whose
``DELETE`` cannot take a ``LIMIT`` subquery on its own table), each in its own transaction, and
re-checks the row's condition, so a job that moved on in the meantime (retried, requeued) is
kept.

:class:`Retention` is what the ORM mirror runs from its flushes (``REPID["MIRROR_RETENTION"]``):
at most once per ``interval`` seconds, at most ``max_chunks`` chunks per kind of row at a time
(then again at the next flush, until the backlog is gone), so that the worker's own writes never
wait long behind it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import models
from django.db.models import Q
from django.utils import timezone

from ..models import FINAL_STATUSES, DeadLetterRecord, JobRecord, WorkerRecord

logger = logging.getLogger("repid_django.mirror")

KINDS = ("jobs", "dead", "workers")
CHUNK = 5_000
"""Rows per ``DELETE`` statement."""


def old_rows(
    kind: str, cutoff: datetime, statuses: Iterable[str] = FINAL_STATUSES
) -> tuple[type[models.Model], Q]:
    """The model and the condition of ``kind``'s rows older than ``cutoff`` (running and queued
    jobs, and dead letters requeued since the cutoff, are never old)."""
    if kind == "jobs":
        return JobRecord, Q(status__in=list(statuses), updated_at__lt=cutoff)
    if kind == "dead":
        return DeadLetterRecord, Q(failed_at__lt=cutoff) & (
            Q(requeued_at__isnull=True) | Q(requeued_at__lt=cutoff)
        )
    if kind == "workers":
        return WorkerRecord, Q(last_heartbeat__lt=cutoff)
    raise ValueError(f"unknown kind of rows {kind!r}; choose among {', '.join(KINDS)}")


def delete_in_chunks(
    model: type[models.Model],
    condition: Q,
    *,
    using: str = "default",
    chunk: int = CHUNK,
    max_chunks: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, bool]:
    """Delete ``model``'s rows matching ``condition``, at most ``chunk`` per statement and
    ``max_chunks`` statements; ``progress`` gets the running total after each one. Returns the
    rows deleted and whether any matching row may be left (``max_chunks`` reached)."""
    manager = model._default_manager.db_manager(using)
    total = 0
    statements = 0
    while max_chunks is None or statements < max_chunks:
        ids = list(manager.filter(condition).order_by().values_list("pk", flat=True)[:chunk])
        if not ids:
            return total, False
        # One statement, its own transaction (autocommit). The same condition again: a row
        # that changed since it was picked (a job retried, a letter requeued) stays.
        deleted, _ = manager.filter(condition, pk__in=ids).delete()
        total += deleted
        statements += 1
        if progress is not None:
            progress(total)
        if len(ids) < chunk:
            return total, False
    return total, True


@dataclass
class Retention:
    """Deletes mirror rows older than ``keep`` seconds, from the mirror's flushes (see the
    module docstring). ``clock`` is ``time.monotonic`` (tests give their own)."""

    keep: float
    using: str = "default"
    interval: float = 600.0
    chunk: int = CHUNK
    max_chunks: int = 10
    clock: Callable[[], float] = time.monotonic
    deleted: int = 0
    _due: float = field(default=float("-inf"), repr=False)

    def due(self) -> bool:
        return self.clock() >= self._due

    def run(self) -> int:
        """Delete one round of old rows (if due); returns the rows deleted."""
        if not self.due():
            return 0
        cutoff = timezone.now() - timedelta(seconds=self.keep)
        deleted = 0
        backlog = False
        for kind in KINDS:
            model, condition = old_rows(kind, cutoff)
            count, left = delete_in_chunks(
                model,
                condition,
                using=self.using,
                chunk=self.chunk,
                max_chunks=self.max_chunks,
            )
            deleted += count
            backlog = backlog or left
        # A backlog (a first run on a big table) goes on at the next flush, a chunk at a time.
        self._due = self.clock() + (0.0 if backlog else self.interval)
        self.deleted += deleted
        if deleted:
            logger.info(
                "mirror retention: deleted %d rows older than %s%s",
                deleted,
                f"{cutoff:%Y-%m-%d %H:%M:%S %Z}",
                " (more to go)" if backlog else "",
            )
        return deleted
