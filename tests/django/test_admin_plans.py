"""PostgreSQL serves the admin's lists from indexes: every query a changelist page sends to the
jobs or dead-letter table is planned without a sequential scan of that table (a default list,
each filter, the job id and actor searches), so a page costs the same at ten million rows as at
ten thousand. The tables get enough rows, spread over days, and ``ANALYZE``, for the planner
to choose as it does at size; counts are estimates here as they are above the threshold.
PostgreSQL only (``make test``'s second pass); see ``bench/scale.py`` for the timings."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from repid_django.admin.paginator import EstimatedCountPaginator
from repid_django.models import DeadLetterRecord, JobRecord, JobStatus
from repid_django.monitor.running import running_jobs
from repid_django.monitor.snapshot import failures

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

ROWS = 30_000
JOBS = "admin:repid_django_jobrecord_changelist"
DEAD = "admin:repid_django_deadletterrecord_changelist"
BIG = (JobRecord._meta.db_table, DeadLetterRecord._meta.db_table)


@pytest.fixture
def filled(monkeypatch: pytest.MonkeyPatch) -> None:
    """ROWS jobs (5 actors and queues, 2% failed, 10% dead with their dead letters) over the
    last 8 days, analysed; the paginator estimates from 100 rows on (an exact count below
    the threshold may read a small table whole, as it should)."""
    jobs = JobRecord._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {jobs} (job_id, actor, queue, status, priority, attempt,
                max_retries, error, worker, updated_at)
            SELECT md5('job' || i), 'actor_' || abs(hashtext(i::text)) %% 5,
                'queue_' || abs(hashtext(i::text)) %% 5,
                CASE WHEN i %% 100 < 2 THEN 'failed' WHEN i %% 10 = 2 THEN 'dead'
                     ELSE 'succeeded' END,
                0, 0, 0, '', '', now() - random() * interval '8 days'
            FROM generate_series(1, %s) AS i""",
            [ROWS],
        )
        fill_dead_letters(cursor)
        for table in BIG:
            cursor.execute(f"ANALYZE {table}")
    monkeypatch.setattr(EstimatedCountPaginator, "threshold", 100)


def fill_dead_letters(cursor: Any, waiting: int | None = None) -> None:
    """A dead letter for every dead job; all still waiting, or only the first ``waiting`` of
    them with the rest requeued. Written by one INSERT, so the table and its indexes hold no
    dead row versions (an UPDATE inside the test's transaction would leave them in the index
    until a VACUUM that never comes, which production's autovacuum does not resemble)."""
    jobs, dead = BIG
    requeued = "NULL"
    if waiting is not None:
        requeued = f"CASE WHEN n <= {int(waiting)} THEN NULL ELSE now() END"
    cursor.execute(
        f"""INSERT INTO {dead} (job_id, queue, actor, reason, error, attempts, raw,
            failed_at, requeued_at)
        SELECT job_id, queue, actor, 'failed', '', 1, '', updated_at, {requeued}
        FROM (SELECT *, row_number() OVER (ORDER BY id) AS n FROM {jobs}
              WHERE status = 'dead') AS dead_jobs"""
    )


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


READ_AT_MOST = 1_000
"""Rows a page may read from a big table (of ROWS): a page of 50 and what its filter skips."""


