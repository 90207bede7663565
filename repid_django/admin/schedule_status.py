"""What the admin, the dashboard and the monitor show of each schedule: its next runs (computed
in its own zone) and its last run, read live from the broker.

The last run is the last tick that enqueued a job (``broker.schedule_runs``, one ``HMGET`` per
queue over the project's connection, bounded by a timeout; ticks only marked handled, of a
disabled schedule or when a schedule is first seen, are not runs); its job id is the tick's
deterministic id (``sched:<name>:<tick in ms>``), linked to the job's mirrored record when
there is one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..depths import STATS_TIMEOUT
from ..engine.brokers.base import MessageBroker
from ..engine.connection import get_connection
from ..engine.schedules.scheduler import tick_id
from ..engine.schedules.spec import Schedule as EngineSchedule
from ..engine.schedules.spec import ScheduleError
from ..models import JobRecord, Schedule

logger = logging.getLogger("repid_django.schedules")

TIME_FORMAT = "%Y-%m-%d %H:%M:%S %Z"
LISTED = 100
"""The most schedules :func:`overview` lists by default."""


@dataclass(frozen=True, slots=True)
class LastRun:
    """The last tick that enqueued a job: when (in the schedule's zone), its job id, its
    record's pk."""

    at: datetime
    job_id: str
    record_pk: int | None

    @property
    def label(self) -> str:
        return self.at.strftime(TIME_FORMAT)


def describe(schedule: EngineSchedule | Schedule) -> str:
    """``"cron 0 3 * * * (Europe/Paris)"`` or ``"every 90 s"``."""
    if schedule.cron:
        return f"cron {schedule.cron} ({schedule.tz or 'project time zone'})"
    every = float(schedule.every or 0)  # type: ignore[arg-type]
    if every >= 3600 and every % 3600 == 0:
        return f"every {every / 3600:g} h"
    if every >= 60 and every % 60 == 0:
        return f"every {every / 60:g} min"
    return f"every {every:g} s"


def next_runs(row: Schedule, count: int = 5) -> list[datetime]:
    """The next ``count`` run times, aware, in the schedule's zone (none when it cannot run)."""
    try:
        return row.to_schedule().next_runs(count)
    except ScheduleError:
        return []


def read_marks(rows: Sequence[Schedule], timeout: float = STATS_TIMEOUT) -> dict[str, float]:
    """Name -> the tick of its last job (Unix seconds), one call; raises when the broker does
    not answer within ``timeout`` seconds."""
    by_queue: dict[str, list[str]] = {}
    for row in rows:
        by_queue.setdefault(row.queue, []).append(row.name)

    async def work(broker: MessageBroker) -> dict[str, float]:
        found: dict[str, float] = {}
        for queue, names in by_queue.items():
            found.update(await broker.schedule_runs(queue, names))
        return found

    if not by_queue:
        return {}
    connection = get_connection()
    return connection.call(lambda: work(connection.message_broker), timeout=timeout)


def last_runs(
    rows: Sequence[Schedule], timeout: float = STATS_TIMEOUT
) -> dict[str, LastRun] | None:
    """The last run of each schedule that has one; ``None`` when the broker cannot be read."""
    try:
        marks = read_marks(rows, timeout)
    except Exception as exc:  # any failure means "unknown", never a crash of the page
        logger.warning("last runs of schedules unavailable: %s: %s", type(exc).__name__, exc)
        return None
    ids = {name: tick_id(name, tick) for name, tick in marks.items()}
    records = dict(
        JobRecord.objects.filter(job_id__in=list(ids.values())).values_list("job_id", "pk")
    )
    zones = {row.name: _zone(row) for row in rows}
    return {
        name: LastRun(
            datetime.fromtimestamp(tick, zones.get(name) or UTC), ids[name], records.get(ids[name])
        )
        for name, tick in marks.items()
    }


def _zone(row: Schedule) -> Any:
    try:
        return row.to_schedule().zone
    except ScheduleError:
        return None


def overview(
    rows: Sequence[Schedule] | None = None, *, live: bool = True, timeout: float = STATS_TIMEOUT
) -> tuple[list[dict[str, Any]], bool]:
    """Every schedule (or ``rows``) as plain data: what, when, next run, last run; and whether
    the last runs could be read (``live`` false: the broker is known to be down, not asked)."""
    chosen = list(Schedule.objects.all()[:LISTED] if rows is None else rows)
    last: dict[str, LastRun] | None = {}
    if chosen:
        last = last_runs(chosen, timeout) if live else None
    items: list[dict[str, Any]] = []
    for row in chosen:
        upcoming = next_runs(row, 1)
        ran = None if last is None else last.get(row.name)
        items.append(
            {
                "name": row.name,
                "pk": row.pk,
                "actor": row.actor,
                "queue": row.queue,
                "source": row.source,
                "enabled": row.enabled,
                "when": describe(row),
                "next_run": upcoming[0].isoformat() if upcoming and row.enabled else None,
                "next_run_label": upcoming[0].strftime(TIME_FORMAT)
                if upcoming and row.enabled
                else "",
                "last_run": None if ran is None else ran.at.isoformat(),
                "last_run_label": "" if ran is None else ran.label,
                "last_job_id": None if ran is None else ran.job_id,
                "last_job_pk": None if ran is None else ran.record_pk,
            }
        )
    return items, live and last is not None
