"""The project's periodic schedules, as ``runworker`` fires them.

Schedules are declared three ways, and all of them end up as rows of
:class:`~repid_django.models.Schedule`:

* in code, ``@actor(schedule="0 3 * * *")`` (``source="code"``);
* in settings, ``REPID["SCHEDULES"] = {"nightly-report": {"actor": "report", ...}}``
  (``source="settings"``);
* in the admin (``source="admin"``).

:func:`sync_schedules` (``runworker`` at start-up, and the admin) writes the code and settings
ones to the table: upsert by name, rows of schedules no longer declared removed, their
``enabled`` kept (the one thing the admin edits on them). :func:`database_source` is what every
worker reads: one query, every row, every two seconds, so an edit in the admin reaches every
worker within about two seconds without a restart. There is no beat process: every worker fires
the schedules and the broker enqueues each tick once (see ``repid_django.engine.schedules``).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import conf
from ..engine.schedules.scheduler import ScheduleSource
from ..engine.schedules.spec import Schedule, ScheduleError

logger = logging.getLogger("repid_django.schedules")

SYNC_ATTEMPTS = 5
"""Tries of a sync that conflicts with another one (workers starting together)."""
SOURCE_ORDER = {"settings": 0, "code": 1, "admin": 2}
"""The order the workers read rows in: settings, code, then admin schedules."""


def settings_schedules(
    settings: conf.RepidSettings | None = None,
) -> tuple[list[Schedule], list[ScheduleError]]:
    """The schedules of ``REPID["SCHEDULES"]`` and the problems of those that cannot run, each
    a :class:`ScheduleError` naming the schedule and what to fix.

    Each value is a dict of ``actor``, ``cron`` or ``every`` (seconds or a timedelta), and
    optionally ``tz``, ``args``, ``queue``, ``priority``, ``enabled`` and ``missed``.
    """
    found: list[Schedule] = []
    problems: list[ScheduleError] = []
    for name, data in (settings or conf.get_settings()).schedules.items():
        try:
            found.append(Schedule.from_dict(str(name), data, source="settings"))
        except ScheduleError as exc:
            problems.append(exc)
        except TypeError as exc:  # e.g. a key that is not a str
            problems.append(ScheduleError(f"schedule {name!r}: {exc}"))
    return found, problems


def code_schedules() -> list[Schedule]:
    """The schedules of the project's actors (``@actor(schedule=...)``)."""
    from .discovery import project_router

    return [
        dataclasses.replace(actor.schedule, source="code")
        for actor in project_router().actors.values()
        if actor.schedule is not None
    ]


KEPT_TIMEOUT = 2.0
"""Seconds a sync waits for the broker's list of ``Job(cron=...)`` schedules."""


def kept_schedules(timeout: float = KEPT_TIMEOUT) -> list[Schedule] | None:
    """The schedules ``Job(cron=...)`` kept in the broker, as code schedules; ``None`` when
    the broker cannot be read (then a sync removes no code row)."""
    from ..engine.connection import get_connection

    try:
        connection = get_connection()
        broker = connection.message_broker
        kept = connection.call(broker.list_schedules, timeout=timeout)
    except Exception as exc:
        logger.warning("schedules kept in the broker unreadable: %s: %s", type(exc).__name__, exc)
        return None
    found: list[Schedule] = []
    for name, data in kept.items():
        fields = {k: v for k, v in data.items() if k not in ("name", "source")}
        try:
            found.append(Schedule.from_dict(name, fields, source="code"))
        except (ScheduleError, TypeError) as exc:
            logger.warning("schedule %r kept in the broker is skipped: %s", name, exc)
    return found


def declared_schedules() -> list[Schedule]:
    """Settings then code schedules, one per name (a settings schedule replaces a code one of
    the same name); :class:`ScheduleError` for the first bad settings schedule."""
    from_settings, problems = settings_schedules()
    if problems:
        raise problems[0]
    chosen: dict[str, Schedule] = {}
    for schedule in [*from_settings, *code_schedules()]:
        chosen.setdefault(schedule.name, schedule)
    return list(chosen.values())


# ------------------------------------------------------------------------------ the table

COPIED = ("actor", "cron", "every", "tz", "args", "queue", "priority", "missed", "source")
"""The fields a sync writes on a declared schedule's row (``enabled`` only when it is new)."""


def row_values(schedule: Schedule) -> dict[str, Any]:
    """The row fields of ``schedule`` (empty strings for no cron or no tz)."""
    return {
        "actor": schedule.actor,
        "cron": schedule.cron or "",
        "every": schedule.interval,
        "tz": schedule.tz or "",
        "args": schedule.args,
        "queue": schedule.queue,
        "priority": schedule.priority,
        "missed": schedule.missed,
        "source": schedule.source,
    }


