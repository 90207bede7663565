"""A real worker (in this process, on its own event loop) against a real redis-server fires the
schedules of the table, and follows edits made in the admin within seconds: a new interval and
new args, then disabled (its ticks are marked handled, no job runs)."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
import redis
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from repid_django.engine.worker.worker import Worker
from repid_django.models import Schedule
from repid_django.worker.schedules import database_source
from tests.django.testapp.models import Note

from . import workers
from .workers import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.slow]


def running_worker() -> AbstractContextManager[Worker]:
    """``runworker``'s worker (the table as its schedule source), on a loop in a thread."""
    return workers.running_worker(
        lambda worker: worker.runner and worker.runner.scheduler,
        mirror=False,
        heartbeat_interval=1.0,
        schedules=database_source(),
    )


@pytest.fixture
def worker() -> Iterator[Worker]:
    with running_worker() as running:
        yield running


@pytest.fixture
def editor(client: Client, django_user_model: Any) -> Client:
    user = django_user_model.objects.create_user("ops", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=("view_schedule", "change_schedule"))
    )
    client.force_login(user)
    return client


def runs(client: redis.Redis, prefix: str) -> list[tuple[int, str]]:
    """(tick in ms, tag) of every run of ``pulse`` that finished (from the stored results)."""
    found = []
    for key in client.scan_iter(match=f"{prefix}:{{default}}:result:sched:pulse:*", count=1000):
        tick = int(key.decode().rsplit(":", 1)[1])
        found.append((tick, json.loads(client.get(key) or b"{}")["data"]["tag"]))
    return sorted(found)


def edit(client: Client, row: Schedule, **changes: Any) -> None:
    values = {
        "name": row.name,
        "actor": row.actor,
        "cron": "",
        "every": str(row.every),
        "tz": "",
        "args": json.dumps(row.args),
        "queue": row.queue,
        "priority": str(row.priority),
        "enabled": "on",
        "missed": row.missed,
        **changes,
    }
    values = {k: v for k, v in values.items() if v is not None}
    url = reverse("admin:repid_django_schedule_change", args=(row.pk,))
    answer = client.post(url, values)
    assert answer.status_code == 302, answer.content.decode()[-2000:]


def test_admin_edits_reach_a_running_worker_within_seconds(
    worker: Worker, editor: Client, redis_client: redis.Redis, key_prefix: str
) -> None:
    row = Schedule.objects.create(name="pulse", actor="record", every=1, args={"tag": "one"})
    wait_for(lambda: Note.objects.filter(tag="one").count() >= 2, 10, "two runs every second")

    edit(editor, row, every="2", args='{"tag": "two"}')
    edited = time.monotonic()
    wait_for(lambda: Note.objects.filter(tag="two").count() >= 2, 10, "runs with the new args")
    took = time.monotonic() - edited
    assert took < 2 + 2 + 2 + 1  # refresh (2 s) + the first new tick (2 s) + one more

    seen = runs(redis_client, key_prefix)
    ticks = [tick for tick, _ in seen]
    assert len(ticks) == len(set(ticks))  # no tick twice
    two = [tick for tick, tag in seen if tag == "two"]
    assert all(tick % 2000 == 0 for tick in two)
    assert all(b - a == 2000 for a, b in itertools.pairwise(two))
    one = [tick for tick, tag in seen if tag == "one"]
    assert all(b - a == 1000 for a, b in itertools.pairwise(one))

    edit(editor, row, enabled=None)  # unticked
    runner = worker.runner
    assert runner is not None
    scheduler = runner.scheduler
    assert scheduler is not None
    wait_for(
        lambda: [s.enabled for s in scheduler.schedules if s.name == "pulse"] == [False],
        5,
        "the worker to read the disabled schedule",
    )
    msgs = f"{key_prefix}:{{default}}:msgs"
    wait_for(lambda: redis_client.hlen(msgs) == 0, 10, "the last job before the edit to finish")
    drained_at = time.time()
    before = Note.objects.count()
    marks = f"{key_prefix}:{{default}}:sched"
    # A tick passes while it is disabled: the worker marks it handled and enqueues nothing.
    wait_for(
        lambda: float(redis_client.hget(marks, "pulse") or 0) > drained_at,
        5,
        "a tick handled while disabled",
    )
    assert redis_client.hlen(msgs) == 0
    assert Note.objects.count() == before
