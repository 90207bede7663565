"""Pause and cancel with a real worker (the Django worker, with the ORM mirror, on its own
event loop in this process) and a real redis-server.

* Pause: with 1,000 jobs waiting in a paused queue the worker starts none for a second; after
  resume it runs them all. Paused again while they flow, it starts none after one second.
* Cancel: a running async, sync and ``run_in_process`` actor, cancelled through ``ops`` or the
  admin, each stops within ``STOP_BOUND`` seconds, is recorded cancelled (job row and dead
  letter) and is never retried. Progress appears on the admin's job page and in the monitor.
"""

from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from repid_django import Job, Queue, enqueue_many, ops
from repid_django.engine.worker.worker import Worker
from repid_django.models import DeadLetterRecord, JobRecord, JobStatus
from repid_django.monitor.snapshot import build_snapshot

from . import cancel_actors, workers
from .test_admin import PREFIX, login, op_url
from .workers import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

STOP_BOUND = 2.0
"""Seconds from the cancel to the actor's end: the worker polls for stop requests every 0.5 s
(so about 1.5 s at worst), plus slack for a busy machine."""


def running_worker(**options: Any) -> AbstractContextManager[Worker]:
    """The Django worker for :mod:`.cancel_actors`, on a loop in a thread."""
    return workers.running_worker(
        router=cancel_actors.router, queues=["default"], heartbeat_interval=1.0, **options
    )


# -------------------------------------------------------------------------------- pause


@pytest.mark.slow
def test_a_paused_queue_starts_nothing_and_resume_runs_everything() -> None:
    cancel_actors.STARTS.clear()
    Queue("default").declare()
    with running_worker(mirror=False, concurrency=10) as worker:
        ops.pause_queue("default")
        enqueue_many([Job("counted", args={"n": n}) for n in range(1000)])
        # A whole second of claims: none may start a job of the paused queue.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert cancel_actors.STARTS == []
            time.sleep(0.01)
        stats = Queue("default").stats().value
        assert (stats.ready, stats.running, stats.paused) == (1000, 0, True)

        ops.resume_queue("default")
        wait_for(lambda: len(cancel_actors.STARTS) >= 100, 10, "jobs to run after resume")
        ops.pause_queue("default")  # again, while they flow
        paused_at = time.monotonic()
        at_pause = len(cancel_actors.STARTS)
        time.sleep(1.0)  # jobs claimed before the pause may still start within this second
        seen = len(cancel_actors.STARTS)
        while time.monotonic() < paused_at + 2.0:  # ... but none after it
            assert len(cancel_actors.STARTS) == seen
            time.sleep(0.01)
        assert seen < 1000
        print(f"\npause: {seen - at_pause} job(s) claimed before the pause started after it")

        ops.resume_queue("default")
        wait_for(lambda: len(cancel_actors.STARTS) == 1000, 60, "every job to run")
        runner = worker.runner
        assert runner is not None
        wait_for(lambda: runner.succeeded == 1000, 10, "every job to finish")
    assert sorted(cancel_actors.STARTS) == list(range(1000))  # each once
    assert Queue("default").stats().value.ready == 0


# ------------------------------------------------------------------------------- cancel


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def manager(client: Client, django_user_model: Any) -> Client:
    login(client, django_user_model, manage=True)
    return client


@pytest.mark.parametrize("via", ["ops", "admin"])
@pytest.mark.parametrize("kind", ["async", "sync", "process"])
def test_cancel_a_running_job(
    kind: str, via: str, manager: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import connection

    # The process actor's child sets Django up with the test database.
    monkeypatch.setenv("REPID_TEST_DB_NAME", str(connection.settings_dict["NAME"]))
    tag = f"{kind}-{via}"
    pid_file = tmp_path / "pid"
    args = {"path": str(pid_file)} if kind == "process" else {"tag": tag}
    with running_worker(mirror=True, concurrency=4) as worker:
        job_id = Job(f"long_{kind}", args=args, retries=3).enqueue().value
        if kind == "process":
            wait_for(lambda: pid_file.exists() and pid_file.read_text(), 30, "the child")
            pid = int(pid_file.read_text())
        else:
            wait_for(lambda: f"{tag} started" in cancel_actors.EVENTS, 10, "the actor")
        record = wait_for(
            lambda: JobRecord.objects.filter(job_id=job_id, status=JobStatus.RUNNING).first(),
            10,
            "the running row",
        )
        if kind == "async" and via == "admin":
            check_progress_is_shown(manager, record)

        asked = time.monotonic()
        if via == "ops":
            assert ops.cancel_job("default", job_id) == "stopping"
        elif kind == "sync":  # the bulk action
            changelist = reverse(f"{PREFIX}_jobrecord_changelist")
            form = {"action": "cancel_selected", "_selected_action": [record.pk], "confirm": "yes"}
            said = [str(m) for m in manager.post(changelist, form, follow=True).context["messages"]]
            assert any(m.startswith("Asked the workers to stop 1 running job(s)") for m in said)
        else:
            answer = manager.post(op_url("jobrecord", "cancel", record.pk), follow=True)
            assert "is running: its worker was asked to stop it" in answer.content.decode()

        if kind == "process":
            wait_for(lambda: not alive(pid), STOP_BOUND + 1, "the child to be terminated")
            took = time.monotonic() - asked
        else:
            wait_for(lambda: f"{tag} stopped" in cancel_actors.EVENTS, STOP_BOUND + 1, "a stop")
            took = cancel_actors.EVENTS[f"{tag} stopped"] - asked
        print(f"\ncancel {tag}: stopped {took:.2f}s after the cancel")
        assert took < STOP_BOUND, f"{tag} stopped {took:.2f}s after the cancel"

        row = wait_for(
            lambda: JobRecord.objects.filter(job_id=job_id, status=JobStatus.CANCELLED).first(),
            10,
            "the row to read cancelled",
        )
        runner = worker.runner
        assert runner is not None
        wait_for(lambda: runner.cancelled == 1, 5, "the worker to count it")
        assert (runner.retried, runner.failed) == (0, 0)
    assert row.attempt == 0
    assert "cancelled" in row.error
    letter = DeadLetterRecord.objects.get(job_id=job_id)
    assert letter.reason == "cancelled"
    stats = Queue("default").stats().value
    assert (stats.ready, stats.delayed, stats.running, stats.dead) == (0, 0, 0, 1)  # not retried
    page = manager.get(reverse(f"{PREFIX}_jobrecord_change", args=(row.pk,))).content.decode()
    assert '<span class="repid-badge repid-grey">Cancelled</span>' in page


def check_progress_is_shown(manager: Client, record: JobRecord) -> None:
    """The running job's progress, on its admin page and in a monitor snapshot."""
    url = reverse(f"{PREFIX}_jobrecord_change", args=(record.pk,))

    def shown() -> str | None:
        page = manager.get(url).content.decode()
        return page if "repid-progress" in page else None

    html = wait_for(shown, 5, "progress on the job page")
    assert " of 600 images" in html
    assert "Cancel this job" in html
    snapshot = build_snapshot()
    (job,) = [job for job in snapshot["running_jobs"] if job["job_id"] == record.job_id]
    assert job["progress"] is not None
    assert 0 <= job["progress"]["value"] < 1
    assert job["progress"]["text"].endswith(" of 600 images")