@dataclass(slots=True)
class Synced:
    """What :func:`sync_schedules` changed, by schedule name."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    """Admin schedules that a code or settings one of the same name took over."""

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.removed)


def sync_schedules(declared: Sequence[Schedule] | None = None, using: str = "default") -> Synced:
    """Write the code and settings schedules to the table, in one transaction. Code schedules
    include those ``Job(cron=...)`` kept in the broker (read with a short timeout; when it does
    not answer, no code row is removed by this sync).

    Upsert by name with their source (a row's ``enabled`` is kept: it is what the admin
    edits); rows of code or settings schedules that are no longer declared are removed. Admin
    rows are left alone, except one whose name a code or settings schedule now takes (logged).
    Writes nothing when nothing changed. Workers starting together may sync at once: a
    conflict (a row the other one created, SQLite's "database is locked") is retried.
    """
    from django.db import IntegrityError, OperationalError

    wanted = {s.name: s for s in (declared_schedules() if declared is None else declared)}
    kept = kept_schedules()
    for schedule in kept or ():
        wanted.setdefault(schedule.name, schedule)
    for attempt in range(SYNC_ATTEMPTS):
        try:
            done = _sync(wanted, using, remove_code=kept is not None)
        except (IntegrityError, OperationalError) as exc:
            if attempt == SYNC_ATTEMPTS - 1:
                raise
            logger.info("schedules: sync conflict (%s), trying again", exc)
            time.sleep(0.05 * (attempt + 1) + random.random() * 0.05)
            continue
        if done.changed:
            logger.info(
                "schedules synced: %d created, %d updated, %d removed",
                len(done.created),
                len(done.updated),
                len(done.removed),
            )
        return done
    raise AssertionError("unreachable")


def _sync(wanted: dict[str, Schedule], using: str, *, remove_code: bool = True) -> Synced:
    from django.db import transaction

    from ..models import Schedule as Row

    done = Synced()
    with transaction.atomic(using=using):
        rows = {row.name: row for row in Row.objects.using(using).select_for_update()}
        for name, schedule in wanted.items():
            values = row_values(schedule)
            row = rows.get(name)
            if row is None:
                Row.objects.using(using).create(name=name, enabled=schedule.enabled, **values)
                done.created.append(name)
                continue
            if row.source == "admin":
                done.replaced.append(name)
                logger.warning(
                    "schedule %s: declared in %s, it replaces the admin schedule of that name",
                    name,
                    schedule.source,
                )
            if any(getattr(row, key) != value for key, value in values.items()):
                for key, value in values.items():
                    setattr(row, key, value)
                row.save(using=using)
                done.updated.append(name)
        gone = [
            n
            for n, row in rows.items()
            if n not in wanted
            and (row.source == "settings" or (remove_code and row.source == "code"))
        ]
        if gone:
            Row.objects.using(using).filter(name__in=gone).delete()
            done.removed.extend(gone)
    return done


def table_exists(using: str = "default") -> bool:
    from django.db import connections

    from ..models import Schedule as Row

    return Row._meta.db_table in connections[using].introspection.table_names()


def read_rows(using: str = "default") -> list[Schedule]:
    """Every row as an engine schedule (one query); a row that cannot run is logged, skipped."""
    from ..models import Schedule as Row

    found: list[Schedule] = []
    for row in Row.objects.using(using).all():
        try:
            found.append(row.to_schedule())
        except ScheduleError as exc:
            logger.error("schedule %s cannot run and is skipped: %s", row.name, exc)
    found.sort(key=lambda s: (SOURCE_ORDER.get(s.source, 3), s.name))
    return found


def database_source(using: str = "default", fallback: Sequence[Schedule] = ()) -> ScheduleSource:
    """What a worker reads every two seconds: every row of the schedule table, one query in
    the async ORM's thread. When the database does not answer, the last rows read stay in force
    (``fallback`` before the first good read) and the failure is logged once."""
    from asgiref.sync import sync_to_async

    read = sync_to_async(read_rows)
    last: list[Schedule] = list(fallback)
    failing = False

    async def source() -> list[Schedule]:
        nonlocal last, failing
        try:
            last = await read(using)
        except Exception as exc:  # the database is down or busy: keep what we have
            if not failing:
                logger.warning(
                    "schedules: cannot read the schedule table (%s: %s); the last ones read "
                    "stay in force",
                    type(exc).__name__,
                    exc,
                )
            failing = True
        else:
            if failing:
                logger.warning("schedules: the schedule table is readable again")
            failing = False
        return last

    return source


FORGET_TIMEOUT = 2.0
"""Seconds a deleted schedule's row waits for the broker to forget its marks."""


def forget_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    """``post_delete`` of a schedule row: the broker forgets what was fired of it, so a
    schedule made again under that name starts afresh instead of catching up. Best effort: a
    broker that does not answer is logged, and the row stays deleted."""
    from ..engine.connection import get_connection

    try:
        connection = get_connection()
        broker = connection.message_broker
        connection.call(
            lambda: broker.forget_schedule(instance.queue, instance.name), timeout=FORGET_TIMEOUT
        )
    except Exception as exc:
        logger.warning(
            "schedule %s deleted, but its marks in the broker were not cleared (%s: %s); a "
            "schedule made again under that name may catch up missed ticks once",
            instance.name,
            type(exc).__name__,
            exc,
        )
