"""``repid_django.ops`` pause, resume, cancel and progress against a real Redis, and how the ORM
mirror records a cancelled job (from the worker's DEAD event, or from a dead letter the broker
made after the worker died): it reads "cancelled", not "dead-lettered"."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from repid_django import Job, Queue, get_connection, ops
from repid_django.engine.brokers.base import DeadLetter, DeadReason
from repid_django.engine.message import Message
from repid_django.engine.worker.events import EventKind, JobEvent, WorkerInfo
from repid_django.mirror.listener import OrmMirror
from repid_django.models import DeadLetterRecord, JobRecord, JobStatus

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


def set_progress(queue: str, job_id: str, data: dict[str, Any]) -> None:
    """Store a progress report as a running actor's ``set_progress`` does."""
    connection = get_connection()
    connection.call(lambda: connection.message_broker.set_progress(queue, job_id, data), 5)


def test_pause_and_resume_a_queue() -> None:
    Queue("mail").declare()
    ops.pause_queue("mail")
    ops.pause_queue("mail")  # twice is harmless
    assert Queue("mail").stats().value.paused
    job_id = Job("noop", queue="mail").enqueue().value  # enqueue still accepts
    assert job_id
    stats = Queue("mail").stats().value
    assert (stats.ready, stats.paused) == (1, True)
    assert not Queue("default").stats().value.paused  # only that queue
    ops.resume_queue("mail")
    ops.resume_queue("mail")
    stats = Queue("mail").stats().value
    assert (stats.ready, stats.paused) == (1, False)


def test_bad_arguments_are_refused_and_change_nothing() -> None:
    with pytest.raises(ValueError, match="invalid queue name"):
        ops.pause_queue("no spaces")
    with pytest.raises(ValueError, match="invalid queue name"):
        ops.resume_queue("")
    with pytest.raises(ValueError, match="invalid queue name"):
        ops.cancel_job("a b", "x")
    with pytest.raises(ValueError, match="invalid job id"):
        ops.cancel_job("default", "")
    with pytest.raises(ValueError, match="invalid queue name"):
        ops.job_progress("a b", ["x"])


def test_an_unreachable_broker_is_a_clear_error(settings: Any) -> None:
    from tests.redis_server import free_port

    settings.REPID = {**settings.REPID, "BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    with pytest.raises(ops.BrokerUnavailable, match="REPID"):
        ops.pause_queue("default")
    with pytest.raises(ops.BrokerUnavailable):
        ops.cancel_job("default", "some-id")


def test_cancel_a_waiting_job_removes_it_and_marks_its_record() -> None:
    job_id = Job("noop", deferred_until=time.time() + 3600).enqueue().value
    JobRecord.objects.create(job_id=job_id, actor="noop", queue="default")
    other = JobRecord.objects.create(job_id="other", actor="noop", queue="default")
    assert ops.cancel_job("default", job_id) == "removed"
    assert Queue("default").stats().value.delayed == 0
    row = JobRecord.objects.get(job_id=job_id)
    assert row.status == JobStatus.CANCELLED
    assert row.finished_at is not None
    assert JobRecord.objects.get(pk=other.pk).status == JobStatus.QUEUED  # only that one
    assert ops.cancel_job("default", job_id) == "unknown"
    assert ops.cancel_job("default", "never-there") == "unknown"
    assert not JobRecord.objects.filter(job_id="never-there").exists()


def test_cancel_does_not_touch_a_finished_record() -> None:
    """The broker says removed, the mirror says succeeded (a stale re-run, say): the row is
    left as the worker recorded it."""
    job_id = Job("noop").enqueue().value
    JobRecord.objects.create(
        job_id=job_id, actor="noop", queue="default", status=JobStatus.SUCCEEDED
    )
    assert ops.cancel_job("default", job_id) == "removed"
    assert JobRecord.objects.get(job_id=job_id).status == JobStatus.SUCCEEDED


def test_job_progress_reads_what_actors_reported() -> None:
    at = time.time() - 3
    set_progress("media", "a", {"value": 0.4, "text": "40 of 100 images", "at": at})
    set_progress("media", "b", {"value": 1.0, "text": "", "at": at})
    found = ops.job_progress("media", ["a", "b", "none"])
    assert set(found) == {"a", "b"}
    assert found["a"].value == 0.4
    assert found["a"].percent == 40
    assert found["a"].text == "40 of 100 images"
    assert abs((found["a"].at - datetime.fromtimestamp(at, UTC)).total_seconds()) < 0.01
    assert found["b"].percent == 100
    assert ops.job_progress("default", ["a"]) == {}  # progress is kept per queue
    assert ops.job_progress("media", []) == {}
    both = ops.progress_by_queue({"media": ["a"], "default": ["a"]})
    assert set(both["media"]) == {"a"}
    assert both["default"] == {}


def test_unreadable_progress_is_skipped() -> None:
    assert ops.Progress.from_data({"value": "x", "at": 1}) is None
    assert ops.Progress.from_data({"text": "no value"}) is None
    clamped = ops.Progress.from_data({"value": 7, "at": 0})
    assert clamped is not None
    assert clamped.value == 1.0


# the mirror ---------------------------------------------------------------------------------

NOW = time.time()


def message(job_id: str = "job-1") -> Message:
    return Message(id=job_id, actor="a", queue="default", retries=3, enqueued_at=NOW)


def test_a_job_cancelled_while_it_ran_reads_cancelled() -> None:
    mirror = OrmMirror()
    mirror.write_events([JobEvent(EventKind.STARTED, message(), NOW, "w")])
    mirror.write_events(
        [
            JobEvent(
                EventKind.DEAD,
                message(),
                NOW + 1,
                "w",
                error="CancelledError: the job was cancelled while it ran (cancel_job)",
                reason=DeadReason.CANCELLED,
            )
        ]
    )
    row = JobRecord.objects.get(job_id="job-1")
    assert row.status == JobStatus.CANCELLED
    assert row.get_status_display() == "Cancelled"
    assert row.attempt == 0
    letter = DeadLetterRecord.objects.get(job_id="job-1")
    assert letter.reason == "cancelled"
    assert letter.get_reason_display() == "Cancelled"
    # A dead letter for another reason still reads dead-lettered.
    mirror.write_events(
        [JobEvent(EventKind.DEAD, message("job-2"), NOW, "w", reason=DeadReason.FAILED)]
    )
    assert JobRecord.objects.get(job_id="job-2").status == JobStatus.DEAD


def test_a_cancelled_job_buried_by_the_broker_reads_cancelled() -> None:
    """Its worker died before it saw the cancel: the broker dead-letters it as cancelled, and
    the mirror finds that dead letter at a heartbeat."""
    started = datetime.fromtimestamp(NOW, UTC)
    for job_id in ("stopped", "lost"):
        JobRecord.objects.create(
            job_id=job_id, actor="a", queue="default", status=JobStatus.RUNNING, started_at=started
        )
    letters = [
        DeadLetter(
            id=job_id,
            queue="default",
            reason=reason,
            error=None,
            failed_at=started + timedelta(seconds=5),
            message=message(job_id),
        )
        for job_id, reason in (("stopped", DeadReason.CANCELLED), ("lost", DeadReason.WORKER_LOST))
    ]
    OrmMirror().write_heartbeat(WorkerInfo("w", "h", 1, ("default",), 1, NOW, NOW), [], letters)
    assert JobRecord.objects.get(job_id="stopped").status == JobStatus.CANCELLED
    assert JobRecord.objects.get(job_id="lost").status == JobStatus.DEAD
    assert DeadLetterRecord.objects.get(job_id="stopped").reason == "cancelled"
