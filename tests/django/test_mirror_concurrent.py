"""Forward-only under concurrent workers: two mirrors (two workers) write the same job, and
one's batch read the row before the other wrote it. The database, not only the reader, keeps
the newer state (``FORWARD_ONLY``). Runs on SQLite and, in ``make test``'s second pass, on
PostgreSQL."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connections

from repid_django.engine.message import Message
from repid_django.engine.worker.events import EventKind, JobEvent
from repid_django.mirror import listener
from repid_django.mirror.listener import OrmMirror
from repid_django.models import JobRecord, JobStatus

pytestmark = pytest.mark.django_db(transaction=True)


def crossed(monkeypatch: pytest.MonkeyPatch, late: list[JobEvent], early: list[JobEvent]) -> None:
    """``late``'s batch reads the rows first but writes them after ``early``'s batch has read
    and written them (each batch in a thread of its own, like two workers' mirrors)."""
    late_read = threading.Event()
    early_done = threading.Event()
    upsert = listener.upsert  # type: ignore[attr-defined]  # the name the listener calls

    def paused(model: Any, rows: Any, **kwargs: Any) -> None:
        if model is JobRecord and threading.current_thread().name == "late":
            late_read.set()
            assert early_done.wait(10)
        upsert(model, rows, **kwargs)

    monkeypatch.setattr(listener, "upsert", paused)
    errors: list[BaseException] = []

    def run(events: list[JobEvent], before: threading.Event | None) -> None:
        try:
            if before is not None:
                assert before.wait(10)
            OrmMirror(retention=None).write_events(events)
        except BaseException as exc:
            errors.append(exc)
        finally:
            if before is not None:
                early_done.set()
            connections.close_all()

    threads = [
        threading.Thread(target=run, args=(late, None), name="late"),
        threading.Thread(target=run, args=(early, late_read), name="early"),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not errors


def event(kind: EventKind, attempt: int, at: float, **extra: Any) -> JobEvent:
    message = Message(id="x", actor="a", queue="q", args=None, attempt=attempt, **extra)
    return JobEvent(kind, message, at, f"worker-{attempt}")


def test_a_stale_start_does_not_overwrite_a_success(monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    crossed(
        monkeypatch,
        late=[event(EventKind.STARTED, 0, now)],
        early=[event(EventKind.STARTED, 0, now), event(EventKind.SUCCEEDED, 0, now + 1)],
    )
    row = JobRecord.objects.get(job_id="x")
    assert row.status == JobStatus.SUCCEEDED
    assert row.finished_at is not None


def test_an_earlier_attempt_does_not_overwrite_a_later_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = time.time()
    OrmMirror(retention=None).write_events([event(EventKind.STARTED, 0, now)])
    crossed(
        monkeypatch,
        late=[event(EventKind.FAILED, 0, now + 1)],  # worker 0's failure, flushed late
        early=[event(EventKind.FAILED, 0, now + 1), event(EventKind.STARTED, 1, now + 2)],
    )
    row = JobRecord.objects.get(job_id="x")
    assert (row.status, row.attempt) == (JobStatus.RUNNING, 1)


def test_without_a_crossing_every_forward_step_is_written() -> None:
    now = time.time()
    mirror = OrmMirror(retention=None)
    for kind, attempt, at in [
        (EventKind.STARTED, 0, now),
        (EventKind.FAILED, 0, now + 1),
        (EventKind.STARTED, 1, now + 2),
        (EventKind.REJECTED, 1, now + 3),  # back to the queue: the one way down
    ]:
        mirror.write_events([event(kind, attempt, at)])
        assert JobRecord.objects.get(job_id="x").attempt == attempt
    assert JobRecord.objects.get(job_id="x").status == JobStatus.QUEUED
