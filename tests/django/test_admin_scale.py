"""The admin at size: the jobs and dead-letter changelists count with PostgreSQL's estimate
above a threshold (no ``COUNT(*)`` over millions of rows) and take their actor and queue
filters from the known actors and queues (no ``DISTINCT`` scan). Runs on SQLite and, in
``make test``'s second pass, on PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from repid_django.admin.paginator import EstimatedCountPaginator, estimated_count
from repid_django.models import DeadLetterRecord, JobRecord, JobStatus, QueueRecord

pytestmark = pytest.mark.django_db

JOBS = "admin:repid_django_jobrecord_changelist"
DEAD = "admin:repid_django_deadletterrecord_changelist"
postgres_only = pytest.mark.postgres
"""PostgreSQL's statistics: collected by make test's PostgreSQL pass only (deselected, not
skipped, on another database: see tests/django/conftest.py)."""


def jobs(count: int, actor: str = "record", queue: str = "default") -> None:
    JobRecord.objects.bulk_create(
        JobRecord(
            job_id=f"{actor}-{queue}-{index}",
            actor=actor,
            queue=queue,
            status=JobStatus.SUCCEEDED,
            updated_at=timezone.now(),
        )
        for index in range(count)
    )


def analyze() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {JobRecord._meta.db_table}")


def get(client: Client, name: str, query: str = "") -> tuple[str, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse(name) + query)
    assert response.status_code == 200
    return response.content.decode(), [q["sql"] for q in queries.captured_queries]


@pytest.mark.parametrize("name", [JOBS, DEAD])
def test_actor_and_queue_choices_come_from_known_names_not_a_distinct_scan(
    admin_client: Client, name: str
) -> None:
    jobs(2, actor="ghost", queue="attic")
    DeadLetterRecord.objects.create(job_id="d", queue="attic", actor="ghost", reason="failed")
    QueueRecord.objects.create(name="reported")
    html, sql = get(admin_client, name)
    assert not [q for q in sql if "DISTINCT" in q and ('"actor"' in q or '"queue"' in q)]
    assert "?actor=record" in html  # the test app's actors
    assert "?queue=other" in html  # a queue an actor listens on
    assert "?queue=reported" in html  # a queue workers reported
    assert "?actor=ghost" not in html  # only in the rows: not scanned for
    assert "?queue=attic" not in html


def test_a_name_that_is_not_a_choice_still_filters(admin_client: Client) -> None:
    jobs(2, actor="ghost", queue="attic")
    jobs(3)
    html, _ = get(admin_client, JOBS, "?actor=ghost")
    assert "ghost-attic-0" in html
    assert "record-default-0" not in html
    html, _ = get(admin_client, JOBS, "?queue=default")
    assert "record-default-0" in html
    assert "ghost-attic-0" not in html


def test_small_tables_and_other_databases_are_counted_exactly(admin_client: Client) -> None:
    jobs(3)
    if connection.vendor == "postgresql":
        analyze()
    html, sql = get(admin_client, JOBS)
    assert "3 jobs" in html
    assert [q for q in sql if "COUNT(" in q.upper()]  # below the threshold: exact
    if connection.vendor != "postgresql":
        assert estimated_count(JobRecord.objects.all()) is None


@postgres_only
def test_postgresql_estimates_big_lists_without_counting(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs(40)
    jobs(20, actor="flaky")
    analyze()
    assert estimated_count(JobRecord.objects.all()) == 60  # pg_class.reltuples
    estimate = estimated_count(JobRecord.objects.filter(actor="flaky"))  # EXPLAIN's rows
    assert estimate is not None
    assert 10 <= estimate <= 40
    monkeypatch.setattr(EstimatedCountPaginator, "threshold", 10)
    html, sql = get(admin_client, JOBS)
    assert "60 jobs" in html
    html, more = get(admin_client, JOBS, "?actor=flaky")
    assert f"{estimate} jobs" in html
    assert not [q for q in sql + more if "COUNT(" in q.upper()]


@postgres_only
def test_a_table_never_analysed_has_no_estimate() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)",
            [DeadLetterRecord._meta.db_table],
        )
        (reltuples,) = cursor.fetchone() or (None,)
    found = estimated_count(DeadLetterRecord.objects.all())
    if reltuples is None or reltuples <= 0:  # never analysed (autovacuum may have been first)
        assert found is None
    else:
        assert found == int(reltuples)


def test_the_paginator_is_the_estimating_one() -> None:
    from django.contrib import admin

    for model in (JobRecord, DeadLetterRecord):
        model_admin: Any = admin.site._registry[model]
        assert model_admin.paginator is EstimatedCountPaginator
