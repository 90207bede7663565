"""Pruning at scale: bounded ``DELETE`` statements with progress, and the worker's retention
(``REPID["MIRROR_RETENTION"]``) applied from the mirror's flushes. Runs on SQLite and, in the
second pass of ``make test``, on PostgreSQL."""

from __future__ import annotations

import time
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from repid_django import conf
from repid_django.conf import SettingError
from repid_django.engine.message import Message
from repid_django.engine.worker.events import EventKind, JobEvent, WorkerInfo
from repid_django.mirror.listener import OrmMirror
from repid_django.mirror.retention import Retention, delete_in_chunks, old_rows
from repid_django.models import DeadLetterRecord, JobRecord, JobStatus, WorkerRecord

pytestmark = pytest.mark.django_db


def jobs(count: int, *, days: float, status: str = JobStatus.SUCCEEDED, tag: str = "j") -> None:
    at = timezone.now() - timedelta(days=days)
    JobRecord.objects.bulk_create(
        JobRecord(job_id=f"{tag}{index}", actor="a", queue="q", status=status, updated_at=at)
        for index in range(count)
    )


def test_prune_deletes_in_chunks_and_reports_progress() -> None:
    jobs(7, days=10)
    jobs(2, days=10, status=JobStatus.RUNNING, tag="run")
    jobs(3, days=1, tag="new")
    out = StringIO()
    with CaptureQueriesContext(connection) as queries:
        call_command("prune", "--older-than", "7d", "--only", "jobs", "--chunk-size=3", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[:3] == [
        "  jobs: 3 deleted so far",
        "  jobs: 6 deleted so far",
        "  jobs: 7 deleted so far",
    ]
    assert lines[3].startswith("deleted 7 jobs older than ")
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 3  # one statement per chunk, none over the whole table
    assert sorted(JobRecord.objects.values_list("job_id", flat=True)) == [
        "new0", "new1", "new2", "run0", "run1",
    ]  # fmt: skip


def test_a_chunk_rechecks_the_condition() -> None:
    """A row picked for a chunk but changed before its DELETE (a job retried) stays."""
    jobs(4, days=10)
    model, condition = old_rows("jobs", timezone.now() - timedelta(days=7))
    assert model is JobRecord
    picked = list(JobRecord.objects.filter(condition).values_list("pk", flat=True))
    JobRecord.objects.filter(job_id="j0").update(status=JobStatus.RETRYING)
    deleted = JobRecord.objects.filter(condition, pk__in=picked).delete()[0]
    assert deleted == 3
    assert list(JobRecord.objects.values_list("job_id", flat=True)) == ["j0"]


def test_max_chunks_leaves_a_backlog() -> None:
    jobs(5, days=10)
    model, condition = old_rows("jobs", timezone.now() - timedelta(days=7))
    assert delete_in_chunks(model, condition, chunk=2, max_chunks=2) == (4, True)
    assert delete_in_chunks(model, condition, chunk=2, max_chunks=2) == (1, False)
    assert not JobRecord.objects.exists()


def test_retention_runs_at_most_once_per_interval_unless_a_backlog_is_left() -> None:
    now = [1000.0]
    retention = Retention(7 * 86_400, interval=600, chunk=2, max_chunks=1, clock=lambda: now[0])
    jobs(3, days=8)
    jobs(2, days=6, tag="keep")
    WorkerRecord.objects.create(
        worker_id="gone",
        host="h",
        pid=1,
        started_at=timezone.now() - timedelta(days=9),
        last_heartbeat=timezone.now() - timedelta(days=8),
    )
    DeadLetterRecord.objects.create(
        job_id="x", queue="q", reason="failed", failed_at=timezone.now() - timedelta(days=8)
    )
    assert retention.run() == 4  # 2 jobs (one chunk), the dead letter, the worker
    assert retention.due()  # a job is left: again at the next flush
    assert retention.run() == 1
    assert not retention.due()
    jobs(1, days=9, tag="late")
    now[0] += 599
    assert retention.run() == 0  # not due: nothing is even looked at
    now[0] += 1
    assert retention.run() == 1
    assert retention.deleted == 6
    assert sorted(JobRecord.objects.values_list("job_id", flat=True)) == ["keep0", "keep1"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), (3600, 3600.0), (timedelta(days=1), 86_400.0)],
)
def test_the_retention_setting(settings: Any, value: object, expected: float | None) -> None:
    settings.REPID = {**settings.REPID, "MIRROR_RETENTION": value}
    assert conf.get_settings().mirror_retention == expected
    mirror = OrmMirror()
    assert (mirror.retention.keep if mirror.retention else None) == expected


def test_the_retention_setting_defaults_to_a_week_and_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert conf.get_settings().mirror_retention == 7 * 86_400
    monkeypatch.setenv("REPID_MIRROR_RETENTION", "none")
    conf.reset()
    assert conf.get_settings().mirror_retention is None
    monkeypatch.setenv("REPID_MIRROR_RETENTION", "0")
    conf.reset()
    with pytest.raises(SettingError, match="MIRROR_RETENTION"):
        conf.get_settings()


@pytest.mark.django_db(transaction=True)
async def test_the_worker_mirror_applies_the_retention_after_a_flush() -> None:
    from asgiref.sync import sync_to_async

    await sync_to_async(jobs)(3, days=2)
    mirror = OrmMirror(retention=86_400)
    message = Message(id="fresh", actor="a", queue="q", args=None)
    await mirror.on_events([JobEvent(EventKind.STARTED, message, time.time(), "w")])
    now = time.time()  # the worker stops: the mirror closes its thread's connection
    await mirror.on_heartbeat(WorkerInfo("w", "h", 1, ("q",), 1, now, now, state="stopped"))
    ids = await sync_to_async(lambda: sorted(JobRecord.objects.values_list("job_id", flat=True)))()
    assert ids == ["fresh"]
    assert mirror.retention is not None
    assert mirror.retention.deleted == 3
