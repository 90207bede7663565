"""Views that enqueue, served by real servers and hit by concurrent requests.

gunicorn runs the WSGI app with two forked workers of eight threads each, after ``--preload``
imported the project and enqueued a job in the master (so the workers are forked from a process
that has used its connection); uvicorn and Daphne run the ASGI app with its async view. Every
request that got an id back is a job that must run exactly once.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from repid_django import conf, get_connection
from tests.django.testapp.models import Note

from ..redis_server import free_port

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 160


@pytest.fixture
def on_test_redis(
    settings: Any, redis_url: str, key_prefix: str, redis_client: Any
) -> Iterator[str]:
    settings.REPID = {**settings.REPID, "BROKER_URL": redis_url, "PREFIX": key_prefix}
    yield key_prefix
    conf.reset()


@contextmanager
def serving(command: list[str], redis_url: str, prefix: str, **env: str) -> Iterator[str]:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("REPID_")}
    environ.update(
        DJANGO_SETTINGS_MODULE="tests.django.settings",
        REPID_TEST_DB_NAME=str(connection.settings_dict["NAME"]),
        REPID_BROKER_URL=redis_url,
        REPID_PREFIX=prefix,
        PYTHONPATH=str(ROOT),
        **env,
    )
    args = [arg.replace("{port}", str(port)) for arg in command]
    server = subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if server.poll() is not None:
                raise AssertionError(
                    f"{args[0]} exited: {server.stderr.read() if server.stderr else ''}"
                )
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"{args[0]} did not listen within 30 s")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()


def hit(url: str, count: int = REQUESTS) -> list[str]:
    """``count`` GETs of ``url`` from 16 threads at once; the job ids the view answered."""

    def one(_: int) -> str:
        with urllib.request.urlopen(url, timeout=30) as reply:
            assert reply.status == 200
            return str(json.loads(reply.read())["id"])

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(count)))


def run_everything(ids: list[str], tag: str, extra: int = 0) -> None:
    """Run a burst worker; every acknowledged job ran once and succeeded."""
    call_command("runworker", "--burst", "--no-reload")
    assert Note.objects.filter(tag=tag).count() == len(ids)
    results = get_connection().results_broker
    assert results is not None
    for job_id in ids:
        result = results.get_result_sync(job_id, "default")
        assert result is not None, f"job {job_id} was acknowledged but never ran"
        assert result.success, result.exception


def test_gunicorn_threads_after_preload_fork(on_test_redis: str, redis_url: str) -> None:
    command = ["gunicorn", "tests.e2e.webapp:application", "--preload", "--workers", "2"]
    command += ["--threads", "8", "--bind", "127.0.0.1:{port}", "--log-level", "warning"]
    with serving(command, redis_url, on_test_redis, REPID_TEST_PRELOAD_TAG="preload") as url:
        ids = hit(f"{url}/enqueue/sync/")
    assert len(set(ids)) == REQUESTS
    run_everything(ids, "sync")
    assert Note.objects.filter(tag="preload").count() == 1


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
def test_asgi_server_async_view(on_test_redis: str, redis_url: str, server: str) -> None:
    if server == "uvicorn":
        command = ["uvicorn", "tests.e2e.webapp:asgi_application", "--port", "{port}"]
        command += ["--log-level", "warning"]
    else:
        command = ["daphne", "-b", "127.0.0.1", "-p", "{port}", "tests.e2e.webapp:asgi_application"]
    with serving(command, redis_url, on_test_redis) as url:
        ids = hit(f"{url}/enqueue/async/")
        ids += hit(f"{url}/enqueue/sync/", 40)  # a sync view under an ASGI server: a thread
    assert len(set(ids)) == REQUESTS + 40
    run_everything(ids[:REQUESTS], "async")
    assert Note.objects.filter(tag="sync").count() == 40
