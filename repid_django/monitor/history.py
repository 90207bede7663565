"""The monitor's last hour, minute by minute: throughput (jobs succeeded and failed per second)
from the mirrored :class:`~repid_django.models.JobRecord` rows (indexed on ``finished_at``),
and the total queue depth (ready, delayed, running) from the mirror's
:class:`~repid_django.models.QueueSample` rows.

Finished minutes are counted once per minute and kept in memory (shared by every connection of
the process); only the current minute is counted again for each snapshot, so a snapshot reads
about a minute of rows, never the whole hour. Minutes without a depth sample (no worker was
running) are ``null``: the chart leaves a gap.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncMinute

from ..models import JobRecord, JobStatus, QueueSample

MINUTES = 60
"""How many minutes the charts show (the current one included)."""
FAILED = (JobStatus.FAILED, JobStatus.DEAD)
DEPTHS = ("ready", "delayed", "running")

History = dict[str, Any]
_lock = threading.Lock()
_cache: dict[str, tuple[datetime, dict[int, dict[str, float | None]]]] = {}


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def reset() -> None:
    """Forget the cached minutes (tests)."""
    with _lock:
        _cache.clear()


def _count(start: datetime, end: datetime) -> dict[int, dict[str, float | None]]:
    """Per minute in [start, end): jobs succeeded and failed, and the summed depths."""
    found: dict[int, dict[str, float | None]] = {}
    finished = (
        JobRecord.objects.filter(finished_at__gte=start, finished_at__lt=end)
        .annotate(at=TruncMinute("finished_at"))
        .values("at")
        .annotate(
            succeeded=Count("pk", filter=Q(status=JobStatus.SUCCEEDED)),
            failed=Count("pk", filter=Q(status__in=FAILED)),
        )
    )
    for row in finished:
        slot = found.setdefault(int(row["at"].timestamp()), {})
        slot["succeeded"] = float(row["succeeded"])
        slot["failed"] = float(row["failed"])
    samples = (
        QueueSample.objects.filter(minute__gte=start, minute__lt=end)
        .values("minute")
        .annotate(**{name: Sum(name) for name in DEPTHS})
    )
    for sample in samples:
        data: dict[str, Any] = dict(sample)
        slot = found.setdefault(int(data["minute"].timestamp()), {})
        for name in DEPTHS:
            slot[name] = float(data[name] or 0)
    return found


def last_hour(now: datetime, minutes: int = MINUTES) -> History:
    """``{"step": 60, "t": [unix seconds of each minute], "succeeded": [per second],
    "failed": [per second], "ready": [...], "delayed": [...], "running": [...]}``, oldest
    first; the last minute is the current one (its rates over the seconds elapsed so far)."""
    current = minute_of(now)
    start = current - timedelta(minutes=minutes - 1)
    with _lock:
        cached = _cache.get("past")
    if cached is None or cached[0] != current:
        cached = (current, _count(start, current))
        with _lock:
            _cache["past"] = cached
    counts = {**cached[1], **_count(current, now + timedelta(microseconds=1))}
    elapsed = max(1.0, (now - current).total_seconds())
    out: History = {"step": 60, "t": [], "succeeded": [], "failed": [], **{n: [] for n in DEPTHS}}
    for index in range(minutes):
        minute = start + timedelta(minutes=index)
        key = int(minute.timestamp())
        slot = counts.get(key, {})
        seconds = elapsed if minute == current else 60.0
        out["t"].append(key)
        for name in ("succeeded", "failed"):
            out[name].append(round(float(slot.get(name) or 0.0) / seconds, 3))
        for name in DEPTHS:
            out[name].append(slot.get(name))
    return out
