"""The admin at size: the jobs and dead-letter changelists count with PostgreSQL's estimate
above a threshold (no ``COUNT(*)`` over millions of rows), take their actor and queue
filters from the known actors and queues (no ``DISTINCT`` scan), search by prefix, filter time
by fixed windows (no date hierarchy), stop at a deepest page, and the dashboard's counts are
bounded. Runs on SQLite and, in ``make test``'s second pass, on PostgreSQL; the query plans
themselves are checked in ``test_admin_plans.py``."""

from __future__ import annotations

from datetime import timedelta
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


def test_search_is_by_the_beginning_of_a_job_id_or_an_actor(admin_client: Client) -> None:
    """Prefixes only, case-sensitive: what an index serves (LIKE 'x%'), on every database."""
    jobs(2, actor="send_email")
    jobs(2, actor="charge_card", queue="payments")
    letter = DeadLetterRecord.objects.create(
        job_id="charge_card-payments-0", queue="payments", actor="charge_card", reason="failed"
    )

    def found(name: str, term: str) -> set[str]:
        response = admin_client.get(reverse(name), {"q": term})
        assert response.status_code == 200
        return {row.job_id for row in response.context["cl"].result_list}

    assert found(JOBS, "send_email-default-1") == {"send_email-default-1"}  # a whole id
    assert found(JOBS, "charge_card-pay") == {"charge_card-payments-0", "charge_card-payments-1"}
    assert found(JOBS, "send") == {"send_email-default-0", "send_email-default-1"}  # an actor
    assert found(JOBS, "email") == set()  # not a prefix: no scan for a substring
    if connection.vendor == "postgresql":  # SQLite's LIKE ignores case (ASCII)
        assert found(JOBS, "SEND") == set()  # job ids are lower-case hex; actors as spelt
    assert found(DEAD, "charge") == {letter.job_id}
    assert found(DEAD, "payments") == set()


def test_no_date_hierarchy_but_bounded_time_windows(admin_client: Client) -> None:
    now = timezone.now()
    for job_id, age in (("fresh", timedelta(minutes=5)), ("day", timedelta(hours=20))):
        JobRecord.objects.create(job_id=job_id, actor="a", queue="q", updated_at=now - age)
    JobRecord.objects.create(job_id="old", actor="a", queue="q", updated_at=now - timedelta(9))
    DeadLetterRecord.objects.create(job_id="late", queue="q", reason="failed")
    DeadLetterRecord.objects.create(
        job_id="early", queue="q", reason="failed", failed_at=now - timedelta(days=8)
    )

    def listed(name: str, **query: str) -> set[str]:
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(reverse(name), query)
        assert response.status_code == 200
        for sql in (q["sql"].upper() for q in queries.captured_queries):
            assert "DISTINCT" not in sql  # no dates scanned for a hierarchy
            assert "DATE_TRUNC" not in sql
        return {row.job_id for row in response.context["cl"].result_list}

    assert listed(JOBS) == {"fresh", "day", "old"}
    assert listed(JOBS, updated="1h") == {"fresh"}
    assert listed(JOBS, updated="24h") == {"fresh", "day"}
    assert listed(JOBS, updated="older") == {"old"}
    assert listed(DEAD, failed="7d") == {"late"}
    assert listed(DEAD, failed="older") == {"early"}


def test_pages_stop_at_the_deepest_offered(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OFFSET reads every row before it: pages past ``max_pages`` are refused, and the
    page links stop there, however many rows the count says."""
    monkeypatch.setattr(EstimatedCountPaginator, "max_pages", 2)
    jobs(180)  # 4 pages of 50
    html, _ = get(admin_client, JOBS, "?p=1")
    assert "180 jobs" in html
    assert "?p=2" in html
    assert "?p=3" not in html
    assert "?p=4" not in html
    response = admin_client.get(reverse(JOBS) + "?p=3")
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


DASHBOARD = "admin:app_list"


def dashboard_counts(client: Client) -> tuple[dict[str, str], list[str]]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse(DASHBOARD, args=("repid_django",)))
    assert response.status_code == 200
    statuses = response.context["statuses"]
    return {s["value"]: str(s["count"]) for s in statuses}, [
        q["sql"] for q in queries.captured_queries
    ]


def test_the_dashboard_counts_small_windows_exactly(admin_client: Client) -> None:
    jobs(3)
    JobRecord.objects.create(job_id="f", actor="a", queue="q", status=JobStatus.FAILED)
    counts, _ = dashboard_counts(admin_client)
    assert counts["succeeded"] == "3"
    assert counts["failed"] == "1"
    assert counts["queued"] == "0"


@postgres_only
def test_the_dashboard_never_counts_a_big_window_exactly(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above the threshold a status is the planner's estimate, or a count of a LIMIT."""
    from repid_django.admin import counts

    jobs(60)
    jobs(3, actor="flaky")
    JobRecord.objects.filter(actor="flaky").update(status=JobStatus.FAILED)
    analyze()
    monkeypatch.setattr(counts, "THRESHOLD", 10)
    monkeypatch.setattr(counts, "CAP", 20)
    shown, sql = dashboard_counts(admin_client)
    assert shown["succeeded"].startswith("≈ ")  # 60 by the estimate: >= CAP
    assert shown["failed"] == "3"  # few: exact, bounded
    assert shown["running"] == "0"
    counting = [q for q in sql if "COUNT(" in q.upper()]
    assert counting
    assert all("LIMIT 21" in q for q in counting)  # never a COUNT(*) of the whole window
