"""Fixtures of the Django tests: a real redis-server, one key prefix per test, a worker.

Every test points ``REPID`` at the session's redis-server (``tests/conftest.py``) with its own
key prefix, so tests never see each other's jobs; ``REPID_*`` variables of the environment are
removed so that they cannot change what a test configures.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.core.management import call_command

from repid_django import Connection, conf, get_connection

Settings = Any


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``postgres`` (PostgreSQL's own statistics) run in make test's PostgreSQL
    pass; on another database they are deselected, not skipped."""
    from django.db import connection

    if connection.vendor == "postgresql":
        return
    kept = [item for item in items if item.get_closest_marker("postgres") is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


@pytest.fixture(autouse=True)
def repid_settings(
    settings: Settings,
    redis_url: str,
    key_prefix: str,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, Any]]:
    for name in list(os.environ):
        if name.startswith(conf.ENV_PREFIX):
            monkeypatch.delenv(name)
    settings.REPID = {**settings.REPID, "BROKER_URL": redis_url, "PREFIX": key_prefix}
    yield settings.REPID
    conf.reset()


@pytest.fixture
def run_worker() -> Callable[..., str]:
    """Run ``manage.py runworker --burst`` in this process; returns what it wrote to stderr."""

    def run(*args: str) -> str:
        from io import StringIO

        err = StringIO()
        call_command("runworker", "--burst", "--no-reload", *args, stderr=err)
        return err.getvalue()

    return run


@pytest.fixture
def aconnection() -> Connection:
    """The default connection, as async code finds it. It is never disconnected between
    tests: every test runs on a loop of its own, and the connection must cope with that."""
    return get_connection()
