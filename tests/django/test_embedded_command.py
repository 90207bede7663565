"""The embedded Redis says where it runs and how to stop it; ``repid_embedded status|stop``."""

from __future__ import annotations

import logging
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from repid_django.engine.brokers.embedded import (
    embedded_running,
    ensure_embedded_redis,
    socket_path,
    stop_embedded_redis,
)

from .test_runworker import runworker, worker_env

pytestmark = pytest.mark.django_db(transaction=True)


def command(*args: str) -> str:
    out = StringIO()
    call_command("repid_embedded", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def embedded(settings: Any, tmp_path: Path) -> Any:
    settings.REPID = {**settings.REPID, "BROKER_URL": None, "EMBEDDED_DIR": str(tmp_path)}
    try:
        yield tmp_path
    finally:
        stop_embedded_redis(tmp_path)


def test_status_and_stop(embedded: Path, caplog: pytest.LogCaptureFixture) -> None:
    sock = socket_path(embedded)
    assert command("status").startswith(f"the embedded Redis is not running (socket {sock}")
    with caplog.at_level(logging.INFO, logger="repid_django.embedded"):
        url = ensure_embedded_redis(embedded)
    assert [r.getMessage() for r in caplog.records] == [
        f"started the embedded Redis on {url} (data in {embedded / '.repid'}); it keeps "
        "running after this process exits: stop it with 'python manage.py repid_embedded "
        f"stop' (or redis-cli -s {sock} shutdown)"
    ]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="repid_django.embedded"):
        assert ensure_embedded_redis(embedded) == url  # already running: nothing to say
    assert caplog.records == []
    assert command("status") == (
        f"the embedded Redis runs (socket {sock}, data in {embedded / '.repid'}); this project "
        "uses it (no BROKER_URL)\n"
    )
    assert command("stop") == f"stopped the embedded Redis (socket {sock}); its data stays\n"
    assert not embedded_running(embedded)
    assert command("stop") == f"the embedded Redis is not running (socket {sock})\n"


def test_status_names_the_broker_in_use(settings: Any, tmp_path: Path) -> None:
    settings.REPID = {
        **settings.REPID,
        "BROKER_URL": "redis://:pw@redis.internal:6379/0",
        "EMBEDDED_DIR": str(tmp_path),
    }
    assert command("status").endswith(
        "; this project uses redis://:***@redis.internal:6379/0 instead\n"
    )


@pytest.mark.slow
def test_a_standalone_runworker_says_where_the_embedded_redis_runs(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    env = worker_env(redis_url, key_prefix, REPID_BROKER_URL="", REPID_EMBEDDED_DIR=str(tmp_path))
    try:
        process = runworker(env, "--burst")
        _out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert "started the embedded Redis on unix://" in err
        assert "python manage.py repid_embedded stop" in err
        assert embedded_running(tmp_path)  # left running for the next process, as it said
    finally:
        stop_embedded_redis(tmp_path)
    assert not embedded_running(tmp_path)
