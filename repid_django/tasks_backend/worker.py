"""The worker side of the ``django.tasks`` backend: two generic actors that run Django tasks.

A Django task is sent as a job of the actor :data:`SYNC_ACTOR` (sync task functions, run in
the worker's thread pool between two ``close_old_connections()`` calls) or :data:`ASYNC_ACTOR`
(coroutine functions, awaited on the worker's event loop). The job's keyword arguments are the
:class:`Payload`: the task's dotted path, its JSON ``args``/``kwargs`` and the result id. The
actor imports the path, checks that it names a ``django.tasks.Task`` (nothing else is ever
called), sends ``task_started``/``task_finished`` and calls the function.

A success returns an envelope (the payload, the task's return value and the worker's id), so
that ``get_result`` can rebuild the ``TaskResult`` after the message is gone. A failure is
re-raised with a note naming the task, the worker and the exception's class path, which the
stored traceback then carries.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from typing import Any, TypedDict

from django.conf import settings
from django.tasks import Task, TaskContext, TaskResult, TaskResultStatus
from django.tasks.signals import task_finished, task_started
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from ..engine.router import Router
from ..engine.serializer import JSON

type AnyTask = Task[..., Any]

SYNC_ACTOR = "django.tasks"
ASYNC_ACTOR = "django.tasks.async"
NOTE_PREFIX = "[django.tasks]"
"""Start of the note added to a failed task's exception (parsed back by ``get_result``)."""

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


class Payload(TypedDict):
    """The keyword arguments of a Django task's job (all JSON)."""

    id: str
    task: str
    args: list[JSON]
    kwargs: dict[str, JSON]
    backend: str
    priority: int
    run_after: float | None
    enqueued_at: float


def _stamp(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def load_task(path: str) -> AnyTask:
    """The ``Task`` object at ``path``; ``ValueError`` if the path names anything else."""
    try:
        found = import_string(path)
    except ImportError as exc:
        raise ValueError(f"django task {path!r} cannot be imported: {exc}") from exc
    if not isinstance(found, Task):
        raise ValueError(
            f"{path!r} is a {type(found).__name__}, not a django.tasks Task (decorate the "
            "module-level function with @task)"
        )
    return found


def task_for(payload: Payload, queue: str) -> AnyTask:
    """The task of ``payload`` with the options it was enqueued with."""
    task = load_task(payload["task"])
    changes: dict[str, Any] = {
        "priority": payload["priority"],
        "queue_name": queue,
        "backend": payload["backend"],
    }
    if payload["run_after"] is not None:
        changes["run_after"] = _stamp(payload["run_after"])
    return task.using(**changes)


def running_result(payload: Payload, task: AnyTask, started: datetime) -> TaskResult[..., Any]:
    """The ``TaskResult`` a running task sees in its context and in ``task_started``."""
    return TaskResult(
        task=task,
        id=payload["id"],
        status=TaskResultStatus.RUNNING,
        enqueued_at=_stamp(payload["enqueued_at"]),
        started_at=started,
        finished_at=None,
        last_attempted_at=started,
        args=payload["args"],
        kwargs=payload["kwargs"],
        backend=payload["backend"],
        errors=[],
        worker_ids=[WORKER_ID],
    )


def _sender() -> type:
    """The ``sender`` of the task signals: the backend class, as Django's backends send."""
    from .backend import RepidTaskBackend

    return RepidTaskBackend


def _class_path(exc: BaseException) -> str:
    kind = type(exc)
    return f"{kind.__module__}.{kind.__qualname__}"


def _finish(result: TaskResult[..., Any], status: TaskResultStatus, value: Any = None) -> None:
    object.__setattr__(result, "status", status)
    object.__setattr__(result, "finished_at", datetime.now(UTC))
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", value)


def _note(exc: BaseException, payload: Payload) -> None:
    exc.add_note(
        f"{NOTE_PREFIX} task={payload['task']} worker={WORKER_ID} exception={_class_path(exc)}"
    )


def _envelope(payload: Payload, value: JSON) -> dict[str, JSON]:
    return {**payload, "return_value": value, "worker_id": WORKER_ID}


def _prepare(payload: Payload, queue: str) -> tuple[AnyTask, TaskResult[..., Any], list[Any]]:
    task = task_for(payload, queue)
    result = running_result(payload, task, datetime.now(UTC))
    call_args: list[Any] = list(payload["args"])
    if task.takes_context:
        call_args.insert(0, TaskContext(task_result=result))
    return task, result, call_args


def run_sync_task(**payload: Any) -> dict[str, JSON]:
    """The actor of sync task functions (runs in the worker's thread pool)."""
    data = Payload(**payload)  # type: ignore[typeddict-item]
    queue = data["id"].rpartition(":")[0] or "default"
    task, result, call_args = _prepare(data, queue)
    task_started.send(sender=_sender(), task_result=result)
    try:
        value = normalize_json(task.func(*call_args, **data["kwargs"]))
    except Exception as exc:
        _note(exc, data)
        _finish(result, TaskResultStatus.FAILED)
        task_finished.send(sender=_sender(), task_result=result)
        raise
    _finish(result, TaskResultStatus.SUCCESSFUL, value)
    task_finished.send(sender=_sender(), task_result=result)
    return _envelope(data, value)


async def run_async_task(**payload: Any) -> dict[str, JSON]:
    """The actor of coroutine task functions (awaited on the worker's event loop)."""
    data = Payload(**payload)  # type: ignore[typeddict-item]
    queue = data["id"].rpartition(":")[0] or "default"
    task, result, call_args = _prepare(data, queue)
    await task_started.asend(sender=_sender(), task_result=result)
    try:
        value = normalize_json(await task.func(*call_args, **data["kwargs"]))
    except Exception as exc:
        _note(exc, data)
        _finish(result, TaskResultStatus.FAILED)
        await task_finished.asend(sender=_sender(), task_result=result)
        raise
    _finish(result, TaskResultStatus.SUCCESSFUL, value)
    await task_finished.asend(sender=_sender(), task_result=result)
    return _envelope(data, value)


def configured_backends() -> list[dict[str, Any]]:
    """The ``TASKS`` entries whose backend is the Repid one (or a subclass)."""
    from .backend import RepidTaskBackend

    found = []
    for params in getattr(settings, "TASKS", {}).values():
        backend = params.get("BACKEND")
        try:
            cls = import_string(backend) if isinstance(backend, str) else backend
        except ImportError:
            continue
        if isinstance(cls, type) and issubclass(cls, RepidTaskBackend):
            found.append(params)
    return found


def task_router() -> Router:
    """The generic task actors, when ``TASKS`` uses the Repid backend (else an empty router)."""
    router = Router()
    if configured_backends():
        router.actor(name=SYNC_ACTOR)(run_sync_task)
        router.actor(name=ASYNC_ACTOR)(run_async_task)
    return router


def task_queues() -> set[str]:
    """Queues named by the ``QUEUES`` of every Repid task backend (``runworker``'s default)."""
    queues: set[str] = set()
    for params in configured_backends():
        queues.update(params.get("QUEUES", ["default"]))
    return queues