def scans(client: Client, name: str, query: str) -> list[tuple[str, str, int]]:
    """(node type, table or index, rows read) of every scan of a big table in the executed
    plans of the page's queries."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse(name) + query)
    assert response.status_code == 200
    assert response.context["cl"].result_list  # something is listed
    return planned(queries)


def planned(queries: CaptureQueriesContext) -> list[tuple[str, str, int]]:
    """(node type, table or index, rows read) of every scan of a big table in the executed
    plans of the ``queries`` captured."""
    found = []
    for sql in (q["sql"] for q in queries.captured_queries):
        if sql.startswith("EXPLAIN") or not any(f'FROM "{table}"' in sql for table in BIG):
            continue
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
            row = cursor.fetchone()
        assert row is not None
        plan = json.loads(row[0]) if isinstance(row[0], str) else row[0]
        found += [
            (
                node["Node Type"],
                node.get("Index Name") or node.get("Relation Name", ""),
                node["Actual Rows"] * node["Actual Loops"] + node.get("Rows Removed by Filter", 0),
            )
            for node in nodes(plan[0]["Plan"])
            if node.get("Relation Name") in BIG or "Index Name" in node
        ]
    assert found  # the page did read the table
    return found


def first_job_id() -> str:
    return JobRecord.objects.order_by("pk").values_list("job_id", flat=True)[0]


@pytest.mark.parametrize(
    ("name", "query"),
    [
        (JOBS, ""),
        (JOBS, "?status__exact=failed"),
        (JOBS, "?actor=actor_3"),
        (JOBS, "?queue=queue_2"),
        (JOBS, "?updated=1h"),
        (JOBS, "?updated=older&status__exact=dead"),
        (JOBS, "?q={job}"),
        (JOBS, "?q=actor_4"),
        (DEAD, ""),
        (DEAD, "?queue=queue_1"),
        (DEAD, "?actor=actor_1"),
        (DEAD, "?reason__exact=failed"),
        (DEAD, "?q={job}"),
    ],
)
def test_changelists_are_served_by_indexes(
    admin_client: Client, filled: None, name: str, query: str
) -> None:
    job = first_job_id()
    if name == DEAD:
        job = DeadLetterRecord.objects.order_by("pk").values_list("job_id", flat=True)[0]
    found = scans(admin_client, name, query.format(job=job[:8]))
    assert not [scan for scan in found if scan[0] == "Seq Scan"], found
    assert max(read for _, _, read in found) <= READ_AT_MOST, found


def test_the_job_id_search_uses_the_pattern_index(admin_client: Client, filled: None) -> None:
    """``LIKE 'x%'`` needs ``varchar_pattern_ops`` unless the database's collation is C."""
    found = scans(admin_client, JOBS, f"?q={first_job_id()[:6]}")
    like = [where for _, where, _ in found if "job_id" in where and where.endswith("_like")]
    assert like, found  # Django's own varchar_pattern_ops index of the unique job_id
    assert max(read for _, _, read in found) <= 100, found


@pytest.mark.parametrize("name", [JOBS, DEAD])
def test_every_sort_a_list_offers_is_served_by_an_index(
    admin_client: Client, filled: None, name: str
) -> None:
    """The column headers link only the orders an index gives (newest or oldest first): a
    click on another column would sort the whole table."""
    html = admin_client.get(reverse(name)).content.decode()
    orders = set(re.findall(r'href="\?o=([-0-9.]+)"', html))
    assert orders
    for order in orders:
        found = scans(admin_client, name, f"?o={order}")
        assert not [scan for scan in found if scan[0] == "Seq Scan"], (order, found)
        assert max(read for _, _, read in found) <= READ_AT_MOST, (order, found)


def test_the_monitor_reads_failures_and_running_jobs_by_index(filled: None) -> None:
    """Once operators have requeued nearly every dead letter, the monitor's failures still
    read only the letters left (a partial index), and its running jobs only the running rows."""
    JobRecord.objects.filter(pk__in=JobRecord.objects.order_by("pk").values("pk")[:5]).update(
        status=JobStatus.RUNNING, started_at=timezone.now()
    )
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {DeadLetterRecord._meta.db_table}")  # transactional
        fill_dead_letters(cursor, waiting=3)
        for table in BIG:
            cursor.execute(f"ANALYZE {table}")
    with CaptureQueriesContext(connection) as queries:
        assert len([f for f in failures() if f["kind"] == "dead"]) == 3
        assert len(running_jobs(timezone.now(), live=False, timeout=1.0)) == 5
    found = planned(queries)
    assert not [scan for scan in found if scan[0] == "Seq Scan"], found
    assert max(read for _, _, read in found) <= 100, found
