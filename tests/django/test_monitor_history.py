"""The monitor's last hour: depth samples written by the mirror with each heartbeat (one row per
queue and minute, old ones deleted), and the per-minute throughput and depth series of the
snapshot (``history``), with the throughput query on an index."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from repid_django.engine.worker.events import WorkerInfo
from repid_django.mirror.listener import OrmMirror
from repid_django.models import SAMPLES_KEPT, JobRecord, JobStatus, QueueSample
from repid_django.monitor import history

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 14, 30, 30, tzinfo=UTC)  # 30 s into the current minute
MINUTE = timedelta(minutes=1)


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    history.reset()
    yield
    history.reset()


def heartbeat(mirror: OrmMirror, at: datetime, ready: int, queue: str = "default") -> None:
    info = WorkerInfo("w-1", "host", 1, (queue,), 4, at.timestamp(), at.timestamp())
    depth = {"name": queue, "ready": ready, "delayed": 1, "running": 2, "dead": 0}
    mirror.write_heartbeat(info, [{**depth, "updated_at": at}], [])


def finished(job_id: str, at: datetime, status: str = JobStatus.SUCCEEDED) -> None:
    JobRecord.objects.create(
        job_id=job_id, actor="a", queue="default", status=status, finished_at=at, updated_at=at
    )


def test_heartbeats_keep_one_sample_per_queue_and_minute_and_drop_old_ones() -> None:
    mirror = OrmMirror()
    old = NOW - SAMPLES_KEPT - 5 * MINUTE
    QueueSample.objects.create(queue="default", minute=old.replace(second=0), ready=9)
    heartbeat(mirror, NOW, ready=3)
    heartbeat(mirror, NOW + timedelta(seconds=10), ready=5)  # same minute: the last one wins
    heartbeat(mirror, NOW + timedelta(seconds=10), ready=7, queue="emails")
    rows = {(s.queue, s.minute): (s.ready, s.delayed, s.running) for s in QueueSample.objects.all()}
    minute = NOW.replace(second=0)
    assert rows == {("default", minute): (5, 1, 2), ("emails", minute): (7, 1, 2)}


def test_the_last_hour_per_minute(django_assert_max_num_queries: Any) -> None:
    current = NOW.replace(second=0)
    for n in range(6):  # 6 succeeded and 3 failed two minutes ago
        finished(f"s{n}", current - 2 * MINUTE + timedelta(seconds=n))
    for n in range(3):
        finished(f"f{n}", current - 2 * MINUTE, JobStatus.FAILED if n else JobStatus.DEAD)
    finished("cancelled", current - 2 * MINUTE, JobStatus.CANCELLED)  # not a failure
    finished("too-old", current - 60 * MINUTE)  # outside the hour
    for n in range(15):  # 15 in the current minute, 30 s old: 0.5 per second
        finished(f"now{n}", current + timedelta(seconds=n))
    QueueSample.objects.create(queue="a", minute=current - 2 * MINUTE, ready=4, running=1)
    QueueSample.objects.create(queue="b", minute=current - 2 * MINUTE, ready=6, delayed=2)

    got = history.last_hour(NOW)
    assert got["step"] == 60
    assert len(got["t"]) == 60
    assert got["t"][-1] == int(current.timestamp())
    assert got["t"][0] == int((current - 59 * MINUTE).timestamp())
    two_ago = got["t"].index(int((current - 2 * MINUTE).timestamp()))
    assert got["succeeded"][two_ago] == 0.1  # 6 in 60 s
    assert got["failed"][two_ago] == 0.05  # 3 in 60 s (failed and dead-lettered)
    assert (got["ready"][two_ago], got["delayed"][two_ago], got["running"][two_ago]) == (
        10.0,
        2.0,
        1.0,
    )
    assert got["ready"][two_ago - 1] is None  # no sample: a gap, not a zero
    assert got["succeeded"][-1] == 0.5
    assert sum(got["succeeded"]) == pytest.approx(0.6)  # "too-old" is not counted

    # The finished minutes are counted once a minute; a snapshot counts the current one only.
    finished("late", current + timedelta(seconds=20))
    with django_assert_max_num_queries(2):
        again = history.last_hour(NOW)
    assert again["succeeded"][-1] == round(16 / 30, 3)


def test_the_throughput_query_uses_an_index_on_finished_at() -> None:
    names = {index.name: index.fields for index in JobRecord._meta.indexes}
    assert names["repid_job_finished"] == ["finished_at", "status"]
    with connection.cursor() as cursor:  # in the database (SQLite or PostgreSQL), not only in Meta
        constraints = connection.introspection.get_constraints(cursor, JobRecord._meta.db_table)
    assert constraints["repid_job_finished"]["columns"] == ["finished_at", "status"]
    assert constraints["repid_job_finished"]["index"]


@pytest.mark.redis
def test_the_snapshot_carries_the_hour() -> None:
    from repid_django.monitor.snapshot import build_snapshot

    finished("recent", datetime.now(UTC))
    got = build_snapshot()["history"]
    assert len(got["t"]) == len(got["succeeded"]) == len(got["ready"]) == 60
    assert sum(got["succeeded"]) > 0
