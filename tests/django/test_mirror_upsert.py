"""The mirror's batched upsert (``mirror/upsert.py``) on the test database's vendor: PostgreSQL
gets each batch as one JSON document, MySQL and MariaDB an insert and a guarded
``UPDATE ... JOIN``, SQLite row by row; all must store the same values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from repid_django.mirror.listener import FORWARD_ONLY
from repid_django.mirror.rows import JOB_FIELDS
from repid_django.mirror.upsert import upsert
from repid_django.models import JobRecord

pytestmark = pytest.mark.django_db

AT = datetime(2026, 12, 3, 9, 30, 1, 123456, tzinfo=UTC)
VALUES: list[Any] = [
    {"nested": {"list": [1, 2.5, True, None]}, "quote": 'it\'s "x"'},
    ["a", {"b": None}],
    "text",
    42,
    0.5,
    False,
    {"unicode": "café ☕"},
]


def row(job_id: str, **values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "actor": "a",
        "queue": "default",
        "status": "running",
        "priority": 0,
        "args": None,
        "attempt": 0,
        "max_retries": 0,
        "result": None,
        "error": "",
        "worker": "w",
        "enqueued_at": AT,
        "started_at": AT,
        "finished_at": None,
        "retry_at": None,
        "updated_at": AT,
    }
    return {"job_id": job_id, **base, **values}


def write(rows: list[dict[str, Any]], batch_size: int = 2) -> None:
    upsert(
        JobRecord,
        rows,
        unique=("job_id",),
        update=JOB_FIELDS,
        batch_size=batch_size,
        only_if=FORWARD_ONLY,
    )


def test_json_values_times_and_nulls_are_stored_as_given() -> None:
    later = AT + timedelta(microseconds=1)
    write([row(f"j{i}", args=value, result=value) for i, value in enumerate(VALUES)])
    write([row("none", args=None, error="boom\nline 2", finished_at=later, retry_at=None)])
    for i, value in enumerate(VALUES):
        stored = JobRecord.objects.get(job_id=f"j{i}")
        assert (stored.args, stored.result) == (value, value)
        assert stored.enqueued_at == AT
    none = JobRecord.objects.get(job_id="none")
    assert (none.error, none.finished_at, none.retry_at) == ("boom\nline 2", later, None)
    # None is SQL NULL (as Django stores it), not a JSON null
    assert JobRecord.objects.filter(job_id="none", args__isnull=True).exists()


def test_a_batch_updates_existing_rows_forward_only_and_the_last_row_of_a_key_wins() -> None:
    write([row("a"), row("b")])
    done = AT + timedelta(seconds=1)
    write(
        [
            row("a", status="succeeded", finished_at=done, result=1),
            row("a", status="succeeded", finished_at=done, result=2),  # same key again
            row("b", status="queued", attempt=0, started_at=None),  # back: accepted (rejected)
            row("c", status="succeeded", finished_at=done),
        ]
    )
    rows = {r.job_id: r for r in JobRecord.objects.all()}
    assert (rows["a"].status, rows["a"].result) == ("succeeded", 2)
    assert rows["b"].status == "queued"
    assert rows["c"].status == "succeeded"
    write([row("a", status="running")])  # behind the row: not written over it
    assert JobRecord.objects.get(job_id="a").status == "succeeded"


@pytest.mark.postgres
def test_a_batch_the_database_refuses_raises_and_writes_none_of_its_rows() -> None:
    from django.db import DataError, transaction

    write([row("kept")])
    # the pipelined batches fail together, as Django's DataError
    with pytest.raises(DataError), transaction.atomic():
        write([row("new"), row("new2"), row("bad", actor="x" * 201), row("new3")])
    assert list(JobRecord.objects.values_list("job_id", flat=True)) == ["kept"]
