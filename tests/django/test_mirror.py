"""The ORM mirror: rows after success, retry, timeout and dead letter; state only forward."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from repid_django import Job
from repid_django.engine.brokers.base import DeadLetter, DeadReason
from repid_django.engine.message import Message
from repid_django.engine.results import JobResult
from repid_django.engine.worker.events import EventKind, JobEvent, WorkerInfo
from repid_django.mirror.listener import OrmMirror
from repid_django.models import (
    DeadLetterRecord,
    JobRecord,
    JobStatus,
    QueueRecord,
    WorkerRecord,
)
from tests.django.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)


def test_success_row(run_worker: Callable[..., str]) -> None:
    message_id = Job("record", args={"tag": "ok"}, priority=7).enqueue().value
    run_worker()
    row = JobRecord.objects.get(job_id=message_id)
    assert row.status == JobStatus.SUCCEEDED
    assert (row.actor, row.queue, row.priority, row.attempt) == ("record", "default", 7, 0)
    assert row.args == {"tag": "ok"}
    assert row.result == {"tag": "ok"}
    assert row.error == ""
    assert row.enqueued_at is not None
    assert row.started_at is not None
    assert row.finished_at is not None
    assert row.enqueued_at <= row.started_at <= row.finished_at
    worker = WorkerRecord.objects.get(worker_id=row.worker)
    assert worker.state == "stopped"
    assert worker.processed == 1
    assert set(worker.queues) == {"default", "other"}
    depth = QueueRecord.objects.get(name="default")
    assert (depth.ready, depth.running, depth.dead) == (0, 0, 0)


def test_retry_then_success(run_worker: Callable[..., str]) -> None:
    message_id = Job("flaky", args={"tag": "r", "fail_times": 1}, retries=2).enqueue().value
    run_worker()
    row = JobRecord.objects.get(job_id=message_id)
    assert row.status == JobStatus.SUCCEEDED
    assert row.attempt == 1
    assert row.max_retries == 2
    assert row.result == "done"
    assert row.error == ""  # the successful run cleared the earlier error
    assert Note.objects.filter(tag="r-failure").count() == 1
    assert not DeadLetterRecord.objects.exists()


def test_timeout_dead_letters_with_reason(run_worker: Callable[..., str]) -> None:
    message_id = Job("slow", args={"seconds": 5}).enqueue().value
    run_worker()
    row = JobRecord.objects.get(job_id=message_id)
    assert row.status == JobStatus.DEAD
    assert "timeout" in row.error
    letter = DeadLetterRecord.objects.get(job_id=message_id)
    assert letter.reason == "timeout"
    assert letter.queue == "default"
    assert letter.actor == "slow"
    assert letter.args == {"seconds": 5}


def test_failures_exhaust_retries_into_a_dead_letter(run_worker: Callable[..., str]) -> None:
    args = {"tag": "d", "fail_times": 5}
    message_id = Job("flaky", args=args, retries=1).enqueue().value
    run_worker()
    row = JobRecord.objects.get(job_id=message_id)
    assert row.status == JobStatus.DEAD
    assert row.attempt == 1
    assert "RuntimeError: failure 2 of 5" in row.error
    letter = DeadLetterRecord.objects.get(job_id=message_id)
    assert (letter.reason, letter.attempts, letter.args) == ("failed", 2, args)
    assert "failure 2 of 5" in letter.error
    assert QueueRecord.objects.get(name="default").dead == 1


def test_mirror_off_writes_nothing(run_worker: Callable[..., str], settings: Any) -> None:
    settings.REPID = {**settings.REPID, "MIRROR": False}
    Job("record", args={"tag": "quiet"}).enqueue()
    run_worker()
    assert Note.objects.filter(tag="quiet").exists()
    assert not JobRecord.objects.exists()
    assert not WorkerRecord.objects.exists()


# The merge rules, event by event ------------------------------------------------------------

NOW = time.time()


def event(kind: EventKind, attempt: int = 0, at: float = 0.0, **extra: Any) -> JobEvent:
    message = Message(
        id="job-1", actor="a", queue="default", attempt=attempt, retries=3, enqueued_at=NOW
    )
    return JobEvent(kind, message, NOW + at, "worker-1", **extra)


def result(data: Any, attempt: int = 0) -> JobResult:
    stamp = datetime.fromtimestamp(NOW, UTC)
    return JobResult("job-1", "a", True, data, None, stamp, stamp, attempt)


def status_after(*events: JobEvent, batches: bool = False) -> JobRecord:
    mirror = OrmMirror()
    if batches:
        for one in events:
            mirror.write_events([one])
    else:
        mirror.write_events(events)
    return JobRecord.objects.get(job_id="job-1")


@pytest.mark.parametrize("batches", [False, True])
def test_a_late_started_never_overwrites_succeeded(batches: bool) -> None:
    row = status_after(
        event(EventKind.SUCCEEDED, at=2, result=result(42)),
        event(EventKind.STARTED, at=1),
        batches=batches,
    )
    assert row.status == JobStatus.SUCCEEDED
    assert row.result == 42


def test_a_later_attempt_moves_on_and_an_older_one_does_not() -> None:
    row = status_after(
        event(EventKind.STARTED, attempt=0),
        event(EventKind.FAILED, attempt=0, error="boom", retry_at=NOW + 5),
        event(EventKind.STARTED, attempt=1),
        event(EventKind.FAILED, attempt=0, error="late duplicate"),
    )
    assert (row.status, row.attempt, row.error) == (JobStatus.RUNNING, 1, "")


def test_replaying_a_batch_is_idempotent() -> None:
    batch = [
        event(EventKind.STARTED),
        event(EventKind.DEAD, error="bad", reason=DeadReason.FAILED),
    ]
    mirror = OrmMirror()
    mirror.write_events(batch)
    mirror.write_events(batch)
    assert JobRecord.objects.count() == 1
    assert DeadLetterRecord.objects.count() == 1
    assert JobRecord.objects.get().status == JobStatus.DEAD


def test_a_job_returned_at_shutdown_shows_as_queued_again() -> None:
    row = status_after(event(EventKind.STARTED), event(EventKind.REJECTED))
    assert row.status == JobStatus.QUEUED
    row = status_after(event(EventKind.STARTED, at=1))
    assert row.status == JobStatus.RUNNING


def test_few_queries_per_batch(django_assert_max_num_queries: Any) -> None:
    events = []
    for index in range(200):
        message = Message(id=f"j{index}", actor="a", queue="default", enqueued_at=NOW)
        events.append(JobEvent(EventKind.STARTED, message, NOW, "w"))
        events.append(JobEvent(EventKind.SUCCEEDED, message, NOW + 1, "w"))
    # SELECT, BEGIN, one executemany upsert, COMMIT; MySQL and MariaDB write the guarded upsert
    # as an insert and an UPDATE ... JOIN (their ON DUPLICATE KEY UPDATE takes no WHERE).
    upserts = 2 if connection.vendor == "mysql" else 1
    with django_assert_max_num_queries(3 + upserts):
        OrmMirror().write_events(events)
    assert JobRecord.objects.filter(status=JobStatus.SUCCEEDED).count() == 200


def test_heartbeat_upserts_the_worker_row() -> None:
    mirror = OrmMirror()
    info = WorkerInfo("w-1", "host", 1, ("default",), 4, NOW, NOW, processed=3)
    mirror.write_heartbeat(info, [], [])
    later = WorkerInfo("w-1", "host", 1, ("default",), 4, NOW, NOW + 5, processed=9)
    mirror.write_heartbeat(later, [], [])
    row = WorkerRecord.objects.get()
    assert row.processed == 9
    assert row.is_alive(within=timedelta(days=3650))


def test_jobs_the_broker_dead_lettered_each_end_at_their_own_time() -> None:
    """Dead letters found at a heartbeat (e.g. their worker died) end their running jobs, each
    at the failure time of its own dead letter."""
    mirror = OrmMirror()
    started = datetime.fromtimestamp(NOW, UTC)
    for job_id in ("lost-1", "lost-2", "lost-3"):
        JobRecord.objects.create(
            job_id=job_id, actor="a", queue="default", status=JobStatus.RUNNING, started_at=started
        )
    letters = [
        DeadLetter(
            id=job_id,
            queue="default",
            reason=DeadReason.WORKER_LOST,
            error="lease expired",
            failed_at=started + timedelta(seconds=seconds),
            message=Message(id=job_id, actor="a", queue="default"),
        )
        for job_id, seconds in (("lost-1", 10), ("lost-2", 20), ("lost-3", 30))
    ]
    info = WorkerInfo("w-1", "host", 1, ("default",), 4, NOW, NOW)
    mirror.write_heartbeat(info, [], letters)
    for letter in letters:
        row = JobRecord.objects.get(job_id=letter.id)
        assert row.status == JobStatus.DEAD
        assert row.finished_at == letter.failed_at
        assert row.updated_at == letter.failed_at
    assert DeadLetterRecord.objects.count() == 3
