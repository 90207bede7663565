"""``manage.py runworker --pause QUEUE`` / ``--resume QUEUE``: switch queues and exit, without
starting a worker (no job runs, no worker row); bad input is a clear error that does nothing."""

from __future__ import annotations

import time
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from repid_django import Job, Queue
from repid_django.management.commands.runworker import EXIT_BROKER_UNREACHABLE
from repid_django.models import WorkerRecord
from tests.django.testapp.models import Note
from tests.redis_server import free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


def runworker(*args: str) -> str:
    out = StringIO()
    call_command("runworker", "--no-reload", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_pause_and_resume_then_exit_without_running_anything() -> None:
    for name in ("default", "other"):
        Queue(name).declare()
    Job("record", args={"tag": "waits"}).enqueue()
    started = time.monotonic()
    out = runworker("--pause", "default", "--pause", "other")
    assert time.monotonic() - started < 5  # it did not run a worker until a signal
    assert Queue("default").stats().value.paused
    assert Queue("other").stats().value.paused
    assert "Paused queue 'default': 1 waiting, 0 running" in out
    assert "Paused queue 'other': 0 waiting" in out
    assert not Note.objects.exists()
    assert not WorkerRecord.objects.exists()
    assert Queue("default").stats().value.ready == 1

    out = runworker("--resume", "other")
    assert "Resumed queue 'other'" in out
    assert not Queue("other").stats().value.paused
    assert Queue("default").stats().value.paused
    runworker("--resume", "default")
    assert not Queue("default").stats().value.paused
    assert not Note.objects.exists()


def test_an_undeclared_queue_gets_a_note() -> None:
    out = runworker("--pause", "emials")
    assert "Paused queue 'emials'" in out
    assert "no queue 'emials' is declared on the broker yet (a typo?)" in out
    assert Queue("emials").stats().value.paused


def test_bad_input_is_refused_and_nothing_is_switched() -> None:
    with pytest.raises(CommandError, match="--pause: invalid queue name"):
        runworker("--pause", "default", "--pause", "no spaces")
    with pytest.raises(CommandError, match="given to both --pause and --resume"):
        runworker("--pause", "default", "--resume", "default")
    with pytest.raises(CommandError, match="drop --concurrency, --burst"):
        runworker("--pause", "default", "--burst", "--concurrency", "3")
    assert not Queue("default").stats().value.paused


def test_an_unreachable_broker_exits_69(settings: Any) -> None:
    settings.REPID = {**settings.REPID, "BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    with pytest.raises(SystemExit) as info:
        runworker("--pause", "default")
    assert info.value.code == EXIT_BROKER_UNREACHABLE
