"""``manage.py prune``: old finished rows go, running ones and recent ones stay."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from repid_django.models import DeadLetterRecord, JobRecord, JobStatus, WorkerRecord

pytestmark = pytest.mark.django_db


def make_rows() -> None:
    now = timezone.now()
    old = now - timedelta(days=10)
    for index, (status, updated) in enumerate(
        [
            (JobStatus.SUCCEEDED, old),
            (JobStatus.DEAD, old),
            (JobStatus.RUNNING, old),
            (JobStatus.SUCCEEDED, now),
        ]
    ):
        JobRecord.objects.create(
            job_id=f"j{index}", actor="a", queue="q", status=status, updated_at=updated
        )
    DeadLetterRecord.objects.create(job_id="j1", queue="q", reason="failed", failed_at=old)
    DeadLetterRecord.objects.create(job_id="j9", queue="q", reason="failed", failed_at=now)
    WorkerRecord.objects.create(
        worker_id="gone", host="h", pid=1, started_at=old, last_heartbeat=old
    )
    WorkerRecord.objects.create(
        worker_id="alive", host="h", pid=2, started_at=now, last_heartbeat=now
    )


def prune(*args: str) -> str:
    out = StringIO()
    call_command("prune", *args, stdout=out)
    return out.getvalue()


def test_dry_run_counts_and_deletes_nothing() -> None:
    make_rows()
    output = prune("--older-than", "7d", "--dry-run")
    assert "would delete 2 jobs" in output
    assert "would delete 1 dead" in output
    assert "would delete 1 workers" in output
    assert JobRecord.objects.count() == 4
    assert DeadLetterRecord.objects.count() == 2


def test_deletes_old_finished_rows_only() -> None:
    make_rows()
    output = prune("--older-than", "7d")
    assert "deleted 2 jobs" in output
    assert sorted(JobRecord.objects.values_list("job_id", flat=True)) == ["j2", "j3"]
    assert list(DeadLetterRecord.objects.values_list("job_id", flat=True)) == ["j9"]
    assert list(WorkerRecord.objects.values_list("worker_id", flat=True)) == ["alive"]


def test_status_and_kind_filters() -> None:
    make_rows()
    prune("--older-than", "240h", "--status", "dead", "--only", "jobs")
    assert sorted(JobRecord.objects.values_list("job_id", flat=True)) == ["j0", "j2", "j3"]
    assert DeadLetterRecord.objects.count() == 2
    assert WorkerRecord.objects.count() == 2


def test_age_shorter_than_the_rows_keeps_them() -> None:
    make_rows()
    assert "deleted 0 jobs" in prune("--older-than", "30d")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "soon"], "use a number with a unit"),
        (["--status", "running"], "running is not allowed"),
        (["--only", "queues"], "queues is not allowed"),
    ],
)
def test_bad_arguments_say_what_to_use(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        prune(*args)
