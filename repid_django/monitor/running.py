"""The monitor's running jobs: the mirror's rows of running jobs, each with the progress its
actor last reported (``set_progress``), read live from the broker in one call.

The rows come from the ORM mirror (written by the workers in batches); the progress from the
broker, only when it answered for the queue depths (else ``progress`` is ``null``, as it is for
a job that reported none).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import datetime
from typing import Any

from .. import ops
from ..models import JobRecord, JobStatus

logger = logging.getLogger(__name__)

RUNNING_LIMIT = 20
"""How many running jobs a snapshot lists at most (the latest started first)."""


def _seconds_since(moment: datetime | None, now: datetime) -> float | None:
    if moment is None:
        return None
    return round(max(0.0, (now - moment).total_seconds()), 1)


def running_jobs(
    now: datetime, *, live: bool, timeout: float, limit: int = RUNNING_LIMIT
) -> list[dict[str, Any]]:
    """The latest started running jobs with their progress (see the module docstring)."""
    rows = list(
        JobRecord.objects.filter(status=JobStatus.RUNNING)
        .order_by("-started_at", "-pk")
        .only("pk", "job_id", "actor", "queue", "started_at", "worker")[:limit]
    )
    reports: dict[str, dict[str, ops.Progress]] = {}
    if live and rows:
        by_queue: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            by_queue[row.queue].append(row.job_id)
        try:
            reports = ops.progress_by_queue(by_queue, timeout=timeout)
        except (ops.BrokerUnavailable, ValueError) as exc:
            logger.warning("monitor: could not read the jobs' progress: %s", exc)
    items = []
    for row in rows:
        report = reports.get(row.queue, {}).get(row.job_id)
        items.append(
            {
                "pk": row.pk,
                "job_id": row.job_id,
                "actor": row.actor,
                "queue": row.queue,
                "worker": row.worker,
                "running_for": _seconds_since(row.started_at, now),
                "progress": None
                if report is None
                else {
                    "value": report.value,
                    "percent": report.percent,
                    "text": report.text,
                    "age": round(max(0.0, time.time() - report.at.timestamp()), 1),
                },
            }
        )
    return items
