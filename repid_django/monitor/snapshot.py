"""One JSON snapshot of the job system for the live monitor.

Queue depths are read live from the broker (the source of truth, see ``repid_django.depths``);
when it does not answer in time, each queue falls back to the mirrored
:class:`~repid_django.models.QueueRecord` and the snapshot is marked ``stale`` with the reason,
so the page says so instead of going blank.
Throughput, workers, failures and the running jobs come from the ORM mirror, which workers
write in batches; the running jobs' progress (``set_progress``) and whether each queue is paused
and the limits in force (``{"queue": {...} | null, "actors": {name: {...}}}``) are read live
from the broker too (unknown, ``null``, when it does not answer).
``history`` is the last hour, minute by minute, for the charts (see ``history.py``).
Schedules come from their table, with their next run and their last run (read live from the
broker, skipped when it did not answer for the depths).

:func:`build_snapshot` is synchronous (ORM and a blocking broker call): async code runs it in
a thread (the consumer uses ``database_sync_to_async``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from ..admin.display import error_summary
from ..depths import STATS_TIMEOUT, all_limits_data, read_depths
from ..models import DeadLetterRecord, DeadReasonChoice, JobRecord, JobStatus, WorkerRecord
from .history import last_hour
from .running import running_jobs

Snapshot = dict[str, Any]

BROKER_TIMEOUT = STATS_TIMEOUT
"""Seconds the monitor waits for live depths before it shows the mirrored ones."""
THROUGHPUT_WINDOW = 60
"""Seconds over which throughput is averaged."""
RECENT = 10
"""How many workers and failures a snapshot lists at most (workers: 5 times as many)."""

FAILED_STATUSES = (JobStatus.FAILED, JobStatus.DEAD)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _seconds_since(moment: datetime | None, now: datetime) -> float | None:
    if moment is None:
        return None
    return round(max(0.0, (now - moment).total_seconds()), 1)


def queue_rows(timeout: float = BROKER_TIMEOUT) -> tuple[list[dict[str, Any]], str | None]:
    """Rows of the queue table and, when the broker did not answer, why."""
    found, problem = read_depths(timeout)
    rows = [
        {
            "name": depth.name,
            "ready": depth.ready,
            "delayed": depth.delayed,
            "running": depth.running,
            "dead": depth.dead,
            "live": depth.live,
            "mirrored_at": _iso(depth.at),
            "paused": depth.paused,
            "limits": all_limits_data(depth.limits),
        }
        for depth in found
    ]
    return rows, problem


def throughput(now: datetime, window: int = THROUGHPUT_WINDOW) -> dict[str, Any]:
    """Jobs that finished in the last ``window`` seconds, from the mirror (``cancelled`` ones
    are counted apart from ``failed`` ones)."""
    since = now - timedelta(seconds=window)
    counts = JobRecord.objects.filter(finished_at__gte=since, finished_at__lte=now).aggregate(
        finished=Count("pk"),
        succeeded=Count("pk", filter=Q(status=JobStatus.SUCCEEDED)),
        failed=Count("pk", filter=Q(status__in=FAILED_STATUSES)),
        cancelled=Count("pk", filter=Q(status=JobStatus.CANCELLED)),
    )
    finished = int(counts["finished"] or 0)
    return {
        "window": window,
        "finished": finished,
        "succeeded": int(counts["succeeded"] or 0),
        "failed": int(counts["failed"] or 0),
        "cancelled": int(counts["cancelled"] or 0),
        "per_second": round(finished / window, 3),
    }


def workers(now: datetime, limit: int = RECENT * 5) -> dict[str, Any]:
    """Workers by latest heartbeat, each alive or dead (see ``admin_filters.alive_within``)."""
    from ..admin.filters import alive_within

    within = alive_within()
    items = [
        {
            "id": record.worker_id,
            "name": str(record),
            "state": record.state,
            "alive": record.is_alive(within),
            "heartbeat_age": _seconds_since(record.last_heartbeat, now),
            "queues": [str(name) for name in record.queues or []],
            "concurrency": record.concurrency,
            "running": record.running,
            "processed": record.processed,
            "failed": record.failed,
        }
        for record in WorkerRecord.objects.order_by("-last_heartbeat")[:limit]
    ]
    alive = sum(1 for item in items if item["alive"])
    return {"alive": alive, "dead": len(items) - alive, "items": items}


def failures(limit: int = RECENT) -> list[dict[str, Any]]:
    """The latest dead letters (still in the dead-letter queue) and failed jobs, newest first;
    cancelled jobs are not failures."""
    found: list[tuple[datetime, dict[str, Any]]] = []
    letters = DeadLetterRecord.objects.filter(requeued_at=None, purged_at=None).exclude(
        reason=DeadReasonChoice.CANCELLED
    )
    for letter in letters.order_by("-failed_at")[:limit]:
        found.append(
            (
                letter.failed_at,
                {
                    "kind": "dead",
                    "job_id": letter.job_id,
                    "actor": letter.actor,
                    "queue": letter.queue,
                    "reason": letter.get_reason_display(),
                    "error": error_summary(letter.error, 160),
                    "at": _iso(letter.failed_at),
                    "pk": letter.pk,
                },
            )
        )
    failed = JobRecord.objects.filter(status=JobStatus.FAILED, finished_at__isnull=False)
    for job in failed.order_by("-finished_at")[:limit]:
        assert job.finished_at is not None
        found.append(
            (
                job.finished_at,
                {
                    "kind": "failed",
                    "job_id": job.job_id,
                    "actor": job.actor,
                    "queue": job.queue,
                    "reason": job.get_status_display(),
                    "error": error_summary(job.error, 160),
                    "at": _iso(job.finished_at),
                    "pk": job.pk,
                },
            )
        )
    found.sort(key=lambda pair: pair[0], reverse=True)
    return [item for _, item in found[:limit]]


def build_snapshot(timeout: float = BROKER_TIMEOUT) -> Snapshot:
    """Everything the monitor page shows, as one JSON-serialisable dict.

    ``stale`` is true when the broker could not be read (``error`` says why): queue counts are
    then the workers' last mirrored report (``live: false`` per queue).
    """
    from ..admin.schedule_status import overview
    from ..templatetags.repid_admin import broker_label

    queues, problem = queue_rows(timeout)
    now = timezone.now()
    return {
        "type": "snapshot",
        "at": now.isoformat(),
        "stale": problem is not None,
        "error": problem,
        "broker": broker_label(),
        "queues": queues,
        "totals": {
            key: sum(int(row[key]) for row in queues)
            for key in ("ready", "delayed", "running", "dead")
        },
        "throughput": throughput(now),
        "history": last_hour(now),
        "workers": workers(now),
        "running_jobs": running_jobs(now, live=problem is None, timeout=timeout),
        "failures": failures(),
        "schedules": overview(live=problem is None, timeout=timeout)[0],
    }
