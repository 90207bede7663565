"""The ``django.tasks`` backend on a real Redis: enqueue, run by the worker, read the result."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from django.tasks import TaskResultStatus, task_backends
from django.tasks.exceptions import (
    InvalidTask,
    InvalidTaskBackend,
    TaskResultDoesNotExist,
    TaskResultMismatch,
)
from django.tasks.signals import task_enqueued, task_finished, task_started

from repid_django import Connection
from repid_django.engine.brokers.base import DeadReason, Outcome, OutcomeKind
from repid_django.tasks_backend.backend import RepidTaskBackend
from repid_django.tasks_backend.results import TaskLost
from repid_django.worker.build import build_worker
from tests.django.testapp import dj_tasks


def keys(client: redis.Redis, prefix: str, queue: str = "default") -> dict[str, str]:
    base = f"{prefix}:{{{queue}}}:"
    return {part: f"{base}{part}" for part in ("ready", "delayed", "msgs", "leases")}


async def run_worker_here(connection: Connection, **options: Any) -> None:
    worker = build_worker(
        connection=connection, burst=True, handle_signals=(), mirror=False, **options
    )
    await worker.run()


async def wait_for_status(result_id: str, status: TaskResultStatus, within: float = 10.0) -> Any:
    """Poll ``aget_result`` until ``status`` (a condition with a deadline, not a sleep)."""
    backend = task_backends["default"]
    deadline = time.monotonic() + within
    while True:
        result = await backend.aget_result(result_id)
        if result.status == status:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{result_id} is {result.status}, not {status}, after {within}s")
        await asyncio.sleep(0.01)


@pytest.fixture
def signals() -> Iterator[dict[str, list[Any]]]:
    seen: dict[str, list[Any]] = {"enqueued": [], "started": [], "finished": []}

    def receiver(name: str) -> Callable[..., None]:
        def receive(sender: type, task_result: Any, **kwargs: Any) -> None:
            seen[name].append((sender, task_result.id, task_result.status))

        return receive

    pairs = [
        (task_enqueued, receiver("enqueued")),
        (task_started, receiver("started")),
        (task_finished, receiver("finished")),
    ]
    for signal, fn in pairs:
        signal.connect(fn, weak=False)
    yield seen
    for signal, fn in pairs:
        signal.disconnect(fn)


def test_backend_is_configured_with_its_features() -> None:
    backend = task_backends["default"]
    assert isinstance(backend, RepidTaskBackend)
    assert backend.supports_defer
    assert backend.supports_async_task
    assert backend.supports_get_result
    assert backend.supports_priority


def test_sync_enqueue_then_worker_runs_it(
    run_worker: Callable[..., str],
    redis_client: redis.Redis,
    key_prefix: str,
    signals: dict[str, list[Any]],
) -> None:
    result = dj_tasks.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY
    assert result.id.startswith("default:")
    assert result.enqueued_at is not None
    assert result.args == [2, 3]
    assert result.kwargs == {}
    assert signals["enqueued"] == [(RepidTaskBackend, result.id, TaskResultStatus.READY)]
    k = keys(redis_client, key_prefix)
    assert redis_client.zscore(k["ready"], result.id) is not None
    waiting = dj_tasks.add.get_result(result.id)
    assert waiting.status == TaskResultStatus.READY
    assert waiting.started_at is None
    assert waiting.worker_ids == []

    run_worker("--no-mirror")

    done = dj_tasks.add.get_result(result.id)
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.return_value == 5
    assert done.args == [2, 3]
    assert done.task.func is dj_tasks.add.func
    assert done.started_at is not None
    assert done.finished_at is not None
    assert done.enqueued_at is not None
    assert done.enqueued_at <= done.started_at
    assert done.last_attempted_at == done.started_at
    assert done.attempts == 1
    assert len(done.worker_ids) == 1
    assert signals["started"] == [(RepidTaskBackend, result.id, TaskResultStatus.RUNNING)]
    assert signals["finished"] == [(RepidTaskBackend, result.id, TaskResultStatus.SUCCESSFUL)]
    refreshed: Any = result  # refresh() changes the status mypy narrowed above
    refreshed.refresh()
    assert refreshed.status == TaskResultStatus.SUCCESSFUL
    assert refreshed.return_value == 5
    with pytest.raises(TaskResultMismatch):
        dj_tasks.echo.get_result(result.id)


def test_failure_is_failed_with_class_path_and_traceback(
    run_worker: Callable[..., str], signals: dict[str, list[Any]]
) -> None:
    result = dj_tasks.explode.enqueue("kaboom")
    run_worker("--no-mirror")
    failed = dj_tasks.explode.get_result(result.id)
    assert failed.status == TaskResultStatus.FAILED
    assert len(failed.errors) == 1
    error = failed.errors[0]
    assert error.exception_class_path == "tests.django.testapp.dj_tasks.TaskBoom"
    assert error.exception_class is dj_tasks.TaskBoom
    assert error.traceback.startswith("Traceback (most recent call last):")
    assert "TaskBoom: kaboom" in error.traceback
    assert failed.args == ["kaboom"]
    assert failed.finished_at is not None
    assert failed.attempts == 1
    with pytest.raises(ValueError, match="Task failed"):
        failed.return_value  # noqa: B018 - the property raises
    assert signals["finished"] == [(RepidTaskBackend, result.id, TaskResultStatus.FAILED)]


def test_timeout_option_fails_the_run_as_a_timeout(
    run_worker: Callable[..., str], settings: Any
) -> None:
    settings.TASKS = {"default": {**settings.TASKS["default"], "OPTIONS": {"TIMEOUT": 0.2}}}
    result = dj_tasks.asleep.enqueue(30)
    run_worker("--no-mirror")
    failed = dj_tasks.asleep.get_result(result.id)
    assert failed.status == TaskResultStatus.FAILED
    assert failed.errors[0].exception_class_path == "builtins.TimeoutError"
    assert "ran longer than its timeout of 0.2s" in failed.errors[0].traceback


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"OPTIONS": {"TIMEOUT": 0}}, r"\['TIMEOUT'\] must be a positive number of seconds"),
        ({"QUEUES": ["bad{queue}"]}, r"\['QUEUES'\]: invalid queue name 'bad\{queue\}'"),
    ],
)
def test_bad_backend_settings_are_clear(
    settings: Any, params: dict[str, Any], message: str
) -> None:
    backend = "repid_django.backend.RepidTaskBackend"
    settings.TASKS = {"default": {"BACKEND": backend, **params}}
    with pytest.raises(InvalidTaskBackend, match=message):
        task_backends["default"]


def test_sync_code_enqueues_and_reads_without_an_event_loop_thread(
    run_worker: Callable[..., str],
) -> None:
    before = {t.name for t in threading.enumerate()}
    result = dj_tasks.add.enqueue(1, 1)
    assert dj_tasks.add.get_result(result.id).status == TaskResultStatus.READY
    run_worker("--no-mirror")
    assert dj_tasks.add.get_result(result.id).return_value == 2
    started = {t.name for t in threading.enumerate()} - before
    assert "repid-portal" not in started


def test_kwargs_and_allowed_other_queue(run_worker: Callable[..., str]) -> None:
    echoed = dj_tasks.echo.enqueue(1, "x", flag=True, nested={"a": [1, 2]})
    other = dj_tasks.on_other.enqueue(tag="t")
    assert other.id.startswith("other:")
    run_worker("--no-mirror")  # default queues: the actors' and the backend's QUEUES
    got = dj_tasks.echo.get_result(echoed.id)
    assert got.return_value == {"args": [1, "x"], "kwargs": {"flag": True, "nested": {"a": [1, 2]}}}
    assert got.kwargs == {"flag": True, "nested": {"a": [1, 2]}}
    done = dj_tasks.on_other.get_result(other.id)
    assert done.return_value == "other:t"
    assert done.task.queue_name == "other"


def test_priority_is_honoured(
    run_worker: Callable[..., str], redis_client: redis.Redis, key_prefix: str
) -> None:
    low = dj_tasks.echo.using(priority=-100).enqueue("low")
    mid = dj_tasks.echo.enqueue("mid")
    high = dj_tasks.echo.using(priority=100).enqueue("high")
    higher = dj_tasks.echo.using(priority=60).enqueue("higher")
    k = keys(redis_client, key_prefix)
    ready: list[bytes] = redis_client.zrange(k["ready"], 0, -1)  # type: ignore[assignment]
    order = [i.decode() for i in ready]
    assert order == [high.id, higher.id, mid.id, low.id]

    run_worker("--no-mirror", "--concurrency", "1")
    results = [dj_tasks.echo.get_result(r.id) for r in (high, higher, mid, low)]
    assert [r.task.priority for r in results] == [100, 60, 0, -100]
    started = [r.started_at for r in results]
    assert all(s is not None for s in started)
    assert started == sorted(started)  # type: ignore[type-var]


def test_run_after_defers(
    run_worker: Callable[..., str], redis_client: redis.Redis, key_prefix: str
) -> None:
    when = datetime.now(UTC) + timedelta(hours=1)
    later = dj_tasks.add.using(run_after=when).enqueue(1, 1)
    now = dj_tasks.add.enqueue(2, 2)
    k = keys(redis_client, key_prefix)
    score = redis_client.zscore(k["delayed"], later.id)
    assert score is not None
    assert abs(score - when.timestamp()) < 0.01
    assert redis_client.zscore(k["ready"], later.id) is None

    run_worker("--no-mirror")

    assert dj_tasks.add.get_result(now.id).status == TaskResultStatus.SUCCESSFUL
    waiting = dj_tasks.add.get_result(later.id)
    assert waiting.status == TaskResultStatus.READY
    assert waiting.task.run_after == when.replace(microsecond=waiting.task.run_after.microsecond)  # type: ignore[union-attr]
    assert redis_client.zscore(k["delayed"], later.id) is not None


def test_takes_context(run_worker: Callable[..., str]) -> None:
    result = dj_tasks.whoami.enqueue(tag="ctx")
    run_worker("--no-mirror")
    value = dj_tasks.whoami.get_result(result.id).return_value
    assert value == {
        "id": result.id,
        "attempt": 1,
        "status": "RUNNING",
        "tag": "ctx",
        "queue": "default",
    }


def test_queue_not_allowed_is_rejected_clearly() -> None:
    with pytest.raises(InvalidTask, match=r"queue 'nope' is not allowed .*'default', 'other'"):
        dj_tasks.add.using(queue_name="nope")


def test_non_json_args_are_rejected_and_nothing_is_sent(
    redis_client: redis.Redis, key_prefix: str, signals: dict[str, list[Any]]
) -> None:
    when: Any = datetime.now(UTC)
    with pytest.raises(TypeError, match=r"args\[0\] is a datetime.*nothing was enqueued"):
        dj_tasks.add.enqueue(when, 1)
    numbers: Any = [{1}]
    with pytest.raises(TypeError, match=r"kwargs\['b'\]\[0\] is a set.*nothing was enqueued"):
        dj_tasks.add.enqueue(1, b=numbers)
    assert list(redis_client.scan_iter(match=f"{key_prefix}:*")) == []
    assert signals["enqueued"] == []


def test_unknown_result_id() -> None:
    backend = task_backends["default"]
    with pytest.raises(TaskResultDoesNotExist):
        backend.get_result("default:0123456789abcdef")
    with pytest.raises(TaskResultDoesNotExist):
        backend.get_result("no-queue-in-it")


async def test_sync_api_in_async_code_says_what_to_use(aconnection: Connection) -> None:
    with pytest.raises(RuntimeError, match="aenqueue"):
        dj_tasks.add.enqueue(1, 2)


async def test_async_enqueue_async_task_and_aget_result(
    aconnection: Connection, signals: dict[str, list[Any]]
) -> None:
    doubled = await dj_tasks.adouble.aenqueue(21)
    context = await dj_tasks.awhoami.aenqueue()
    plain = await dj_tasks.add.aenqueue(3, 4)
    assert doubled.status == TaskResultStatus.READY
    assert signals["enqueued"][0] == (RepidTaskBackend, doubled.id, TaskResultStatus.READY)
    assert (await dj_tasks.adouble.aget_result(doubled.id)).status == TaskResultStatus.READY

    await run_worker_here(aconnection)

    # (the stubs type an async task's return value as its coroutine: read it as Any)
    got: Any = await dj_tasks.adouble.aget_result(doubled.id)
    assert got.status == TaskResultStatus.SUCCESSFUL
    assert got.return_value == 42
    whoami: Any = await dj_tasks.awhoami.aget_result(context.id)
    assert whoami.return_value == context.id
    assert (await dj_tasks.add.aget_result(plain.id)).return_value == 7
    await doubled.arefresh()
    refreshed: Any = doubled.return_value
    assert refreshed == 42
    finished = {entry[1] for entry in signals["finished"]}
    assert finished == {doubled.id, context.id, plain.id}


async def test_running_state_while_a_worker_holds_it(aconnection: Connection) -> None:
    dj_tasks.gate.clear()
    result = await dj_tasks.blocked.aenqueue()
    worker = asyncio.create_task(run_worker_here(aconnection))
    try:
        running = await wait_for_status(result.id, TaskResultStatus.RUNNING)
        assert running.started_at is None
        assert running.finished_at is None
    finally:
        dj_tasks.gate.set()
    done = await wait_for_status(result.id, TaskResultStatus.SUCCESSFUL)
    assert done.return_value == "opened"
    await asyncio.wait_for(worker, 10)


async def test_dead_letter_without_result_is_failed(aconnection: Connection) -> None:
    """What the reaper does to a task whose workers keep dying: FAILED, with the reason."""
    result = await dj_tasks.add.aenqueue(1, 2)
    broker = aconnection.message_broker
    (delivery,) = await broker.claim(["default"], 1, 0)
    assert delivery.message.id == result.id
    running = await dj_tasks.add.aget_result(result.id)
    assert running.status == TaskResultStatus.RUNNING
    lost = Outcome(
        delivery, OutcomeKind.DEAD, reason=DeadReason.WORKER_LOST, error="lease expired 3 times"
    )
    assert await broker.finish([lost]) == [True]
    failed = await dj_tasks.add.aget_result(result.id)
    assert failed.status == TaskResultStatus.FAILED
    assert failed.args == [1, 2]
    (error,) = failed.errors
    assert error.exception_class is TaskLost
    assert "(worker_lost): lease expired 3 times" in error.traceback
