"""``python -m bench.scale``: what the admin costs as the mirror grows (issue 12).

Fills the mirror tables of a scratch PostgreSQL database (``INSERT ... SELECT generate_series``:
several actors and queues, most jobs succeeded and some failed, dead-lettered (1%, each with
its dead letter), cancelled, waiting or retrying, timestamps spread over 7 days; 200 running), runs
``VACUUM ANALYZE``, and times the admin pages an operator uses with Django's test client logged in
as a superuser, warm, the median of ``--runs`` rounds; then the monitor's snapshot. It grows the
tables from one size to the next and prints each time with its ratio to the first size.

Redis plays no part: the broker URL points at a closed port, so the pages' live reads (queue
depths, a job's progress) fail at once and show the mirrored figures; what is timed is the
Django and database work. The tables are emptied first: use a database of its own, never one
with real data (the command refuses a jobs table it did not fill).

    .venv/bin/python -m bench.scale --database-url postgres://repid:repid@127.0.0.1:54330/repid \
        --sizes 10000,1000000,10000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MARK = "bench-scale"
"""The ``worker`` of every row the benchmark writes (it refuses to empty any other table)."""

ACTORS = (  # name, queue, share of the jobs in percent
    ("send_email", "emails", 30),
    ("resize_image", "images", 20),
    ("sync_inventory", "default", 15),
    ("notify_webhook", "webhooks", 12),
    ("charge_card", "payments", 10),
    ("generate_report", "reports", 5),
    ("cleanup", "default", 5),
    ("index_search", "default", 3),
)
STATUSES = (  # status, share in per mille
    ("queued", 5),
    ("retrying", 1),
    ("failed", 20),
    ("dead", 10),
    ("cancelled", 5),
    ("succeeded", 959),
)
RUNNING = 200
"""Jobs running at every size: a fleet's concurrency (10 workers of 20), not a share of the
table (the mirror ends every job that ran)."""
SPREAD_DAYS = 7


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    p.add_argument("--database-url", required=True, help="a scratch PostgreSQL database")
    p.add_argument("--sizes", default="10000,1000000,10000000", help="jobs, ascending")
    p.add_argument("--runs", type=int, default=5, help="timed rounds per page (median)")
    p.add_argument("--no-write", action="store_true", help="print only, no results file")
    p.add_argument(
        "--explain",
        action="store_true",
        help="at the largest size, print EXPLAIN ANALYZE of each page's queries on the big tables",
    )
    args = p.parse_args(argv)
    args.sizes = [int(size) for size in args.sizes.split(",")]
    if args.sizes != sorted(args.sizes):
        p.error("--sizes must be ascending (the tables grow from one to the next)")
    return args


def setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["REPID_BROKER_URL"] = "redis://127.0.0.1:9/0"  # closed: no Redis at all
    os.environ["DJANGO_DEBUG"] = "false"
    os.environ["DJANGO_SETTINGS_MODULE"] = "example_project.settings"
    import django

    django.setup()
    logging.getLogger("repid_django").setLevel(logging.CRITICAL)  # "Redis unavailable"
    from django.conf import settings
    from django.core.management import call_command

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        sys.exit("bench.scale measures PostgreSQL: give a postgres:// --database-url")
    settings.ALLOWED_HOSTS = ["testserver"]
    call_command("migrate", verbosity=0)


def pick(expression: str, shares: tuple[tuple[str, str, int], ...], column: int) -> str:
    """A ``CASE`` giving each share of ``expression`` (0..total-1) its value."""
    parts, upto = [], 0
    for share in shares:
        upto += share[2]
        parts.append(f"WHEN {expression} < {upto} THEN '{share[column]}'")
    return "CASE " + " ".join(parts) + " END"


def fill_sql(tables: dict[str, str]) -> tuple[str, str]:
    """The two statements that add jobs ``%(start)s..%(end)s`` and their dead letters."""
    actor_bucket = "(abs(hashtext('a' || i)) %% 100)"
    status_bucket = "(abs(hashtext('s' || i)) %% 1000)"
    statuses = tuple((s, s, share) for s, share in STATUSES)
    jobs = f"""
    INSERT INTO {tables["jobs"]} (job_id, actor, queue, status, priority, args, attempt,
        max_retries, result, error, worker, enqueued_at, started_at, finished_at, retry_at,
        updated_at)
    SELECT md5('job' || i), x.actor, x.queue, x.status, 0, jsonb_build_object('n', i),
        CASE WHEN x.status IN ('failed', 'dead') THEN 2 ELSE 0 END, 2,
        CASE WHEN x.status = 'succeeded' THEN jsonb_build_object('ok', i) END,
        CASE WHEN x.status IN ('failed', 'dead')
            THEN E'Traceback (most recent call last):\\n  File "tasks.py", line 12\\n'
                 || 'ValueError: card ' || i || ' declined' ELSE '' END,
        '{MARK}', x.at - interval '3 seconds',
        CASE WHEN x.status <> 'queued' THEN x.at - interval '2 seconds' END,
        CASE WHEN x.status IN ('failed', 'dead', 'cancelled', 'succeeded') THEN x.at END,
        CASE WHEN x.status = 'retrying' THEN x.at + interval '30 seconds' END,
        x.at
    FROM generate_series(%(start)s::bigint, %(end)s::bigint) AS i,
    LATERAL (SELECT {pick(actor_bucket, ACTORS, 0)} AS actor,
                    {pick(actor_bucket, ACTORS, 1)} AS queue,
                    {pick(status_bucket, statuses, 0)} AS status,
                    %(now)s - random() * interval '{SPREAD_DAYS} days' AS at) AS x
    """
    dead = f"""
    INSERT INTO {tables["dead"]} (job_id, queue, actor, reason, error, args, attempts, raw,
        failed_at, requeued_at, purged_at)
    SELECT job_id, queue, actor, CASE WHEN id %% 5 = 0 THEN 'timeout' ELSE 'failed' END, error,
        args, 3, '', updated_at,
        CASE WHEN id %% 50 = 0 THEN updated_at + interval '1 hour' END, NULL
    FROM {tables["jobs"]} WHERE id > %(after)s AND status = 'dead'
    """
    return jobs, dead


def reset(tables: dict[str, str]) -> None:
    from django.db import connection

    from repid_django.models import JobRecord

    if JobRecord.objects.exclude(worker=MARK).exists():
        sys.exit("the jobs table holds rows bench.scale did not write: give a scratch database")
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables['jobs']}, {tables['dead']} RESTART IDENTITY")
        cursor.execute(
            f"""INSERT INTO {tables["jobs"]} (job_id, actor, queue, status, priority, args,
                attempt, max_retries, error, worker, enqueued_at, started_at, updated_at)
            SELECT md5('running' || i), 'resize_image', 'images', 'running', 0, NULL, 0, 2,
                '', '{MARK}', now() - interval '10 minutes', now() - i * interval '1 second',
                now() - i * interval '1 second'
            FROM generate_series(1, {RUNNING}) AS i"""
        )


def grow(tables: dict[str, str], start: int, end: int, now: dt.datetime) -> float:
    """Add jobs ``start..end`` (and their dead letters); seconds it took, ANALYZE included."""
    from django.db import connection

    jobs, dead = fill_sql(tables)
    began = time.perf_counter()
    step = 1_000_000
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT coalesce(max(id), 0) FROM {tables['jobs']}")
        (after,) = cursor.fetchone() or (0,)
        for first in range(start, end + 1, step):
            last = min(end, first + step - 1)
            cursor.execute(jobs, {"start": first, "end": last, "now": now})
            print(f"  jobs {last:,} of {end:,}", file=sys.stderr)
        cursor.execute(dead, {"after": after})
        for table in tables.values():
            cursor.execute(f"VACUUM ANALYZE {table}")
    return time.perf_counter() - began


def seed_small_tables() -> None:
    from django.utils import timezone

    from repid_django.models import QueueRecord, WorkerRecord

    for _, queue, _ in ACTORS:
        QueueRecord.objects.get_or_create(name=queue)
    for n in range(3):
        WorkerRecord.objects.update_or_create(
            worker_id=f"{MARK}-{n}",
            defaults={
                "host": "bench",
                "pid": 1000 + n,
                "queues": ["default", "emails"],
                "started_at": timezone.now(),
                "last_heartbeat": timezone.now(),
            },
        )


def pages() -> list[tuple[str, str]]:
    """(label, URL) of every page timed; the job and prefix are read from the table."""
    from repid_django.admin.paginator import MAX_PAGES
    from repid_django.models import JobRecord

    last = JobRecord.objects.order_by("-pk").values_list("pk", flat=True).first() or 1
    middle = JobRecord.objects.filter(pk__gte=last // 2).order_by("pk")
    pk, job_id = middle.values_list("pk", "job_id").first() or (1, "0")
    jobs = "/admin/repid_django/jobrecord/"
    return [
        ("jobs, page 1", jobs),
        (f"jobs, page {MAX_PAGES} (the deepest)", f"{jobs}?p={MAX_PAGES}"),
        ("jobs, status failed", f"{jobs}?status__exact=failed"),
        ("jobs, actor charge_card", f"{jobs}?actor=charge_card"),
        ("jobs, queue reports", f"{jobs}?queue=reports"),
        ("jobs, updated in the last hour", f"{jobs}?updated=1h"),
        ("jobs, search job id prefix (8)", f"{jobs}?q={job_id[:8]}"),
        ("jobs, search actor prefix", f"{jobs}?q=charge"),
        ("a job's change page", f"{jobs}{pk}/change/"),
        ("dead letters, page 1", "/admin/repid_django/deadletterrecord/"),
        ("dashboard (app index)", "/admin/repid_django/"),
        ("admin index", "/admin/"),
    ]


Timing = tuple[float, float]
"""Milliseconds: the whole call, and the database's part of it (every query's execute)."""


def timed(action: Callable[[], Any], runs: int) -> Timing:
    """Medians over ``runs`` calls of ``action`` after one warm-up call."""
    from django.db import connection

    in_sql = [0.0]

    def clock(execute: Callable[..., Any], *args: Any) -> Any:
        began = time.perf_counter()
        try:
            return execute(*args)
        finally:
            in_sql[0] += time.perf_counter() - began

    action()  # warm
    spent, sql = [], []
    with connection.execute_wrapper(clock):
        for _ in range(runs):
            in_sql[0] = 0.0
            began = time.perf_counter()
            action()
            spent.append(time.perf_counter() - began)
            sql.append(in_sql[0])
    return statistics.median(spent) * 1000, statistics.median(sql) * 1000


def superuser() -> Any:
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(
        username=MARK, defaults={"is_staff": True, "is_superuser": True}
    )
    return user


def measure(runs: int) -> dict[str, Timing]:
    from django.test import Client

    from repid_django.monitor.snapshot import build_snapshot

    client = Client()
    client.force_login(superuser())

    def get(url: str) -> Callable[[], Any]:
        def run() -> None:
            response = client.get(url)
            if response.status_code != 200:
                raise SystemExit(f"{url}: HTTP {response.status_code}")

        return run

    found = {label: timed(get(url), runs) for label, url in pages()}
    found["monitor snapshot (build_snapshot)"] = timed(lambda: build_snapshot(timeout=0.5), runs)
    return found


def explain() -> None:
    """EXPLAIN ANALYZE of every query of every page that reads the jobs or dead-letter table."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(superuser())
    big = ("repid_django_jobrecord", "repid_django_deadletterrecord")
    for label, url in pages():
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        print(f"\n## {label}: {url}")
        for query in queries.captured_queries:
            sql = query["sql"]
            if not any(f'FROM "{name}"' in sql for name in big) or sql.startswith("EXPLAIN"):
                continue
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql)
                plan = "\n    ".join(row[0] for row in cursor.fetchall())
            print(f"  {sql[:300]}\n    {plan}")


