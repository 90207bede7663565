"""Which database the Django tests run on: ``DATABASE_URL`` (``make test``'s PostgreSQL pass)
must really select it, or that pass would test SQLite twice."""

from __future__ import annotations

import os

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def test_the_database_is_the_one_database_url_names() -> None:
    url = os.environ.get("DATABASE_URL", "")
    scheme = url.split("://", 1)[0] if url else "sqlite"
    expected = {"postgres": "postgresql", "postgresql": "postgresql", "mysql": "mysql"}
    assert connection.vendor == expected.get(scheme, scheme)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
