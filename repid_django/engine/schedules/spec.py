"""Periodic schedules: what to enqueue, and when (cron in a time zone, or every N seconds).

A :class:`Schedule` is a plain value: a stable ``name`` (the key of its state in the broker), the
``actor`` and ``args`` of the job it enqueues, and either a ``cron`` expression or an ``every``
interval. Its ticks are computed, never stored: any number of workers computing them agree, and
the broker fires each tick once (see :mod:`.scheduler`).

Cron expressions have five fields (minute hour day-of-month month day-of-week, parsed by
``cronsim``) or six with a leading seconds field (``"*/10 * * * * *"``: every ten seconds).
They are evaluated in the schedule's own time zone (``tz``, an IANA name such as
``"Europe/Paris"``), with the DST policy of Debian's cron (the one ``cronsim`` follows):

* spring forward: a time that does not exist that day (02:30 in Paris on the last Sunday of
  March) runs once, at the first minute after the jump (03:00);
* fall back: a time that exists twice (02:30 on the last Sunday of October) runs once, at its
  first occurrence; schedules with a wildcard hour (``"*/30 * * * *"``) run in both hours, as
  their wall-clock rule says;
* times away from the transition (03:00) are unaffected.

``every`` intervals are absolute (DST never changes them) and aligned on the Unix epoch, so
``every=60`` ticks at each whole minute on every worker.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ..priorities import PrioritiesT, validate_priority
from ..queue import validate_queue_name
from ..serializer import JSON, check_json

Missed = Literal["skip", "once", "all"]
MISSED: tuple[Missed, ...] = ("skip", "once", "all")
CATCH_UP_MAX = 100
"""The most missed ticks ``missed="all"`` enqueues after an outage (the latest ones)."""
ON_TIME = 5.0
"""Seconds after its time that a tick still counts as on time (``missed="skip"`` fires it)."""
_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,100}$")
_SECOND = re.compile(r"^(\*|\d{1,2}(-\d{1,2})?)(/\d{1,2})?$")


class ScheduleError(ValueError):
    """A schedule that cannot run: the message names the schedule, the field and the fix."""


@dataclasses.dataclass(frozen=True, slots=True)
class Schedule:
    """Enqueue ``actor`` with ``args`` on each tick of ``cron`` (in ``tz``) or ``every``.

    ``missed``: what happens to ticks that passed while no worker ran (all stopped, a deploy):
    ``"skip"`` drops them, ``"once"`` (the default) enqueues one job for all of them, ``"all"``
    enqueues one per tick (at most :data:`CATCH_UP_MAX`). ``enabled=False`` keeps the schedule
    but fires nothing. ``source`` says where it was declared (``"code"``, ``"settings"``,
    ``"admin"``); it does not change how it runs. ``tz``: the IANA zone its cron is read in
    (``None``: :func:`default_tz`, the Django project's ``TIME_ZONE``); ``every`` ignores it.
    """

    name: str
    actor: str
    cron: str | None = None
    every: float | timedelta | None = None
    tz: str | None = None
    args: JSON = None
    queue: str = "default"
    priority: int = int(PrioritiesT.MEDIUM)
    enabled: bool = True
    missed: Missed = "once"
    source: str = "code"

    def __post_init__(self) -> None:
        where = f"schedule {self.name!r}"
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ScheduleError(
                f"invalid schedule name {self.name!r}: use 1 to 100 letters, digits, "
                "'_', '-', '.', ':' or '@'"
            )
        if not isinstance(self.actor, str) or not self.actor:
            raise ScheduleError(f"{where}: actor must be an actor's name, got {self.actor!r}")
        if (self.cron is None) == (self.every is None):
            raise ScheduleError(f"{where}: give exactly one of cron='...' or every=<seconds>")
        if self.every is not None:
            every = self.every
            if isinstance(every, timedelta):
                every = every.total_seconds()
            if isinstance(every, bool) or not isinstance(every, int | float) or every < 1:
                raise ScheduleError(
                    f"{where}: every must be at least 1 second (a number or a timedelta), "
                    f"got {self.every!r}"
                )
            object.__setattr__(self, "every", float(every))
        else:
            _parse_cron(str(self.cron), where)  # raises ScheduleError
        if self.tz is not None:
            zone(self.tz, where)
        try:
            check_json(self.args, f"the args of {where}")
            validate_queue_name(self.queue)
            object.__setattr__(self, "priority", validate_priority(self.priority))
        except (TypeError, ValueError) as exc:
            raise ScheduleError(f"{where}: {exc}") from None
        if self.args is not None and not isinstance(self.args, dict | list | tuple):
            raise ScheduleError(
                f"{where}: args must be a dict of keyword arguments or a list of positional "
                f"ones, got {type(self.args).__name__}"
            )
        if self.missed not in MISSED:
            raise ScheduleError(
                f"{where}: missed must be one of {', '.join(MISSED)}, got {self.missed!r}"
            )

    # ticks -----------------------------------------------------------------------------------
    @property
    def zone(self) -> ZoneInfo:
        """The time zone its cron is read in: ``tz``, else :func:`default_tz`."""
        return zone(self.tz or _default_tz[0], f"schedule {self.name!r}")

    @property
    def interval(self) -> float | None:
        """``every`` in seconds (``None`` for a cron schedule)."""
        return None if self.every is None else float(self.every)  # type: ignore[arg-type]

    def ticks(self, after: float) -> Iterator[float]:
        """The tick times (Unix seconds) strictly after ``after``, in order, for ever."""
        step = self.interval
        if step is not None:
            n = int(after // step) + 1
            while True:
                yield n * step
                n += 1
        seconds, rest = _parse_cron(str(self.cron), f"schedule {self.name!r}")
        start = datetime.fromtimestamp(after, self.zone).replace(second=0, microsecond=0)
        # cronsim yields the minutes strictly after its start: start one minute back, then
        # spread the seconds field over each minute.
        for minute in CronSim(rest, start - timedelta(minutes=1)):
            base = minute.timestamp()
            for second in seconds:
                if base + second > after:
                    yield base + second

    def ticks_back(self, until: float) -> Iterator[float]:
        """The tick times at or before ``until``, latest first, for ever."""
        step = self.interval
        if step is not None:
            n = int(until // step)
            while True:
                yield n * step
                n -= 1
        seconds, rest = _parse_cron(str(self.cron), f"schedule {self.name!r}")
        start = datetime.fromtimestamp(until, self.zone).replace(second=0, microsecond=0)
        for minute in CronSim(rest, start + timedelta(minutes=1), reverse=True):
            base = minute.timestamp()
            for second in reversed(seconds):
                if base + second <= until:
                    yield base + second

    def next_runs(self, count: int = 5, after: datetime | None = None) -> list[datetime]:
        """The next ``count`` run times after ``after`` (default: now), aware, in ``tz``."""
        start = (after or datetime.now(UTC)).timestamp()
        tz = self.zone
        out: list[datetime] = []
        for tick in self.ticks(start):
            out.append(datetime.fromtimestamp(tick, tz))
            if len(out) >= count:
                break
        return out

    def due(self, last: float, now: float) -> list[float]:
        """The ticks in ``(last, now]``, oldest first: the latest :data:`CATCH_UP_MAX` at most.
        Cost: one step per returned tick, however long ago ``last`` was."""
        found: list[float] = []
        for tick in self.ticks_back(now):
            if tick <= last or len(found) >= CATCH_UP_MAX:
                break
            found.append(tick)
        found.reverse()
        return found

    def next_after(self, when: float) -> float:
        """The first tick strictly after ``when``."""
        return next(self.ticks(when))

    # (de)serialising -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any], *, source: str) -> Schedule:
        """A schedule from settings-style data (``REPID["SCHEDULES"][name]``): keys ``actor``,
        ``cron`` or ``every`` (seconds or a timedelta), ``tz``, ``args``, ``queue``,
        ``priority``, ``enabled``, ``missed``. Unknown keys are refused by name."""
        if not isinstance(data, Mapping):
            raise ScheduleError(f"schedule {name!r}: expected a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)} - {"name", "source"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ScheduleError(
                f"schedule {name!r}: unknown key(s) {', '.join(unknown)}; "
                f"known keys are {', '.join(sorted(known))}"
            )
        if "actor" not in data:
            raise ScheduleError(f"schedule {name!r}: 'actor' is required")
        return cls(name=name, source=source, **data)


_default_tz = ["UTC"]


def default_tz() -> str:
    """The zone of schedules without ``tz`` (``"UTC"``; the Django app sets ``TIME_ZONE``)."""
    return _default_tz[0]


def set_default_tz(name: str) -> None:
    """Read the cron of schedules without ``tz`` in zone ``name`` from now on."""
    zone(name, "the default time zone")
    _default_tz[0] = name


def zone(name: str, where: str) -> ZoneInfo:
    """The ``ZoneInfo`` named ``name``; a :class:`ScheduleError` naming it when unknown."""
    try:
        if not isinstance(name, str) or not name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        prefix = f"{where}: " if where else ""
        raise ScheduleError(
            f"{prefix}unknown time zone {name!r}: use an IANA name such as 'UTC' or "
            "'Europe/Paris' (install the 'tzdata' package where the system has none)"
        ) from None


_CRONS: dict[str, tuple[tuple[int, ...], str]] = {}


def _parse_cron(expr: str, where: str) -> tuple[tuple[int, ...], str]:
    """``(seconds, five-field expression)``; a :class:`ScheduleError` saying what is wrong."""
    cached = _CRONS.get(expr)
    if cached is not None:
        return cached
    fields = expr.split()
    if len(fields) not in (5, 6):
        raise ScheduleError(
            f"{where}: invalid cron {expr!r}: expected 5 fields (minute hour day month weekday) "
            f"or 6 with a leading seconds field, got {len(fields)}"
        )
    seconds: tuple[int, ...] = (0,)
    if len(fields) == 6:
        seconds = _seconds_field(fields[0], expr, where)
        fields = fields[1:]
    rest = " ".join(fields)
    try:
        CronSim(rest, datetime.now(UTC))
    except CronSimError as exc:
        raise ScheduleError(f"{where}: invalid cron {expr!r}: {exc}") from None
    if len(_CRONS) < 4096:
        _CRONS[expr] = (seconds, rest)
    return seconds, rest


def _seconds_field(field: str, expr: str, where: str) -> tuple[int, ...]:
    found: set[int] = set()
    for part in field.split(","):
        match = _SECOND.match(part)
        if not match:
            raise ScheduleError(f"{where}: invalid cron {expr!r}: bad seconds field {field!r}")
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            low, high = 0, 59
        else:
            low_text, _, high_text = body.partition("-")
            low = int(low_text)
            high = int(high_text) if high_text else (59 if step_text else low)
        if not (0 <= low <= high <= 59) or step < 1:
            raise ScheduleError(
                f"{where}: invalid cron {expr!r}: seconds must be within 0-59, got {part!r}"
            )
        found.update(range(low, high + 1, step))
    return tuple(sorted(found))