def table(sizes: list[int], results: dict[int, dict[str, Timing]]) -> str:
    """Each page's time at each size (its database part in brackets) and its ratio to the
    first size's."""
    first = sizes[0]
    head = "| page | " + " | ".join(f"{size:,} jobs" for size in sizes) + " |"
    lines = [head, "|---" * (len(sizes) + 1) + "|"]
    for label, (base, _) in results[first].items():
        cells = []
        for size in sizes:
            ms, sql = results[size][label]
            ratio = "" if size == first else f" **{ms / base:.2f}x**"
            cells.append(f"{ms:.1f} ms (SQL {sql:.1f}){ratio}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe(fills: dict[int, float]) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        (version,) = cursor.fetchone() or ("?",)
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('repid_django_jobrecord'))")
        (size,) = cursor.fetchone() or ("?",)
    filled = ", ".join(f"{n:,} in {s:.0f} s" for n, s in fills.items())
    return (
        f"PostgreSQL {version} on {platform.processor() or platform.machine()} "
        f"({os.cpu_count()} cores), Python {platform.python_version()}; jobs table at the "
        f"largest size: {size} with its indexes; filled (insert + VACUUM ANALYZE, cumulative "
        f"sizes): {filled}."
    )


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    setup(args.database_url)
    from django.db import connection
    from django.utils import timezone

    from repid_django.models import DeadLetterRecord, JobRecord

    tables = {"jobs": JobRecord._meta.db_table, "dead": DeadLetterRecord._meta.db_table}
    reset(tables)
    seed_small_tables()
    now = timezone.now()
    results: dict[int, dict[str, Timing]] = {}
    fills: dict[int, float] = {}
    filled = 0
    for size in args.sizes:
        print(f"filling to {size:,} jobs", file=sys.stderr)
        fills[size] = grow(tables, filled + 1, size, now)
        filled = size
        results[size] = measure(args.runs)
        print(table(args.sizes[: len(results)], results), file=sys.stderr)
    if args.explain:
        explain()
    connection.close()
    stamp = dt.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    report = (
        f"# Admin at scale, {stamp}\n\n"
        f"`python -m bench.scale --sizes {','.join(map(str, args.sizes))} --runs {args.runs}`; "
        f"median of {args.runs} warm requests (Django test client, superuser; no Redis); in "
        "brackets the time spent in the database's queries; the ratio is to the first size.\n"
        f"{describe(fills)}\n\n{table(args.sizes, results)}\n"
    )
    print(report)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"scale-{stamp}.md").write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
