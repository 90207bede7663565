"""The worker side of the ``django.tasks`` backend: two generic actors that run Django tasks.

A Django task is sent as a job of the actor :data:`~.payload.SYNC_ACTOR` (sync task functions,
run in the worker's thread pool between two ``close_old_connections()`` calls) or
:data:`~.payload.ASYNC_ACTOR` (coroutine functions, awaited on the worker's event loop). The
job's keyword arguments are the :class:`~.payload.Payload`: the task's dotted path, its JSON
``args``/``kwargs`` and the result id. The actor looks the path up among the tasks this process
knows (it never imports a path from the broker, see ``payload``), sends
``task_started``/``task_finished`` and calls the function.

A success returns an envelope (the payload, the task's return value and the worker's id), so
that ``get_result`` can rebuild the ``TaskResult`` after the message is gone. A failure is
re-raised with a note naming the task, the worker and the exception's class path, which the
stored traceback then carries.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from typing import Any

from django.tasks import TaskContext, TaskResult, TaskResultStatus
from django.tasks.signals import task_finished, task_started
from django.utils.json import normalize_json

from ..engine.results import stamp
from ..engine.serializer import JSON
from .payload import NOTE_PREFIX, AnyTask, Payload, queue_of, task_for

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def running_result(payload: Payload, task: AnyTask, started: datetime) -> TaskResult[..., Any]:
    """The ``TaskResult`` a running task sees in its context and in ``task_started``."""
    return TaskResult(
        task=task,
        id=payload["id"],
        status=TaskResultStatus.RUNNING,
        enqueued_at=stamp(payload["enqueued_at"]),
        started_at=started,
        finished_at=None,
        last_attempted_at=started,
        args=payload["args"],
        kwargs=payload["kwargs"],
        backend=payload["backend"],
        errors=[],
        worker_ids=[WORKER_ID],
    )


def _class_path(exc: BaseException) -> str:
    kind = type(exc)
    return f"{kind.__module__}.{kind.__qualname__}"


class TaskRun:
    """One run of a Django task, shared by both actors: the task, its running ``TaskResult``,
    the call's arguments and the ``sender`` of the task signals (the task's backend class, as
    Django's backends send). ``done`` once it succeeded or failed."""

    __slots__ = ("args", "done", "kwargs", "payload", "result", "sender", "task")

    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = Payload(**payload)  # type: ignore[typeddict-item]
        self.task = task_for(self.payload, queue_of(self.payload["id"]) or "default")
        self.result = running_result(self.payload, self.task, datetime.now(UTC))
        self.args: list[Any] = list(self.payload["args"])
        if self.task.takes_context:
            self.args.insert(0, TaskContext(task_result=self.result))
        self.kwargs = self.payload["kwargs"]
        self.sender: type = type(self.task.get_backend())
        self.done = False

    def succeeded(self, value: Any) -> dict[str, JSON]:
        """Record the return value; returns the envelope the job stores."""
        value = normalize_json(value)
        self._finish(TaskResultStatus.SUCCESSFUL)
        object.__setattr__(self.result, "_return_value", value)
        return {**self.payload, "return_value": value, "worker_id": WORKER_ID}

    def failed(self, exc: BaseException) -> None:
        """Record the failure and add the note ``get_result`` reads back to ``exc``."""
        exc.add_note(
            f"{NOTE_PREFIX} task={self.payload['task']} worker={WORKER_ID} "
            f"exception={_class_path(exc)}"
        )
        self._finish(TaskResultStatus.FAILED)

    def _finish(self, status: TaskResultStatus) -> None:
        object.__setattr__(self.result, "status", status)
        object.__setattr__(self.result, "finished_at", datetime.now(UTC))
        self.done = True


def run_sync_task(**payload: Any) -> dict[str, JSON]:
    """The actor of sync task functions (runs in the worker's thread pool)."""
    run = TaskRun(payload)
    task_started.send(sender=run.sender, task_result=run.result)
    try:
        return run.succeeded(run.task.func(*run.args, **run.kwargs))
    except Exception as exc:
        run.failed(exc)
        raise
    finally:
        if run.done:
            task_finished.send(sender=run.sender, task_result=run.result)


async def run_async_task(**payload: Any) -> dict[str, JSON]:
    """The actor of coroutine task functions (awaited on the worker's event loop)."""
    run = TaskRun(payload)
    await task_started.asend(sender=run.sender, task_result=run.result)
    try:
        return run.succeeded(await run.task.func(*run.args, **run.kwargs))
    except Exception as exc:
        run.failed(exc)
        raise
    finally:
        if run.done:
            await task_finished.asend(sender=run.sender, task_result=run.result)
