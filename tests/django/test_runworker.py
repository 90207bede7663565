"""``manage.py runworker``: in-process and as a real subprocess, exit codes, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from repid_django import Job, Queue
from repid_django.management.commands.runworker import EXIT_BROKER_UNREACHABLE
from repid_django.models import JobRecord, JobStatus
from tests.django.testapp import tasks
from tests.django.testapp.models import Note
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(condition: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


def worker_env(redis_url: str, key_prefix: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPID_")}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.django.settings",
        REPID_BROKER_URL=redis_url,
        REPID_PREFIX=key_prefix,
        REPID_TEST_DB_NAME=str(connection.settings_dict["NAME"]),
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def runworker(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "django", "runworker", "--no-reload", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_burst_in_process_runs_every_kind_of_actor(
    run_worker: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run_in_process child opens the test database by name.
    monkeypatch.setenv("REPID_TEST_DB_NAME", str(connection.settings_dict["NAME"]))
    Job("record", args={"tag": "async"}).enqueue()
    Job("sync_record", queue="other", args={"tag": "sync"}).enqueue()
    added = tasks.add.job(store_result=True).build(2, 3)
    added.enqueue()
    child = tasks.child_pid.job().build(tag="child")
    child.enqueue()
    run_worker()
    assert sorted(Note.objects.values_list("tag", flat=True)) == ["async", "child", "sync"]
    result = added.result.value
    assert result is not None
    assert result.data == 5
    child_result = child.result.value
    assert child_result is not None
    assert child_result.success
    assert child_result.data != os.getpid()  # ran in another process
    assert Queue("default").stats().value.ready == 0
    assert Queue("other").stats().value.ready == 0


def test_queues_option_limits_what_is_consumed(run_worker: Callable[..., str]) -> None:
    Job("record", args={"tag": "default"}).enqueue()
    Job("sync_record", queue="other", args={"tag": "other"}).enqueue()
    run_worker("--queues", "other")
    assert list(Note.objects.values_list("tag", flat=True)) == ["other"]
    assert Queue("default").stats().value.ready == 1


def test_messages_limit_stops_after_that_many(run_worker: Callable[..., str]) -> None:
    for index in range(5):
        Job("record", args={"tag": str(index)}).enqueue()
    run_worker("--messages-limit", "2", "--concurrency", "1", "--queues", "default")
    assert Note.objects.count() == 2
    assert Queue("default").stats().value.ready == 3


def test_bad_options_are_command_errors() -> None:
    with pytest.raises(CommandError, match="invalid queue name"):
        call_command("runworker", "--burst", "--queues", "no spaces")
    with pytest.raises(CommandError, match="--concurrency must be at least 1"):
        call_command("runworker", "--burst", "--concurrency", "0")


def test_bad_settings_are_command_errors(settings: Any) -> None:
    settings.REPID = {**settings.REPID, "LEASE_TTL": "long"}
    with pytest.raises(CommandError, match=r"REPID\['LEASE_TTL'\]"):
        call_command("runworker", "--burst")


def test_unreachable_broker_in_process_exits_69(settings: Any) -> None:
    settings.REPID = {**settings.REPID, "BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    with pytest.raises(SystemExit) as info:
        call_command("runworker", "--burst", "--no-reload")
    assert info.value.code == EXIT_BROKER_UNREACHABLE


def test_subprocess_burst_exits_0_with_jobs_done(redis_url: str, key_prefix: str) -> None:
    ids = [Job("record", args={"tag": f"p{i}"}).enqueue().value for i in range(20)]
    process = runworker(worker_env(redis_url, key_prefix), "--burst")
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert Note.objects.filter(tag__startswith="p").count() == 20
    done = JobRecord.objects.filter(job_id__in=ids, status=JobStatus.SUCCEEDED).count()
    assert done == 20


def test_subprocess_unreachable_broker_exits_69_without_the_password(key_prefix: str) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    process = runworker(worker_env(url, key_prefix), "--burst")
    _, err = process.communicate(timeout=60)
    assert process.returncode == EXIT_BROKER_UNREACHABLE
    assert "broker is unreachable" in err
    assert "redis://:***@127.0.0.1" in err
    assert "hunter2" not in err


def test_subprocess_bad_configuration_exits_1(redis_url: str, key_prefix: str) -> None:
    process = runworker(worker_env(redis_url, key_prefix, REPID_CONCURRENCY="0"), "--burst")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "REPID_CONCURRENCY" in err


def test_sigterm_drains_running_jobs_then_exits_0(redis_url: str, key_prefix: str) -> None:
    job = tasks.sleepy.job().build(seconds=1.5)
    job.enqueue()
    process = runworker(worker_env(redis_url, key_prefix))
    try:
        wait_for(lambda: Queue("default").stats().value.running == 1, what="the job to start")
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    result = job.result.value
    assert result is not None
    assert result.success
    assert result.data == 1.5


def test_second_signal_forces_the_stop_and_returns_the_job(redis_url: str, key_prefix: str) -> None:
    tasks.sleepy.enqueue(seconds=30)
    process = runworker(worker_env(redis_url, key_prefix), "--graceful-shutdown-time", "60")
    try:
        wait_for(lambda: Queue("default").stats().value.running == 1, what="the job to start")
        process.send_signal(signal.SIGINT)
        wait_for(lambda: "again to force" in (process.stderr.readline() if process.stderr else ""))
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 1
    stats = Queue("default").stats().value
    assert (stats.ready, stats.running) == (1, 0)  # back in the queue, not lost


@pytest.mark.parametrize(
    ("flag", "expected"), [((), "uvloop.Loop"), (("--loop", "asyncio"), "asyncio.unix_events")]
)
def test_worker_runs_on_uvloop_when_installed(
    run_worker: Callable[..., str], flag: tuple[str, ...], expected: str
) -> None:
    job = Job("loop_kind")
    job.enqueue()
    run_worker(*flag)
    result = job.result.value
    assert result is not None
    assert result.success
    assert str(result.data).startswith(expected)
