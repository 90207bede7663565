"""Three real ``manage.py runworker`` processes fire one ``every=1`` schedule for 20 seconds:
each tick runs once (20 runs, one per tick second, every job id distinct), also after one of
the workers is killed with SIGKILL halfway (the others fire the next ticks on time: the gap is
measured and printed). There is no beat process and no leader: every worker fires every tick
and the broker enqueues it once.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db import connection

from repid_django import conf
from repid_django.models import Schedule
from tests.django.testapp.models import Note

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 3
WINDOW = 20
"""Seconds of ticks measured."""


def wait_for[T](probe: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


@pytest.fixture
def on_test_redis(
    settings: Any, redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> Iterator[str]:
    settings.REPID = {**settings.REPID, "BROKER_URL": redis_url, "PREFIX": key_prefix}
    yield key_prefix
    conf.reset()


@pytest.fixture
def workers(redis_url: str, on_test_redis: str, tmp_path: Path) -> Iterator[list[Any]]:
    """Three ``runworker`` processes with the schedule in ``REPID_SCHEDULES``; each one's stderr
    goes to a file (read to know it started)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPID_")}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.django.settings",
        REPID_BROKER_URL=redis_url,
        REPID_PREFIX=on_test_redis,
        REPID_TEST_DB_NAME=str(connection.settings_dict["NAME"]),
        REPID_MIRROR="0",  # the runs are read from Redis; SQLite gets only the Notes
        REPID_SCHEDULES=json.dumps(
            {"tick": {"actor": "record", "every": 1, "args": {"tag": "tick"}}}
        ),
        PYTHONPATH=str(ROOT),
    )
    started: list[Any] = []
    for index in range(WORKERS):
        log = (tmp_path / f"worker{index}.log").open("w+")
        process = subprocess.Popen(
            [sys.executable, "-m", "django", "runworker", "--no-reload", "-v", "1"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        started.append((process, log))
    try:
        yield started
    finally:
        for process, _ in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, log in started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def log_of(log: Any) -> str:
    log.flush()
    return Path(log.name).read_text()


def runs(client: redis.Redis, prefix: str) -> dict[int, float]:
    """Tick (ms) -> when its job started (Unix s), from the stored result of every run."""
    found: dict[int, float] = {}
    for key in client.scan_iter(match=f"{prefix}:{{default}}:result:sched:tick:*", count=1000):
        body = json.loads(client.get(key) or b"{}")
        found[int(key.decode().rsplit(":", 1)[1])] = float(body["started_when"])
    return found


def test_three_workers_fire_each_tick_once_even_when_one_is_killed(
    workers: list[Any], redis_client: redis.Redis, key_prefix: str
) -> None:
    for process, log in workers:

        def up(process: Any = process, log: Any = log) -> bool:
            return " started: queues" in log_of(log) or process.poll() is not None

        wait_for(up, 30, "a worker to start")
        assert process.poll() is None, log_of(log)
    assert Schedule.objects.get(name="tick").source == "settings"  # synced by the workers

    start = math.ceil(time.time()) + 1
    end = start + WINDOW  # ticks in [start, end) are measured
    kill_at = start + WINDOW // 2 + 0.5  # half a second after a tick: its job is done
    sleep_until(kill_at)
    victim = workers[1][0]
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    sleep_until(end + 1.5)  # the last tick's job has run
    for process, log in workers:
        if process is not victim:
            assert process.poll() is None, log_of(log)

    found = runs(redis_client, key_prefix)
    ticks = sorted(t for t in found if start * 1000 <= t < end * 1000)
    seconds = [t // 1000 for t in ticks]
    assert all(t % 1000 == 0 for t in ticks)
    assert len(set(seconds)) == len(seconds)  # no tick twice
    assert abs(len(ticks) - WINDOW) <= 1, seconds
    assert seconds == list(range(seconds[0], seconds[-1] + 1)), "a tick was missed"
    runs_recorded = Note.objects.filter(tag="tick").count()
    duplicates = runs_recorded - len(found)
    assert duplicates == 0, f"{runs_recorded} runs of {len(found)} ticks"

    late = {t / 1000: found[t] - t / 1000 for t in ticks}
    after = sorted(t for t in late if t > kill_at)
    started = [found[int(t * 1000)] for t in after]
    gap = max(b - a for a, b in itertools.pairwise(started))
    worst = max(late[t] for t in after)
    won = [log_of(log).count("schedule tick: enqueued job") for _, log in workers]
    print(
        f"\nschedules e2e: {len(ticks)} runs in {WINDOW} s, {duplicates} duplicate(s); after "
        f"SIGKILL of one worker: longest gap between runs {gap:.3f} s, latest start "
        f"{worst:.3f} s after its tick; ticks enqueued by each worker: {won}"
    )
    assert gap < 2.0
    assert worst < 1.5
