"""Task paths from the broker (a job's payload, a stored traceback's note) are only looked up
among the tasks this process knows; an unknown path is refused and never imported."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from repid_django.engine.message import Message, encode
from repid_django.engine.results import JobResult
from repid_django.tasks_backend.payload import (
    NOTE_PREFIX,
    SYNC_ACTOR,
    Payload,
    UnknownTask,
    known_task,
    queue_of,
)
from repid_django.tasks_backend.results import Found, to_task_result
from repid_django.tasks_backend.worker import run_async_task, run_sync_task
from tests.django.testapp import dj_tasks

UNTRUSTED = "tests.django.testapp.import_side_effect"
PATH = f"{UNTRUSTED}.run"


def payload(task: str, *args: Any) -> Payload:
    return Payload(
        id="default:0123456789abcdef0123456789abcdef",
        task=task,
        args=list(args),
        kwargs={},
        backend="default",
        priority=0,
        run_after=None,
        enqueued_at=time.time(),
    )


@pytest.fixture(autouse=True)
def _never_imported() -> Any:
    assert UNTRUSTED not in sys.modules
    yield
    assert UNTRUSTED not in sys.modules, "a task path from broker data was imported"


def test_known_tasks_are_the_declared_ones() -> None:
    assert known_task(dj_tasks.add.module_path) is dj_tasks.add
    with pytest.raises(UnknownTask, match="never imported"):
        known_task(PATH)
    with pytest.raises(UnknownTask):
        known_task("os.system")


def test_the_queue_is_read_from_a_result_id() -> None:
    assert queue_of("emails:abc") == "emails"
    assert queue_of("a:b:c") == "a:b"
    assert queue_of("abc") is None
    assert queue_of("emails:") is None


def test_the_sync_actor_runs_a_known_task_and_refuses_an_unknown_path() -> None:
    envelope = run_sync_task(**payload(dj_tasks.add.module_path, 2, 3))
    assert envelope["return_value"] == 5
    with pytest.raises(UnknownTask, match=repr(PATH)):
        run_sync_task(**payload(PATH))


async def test_the_async_actor_refuses_an_unknown_path() -> None:
    with pytest.raises(UnknownTask):
        await run_async_task(**payload(PATH))


def test_the_result_reader_refuses_an_unknown_path_in_a_message() -> None:
    message = Message(id="default:x", actor=SYNC_ACTOR, queue="default", args=dict(payload(PATH)))
    found = Found(None, encode(message), False, None, None)
    with pytest.raises(UnknownTask):
        to_task_result("default:x", found, "default")


def test_the_result_reader_refuses_an_unknown_path_in_a_traceback_note() -> None:
    now = datetime.now(UTC)
    traceback = (
        "Traceback (most recent call last):\nValueError: no\n"
        f"{NOTE_PREFIX} task={PATH} worker=h:1 exception=builtins.ValueError"
    )
    stored = JobResult("default:x", SYNC_ACTOR, False, None, traceback, now, now)
    with pytest.raises(UnknownTask):
        to_task_result("default:x", Found(stored, None, False, None, None), "default")
