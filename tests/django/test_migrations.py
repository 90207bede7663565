"""The app's migrations: they match the models, and on PostgreSQL the indexes added to tables
that may already be big build with ``CREATE INDEX CONCURRENTLY`` (the workers' writes go on),
including after an interrupted build left an invalid index behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.utils import IntegrityError
from django.test.utils import CaptureQueriesContext

from repid_django.models import JobRecord

ONLINE = ("0006_admin_scale_indexes", "0007_monitor_indexes")
INDEXES = {
    "repid_dead_failed",
    "repid_dead_actor_failed",
    "repid_dead_job_id",
    "repid_job_queue_upd",
    "repid_job_actor_upd",
    "repid_dead_waiting",
    "repid_job_status_started",
}


@pytest.mark.django_db
def test_the_migrations_match_the_models() -> None:
    """No model change is left without its migration (``makemigrations --check`` exits 1)."""
    call_command("makemigrations", "repid_django", "--check", "--dry-run", verbosity=0)


@pytest.fixture
def before_the_indexes() -> Iterator[None]:
    """The app migrated back to before the online indexes, and forward again afterwards."""
    call_command("migrate", "repid_django", "0005", verbosity=0)
    try:
        yield
    finally:
        call_command("migrate", "repid_django", verbosity=0)


def valid_indexes() -> dict[str, bool]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, i.indisvalid FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = ANY(%s)",
            [sorted(INDEXES)],
        )
        return dict(cursor.fetchall())


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_indexes_build_concurrently_on_postgres(before_the_indexes: None) -> None:
    assert valid_indexes() == {}
    with CaptureQueriesContext(connection) as queries:
        call_command("migrate", "repid_django", verbosity=0)
    built = [q["sql"] for q in queries.captured_queries if "CREATE INDEX" in q["sql"]]
    assert len(built) == len(INDEXES), built
    assert all(sql.startswith("CREATE INDEX CONCURRENTLY") for sql in built), built
    assert valid_indexes() == dict.fromkeys(INDEXES, True)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_interrupted_build_is_built_again(before_the_indexes: None) -> None:
    """A concurrent build that failed leaves an invalid index of the same name; ``migrate``
    drops it and builds the index, instead of stopping on "already exists"."""
    call_command("migrate", "repid_django", ONLINE[0], verbosity=0)
    table = JobRecord._meta.db_table
    JobRecord.objects.bulk_create(
        [JobRecord(job_id=f"j{i}", actor="a", queue="q", status="running") for i in range(2)]
    )
    with pytest.raises(IntegrityError), connection.cursor() as cursor:  # duplicates: it fails
        cursor.execute(
            f'CREATE UNIQUE INDEX CONCURRENTLY "repid_job_status_started" ON "{table}" (status)'
        )
    assert valid_indexes() == {name: True for name in INDEXES if "dead_waiting" not in name} | {
        "repid_job_status_started": False
    }
    try:
        call_command("migrate", "repid_django", verbosity=0)
        assert valid_indexes() == dict.fromkeys(INDEXES, True)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'repid_job_status_started'"
            )
            row = cursor.fetchone()
        assert row is not None
        assert "UNIQUE" not in row[0], row
        assert "started_at" in row[0], row
    finally:
        JobRecord.objects.all().delete()
