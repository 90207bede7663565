"""``manage.py repid_health``: exit codes and one-line reasons.

Rows of the worker table (what the ORM mirror writes at every heartbeat) give the cases with
exact ages in-process; then a real worker (the Django worker on its own event loop in this
process, heartbeats every 0.5 s) is checked by the command run as a subprocess while it is
alive, while its event loop is blocked (hung: its heartbeat goes stale), after it recovers,
and once it stopped.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from contextlib import AbstractContextManager
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from repid_django import Job, Queue, Router
from repid_django.engine.worker.worker import Worker
from repid_django.models import WorkerRecord
from tests.redis_server import free_port

from . import workers
from .test_runworker import worker_env
from .workers import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()


def health(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("repid_health", *args, stdout=out, stderr=err)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def beat(worker_id: str, seconds_ago: float, *, host: str = HOST, state: str = "running") -> None:
    now = timezone.now()
    WorkerRecord.objects.create(
        worker_id=worker_id,
        host=host,
        pid=1,
        state=state,
        started_at=now - timedelta(hours=1),
        last_heartbeat=now - timedelta(seconds=seconds_ago),
    )


def test_a_fresh_heartbeat_and_redis_answering_is_healthy() -> None:
    beat(f"{HOST}:1:aaaa", 2)
    code, out, err = health()
    assert (code, err) == (0, "")
    assert out.startswith(f"healthy: worker {HOST}:1:aaaa sent a heartbeat 2.")
    assert "Redis answers at redis://" in out


def test_no_heartbeat_from_this_host(settings: Any) -> None:
    beat("elsewhere:1:aaaa", 1, host="elsewhere")
    code, _, err = health()
    assert code == 1
    assert err.strip() == f"unhealthy: no worker heartbeat from this host ({HOST})"
    assert health("--host", "elsewhere")[0] == 0
    settings.REPID = {**settings.REPID, "MIRROR": False}
    assert "the ORM mirror, which records heartbeats, is off" in health()[2]


def test_a_stale_heartbeat_names_its_age() -> None:
    beat(f"{HOST}:7:old", 100)
    code, _, err = health()
    assert code == 1
    assert err.strip() == (
        f"unhealthy: heartbeat stale for 100 s (worker {HOST}:7:old, max age 30 s)"
    )
    assert health("--max-age", "120")[0] == 0


def test_the_newest_heartbeat_of_the_host_counts() -> None:
    """A restarted container keeps its host name: the dead worker's row must not fail it."""
    beat(f"{HOST}:1:before-restart", 600)
    beat(f"{HOST}:1:after-restart", 1)
    assert health()[0] == 0


def test_a_stopped_worker() -> None:
    beat(f"{HOST}:3:bye", 4, state="stopped")
    code, _, err = health()
    assert code == 1
    assert err.strip() == f"unhealthy: worker {HOST}:3:bye stopped 4 s ago"


def test_a_named_worker() -> None:
    beat(f"{HOST}:10:aaaa", 1)
    beat(f"{HOST}:11:bbbb", 500)
    assert health("--worker", f"{HOST}:11")[0] == 1
    assert health("--worker", f"{HOST}:11:bbbb", "--max-age", "600")[0] == 0
    assert health("--worker", f"{HOST}:10")[0] == 0
    code, _, err = health("--worker", f"{HOST}:1")  # a prefix only up to a ':'
    assert code == 1
    assert f"no worker heartbeat from worker {HOST}:1" in err


def test_redis_unreachable_is_named_without_its_password(settings: Any) -> None:
    beat(f"{HOST}:1:aaaa", 1)
    port = free_port()
    settings.REPID = {**settings.REPID, "BROKER_URL": f"redis://:s3cret@127.0.0.1:{port}/0"}
    started = time.monotonic()
    code, _, err = health("--timeout", "1")
    assert code == 1
    assert err.startswith(f"unhealthy: Redis unreachable at redis://:***@127.0.0.1:{port}/0 (")
    assert "s3cret" not in err
    assert err.count("\n") == 1  # one line
    assert time.monotonic() - started < 5
    assert health("--redis-only", "--timeout", "1")[0] == 1


def test_redis_only() -> None:
    code, out, _ = health("--redis-only")
    assert code == 0
    assert out.startswith("healthy: Redis answers at redis://")


# ------------------------------------------------------------------- with a real worker

router = Router()
RELEASE = threading.Event()
BLOCKED = threading.Event()


@router.actor(name="h_block_loop")
async def block_loop() -> None:
    """Blocks the worker's event loop (a hung worker) until released, 30 s at most."""
    BLOCKED.set()
    RELEASE.wait(30)


def running_worker() -> AbstractContextManager[Worker]:
    return workers.running_worker(
        lambda worker: True,
        RELEASE.set,
        router=router,
        queues=["default"],
        heartbeat_interval=0.5,
    )


def heartbeat_age(worker_id: str) -> float:
    record = WorkerRecord.objects.get(worker_id=worker_id)
    return (timezone.now() - record.last_heartbeat).total_seconds()


def probe(env: dict[str, str], *args: str) -> tuple[int, str]:
    """The command in a process of its own, as a probe runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "django", "repid_health", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.slow
def test_a_live_a_hung_and_a_stopped_worker(redis_url: str, key_prefix: str) -> None:
    RELEASE.clear()
    BLOCKED.clear()
    Queue("default").declare()
    env = worker_env(redis_url, key_prefix)
    max_age = "3"
    with running_worker() as worker:
        wait_for(lambda: WorkerRecord.objects.filter(worker_id=worker.id).exists(), 10, "a row")
        first = WorkerRecord.objects.get(worker_id=worker.id).last_heartbeat
        wait_for(
            lambda: WorkerRecord.objects.get(worker_id=worker.id).last_heartbeat > first,
            5,
            "a second heartbeat",
        )
        code, text = probe(env, "--max-age", max_age)
        assert code == 0, text
        assert text.startswith(f"healthy: worker {worker.id} sent a heartbeat")

        Job("h_block_loop").enqueue()
        assert BLOCKED.wait(10), "the blocking job did not start"
        wait_for(lambda: heartbeat_age(worker.id) > 3.5, 15, "the heartbeat to go stale")
        code, text = probe(env, "--max-age", max_age)
        assert code == 1, text
        assert text.startswith("unhealthy: heartbeat stale for ")
        assert f"(worker {worker.id}, max age 3 s)" in text

        RELEASE.set()  # the loop runs again: heartbeats resume
        wait_for(lambda: heartbeat_age(worker.id) < 1.0, 10, "a fresh heartbeat")
        assert probe(env, "--max-age", max_age)[0] == 0
    code, text = probe(env, "--max-age", max_age)
    assert code == 1, text
    assert text.startswith(f"unhealthy: worker {worker.id} stopped ")
